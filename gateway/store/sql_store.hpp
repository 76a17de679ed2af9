// The Store on any SQL engine: one writer thread group-commits the writes (a savepoint per operation, one
// COMMIT, then the completions), a pool of read connections answers the reads, and the operations
// themselves are written once in store/ops/. What differs between engines is a SqlBackend; an engine whose
// semantics differ (several nodes sharing one database) subclasses SqlStore and overrides those methods.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "store/ops/write_context.hpp"
#include "store/presence_filter.hpp"
#include "store/sql.hpp"
#include "store/store.hpp"

namespace tayori::store {

// What an engine gives SqlStore. Its methods run on the thread that constructs the store (open_writer,
// initial_counts), on the writer thread (begin_group, transaction_lost, pages_written) or on a reader's
// caller (open_reader).
class SqlBackend {
 public:
  virtual ~SqlBackend() = default;

  // The writer's connection, asked for once, before the writer thread starts: ready for groups (schema
  // current, the engine's settings made).
  virtual std::unique_ptr<sql::Connection> open_writer() = 0;
  // One more connection for the reader pool, when every pooled one is in use; the pool keeps it.
  virtual std::unique_ptr<sql::Connection> open_reader() = 0;
  // Begins a group's transaction on the writer: "BEGIN IMMEDIATE" on SQLite, "BEGIN" on PostgreSQL, where
  // it may also take a lock every group needs. Statements prepared here are string literals (cached by
  // address, like every other).
  virtual void begin_group(sql::Connection& writer) = 0;
  // An operation failed with `error`: true when the engine lost the whole transaction with it, so there is
  // no savepoint to return to and the group fails as a whole.
  virtual bool transaction_lost(sql::Connection& writer, const sql::Error& error) = 0;
  // Whether a connection can serve again (a lost server connection cannot: it is closed, and the next
  // reader opens a new one).
  virtual bool usable(sql::Connection& connection) {
    (void)connection;
    return true;
  }
  // Set where nodes share the database: who holds the claims this store makes (WriteContext::claimant).
  virtual const Claimant* claimant() const { return nullptr; }
  // After a commit: the database pages written since the last call (WriteStats::pages_written; 0 where
  // the engine cannot tell).
  virtual int64_t pages_written(sql::Connection& writer) = 0;
  // The messages per state when the store opens; the writer keeps the counts from there.
  virtual StateCounts initial_counts(sql::Connection& writer) = 0;
  // Begins a read transaction on a reader for reads that belong together (SqlStore::decision_state), where
  // one costs less than a transaction per statement; false where it would cost more (PostgreSQL: two more
  // round trips), and the reads then run one by one. end_snapshot ends one that began.
  virtual bool begin_snapshot(sql::Connection& reader) {
    (void)reader;
    return false;
  }
  virtual void end_snapshot(sql::Connection& reader) { (void)reader; }
  // Where this process is the database's only writer: a filter the engine keeps told of every insert and
  // delete in the consent, suppression and cap-slot tables (store/presence_filter.hpp), which the writer tells
  // how each group ended. nullptr where other processes write the database too (PostgreSQL).
  virtual PresenceFilter* presence_filter() { return nullptr; }
  // After a group's completions are handed on, before the writer takes the next group: upkeep that must run on
  // the writer's connection outside a transaction (SQLite starts its WAL over there). Throws nothing.
  virtual void between_groups(sql::Connection& writer) { (void)writer; }
};

struct SqlStoreOptions {
  int max_group = 1024;  // operations per group commit at most
  // Read connections at most; a reader waits for one to come back. 0: as many as readers at once (an
  // embedded file costs nothing per connection; a server counts them against max_connections).
  int max_readers = 0;
};

// Every Store method is virtual: an engine whose nodes share the database overrides those that must hold
// across nodes (claims with leases, the start's requeue, counts, cap slots) with submit/read and ops of its
// own, and keeps the rest.
class SqlStore : public Store {
 public:
  SqlStore(std::unique_ptr<SqlBackend> backend, const SqlStoreOptions& options);
  ~SqlStore() override;
  SqlStore(const SqlStore&) = delete;
  SqlStore& operator=(const SqlStore&) = delete;

