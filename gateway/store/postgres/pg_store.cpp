// The Store on PostgreSQL, for several gateway nodes sharing one database. Everything one node does is
// SqlStore's, with the operations of store/ops/ (the same SQL as SQLite's); what must hold across nodes is
// here (docs/decisions.md, "Several nodes share one PostgreSQL"; docs/operator-guide.md §16):
// - claims of the due queue take rows FOR UPDATE SKIP LOCKED and stamp them with this node and a lease;
//   this node renews the leases of what it holds, and requeues what other nodes held past their lease;
// - a node id is held by a session advisory lock, so two live processes never share one and a restarted
//   node takes its own claims back at once;
// - cap decisions for a recipient hold an advisory lock on it, and a slot is committed before it is let go;
// - group commits take the feed's lock, so events become visible in seq order across nodes, and one node at
//   a time delivers each webhook subscription;
// - counts are counted (other nodes move messages too), and a lost connection is opened again when next used.
#include "store/postgres/pg_store.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <semaphore>
#include <set>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/thread_guard.hpp"
#include "common/time.hpp"
#include "common/thread_name.hpp"
#include "store/ops/messages.hpp"
#include "store/ops/recipients.hpp"
#include "store/ops/rows.hpp"
#include "store/postgres/pg_connection.hpp"
#include "store/postgres/pg_schema.hpp"
#include "store/sql_store.hpp"
#include "crypto/crypto.hpp"

namespace tayori::store {
namespace {

using postgres::PgConnection;

// Advisory locks. One-key space: the event feed (migrations hold kMigrationLockKey). Two-key space
// (class, hashtext(name)): a node id, and a recipient's cap decisions.
constexpr int64_t kFeedLockKey = 0x7461796f72690002;
// The classes are written into the SQL below: 29793 ("ta") for node ids, 29794 for recipients.

int64_t wall_ms() { return SystemClock().now_ms(); }

PgConnection& pg(sql::Connection& c) { return static_cast<PgConnection&>(c); }

class PgBackend final : public SqlBackend {
 public:
  explicit PgBackend(const PostgresOptions& options) : options_(options), claimant_{options.node_id, options.lease_ms} {}

  std::unique_ptr<PgConnection> connect(const char* role) const {
    postgres::PgOptions o;
    o.uri = options_.uri;
    o.statement_timeout_ms = options_.statement_timeout_ms;
    o.application_name = "tayori " + options_.node_id + " " + role;
    return std::make_unique<PgConnection>(o);
  }

  std::unique_ptr<sql::Connection> open_writer() override {
    auto c = connect("writer");
    postgres::migrate(*c);
    return c;
  }
  std::unique_ptr<sql::Connection> open_reader() override { return connect("reader"); }

  void begin_group(sql::Connection& writer) override {
    // A group after a lost connection starts on a new one; while the server is away this throws, and the
    // group fails as a whole (intake answers 503, outcomes are recorded again later).
    if (!pg(writer).connection_ok()) pg(writer).reconnect();
    writer.exec("BEGIN");
    // A reader of the feed that has seen seq 12 must never find an 11 committed after it: the groups of
    // every node commit their events one after another.
    writer.prepare("SELECT pg_advisory_xact_lock(?1)").bind(1, kFeedLockKey).exec();
  }
  bool transaction_lost(sql::Connection& writer, const sql::Error& error) override {
    return error.kind == sql::Error::Kind::io || !pg(writer).connection_ok();
  }
  bool usable(sql::Connection& c) override { return pg(c).connection_ok() && !pg(c).in_transaction(); }
  const Claimant* claimant() const override { return &claimant_; }
  int64_t pages_written(sql::Connection&) override { return 0; }
  // Not kept by the writer: other nodes move messages too (PgStore::count_by_state counts).
  StateCounts initial_counts(sql::Connection&) override { return {}; }

 private:
  PostgresOptions options_;
  Claimant claimant_;
};

// A fresh name for this run of the node (the `nodes` row tells a restart from the run before it).
std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(raw.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return crypto::hex(raw);
}

class PgStore final : public SqlStore {
 public:
  explicit PgStore(const PostgresOptions& options)
      : SqlStore(std::make_unique<PgBackend>(options), SqlStoreOptions{options.max_group, options.pool_size - 1}),
        options_(options),
        incarnation_(random_hex(8)),
        // Half the readers at most hold a decision lock, so a holder always finds a reader for its reads.
        decision_locks_(std::max(1, (options.pool_size - 1) / 2)) {
    control_ = static_cast<PgBackend&>(backend()).connect("control");
    hold_node_id();
    maintainer_ = std::thread([this] {
      name_this_thread("tayori-pg-lease");
      maintain();
    });
  }

