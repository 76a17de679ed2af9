// The messages and their due queue as SQL, once for SQLite and PostgreSQL: what accept, cancel, a
// dispatcher's verdict, a claim, a replay, the start's requeue and the retention purge write, and what the
// API and the dispatcher read back. SqlStore (store/sql_store.cpp, store/group_commit.cpp) runs the writes in its group
// commit and the reads on its reader pool; a backend's own store may run them inside its own transactions too.
#include "store/ops/messages.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "store/ops/erasure.hpp"
#include "store/ops/recipients.hpp"
#include "store/ops/rows.hpp"

namespace tayori::store {

std::string_view to_string(State s) {
  switch (s) {
    case State::scheduled:
      return "scheduled";
    case State::dispatched:
      return "dispatched";
    case State::delivered:
      return "delivered";
    case State::failed:
      return "failed";
    case State::cancelled:
      return "cancelled";
    case State::suppressed:
      return "suppressed";
    case State::dead:
      return "dead";
  }
  return "unknown";
}

std::optional<State> parse_state(std::string_view s) {
  for (State st : kAllStates)
    if (to_string(st) == s) return st;
  return std::nullopt;
}

bool is_final(State s) {
  return s == State::delivered || s == State::failed || s == State::cancelled || s == State::suppressed ||
         s == State::dead;
}

namespace ops {

namespace {

// The messages purge removes once retention has passed (is_final): every state but the two still in play.
// Worded as the partial index messages_finished is (SQLite migration 8), so the planner can use it.
const std::string kFinished = "state NOT IN ('scheduled', 'dispatched')";

// One INSERT per row measured faster than one multi-row INSERT for the two events a message writes at a time.
// An event carries its message's number (messages.seq), by which events_message orders a timeline: the numbers
// grow as messages arrive, so a message's events enter that index where the recent messages' do, whatever its
// id (SQLite migration 11). A number or recipient the caller does not know (0, "") is looked up by id in the
// statement (both engines evaluate COALESCE's arguments only as far as needed); an event whose message is not
// stored gets 0 and "", as those that belong to no message. The event's own number comes from the SQLite
// writer's next_event_seq() (migration 12: AUTOINCREMENT cost each insert a write of sqlite_sequence), from the
// identity column on PostgreSQL.
#define TAYORI_INSERT_EVENT(seq_column, seq_value)                                         \
  "INSERT INTO events(" seq_column                                                         \
  "message_id, message_seq, type, at, detail, recipient_id) "                              \
  "VALUES(" seq_value                                                                      \
  "?1, COALESCE(NULLIF(?5, 0), (SELECT seq FROM messages WHERE id = ?1), 0), ?2, ?3, ?4, " \
  "COALESCE(NULLIF(?6, ''), (SELECT recipient_id FROM messages WHERE id = ?1), ''))"
constexpr const char* kInsertEvent[] = {TAYORI_INSERT_EVENT("seq, ", "next_event_seq(), "),
                                        TAYORI_INSERT_EVENT("", "")};
#undef TAYORI_INSERT_EVENT

void insert_event_of(sql::Connection& c, const std::string& message_id, int64_t message_seq,
                     const std::string& recipient_id, const NewTimelineEvent& e, int64_t now_ms) {
  c.prepare(sql::for_dialect(c, kInsertEvent))
      .bind(1, message_id)
      .bind(2, e.type)
      .bind(3, e.at_ms != 0 ? e.at_ms : now_ms)
      .bind(4, e.detail_json)
      .bind(5, message_seq)
      .bind(6, recipient_id)
      .send();
}

// Binds a listing's or a replay's filter as ?1 state, ?2 channel, ?3 after id, ?4 id, ?5 limit, ?6 api key:
// the conditions kFilterWhere writes.
sql::Statement& bind_filter(sql::Statement& s, const MessageFilter& f) {
  return s.bind(1, f.state ? to_string(*f.state) : std::string_view(""))
      .bind(2, f.channel)
      .bind(3, f.after_id)
      .bind(4, f.id)
      .bind(5, static_cast<int64_t>(std::max(0, f.limit)))
      .bind(6, f.api_key);
}
const std::string kFilterWhere =
    "(?1 = '' OR state = ?1) AND (?2 = '' OR channel = ?2) AND id > ?3 AND (?4 = '' OR id = ?4) "
    "AND (?6 = '' OR api_key = ?6)";

// A new message, and its number: SQLite's connection tells the rowid it made (a RETURNING clause, which SQLite
// runs through a temporary table, cost the writer 2-3 us per message), PostgreSQL's INSERT answers it.
#define TAYORI_INSERT_MESSAGE(returning)                                                                      \
  "INSERT INTO messages(id, api_key, payload_hash, payload, state, created_at, updated_at, due_at, send_at, " \
  "expires_at, recipient_id, attempts, channel_attempts, channel_since) "                                     \
  "VALUES(?1, ?2, ?3, ?4, ?10, ?5, ?5, ?6, ?7, ?8, ?9, ?11, ?11, ?12) "                                       \
  "ON CONFLICT(id) DO NOTHING" returning
constexpr const char* kInsertMessage[] = {TAYORI_INSERT_MESSAGE(""), TAYORI_INSERT_MESSAGE(" RETURNING seq")};
#undef TAYORI_INSERT_MESSAGE

}  // namespace

#define TAYORI_MESSAGE_COLUMNS                                                                                    \
  "id, api_key, payload_hash, payload, state, channel_index, channel, attempts, created_at, updated_at, due_at, " \
  "send_at, expires_at, last_reason, channel_attempts, channel_since, recipient_id, seq"
const char* const kMessageColumns = TAYORI_MESSAGE_COLUMNS;
const char* const kSelectMessage = "SELECT " TAYORI_MESSAGE_COLUMNS " FROM messages";
const char* const kSelectByProviderId = "SELECT " TAYORI_MESSAGE_COLUMNS
                                        " FROM messages WHERE provider_message_id = ?1 AND provider_message_id != '' "
                                        "LIMIT 1";
#undef TAYORI_MESSAGE_COLUMNS
const char* const kSelectPendingFollowUps =
    "SELECT id FROM messages WHERE parent_id = ?1 AND parent_id != '' AND state = 'scheduled' ORDER BY id";

MessageRecord read_message(const sql::Statement& s) {
  MessageRecord r;
  r.id = s.text(0);
  r.api_key = s.text(1);
  r.payload_hash = s.text(2);
  r.payload = s.text(3);
  r.state = parse_state(s.text(4)).value_or(State::failed);
  r.channel_index = static_cast<int>(s.int64(5));
  r.channel = s.text(6);
  r.attempts = static_cast<int>(s.int64(7));
  r.created_at_ms = s.int64(8);
  r.updated_at_ms = s.int64(9);
  r.due_at_ms = s.int64(10);
  r.send_at_ms = s.opt_int64(11);
  r.expires_at_ms = s.opt_int64(12);
  r.last_reason = s.text(13);
  r.channel_attempts = static_cast<int>(s.int64(14));
  r.channel_since_ms = s.opt_int64(15);
  r.recipient_id = s.text(16);
  r.seq = s.int64(17);
  return r;
}

TimelineEvent read_event(const sql::Statement& s) {
  return {s.int64(0), s.text(1), s.text(2), s.int64(3), s.text(4), s.text(5)};
}

void insert_events(sql::Connection& c, const std::string& message_id, int64_t message_seq,
                   const std::string& recipient_id, const std::vector<NewTimelineEvent>& events, int64_t now_ms) {
  for (const NewTimelineEvent& e : events) insert_event_of(c, message_id, message_seq, recipient_id, e, now_ms);
}

void insert_event(sql::Connection& c, const std::string& message_id, const NewTimelineEvent& e, int64_t now_ms) {
  insert_event_of(c, message_id, 0, "", e, now_ms);
}

AcceptResult accept_one(sql::Connection& c, WriteContext& w, const NewMessage& m, int64_t now_ms) {
  sql::Statement& insert = c.prepare(sql::for_dialect(c, kInsertMessage))
                               .bind(1, m.id)
                               .bind(2, m.api_key)
                               .bind(3, m.payload_hash)
                               .bind(4, m.payload)
                               .bind(5, now_ms)
                               .bind(6, m.due_at_ms)
                               .bind(7, m.send_at_ms)
                               .bind(8, m.expires_at_ms)
                               .bind(9, m.recipient_id)
                               .bind(10, to_string(m.claim ? State::dispatched : State::scheduled))
                               .bind(11, static_cast<int64_t>(m.claim ? 1 : 0))
                               .bind(12, m.claim ? std::optional<int64_t>(now_ms) : std::nullopt);
  std::optional<int64_t> seq;  // the new row's number; none when the id is taken
  if (c.dialect() == sql::Dialect::sqlite) {
    insert.exec();
    if (c.changes() != 0) seq = c.last_insert_rowid();
  } else {
    if (insert.step()) seq = insert.int64(0);
    insert.reset();
  }
  if (!seq) {
    sql::Statement& s = c.prepare("SELECT payload_hash, state, api_key FROM messages WHERE id = ?1").bind(1, m.id);
    AcceptResult r{AcceptStatus::duplicate, State::scheduled, std::nullopt};
    if (s.step()) {
      // The same message again from another key is not that key's duplicate: it owns no message by that id.
      bool same = s.text(0) == m.payload_hash && s.text(2) == m.api_key;
      r.status = same ? AcceptStatus::duplicate : AcceptStatus::conflict;
      r.state = parse_state(s.text(1)).value_or(State::failed);
    }
    s.reset();
    return r;
  }
  insert_events(c, m.id, *seq, m.recipient_id, m.events, now_ms);
  w.count(m.counts);
  std::optional<RecipientProfile> profile;
  if (m.recipient) profile = merge_recipient(c, m.recipient_id, *m.recipient, now_ms);
  if (m.claim && w.claimant)
    c.prepare("UPDATE messages SET claimed_by = ?2, lease_until = ?3 WHERE id = ?1")
        .bind(1, m.id)
        .bind(2, w.claimant->node_id)
        .bind(3, now_ms + w.claimant->lease_ms)
        .send();
  if (!m.claim) {
    w.move(std::nullopt, State::scheduled);
    return {AcceptStatus::accepted, State::scheduled, std::nullopt};
  }
  w.move(std::nullopt, State::dispatched);
  return {AcceptStatus::accepted, State::dispatched, claimed_record(m, *seq, now_ms), std::move(profile)};
}

MessageRecord claimed_record(const NewMessage& m, int64_t seq, int64_t now_ms) {
  MessageRecord r;
  r.seq = seq;
  r.id = m.id;
  r.api_key = m.api_key;
  r.payload_hash = m.payload_hash;
  r.payload = m.payload;
  r.state = State::dispatched;
  r.attempts = 1;
  r.channel_attempts = 1;
  r.channel_since_ms = now_ms;
  r.created_at_ms = now_ms;
  r.updated_at_ms = now_ms;
  r.due_at_ms = m.due_at_ms;
  r.send_at_ms = m.send_at_ms;
  r.expires_at_ms = m.expires_at_ms;
  r.recipient_id = m.recipient_id;
  return r;
}

CancelResult cancel(sql::Connection& c, WriteContext& w, const std::string& id, int64_t now_ms) {
  sql::Statement& s = c.prepare("SELECT state FROM messages WHERE id = ?1").bind(1, id);
  if (!s.step()) return {CancelStatus::not_found, State::scheduled};
  State state = parse_state(s.text(0)).value_or(State::failed);
  s.reset();
  if (state != State::scheduled) return {CancelStatus::too_late, state};
  cancel_scheduled(c, w, id, "{}", now_ms);
  return {CancelStatus::cancelled, State::cancelled};
}

void cancel_scheduled(sql::Connection& c, WriteContext& w, const std::string& id, const char* detail_json,
                      int64_t now_ms) {
  c.prepare("UPDATE messages SET state = 'cancelled', updated_at = ?2 WHERE id = ?1")
      .bind(1, id)
      .bind(2, now_ms)
      .exec();
  w.move(State::scheduled, State::cancelled);
  insert_event(c, id, {"cancelled", detail_json}, now_ms);
}

namespace {

// Records the verdict; false when the message is no longer dispatched by that claim, or (`unless_erased`)
// when its recipient was erased.
bool record_verdict(sql::Connection& c, WriteContext& w, const Transition& t, int64_t now_ms, bool unless_erased) {
  // A fallback starts the new channel's retry budget afresh; a claim that made no attempt gives its
  // attempt back (and the channel's first-claim time, when it was that claim). The row is found by its number
  // when the claim gave it (SQLite goes straight to the rowid, where the id takes a search of its index; a
  // PostgreSQL planner, which has no index on seq, takes the id's), else by the id; both must match.
  c.prepare(
       "UPDATE messages SET state = ?2, channel = ?3, channel_index = ?4, due_at = ?5, last_reason = ?6, "
       "updated_at = ?7, attempts = attempts - ?9, "
       "channel_since = CASE WHEN ?10 <> 0 OR (?9 <> 0 AND channel_attempts = 1) THEN NULL ELSE channel_since END, "
       "channel_attempts = CASE WHEN ?10 <> 0 THEN 0 ELSE channel_attempts - ?9 END, "
       "provider_message_id = CASE WHEN ?11 != '' THEN ?11 ELSE provider_message_id END "
       "WHERE seq = COALESCE(NULLIF(?14, 0), (SELECT seq FROM messages WHERE id = ?1)) AND id = ?1 "
       "AND state = 'dispatched' AND (?8 = 0 OR attempts = ?8) AND (?12 = 0 OR payload <> ?13)")
      .bind(1, t.message_id)
      .bind(2, to_string(t.to))
      .bind(3, t.channel)
      .bind(4, static_cast<int64_t>(t.channel_index))
      .bind(5, t.due_at_ms)
      .bind(6, t.last_reason)
      .bind(7, now_ms)
      .bind(8, static_cast<int64_t>(t.attempt))
      .bind(9, static_cast<int64_t>(t.no_attempt ? 1 : 0))
      .bind(10, static_cast<int64_t>(t.next_channel ? 1 : 0))
      .bind(11, t.provider_message_id)
      .bind(12, static_cast<int64_t>(unless_erased ? 1 : 0))
      .bind(13, kErasedPayload)
      .bind(14, t.message_seq)
      .exec();
  if (c.changes() == 0) return false;
  w.move(State::dispatched, t.to);
  insert_events(c, t.message_id, t.message_seq, t.recipient_id, t.events, now_ms);
  w.count(t.counts);
  return true;
}

}  // namespace

void apply(sql::Connection& c, WriteContext& w, const Transition& t, int64_t now_ms) {
  if (record_verdict(c, w, t, now_ms, true)) return;
  // Not recorded: cancelled, recovered or claimed again meanwhile (the verdict is stale), or its recipient
  // was erased while it was in flight. That verdict is kept (the state and timeline stay), but without the
  // contact point, and the suppression it may have added keeps the contact point only as its key.
  if (!is_erased_message(c, t.message_id)) return;
  if (record_verdict(c, w, scrubbed(t), now_ms, false)) pseudonymise_suppression(c, t.contact);
}

std::vector<MessageRecord> claim(sql::Connection& c, WriteContext& w, int64_t now_ms, int limit) {
  static const std::string sql =
      std::string(kSelectMessage) + " WHERE state = 'scheduled' AND due_at <= ?1 ORDER BY due_at LIMIT ?2";
  std::vector<MessageRecord> claimed =
      all_rows(c.prepare(sql.c_str()).bind(1, now_ms).bind(2, static_cast<int64_t>(limit)), read_message);
  for (MessageRecord& r : claimed) {
    c.prepare(
         "UPDATE messages SET state = 'dispatched', attempts = attempts + 1, channel_attempts = channel_attempts + 1, "
         "channel_since = COALESCE(channel_since, ?2), updated_at = ?2 WHERE seq = ?1")
        .bind(1, r.seq)
        .bind(2, now_ms)
        .exec();
    w.move(State::scheduled, State::dispatched);
    r.state = State::dispatched;
    r.attempts += 1;
    r.channel_attempts += 1;
    if (!r.channel_since_ms) r.channel_since_ms = now_ms;
  }
  return claimed;
}

std::vector<std::string> replay(sql::Connection& c, WriteContext& w, const MessageFilter& f, int64_t now_ms,
                                const std::string& by) {
  // Only dead letters and permanent failures are replayed; a filter naming another state matches none.
  static const std::string sql =
      "SELECT id, state FROM messages WHERE state IN ('dead', 'failed') AND " + kFilterWhere + " ORDER BY id LIMIT ?5";
  auto found = all_rows(bind_filter(c.prepare(sql.c_str()), f),
                        [](const sql::Statement& s) { return std::pair(s.text(0), s.text(1)); });
  std::vector<std::string> ids;
  for (const auto& [id, from] : found) {
    c.prepare(
         "UPDATE messages SET state = 'scheduled', due_at = ?2, updated_at = ?2, channel_index = 0, "
         "channel_attempts = 0, channel_since = NULL, last_reason = '' WHERE id = ?1")
        .bind(1, id)
        .bind(2, now_ms)
        .exec();
    w.move(parse_state(from), State::scheduled);
    insert_event(c, id, {"replayed", nlohmann::json{{"from", from}, {"by", by}}.dump()}, now_ms);
    ids.push_back(id);
  }
  return ids;
}

int requeue(sql::Connection& c, WriteContext& w, int64_t now_ms) {
  std::vector<std::string> ids = all_rows(c.prepare("SELECT id FROM messages WHERE state = 'dispatched'"), first_text);
  for (const auto& id : ids) {
    c.prepare("UPDATE messages SET state = 'scheduled', due_at = ?2, updated_at = ?2 WHERE id = ?1")
        .bind(1, id)
        .bind(2, now_ms)
        .exec();
    w.move(State::dispatched, State::scheduled);
    insert_event(c, id, {"requeued", R"({"reason":"in flight when the gateway stopped"})"}, now_ms);
  }
  return static_cast<int>(ids.size());
}

int64_t purge(sql::Connection& c, WriteContext& w, int64_t before_ms) {
  static const std::string events_sql =
      "DELETE FROM events WHERE message_seq IN (SELECT seq FROM messages WHERE " + kFinished + " AND updated_at < ?1)";
  static const std::string messages_sql =
      "DELETE FROM messages WHERE " + kFinished + " AND updated_at < ?1";
  static const std::string counts_sql =
      "SELECT state, COUNT(*) FROM messages WHERE " + kFinished + " AND updated_at < ?1 GROUP BY state";
  sql::Statement& counted = c.prepare(counts_sql.c_str()).bind(1, before_ms);
  while (counted.step())
    if (auto st = parse_state(counted.text(0))) w.move(*st, std::nullopt, counted.int64(1));
  counted.reset();
  // The newest events may be among those deleted: their numbers stay given (SQLite migration 12). PostgreSQL's
  // identity never gives a number back.
  if (c.dialect() == sql::Dialect::sqlite)
    c.prepare(
         "INSERT INTO numbers_given(name, last) SELECT 'events', seq FROM events WHERE seq > 0 "
         "ORDER BY seq DESC LIMIT 1 ON CONFLICT(name) DO UPDATE SET last = MAX(last, excluded.last)")
        .exec();
  c.prepare(events_sql.c_str()).bind(1, before_ms).exec();
  c.prepare(messages_sql.c_str()).bind(1, before_ms).exec();
  return c.changes();
}

std::vector<MessageRecord> list(sql::Connection& c, const MessageFilter& f) {
  static const std::string sql = std::string(kSelectMessage) + " WHERE " + kFilterWhere + " ORDER BY id LIMIT ?5";
  return all_rows(bind_filter(c.prepare(sql.c_str()), f), [](const sql::Statement& s) {
    MessageRecord r = read_message(s);
    r.payload.clear();
    return r;
  });
}

std::optional<MessageRecord> find(sql::Connection& c, const std::string& id) {
  static const std::string sql = std::string(kSelectMessage) + " WHERE id = ?1";
  return first_row(c.prepare(sql.c_str()).bind(1, id), read_message);
}

std::optional<MessageRecord> find_by_provider_id(sql::Connection& c, const std::string& provider_message_id) {
  return first_row(c.prepare(kSelectByProviderId).bind(1, provider_message_id), read_message);
}

std::vector<TimelineEvent> events(sql::Connection& c, const std::string& id) {
  return all_rows(
      c.prepare("SELECT seq, message_id, type, at, detail, recipient_id FROM events WHERE message_id = ?1 ORDER BY seq")
          .bind(1, id),
      read_event);
}

std::vector<TimelineEvent> touches(sql::Connection& c, const std::string& recipient_id, int64_t since_ms,
                                   int64_t until_ms) {
  return all_rows(c.prepare("SELECT e.seq, e.message_id, e.type, e.at, e.detail, e.recipient_id FROM messages m "
                            "JOIN events e ON e.message_seq = m.seq WHERE m.recipient_id = ?1 "
                            "AND e.type IN ('delivered', 'clicked') AND e.at >= ?2 AND e.at <= ?3 "
                            "ORDER BY e.at DESC, e.seq DESC LIMIT 200")
                      .bind(1, recipient_id)
                      .bind(2, since_ms)
                      .bind(3, until_ms),
                  read_event);
}

std::optional<int64_t> next_due(sql::Connection& c) {
  sql::Statement& s = c.prepare("SELECT MIN(due_at) FROM messages WHERE state = 'scheduled'");
  std::optional<int64_t> v = s.step() ? s.opt_int64(0) : std::nullopt;
  s.reset();
  return v;
}

StateCounts count_by_state(sql::Connection& c) {
  StateCounts counts{};
  sql::Statement& s = c.prepare("SELECT state, COUNT(*) FROM messages GROUP BY state");
  while (s.step())
    if (auto st = parse_state(s.text(0))) counts[static_cast<size_t>(*st)] = s.int64(1);
  s.reset();
  return counts;
}

}  // namespace ops
}  // namespace tayori::store