  // ---- MessageStore ----
  void accept(std::vector<NewMessage> batch, int64_t now_ms,
              std::function<void(Result<std::vector<AcceptResult>>)> done) override;
  void cancel(const std::string& id, int64_t now_ms, std::function<void(Result<CancelResult>)> done) override;
  void apply(Transition transition, int64_t now_ms, std::function<void(Result<void>)> done) override;
  std::vector<MessageRecord> list(const MessageFilter& filter) override;
  void replay(const MessageFilter& filter, int64_t now_ms, const std::string& by,
              std::function<void(Result<std::vector<std::string>>)> done) override;
  Result<std::vector<MessageRecord>> claim_due(int64_t now_ms, int limit) override;
  std::optional<int64_t> next_due_ms() override;
  Result<int> requeue_in_flight(int64_t now_ms) override;
  Result<int64_t> purge_finished(int64_t before_ms) override;
  std::optional<MessageRecord> find(const std::string& id) override;
  std::optional<MessageRecord> find_by_provider_id(const std::string& provider_message_id) override;
  std::vector<TimelineEvent> touches(const std::string& recipient_id, int64_t since_ms, int64_t until_ms) override;
  std::vector<TimelineEvent> events(const std::string& id) override;
  // From the counts the writer keeps (WriteContext::moved), not from the rows.
  std::map<State, int64_t> count_by_state() override;

  // ---- RecipientStore ----
  std::optional<RecipientProfile> recipient(const std::string& id) override;
  void put_recipient(RecipientProfile profile, int64_t now_ms, std::function<void(Result<void>)> done) override;
  void erase_recipient(const std::string& id, int64_t now_ms, std::function<void(Result<bool>)> done) override;
  std::vector<std::string> recipients_by_contact(const std::string& contact) override;
  void append_consent(const std::string& recipient_id, std::vector<policy::ConsentRecord> records,
                      std::function<void(Result<void>)> done) override;
  std::vector<policy::ConsentRecord> consent_history(const std::string& recipient_id) override;
  std::vector<policy::ConsentRecord> consent_current(const std::string& recipient_id) override;
  void take_slot(const std::string& recipient_id, const policy::CapSlot& slot) override;
  void release_slot(const std::string& recipient_id, const std::string& message_id,
                    std::function<void(Result<void>)> done) override;
  std::vector<policy::CapSlot> slots_since(const std::string& recipient_id, int64_t since_ms) override;
  Result<int64_t> purge_slots(int64_t before_ms) override;

  // ---- SuppressionStore ----
  void add_suppression(policy::Suppression s, std::function<void(Result<void>)> done) override;
  void remove_suppression(const std::string& contact, std::function<void(Result<bool>)> done) override;
  policy::RecipientState decision_state(const std::string& recipient_id, const std::vector<std::string>& contacts,
                                        std::optional<int64_t> slots_since_ms) override;
  std::vector<policy::Suppression> suppressions(const std::vector<std::string>& contacts) override;
  std::vector<policy::Suppression> list_suppressions(const std::string& after_contact, int limit) override;

  // ---- FeedStore ----
  std::vector<TimelineEvent> read_feed(const FeedQuery& query) override;
  int64_t last_event_seq() override;
  std::optional<int64_t> webhook_cursor(const std::string& name) override;
  void set_webhook_cursor(const std::string& name, int64_t seq, std::function<void(Result<void>)> done) override;

  // ---- InboundStore ----
  void apply_inbound(std::vector<InboundWrites> writes, int64_t now_ms, std::function<void(Result<int>)> done) override;
  std::optional<Question> open_question(const std::string& contact, const std::string& channel) override;
  void put_question(const std::string& contact, const std::string& channel, Question question,
                    std::function<void(Result<void>)> done) override;

  // ---- StatsStore ----
  std::vector<StatRow> stat_totals(StatDimension dimension, int64_t from_ms, int64_t to_ms) override;
  std::vector<StatRow> stat_series(StatPeriod period, StatDimension dimension, int64_t from_ms,
                                   int64_t to_ms) override;
  std::vector<StatRow> waiting_by_hour(int64_t after_ms) override;
  Result<int64_t> purge_stat_minutes(int64_t before_ms) override;

  // ---- Store ----
  bool healthy() override;
  std::string last_write_error() override;
  WriteStats write_stats() override;
  DecisionReads decision_reads() override;

 protected:
  // An operation of a group: runs inside its own savepoint on the writer's connection. It throws to fail
  // (sql::Error from the engine, anything else for data it cannot handle): its savepoint is rolled back
  // and the others of the group go on.
  using WriteOp = std::function<void(sql::Connection&, WriteContext&)>;

  // Queues `apply` for the next group; `complete` runs once the group is durable, or with the Error that
  // failed the operation or the group, on the completer thread: completions run one at a time, in the order
  // of their commits. `complete` may be empty.
  void submit(WriteOp apply, std::function<void(Result<void>)> complete);
  // submit, then blocks until the group's verdict.
  Result<void> submit_and_wait(WriteOp apply);
  // submit_and_wait for an operation that answers a value (what it claimed, how many it moved): the value
  // only when its group committed, since nothing of a failed group is, whatever the operation read.
  template <class T>
  Result<T> write_and_wait(const std::function<T(sql::Connection&, WriteContext&)>& op) {
    T out{};
    if (Result<void> done = submit_and_wait([&](sql::Connection& c, WriteContext& w) { out = op(c, w); }); !done)
      return done.error();
    return out;
  }