  ~PgStore() override {
    {
      std::lock_guard lock(maintain_mutex_);
      stopping_ = true;
    }
    maintain_wake_.notify_all();
    if (maintainer_.joinable()) maintainer_.join();
    stop_writer();
    try {
      // Known gone at once, instead of when its last renewal passes.
      set_alive_until(wall_ms());
    } catch (const std::exception& e) {
      log::warn("store", std::string("could not mark this node stopped: ") + e.what());
    }
  }

  // ---- Claims across nodes ----

  void accept(std::vector<NewMessage> batch, int64_t now_ms,
              std::function<void(Result<std::vector<AcceptResult>>)> done) override {
    SqlStore::accept(std::move(batch), now_ms,
                     [this, done = std::move(done)](Result<std::vector<AcceptResult>> results) {
                       if (results) {
                         std::lock_guard lock(held_mutex_);
                         for (const auto& r : *results)
                           if (r.claimed) held_.insert(r.claimed->id);
                       }
                       done(std::move(results));
                     });
  }

  void apply(Transition t, int64_t now_ms, std::function<void(Result<void>)> done) override {
    {
      // The verdict ends this node's claim (if it is still this claim: ops::apply checks).
      std::lock_guard lock(held_mutex_);
      held_.erase(t.message_id);
    }
    SqlStore::apply(std::move(t), now_ms, std::move(done));
  }

  Result<std::vector<MessageRecord>> claim_due(int64_t now_ms, int limit) override {
    try {
      auto claimed = read<std::vector<MessageRecord>>([&](sql::Connection& c) {
        // One statement, so one transaction: the rows are locked from the pick to the update, and rows
        // another node is claiming at the same moment are skipped, not waited for.
        static const std::string sql =
            "UPDATE messages SET state = 'dispatched', attempts = attempts + 1, channel_attempts = channel_attempts + 1, "
            "channel_since = COALESCE(channel_since, ?1), updated_at = ?1, claimed_by = ?3, lease_until = ?4 "
            "WHERE id IN (SELECT id FROM messages WHERE state = 'scheduled' AND due_at <= ?1 ORDER BY due_at "
            "LIMIT ?2 FOR UPDATE SKIP LOCKED) RETURNING " +
            std::string(ops::kMessageColumns);
        sql::Statement& s = c.prepare(sql.c_str())
                                .bind(1, now_ms)
                                .bind(2, static_cast<int64_t>(limit))
                                .bind(3, options_.node_id)
                                .bind(4, now_ms + options_.lease_ms);
        return ops::all_rows(s, ops::read_message);
      });
      std::stable_sort(claimed.begin(), claimed.end(),
                       [](const MessageRecord& a, const MessageRecord& b) { return a.due_at_ms < b.due_at_ms; });
      std::lock_guard lock(held_mutex_);
      for (const auto& r : claimed) held_.insert(r.id);
      return claimed;
    } catch (const ReadError& e) {
      // The server is away: nothing is claimed, and the dispatcher says so and looks again after a pause.
      return e.error;
    }
  }

  std::optional<int64_t> next_due_ms() override {
    try {
      return SqlStore::next_due_ms();
    } catch (const std::exception& e) {
      log::error("store", std::string("reading the next due time failed: ") + e.what());
      return std::nullopt;
    }
  }

  // This node's own claims, left by its previous run: it holds its id, so no other live process made them.
  Result<int> requeue_in_flight(int64_t now_ms) override {
    return write_and_wait<int>([&](sql::Connection& c, WriteContext& w) {
      sql::Statement& s = c.prepare(
                               "UPDATE messages SET state = 'scheduled', due_at = ?1, updated_at = ?1, claimed_by = '', "
                               "lease_until = NULL WHERE state = 'dispatched' AND claimed_by = ?2 RETURNING id")
                              .bind(1, now_ms)
                              .bind(2, options_.node_id);
      auto ids = ops::all_rows(s, ops::first_text);
      for (const auto& id : ids)
        ops::insert_event(c, id, {"requeued", R"({"reason":"in flight when the gateway stopped"})"}, now_ms);
      w.move(State::dispatched, State::scheduled, static_cast<int64_t>(ids.size()));
      return static_cast<int>(ids.size());
    });
  }

