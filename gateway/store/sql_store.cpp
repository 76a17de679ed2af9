// The Store on any SQL engine (SQLite or PostgreSQL): each Store method the gateway calls becomes either an
// operation queued for the writer (group_commit.cpp applies a group of them in one transaction and answers
// each caller once it is durable) or a read on a pooled read connection. The SQL of each operation is in
// store/ops/; the engine's differences are behind SqlBackend (store/sqlite/, store/postgres/).
#include "store/sql_store.hpp"

#include "common/log.hpp"
#include "store/ops/feed.hpp"
#include "store/ops/inbound.hpp"
#include "store/ops/messages.hpp"
#include "store/ops/recipients.hpp"
#include "store/ops/stats.hpp"
#include "store/ops/suppressions.hpp"

namespace tayori::store {

// ---- MessageStore ----

namespace {

// The completion of an operation that leaves its answer in `*value`: `done` gets that answer once the group
// is durable, or the operation's Error. `done` may be empty.
template <class T>
std::function<void(Result<void>)> answer_with(std::shared_ptr<T> value, std::function<void(Result<T>)> done) {
  return [value = std::move(value), done = std::move(done)](const Result<void>& verdict) {
    if (!done) return;
    if (!verdict) return done(verdict.error());
    done(std::move(*value));
  };
}

}  // namespace

void SqlStore::accept(std::vector<NewMessage> batch, int64_t now_ms,
                      std::function<void(Result<std::vector<AcceptResult>>)> done) {
  auto results = std::make_shared<std::vector<AcceptResult>>();
  auto shared_batch = std::make_shared<std::vector<NewMessage>>(std::move(batch));
  submit(
      [shared_batch, results, now_ms](sql::Connection& c, WriteContext& w) {
        results->clear();
        for (const NewMessage& m : *shared_batch) results->push_back(ops::accept_one(c, w, m, now_ms));
      },
      answer_with(results, std::move(done)));
}

void SqlStore::cancel(const std::string& id, int64_t now_ms, std::function<void(Result<CancelResult>)> done) {
  auto result = std::make_shared<CancelResult>();
  submit([id, now_ms, result](sql::Connection& c, WriteContext& w) { *result = ops::cancel(c, w, id, now_ms); },
         answer_with(result, std::move(done)));
}

void SqlStore::apply(Transition t, int64_t now_ms, std::function<void(Result<void>)> done) {
  auto shared = std::make_shared<Transition>(std::move(t));
  submit([shared, now_ms](sql::Connection& c, WriteContext& w) { ops::apply(c, w, *shared, now_ms); }, std::move(done));
}

std::vector<MessageRecord> SqlStore::list(const MessageFilter& f) {
  return read<std::vector<MessageRecord>>([&](sql::Connection& c) { return ops::list(c, f); });
}

void SqlStore::replay(const MessageFilter& f, int64_t now_ms, const std::string& by,
                      std::function<void(Result<std::vector<std::string>>)> done) {
  auto ids = std::make_shared<std::vector<std::string>>();
  submit([f, now_ms, by, ids](sql::Connection& c, WriteContext& w) { *ids = ops::replay(c, w, f, now_ms, by); },
         answer_with(ids, std::move(done)));
}

Result<std::vector<MessageRecord>> SqlStore::claim_due(int64_t now_ms, int limit) {
  return write_and_wait<std::vector<MessageRecord>>(
      [&](sql::Connection& c, WriteContext& w) { return ops::claim(c, w, now_ms, limit); });
}

std::optional<int64_t> SqlStore::next_due_ms() {
  return read<std::optional<int64_t>>([](sql::Connection& c) { return ops::next_due(c); });
}

Result<int> SqlStore::requeue_in_flight(int64_t now_ms) {
  return write_and_wait<int>([&](sql::Connection& c, WriteContext& w) { return ops::requeue(c, w, now_ms); });
}

Result<int64_t> SqlStore::purge_finished(int64_t before_ms) {
  return write_and_wait<int64_t>([&](sql::Connection& c, WriteContext& w) { return ops::purge(c, w, before_ms); });
}

std::optional<MessageRecord> SqlStore::find(const std::string& id) {
  return read<std::optional<MessageRecord>>([&](sql::Connection& c) { return ops::find(c, id); });
}

std::optional<MessageRecord> SqlStore::find_by_provider_id(const std::string& provider_message_id) {
  if (provider_message_id.empty()) return std::nullopt;
  return read<std::optional<MessageRecord>>(
      [&](sql::Connection& c) { return ops::find_by_provider_id(c, provider_message_id); });
}

std::vector<TimelineEvent> SqlStore::events(const std::string& id) {
  return read<std::vector<TimelineEvent>>([&](sql::Connection& c) { return ops::events(c, id); });
}

std::vector<TimelineEvent> SqlStore::touches(const std::string& recipient_id, int64_t since_ms, int64_t until_ms) {
  return read<std::vector<TimelineEvent>>(
      [&](sql::Connection& c) { return ops::touches(c, recipient_id, since_ms, until_ms); });
}

std::map<State, int64_t> SqlStore::count_by_state() {
  std::map<State, int64_t> out;
  for (State st : kAllStates) out[st] = state_counts_[static_cast<size_t>(st)].load(std::memory_order_relaxed);
  return out;
}

// ---- RecipientStore ----

std::optional<RecipientProfile> SqlStore::recipient(const std::string& id) {
  return read<std::optional<RecipientProfile>>([&](sql::Connection& c) { return ops::recipient(c, id); });
}

void SqlStore::put_recipient(RecipientProfile p, int64_t now_ms, std::function<void(Result<void>)> done) {
  submit(
      [p = std::move(p), now_ms](sql::Connection& c, WriteContext&) {
        ops::put_recipient(c, p.id, p.timezone, p.locale, p.contacts_json, now_ms);
      },
      std::move(done));
}

void SqlStore::erase_recipient(const std::string& id, int64_t now_ms, std::function<void(Result<bool>)> done) {
  auto found = std::make_shared<bool>(false);
  submit([id, now_ms, found](sql::Connection& c, WriteContext& w) { *found = ops::erase_recipient(c, w, id, now_ms); },
         answer_with(found, std::move(done)));
}

std::vector<std::string> SqlStore::recipients_by_contact(const std::string& contact) {
  if (contact.empty()) return {};
  return read<std::vector<std::string>>([&](sql::Connection& c) { return ops::recipients_by_contact(c, contact); });
}

void SqlStore::append_consent(const std::string& recipient_id, std::vector<policy::ConsentRecord> records,
                              std::function<void(Result<void>)> done) {
  submit(
      [recipient_id, records = std::move(records)](sql::Connection& c, WriteContext&) {
        for (const auto& r : records) ops::insert_consent(c, recipient_id, r, r.at_ms);
      },
      std::move(done));
}

std::vector<policy::ConsentRecord> SqlStore::consent_history(const std::string& recipient_id) {
  return read<std::vector<policy::ConsentRecord>>(
      [&](sql::Connection& c) { return ops::consent_history(c, recipient_id); });
}

std::vector<policy::ConsentRecord> SqlStore::consent_current(const std::string& recipient_id) {
  return read<std::vector<policy::ConsentRecord>>(
      [&](sql::Connection& c) { return ops::consent_current(c, recipient_id); });
}

template <class Match>
void SqlStore::forget_pending_slot(const std::string& recipient_id, Match match) {
  std::lock_guard lock(pending_slots_mutex_);
  auto it = pending_slots_.find(recipient_id);
  if (it == pending_slots_.end()) return;
  std::erase_if(it->second, match);
  if (it->second.empty()) pending_slots_.erase(it);
}

void SqlStore::take_slot(const std::string& recipient_id, const policy::CapSlot& slot) {
  uint64_t token = 0;
  {
    std::lock_guard lock(pending_slots_mutex_);
    token = ++pending_slot_tokens_;
    auto& held = pending_slots_[recipient_id];
    std::erase_if(held, [&](const PendingSlot& p) { return p.slot.message_id == slot.message_id; });
    held.push_back({slot, token});
  }
  submit([recipient_id, slot](sql::Connection& c, WriteContext&) { ops::put_slot(c, recipient_id, slot); },
         [this, recipient_id, token](const Result<void>& verdict) {
           // Not committed (a full disk): the slot stays held in memory, so this process keeps counting it.
           if (!verdict) return log::error("store", "a frequency-cap slot could not be recorded; it is held in memory");
           forget_pending_slot(recipient_id, [&](const PendingSlot& p) { return p.token == token; });
         });
}

void SqlStore::release_slot(const std::string& recipient_id, const std::string& message_id,
                            std::function<void(Result<void>)> done) {
  // Until the DELETE commits the stored slot still counts: a cap errs towards sending less, never more.
  forget_pending_slot(recipient_id, [&](const PendingSlot& p) { return p.slot.message_id == message_id; });
  submit(
      [recipient_id, message_id](sql::Connection& c, WriteContext&) { ops::delete_slot(c, recipient_id, message_id); },
      std::move(done));
}

std::vector<policy::CapSlot> SqlStore::held_slots(const std::string& recipient_id, int64_t since_ms) {
  std::vector<policy::CapSlot> held;
  std::lock_guard lock(pending_slots_mutex_);
  if (auto it = pending_slots_.find(recipient_id); it != pending_slots_.end())
    for (const auto& p : it->second)
      if (p.slot.at_ms > since_ms) held.push_back(p.slot);
  return held;
}

std::vector<policy::CapSlot> SqlStore::slots_since(const std::string& recipient_id, int64_t since_ms) {
  // Held slots first, then the table: a slot committed in between is in the table, so none is missed;
  // one in both is counted once (by message).
  return read<std::vector<policy::CapSlot>>([&, held = held_slots(recipient_id, since_ms)](sql::Connection& c) mutable {
    return ops::slots_since(c, recipient_id, since_ms, std::move(held));
  });
}

policy::RecipientState SqlStore::decision_state(const std::string& recipient_id,
                                                const std::vector<std::string>& contacts,
                                                std::optional<int64_t> slots_since_ms) {
  // Held slots first, as in slots_since; then the filter, which counts a slot from the moment its insert runs,
  // before its commit and so before it stops being held.
  std::vector<policy::CapSlot> held =
      slots_since_ms ? held_slots(recipient_id, *slots_since_ms) : std::vector<policy::CapSlot>{};
  if (const PresenceFilter* filter = backend_->presence_filter();
      filter && nothing_stored(*filter, recipient_id, contacts, slots_since_ms.has_value())) {
    decisions_from_memory_.fetch_add(1, std::memory_order_relaxed);
    policy::RecipientState state;
    state.slots = std::move(held);
    return state;
  }
  decisions_from_database_.fetch_add(1, std::memory_order_relaxed);
  return read<policy::RecipientState>([&](sql::Connection& c) {
    const bool snapshot = backend_->begin_snapshot(c);
    policy::RecipientState state;
    state.consent = ops::consent_current(c, recipient_id);
    for (auto& s : ops::suppressions(c, contacts)) state.suppressed[s.contact] = std::move(s);
    if (slots_since_ms) state.slots = ops::slots_since(c, recipient_id, *slots_since_ms, std::move(held));
    if (snapshot) backend_->end_snapshot(c);
    return state;
  });
}

bool SqlStore::nothing_stored(const PresenceFilter& filter, const std::string& recipient_id,
                              const std::vector<std::string>& contacts, bool with_slots) const {
  using Table = PresenceFilter::Table;
  if (filter.may_have(Table::consent, recipient_id)) return false;
  if (with_slots && filter.may_have(Table::cap_slots, recipient_id)) return false;
  // A suppression is stored under the contact point, or under its erased form (ops::suppression_key).
  for (const std::string& contact : contacts)
    if (filter.may_have(Table::suppressions, contact) ||
        filter.may_have(Table::suppressions, ops::suppression_key(contact)))
      return false;
  return true;
}

Result<int64_t> SqlStore::purge_slots(int64_t before_ms) {
  return write_and_wait<int64_t>([&](sql::Connection& c, WriteContext&) { return ops::purge_slots(c, before_ms); });
}

// ---- SuppressionStore ----

void SqlStore::add_suppression(policy::Suppression s, std::function<void(Result<void>)> done) {
  submit([s = std::move(s)](sql::Connection& c, WriteContext&) { ops::put_suppression(c, s, s.at_ms); },
         std::move(done));
}

void SqlStore::remove_suppression(const std::string& contact, std::function<void(Result<bool>)> done) {
  auto found = std::make_shared<bool>(false);
  submit([contact, found](sql::Connection& c, WriteContext&) { *found = ops::remove_suppression(c, contact); },
         answer_with(found, std::move(done)));
}

std::vector<policy::Suppression> SqlStore::suppressions(const std::vector<std::string>& contacts) {
  return read<std::vector<policy::Suppression>>([&](sql::Connection& c) { return ops::suppressions(c, contacts); });
}

std::vector<policy::Suppression> SqlStore::list_suppressions(const std::string& after, int limit) {
  return read<std::vector<policy::Suppression>>(
      [&](sql::Connection& c) { return ops::list_suppressions(c, after, limit); });
}

// ---- FeedStore ----

std::vector<TimelineEvent> SqlStore::read_feed(const FeedQuery& query) {
  return read<std::vector<TimelineEvent>>([&](sql::Connection& c) { return ops::read_feed(c, query); });
}

int64_t SqlStore::last_event_seq() {
  return read<int64_t>([](sql::Connection& c) { return ops::last_event_seq(c); });
}

std::optional<int64_t> SqlStore::webhook_cursor(const std::string& name) {
  return read<std::optional<int64_t>>([&](sql::Connection& c) { return ops::webhook_cursor(c, name); });
}

void SqlStore::set_webhook_cursor(const std::string& name, int64_t seq, std::function<void(Result<void>)> done) {
  submit([name, seq](sql::Connection& c, WriteContext&) { ops::set_webhook_cursor(c, name, seq); }, std::move(done));
}

// ---- InboundStore ----

void SqlStore::apply_inbound(std::vector<InboundWrites> writes, int64_t now_ms, std::function<void(Result<int>)> done) {
  auto shared = std::make_shared<std::vector<InboundWrites>>(std::move(writes));
  auto applied = std::make_shared<int>(0);
  submit(
      [shared, applied, now_ms](sql::Connection& c, WriteContext& w) {
        *applied = 0;
        for (const InboundWrites& one : *shared)
          if (ops::apply_inbound_one(c, w, one, now_ms)) ++*applied;
      },
      answer_with(applied, std::move(done)));
}

std::optional<InboundStore::Question> SqlStore::open_question(const std::string& contact, const std::string& channel) {
  return read<std::optional<Question>>([&](sql::Connection& c) { return ops::open_question(c, contact, channel); });
}

void SqlStore::put_question(const std::string& contact, const std::string& channel, Question q,
                            std::function<void(Result<void>)> done) {
  submit([contact, channel, q = std::move(q)](sql::Connection& c,
                                              WriteContext&) { ops::put_question(c, contact, channel, q); },
         std::move(done));
}

// ---- StatsStore ----

std::vector<StatRow> SqlStore::stat_totals(StatDimension dimension, int64_t from_ms, int64_t to_ms) {
  return read<std::vector<StatRow>>([&](sql::Connection& c) { return ops::stat_totals(c, dimension, from_ms, to_ms); });
}

std::vector<StatRow> SqlStore::stat_series(StatPeriod period, StatDimension dimension, int64_t from_ms,
                                           int64_t to_ms) {
  return read<std::vector<StatRow>>(
      [&](sql::Connection& c) { return ops::stat_series(c, period, dimension, from_ms, to_ms); });
}

std::vector<StatRow> SqlStore::waiting_by_hour(int64_t after_ms) {
  return read<std::vector<StatRow>>([&](sql::Connection& c) { return ops::waiting_by_hour(c, after_ms); });
}

Result<int64_t> SqlStore::purge_stat_minutes(int64_t before_ms) {
  return write_and_wait<int64_t>(
      [&](sql::Connection& c, WriteContext&) { return ops::purge_stat_minutes(c, before_ms); });
}

// ---- Store ----

bool SqlStore::healthy() {
  try {
    return read<bool>([](sql::Connection& c) {
      sql::Statement& s = c.prepare("SELECT 1");
      bool ok = s.step();
      s.reset();
      return ok;
    });
  } catch (const std::exception&) {
    return false;
  }
}

std::string SqlStore::last_write_error() {
  std::lock_guard lock(error_mutex_);
  return last_write_error_;
}

DecisionReads SqlStore::decision_reads() {
  return {decisions_from_database_.load(std::memory_order_relaxed),
          decisions_from_memory_.load(std::memory_order_relaxed)};
}

WriteStats SqlStore::write_stats() {
  return {commits_.load(std::memory_order_relaxed), writer_conn_->statements_run(),
          pages_written_.load(std::memory_order_relaxed)};
}

}  // namespace tayori::store