  // Runs `fn` on a pooled read connection (readers never block the writer). A connection whose run threw
  // is not given back: the engine may have lost it. Whatever a read throws leaves as a ReadError.
  template <class T>
  T read(const std::function<T(sql::Connection&)>& fn) {
    std::unique_ptr<sql::Connection> c;
    try {
      c = take_reader();
    } catch (...) {
      throw_read_error();
    }
    try {
      T result = fn(*c);
      c->wait();  // what fn sent without waiting (sql::Statement::send) is done, or fails here, before it returns
      give_back(std::move(c));
      return result;
    } catch (...) {
      give_back(nullptr);
      throw_read_error();
    }
  }
  // Throws the exception being handled as a ReadError.
  [[noreturn]] static void throw_read_error();
  // A read connection of the pool for the caller alone (a lock held across calls), until give_back. Waits
  // while max_readers are out; throws what opening one throws.
  std::unique_ptr<sql::Connection> take_reader();
  // Returns a connection taken with take_reader; one the engine says is lost (or nullptr, for one the
  // caller dropped) is closed instead.
  void give_back(std::unique_ptr<sql::Connection> c);

  SqlBackend& backend() { return *backend_; }

  // Applies what is queued, then ends the writer; later writes fail at once. The destructor does it, but
  // a subclass whose operations use its own members calls it in its destructor, before they go.
  void stop_writer();

 private:
  // Whether the presence filter knows the decision_state of this recipient and these contact points to be empty.
  bool nothing_stored(const PresenceFilter& filter, const std::string& recipient_id,
                      const std::vector<std::string>& contacts, bool with_slots) const;
  // The cap slots this process holds for a recipient (taken, not yet committed) since `since_ms`.
  std::vector<policy::CapSlot> held_slots(const std::string& recipient_id, int64_t since_ms);

  struct Operation {
    WriteOp apply;
    std::function<void(Result<void>)> complete;
  };

  // A cap slot taken and not yet committed (take_slot); `token` tells a later take of the same message's
  // slot from this one.
  struct PendingSlot {
    policy::CapSlot slot;
    uint64_t token = 0;
  };

  template <class Match>
  void forget_pending_slot(const std::string& recipient_id, Match match);
  void write_loop();
  void write_group(std::vector<Operation>& group);
  enum class GroupRun { committed, op_failed, failed };
  // One run of a group's transaction, with or without a savepoint per operation (write_group says why);
  // sets each operation's verdict in `verdicts`. op_failed: an operation failed with no savepoint to
  // return to, and the transaction was rolled back.
  GroupRun run_group(std::vector<Operation>& group, bool savepoints, std::vector<Result<void>>& verdicts);
  void set_last_write_error(const std::string& why);

  // First, so that it outlives every connection it opened.
  std::unique_ptr<SqlBackend> backend_;
  SqlStoreOptions options_;
  std::atomic<int64_t> commits_{0};
  std::array<std::atomic<int64_t>, std::size(kAllStates)> state_counts_{};
  std::atomic<int64_t> pages_written_{0};
  std::atomic<int64_t> decisions_from_database_{0};
  std::atomic<int64_t> decisions_from_memory_{0};
  std::mutex error_mutex_;
  std::string last_write_error_;
  std::unique_ptr<sql::Connection> writer_conn_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Operation> queue_;
  bool stopping_ = false;
  std::thread writer_;
  // The completions of committed groups, a group's at a time, for the completer thread (complete_loop).
  // Building a caller's answer (a 202's body, the dispatcher's bookkeeping of a verdict) is not the writer's
  // work, and every caller behind the writer waits for it: in intake-single it was a sixth of the writer's time.
  // Each operation of the group comes along, with its completion if its caller waits for one, so that what it
  // captured (a batch of messages, their payloads) is freed there too rather than on the writer's thread.
  struct Completion {
    std::function<void(Result<void>)> complete;
    Result<void> verdict;
    WriteOp spent;
  };
  void complete_loop();
  std::mutex completions_mutex_;
  std::condition_variable completions_ready_;
  std::deque<std::vector<Completion>> completions_;
  bool completer_stopping_ = false;
  std::thread completer_;
  std::mutex readers_mutex_;
  std::condition_variable reader_returned_;
  std::vector<std::unique_ptr<sql::Connection>> readers_;
  int readers_out_ = 0;  // taken and not given back (or lost)
  std::mutex pending_slots_mutex_;
  std::unordered_map<std::string, std::vector<PendingSlot>> pending_slots_;
  uint64_t pending_slot_tokens_ = 0;
};

}  // namespace tayori::store