  // ---- Webhook subscriptions: one node at a time ----

  bool hold_subscription(const std::string& name, int64_t now_ms) override {
    try {
      return read<bool>([&](sql::Connection& c) {
        c.prepare(
             "INSERT INTO webhook_holders(subscription, node, lease_until) VALUES(?1, ?2, ?3) "
             "ON CONFLICT(subscription) DO UPDATE SET node = ?2, lease_until = ?3 "
             "WHERE webhook_holders.node = ?2 OR webhook_holders.lease_until < ?4")
            .bind(1, name)
            .bind(2, options_.node_id)
            .bind(3, now_ms + options_.lease_ms)
            .bind(4, now_ms)
            .exec();
        return c.changes() == 1;
      });
    } catch (const std::exception& e) {
      log::error("store", "holding webhook subscription " + name + " failed: " + e.what());
      return false;
    }
  }

  // ---- Counts: other nodes move messages too, so the rows are counted (at each /metrics scrape) ----

  std::map<State, int64_t> count_by_state() override {
    std::map<State, int64_t> out;
    for (State st : kAllStates) out[st] = 0;
    try {
      return read<std::map<State, int64_t>>([&](sql::Connection& c) {
        sql::Statement& s = c.prepare("SELECT state, COUNT(*) FROM messages GROUP BY state");
        while (s.step())
          if (auto st = parse_state(s.text(0))) out[*st] = s.int64(1);
        s.reset();
        return out;
      });
    } catch (const std::exception& e) {
      log::error("store", std::string("counting messages failed: ") + e.what());
      return out;
    }
  }

  // ---- Cap decisions across nodes ----

  class PgDecisionLock final : public DecisionLock {
   public:
    PgDecisionLock(PgStore& store, std::unique_ptr<sql::Connection> c, std::string recipient_id)
        : store_(store), c_(std::move(c)), recipient_id_(std::move(recipient_id)) {}
    ~PgDecisionLock() override {
      try {
        c_->prepare("SELECT pg_advisory_unlock(29794, hashtext(?1))").bind(1, recipient_id_).exec();
      } catch (const std::exception& e) {
        // A lost session has let go of its locks already; the connection is closed by give_back.
        log::warn("store", std::string("releasing a recipient's decision lock: ") + e.what());
      }
      store_.give_back(std::move(c_));
      store_.decision_locks_.release();
    }

   private:
    PgStore& store_;
    std::unique_ptr<sql::Connection> c_;
    std::string recipient_id_;
  };

  std::unique_ptr<DecisionLock> lock_decisions(const std::string& recipient_id) override {
    decision_locks_.acquire();
    std::unique_ptr<sql::Connection> c;
    try {
      c = take_reader();
      c->prepare("SELECT pg_advisory_lock(29794, hashtext(?1))").bind(1, recipient_id).exec();
    } catch (...) {
      if (c) give_back(nullptr);
      decision_locks_.release();
      throw;  // no decision without the lock: the dispatcher retries the message later
    }
    return std::make_unique<PgDecisionLock>(*this, std::move(c), recipient_id);
  }

  // Committed before it returns: the caller holds the recipient's decision lock, and the next node to take
  // it must see this slot.
  void take_slot(const std::string& recipient_id, const policy::CapSlot& slot) override {
    try {
      read<bool>([&](sql::Connection& c) {
        ops::put_slot(c, recipient_id, slot);
        return true;
      });
    } catch (const std::exception& e) {
      log::error("store", std::string("a frequency-cap slot could not be recorded: ") + e.what());
    }
  }

 private:
  // The `nodes` row of this run: how long it is known alive (what an operator reads when a node dies).
  void set_alive_until(int64_t ms) {
    control_->prepare("UPDATE nodes SET alive_until = ?2 WHERE id = ?1 AND incarnation = ?3")
        .bind(1, options_.node_id)
        .bind(2, ms)
        .bind(3, incarnation_)
        .exec();
  }

