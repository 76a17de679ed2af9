// The upstream feed as SQL, once for SQLite and PostgreSQL: every timeline event in seq order for
// GET /v1/events and the webhooks (feed/), and the cursor each webhook subscription has delivered up to.
// SqlStore (store/sql_store.cpp, store/group_commit.cpp) runs the cursor writes in its group commit and the reads on
// its reader pool.
#include "store/ops/feed.hpp"

#include "store/ops/messages.hpp"
#include "store/ops/rows.hpp"

namespace tayori::store::ops {

namespace {

// One statement per engine and direction (Connection::prepare keys its cache by the text's address, so each is
// a literal). One key's events: each event's message looked up by its primary key; a type filter: the type
// found in ",t1,t2," (types hold no comma), by the engine's own substring function. Either way the cost is
// the events scanned, which the range (of the primary key, not a filter) caps.
#define TAYORI_FEED_SELECT(find_in, order)                                                                     \
  "SELECT seq, message_id, type, at, detail, recipient_id FROM events e WHERE seq > ?1 AND seq <= ?4 AND "   \
  "(?3 = '' OR EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id AND m.api_key = ?3)) AND "          \
  "(?5 = '' OR " find_in "(?5, ',' || e.type || ',') > 0) ORDER BY seq " order " LIMIT ?2"
constexpr const char* kOldestFirst[] = {TAYORI_FEED_SELECT("instr", "ASC"), TAYORI_FEED_SELECT("strpos", "ASC")};
constexpr const char* kNewestFirst[] = {TAYORI_FEED_SELECT("instr", "DESC"), TAYORI_FEED_SELECT("strpos", "DESC")};
#undef TAYORI_FEED_SELECT

}  // namespace

std::vector<TimelineEvent> read_feed(sql::Connection& c, const FeedQuery& q) {
  std::string types;
  for (const auto& t : q.types) types += "," + t;
  if (!types.empty()) types += ",";
  return all_rows(c.prepare(sql::for_dialect(c, q.newest_first ? kNewestFirst : kOldestFirst))
                      .bind(1, q.after_seq)
                      .bind(2, static_cast<int64_t>(q.limit))
                      .bind(3, q.api_key)
                      .bind(4, q.up_to_seq)
                      .bind(5, types),
                  read_event);
}

int64_t last_event_seq(sql::Connection& c) {
  sql::Statement& s = c.prepare("SELECT COALESCE(MAX(seq), 0) FROM events");
  int64_t seq = s.step() ? s.int64(0) : 0;
  s.reset();
  return seq;
}

std::optional<int64_t> webhook_cursor(sql::Connection& c, const std::string& name) {
  return first_row(c.prepare("SELECT seq FROM webhook_cursors WHERE subscription = ?1").bind(1, name),
                   [](const sql::Statement& s) { return s.int64(0); });
}

void set_webhook_cursor(sql::Connection& c, const std::string& name, int64_t seq) {
  // The larger: a cursor never moves back (a late completion of an older send must not rewind it). The
  // stored value is named by its table, which both engines read as the row before the insert.
  c.prepare(
       "INSERT INTO webhook_cursors(subscription, seq) VALUES(?1, ?2) ON CONFLICT(subscription) DO UPDATE SET "
       "seq = CASE WHEN webhook_cursors.seq > ?2 THEN webhook_cursors.seq ELSE ?2 END")
      .bind(1, name)
      .bind(2, seq)
      .exec();
}

}  // namespace tayori::store::ops