  // A session advisory lock on the node id, held by the control connection for the life of the store.
  void hold_node_id() {
    // A node restarted right after a crash may find its last session still ending on the server (it learns
    // of the closed socket when it next reads): a few tries over three seconds before calling it a live twin.
    bool held = false;
    for (int attempt = 0; attempt < 12 && !held; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(250));
      sql::Statement& s =
          control_->prepare("SELECT CASE WHEN pg_try_advisory_lock(29793, hashtext(?1)) THEN 1 ELSE 0 END")
              .bind(1, options_.node_id);
      held = s.step() && s.int64(0) == 1;
      s.reset();
    }
    if (!held)
      throw std::runtime_error("store.node_id \"" + options_.node_id +
                               "\": another running node uses this id; give each node its own");
    int64_t now = wall_ms();
    control_
        ->prepare(
            "INSERT INTO nodes(id, incarnation, started_at, alive_until) VALUES(?1, ?2, ?3, ?4) "
            "ON CONFLICT(id) DO UPDATE SET incarnation = ?2, started_at = ?3, alive_until = ?4")
        .bind(1, options_.node_id)
        .bind(2, incarnation_)
        .bind(3, now)
        .bind(4, now + options_.lease_ms)
        .exec();
  }

  // Every third of the lease: renew this node's claims and its `nodes` row, and requeue what other nodes
  // held past their lease.
  void maintain() {
    std::unique_lock lock(maintain_mutex_);
    while (!stopping_) {
      maintain_wake_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(100, options_.lease_ms / 3)));
      if (stopping_) break;
      lock.unlock();
      // Each is tried at every round whatever the other did: requeueing a dead node's claims must not wait
      // for this node's own session to come back.
      run_guarded("pg-lease", "renewing this node's claims", [&] { renew(); });
      run_guarded("pg-lease", "requeueing expired claims", [&] { requeue_expired(); });
      lock.lock();
    }
  }

  void renew() {
    if (!control_->connection_ok()) {
      // The session, and the node id's lock with it, are gone: take both again.
      control_->reconnect();
      hold_node_id();
    }
    int64_t now = wall_ms();
    nlohmann::json ids = nlohmann::json::array();
    {
      std::lock_guard lock(held_mutex_);
      for (const auto& id : held_) ids.push_back(id);
    }
    set_alive_until(now + options_.lease_ms);
    if (ids.empty()) return;
    // Only what this process holds: a claim whose answer was lost with a connection is not held, and
    // expires like a dead node's.
    control_
        ->prepare(
            "UPDATE messages SET lease_until = ?3 WHERE id IN (SELECT jsonb_array_elements_text(CAST(?2 AS jsonb))) "
            "AND state = 'dispatched' AND claimed_by = ?1")
        .bind(1, options_.node_id)
        .bind(2, ids.dump())
        .bind(3, now + options_.lease_ms)
        .exec();
  }

  void requeue_expired() {
    int64_t now = wall_ms();
    submit([now](sql::Connection& c, WriteContext& w) {
      sql::Statement& s =
          c.prepare(
               "WITH expired AS (SELECT id, claimed_by FROM messages WHERE state = 'dispatched' AND lease_until < ?1 "
               "ORDER BY lease_until LIMIT 1000 FOR UPDATE SKIP LOCKED) "
               "UPDATE messages m SET state = 'scheduled', due_at = ?1, updated_at = ?1, claimed_by = '', "
               "lease_until = NULL FROM expired e WHERE m.id = e.id RETURNING m.id, e.claimed_by")
              .bind(1, now);
      auto expired = ops::all_rows(s, [](const sql::Statement& row) { return std::pair(row.text(0), row.text(1)); });
      for (const auto& [id, node] : expired)
        ops::insert_event(c, id,
                          {"requeued", nlohmann::json{{"reason", "the lease of node " + node + " expired"}}.dump()},
                          now);
      w.move(State::dispatched, State::scheduled, static_cast<int64_t>(expired.size()));
      if (!expired.empty())
        log::warn("store", std::to_string(expired.size()) + " claims of other nodes passed their lease; queued again");
    },
           nullptr);
  }

  PostgresOptions options_;
  std::string incarnation_;
  std::counting_semaphore<1024> decision_locks_;
  std::unique_ptr<PgConnection> control_;  // the maintainer's; holds the node id's lock
  std::mutex held_mutex_;
  std::set<std::string> held_;  // messages this process has claimed and not yet given a verdict
  std::mutex maintain_mutex_;
  std::condition_variable maintain_wake_;
  bool stopping_ = false;
  std::thread maintainer_;
};

}  // namespace

std::unique_ptr<Store> open_postgres(const PostgresOptions& options) {
  if (options.node_id.empty()) throw std::runtime_error("store.node_id: empty");
  return std::make_unique<PgStore>(options);
}

}  // namespace tayori::store
