#include "store/sqlite_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/thread_name.hpp"
#include "transport/crypto.hpp"

namespace tayori::store {

std::string_view to_string(State s) {
  switch (s) {
    case State::scheduled: return "scheduled";
    case State::dispatched: return "dispatched";
    case State::delivered: return "delivered";
    case State::failed: return "failed";
    case State::cancelled: return "cancelled";
    case State::suppressed: return "suppressed";
    case State::dead: return "dead";
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

namespace {

// An SQLite failure inside an operation: rolls back that operation (or the whole group on commit).
struct SqliteError : std::runtime_error {
  int code;
  SqliteError(int c, const std::string& what) : std::runtime_error(what), code(c) {}
};

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
      throw SqliteError(sqlite3_errcode(db), std::string("prepare: ") + sqlite3_errmsg(db) + " in: " + sql);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& bind(int i, std::optional<int64_t> v) {
    if (v)
      sqlite3_bind_int64(stmt_, i, *v);
    else
      sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // True while there is a row; throws on error. Reset happens on the next run().
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw SqliteError(rc, std::string("step: ") + sqlite3_errmsg(db_));
  }
  Statement& run() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    return *this;
  }
  void exec() {
    step();
    sqlite3_reset(stmt_);
  }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::optional<int64_t> opt_int64(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_int64(stmt_, col);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class Connection {
 public:
  Connection(const std::string& path, bool readonly) {
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error("cannot open the store \"" + path + "\": " + why);
    }
    sqlite3_busy_timeout(db_, 5000);
    sqlite3_extended_result_codes(db_, 1);
  }
  ~Connection() {
    statements_.clear();
    sqlite3_close(db_);
  }
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string why = err ? err : "unknown";
      sqlite3_free(err);
      throw SqliteError(sqlite3_errcode(db_), why + " in: " + sql);
    }
  }
  // Prepared once per connection and reused: the SQL text is the cache key.
  Statement& prepare(const char* sql) {
    statements_run_.fetch_add(1, std::memory_order_relaxed);
    auto it = statements_.find(sql);
    if (it == statements_.end()) it = statements_.emplace(sql, std::make_unique<Statement>(db_, sql)).first;
    return it->second->run();
  }
  int changes() const { return sqlite3_changes(db_); }
  sqlite3* raw() const { return db_; }
  int64_t statements_run() const { return statements_run_.load(std::memory_order_relaxed); }

  // How many messages the writer's operations moved into (+) and out of (-) each state since the group
  // began: the store keeps its per-state counts from these once the group commits, instead of counting
  // rows (count_by_state is read by every /metrics scrape, and the queue may hold millions).
  std::array<int64_t, std::size(kAllStates)> moved{};
  void move(std::optional<State> from, std::optional<State> to, int64_t n = 1) {
    if (from) moved[static_cast<size_t>(*from)] -= n;
    if (to) moved[static_cast<size_t>(*to)] += n;
  }

 private:
  sqlite3* db_ = nullptr;
  std::atomic<int64_t> statements_run_{0};
  std::unordered_map<const char*, std::unique_ptr<Statement>> statements_;
};

// Schema migrations, applied in order; PRAGMA user_version records how far a file has come.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE messages (
      id TEXT PRIMARY KEY,
      api_key TEXT NOT NULL,
      payload_hash TEXT NOT NULL,
      payload TEXT NOT NULL,
      state TEXT NOT NULL,
      channel_index INTEGER NOT NULL DEFAULT 0,
      channel TEXT NOT NULL DEFAULT '',
      attempts INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      due_at INTEGER NOT NULL,
      send_at INTEGER,
      expires_at INTEGER,
      last_reason TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    CREATE INDEX messages_due ON messages(state, due_at);
    CREATE INDEX messages_finished ON messages(updated_at) WHERE state IN ('delivered', 'failed', 'cancelled');
    CREATE TABLE events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      message_id TEXT NOT NULL,
      type TEXT NOT NULL,
      at INTEGER NOT NULL,
      detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_message ON events(message_id, seq);
    )sql",
    // 2: the policy engine's state.
    R"sql(
    ALTER TABLE messages ADD COLUMN recipient_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX messages_recipient ON messages(recipient_id, state);
    DROP INDEX messages_finished;
    CREATE INDEX messages_finished ON messages(updated_at)
      WHERE state IN ('delivered', 'failed', 'cancelled', 'suppressed');
    CREATE TABLE recipients (
      id TEXT PRIMARY KEY,
      timezone TEXT NOT NULL DEFAULT '',
      locale TEXT NOT NULL DEFAULT '',
      contacts TEXT NOT NULL DEFAULT '{}',
      updated_at INTEGER NOT NULL,
      erased_at INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE consent (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      recipient_id TEXT NOT NULL,
      channel TEXT NOT NULL,
      purpose TEXT NOT NULL,
      state TEXT NOT NULL,
      source TEXT NOT NULL,
      evidence TEXT NOT NULL DEFAULT '',
      at INTEGER NOT NULL
    );
    CREATE INDEX consent_recipient ON consent(recipient_id, channel, purpose, seq);
    CREATE TABLE suppressions (
      contact TEXT PRIMARY KEY,
      reason TEXT NOT NULL,
      source TEXT NOT NULL,
      at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE cap_slots (
      recipient_id TEXT NOT NULL,
      message_id TEXT NOT NULL,
      channel TEXT NOT NULL,
      purpose TEXT NOT NULL,
      category TEXT NOT NULL DEFAULT '',
      at INTEGER NOT NULL,
      PRIMARY KEY (recipient_id, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX cap_slots_at ON cap_slots(at);
    )sql",
    // 3: delivery that survives: a retry budget per channel, dead letters listed by state and channel.
    R"sql(
    ALTER TABLE messages ADD COLUMN channel_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN channel_since INTEGER;
    DROP INDEX messages_finished;
    CREATE INDEX messages_finished ON messages(updated_at)
      WHERE state IN ('delivered', 'failed', 'cancelled', 'suppressed', 'dead');
    CREATE INDEX messages_state_channel ON messages(state, channel, id);
    )sql",
    // 4: two-way communication. Events carry their recipient (consent changes belong to no message, and
    // the upstream feed reads events by seq); receipts find a message by the provider's id; follow-ups
    // name the message they follow; provider webhooks are de-duplicated by their event ids; the latest
    // open question per contact point maps a numbered SMS reply; each webhook subscription keeps a cursor.
    R"sql(
    ALTER TABLE events ADD COLUMN recipient_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX events_recipient ON events(recipient_id, seq) WHERE recipient_id != '';
    ALTER TABLE messages ADD COLUMN provider_message_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX messages_provider_message ON messages(provider_message_id) WHERE provider_message_id != '';
    CREATE INDEX messages_parent ON messages(parent_id, state) WHERE parent_id != '';
    CREATE TABLE inbound_seen (
      source TEXT NOT NULL,
      event_id TEXT NOT NULL,
      at INTEGER NOT NULL,
      PRIMARY KEY (source, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE questions (
      contact TEXT NOT NULL,
      channel TEXT NOT NULL,
      message_id TEXT NOT NULL,
      options TEXT NOT NULL,
      at INTEGER NOT NULL,
      PRIMARY KEY (contact, channel)
    ) WITHOUT ROWID;
    CREATE TABLE webhook_cursors (
      subscription TEXT PRIMARY KEY,
      seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    )sql",
    // 5: fewer index pages per state change (the throughput issue measured ~40 page writes per message).
    // An index that holds the state moves an entry at every transition; these hold only the rows their
    // queries look for: the due queue (scheduled), the messages in flight (requeued at start), and the
    // replayable dead letters. A recipient's messages are few, so their index needs no state. Nothing reads
    // events by recipient (the feed reads by seq, erasure by message).
    R"sql(
    DROP INDEX messages_due;
    CREATE INDEX messages_due ON messages(due_at) WHERE state = 'scheduled';
    CREATE INDEX messages_in_flight ON messages(id) WHERE state = 'dispatched';
    DROP INDEX messages_state_channel;
    CREATE INDEX messages_replayable ON messages(state, channel, id) WHERE state IN ('dead', 'failed');
    DROP INDEX messages_recipient;
    CREATE INDEX messages_recipient ON messages(recipient_id);
    DROP INDEX events_recipient;
    )sql",
};

// The states purge_finished removes once retention has passed (is_final).
const std::string kFinishedStates = "('delivered','failed','cancelled','suppressed','dead')";

const char* kSelectMessage =
    "SELECT id, api_key, payload_hash, payload, state, channel_index, channel, attempts, created_at, updated_at, "
    "due_at, send_at, expires_at, last_reason, channel_attempts, channel_since, recipient_id FROM messages";

MessageRecord read_message(Statement& s) {
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
  return r;
}

// The events of one message, in order. Their recipient is the message's: `recipient_id` when the caller
// knows it, else read in the same transaction, so every writer of events gets it without passing it.
// (One INSERT per row measured faster than one multi-row INSERT for the two events a message writes at
// a time.)
void insert_events(Connection& c, const std::string& message_id, const std::string& recipient_id,
                   const std::vector<NewEvent>& events, int64_t now_ms) {
  for (const NewEvent& e : events) {
    Statement& s = recipient_id.empty()
                       ? c.prepare(
                             "INSERT INTO events(message_id, type, at, detail, recipient_id) "
                             "VALUES(?1, ?2, ?3, ?4, COALESCE((SELECT recipient_id FROM messages WHERE id = ?1), ''))")
                       : c.prepare(
                             "INSERT INTO events(message_id, type, at, detail, recipient_id) VALUES(?1, ?2, ?3, ?4, ?5)")
                             .bind(5, recipient_id);
    s.bind(1, message_id).bind(2, e.type).bind(3, e.at_ms != 0 ? e.at_ms : now_ms).bind(4, e.detail_json).exec();
  }
}

void insert_event(Connection& c, const std::string& message_id, const NewEvent& e, int64_t now_ms) {
  insert_events(c, message_id, "", {e}, now_ms);
}

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const SqliteOptions& options) : options_(options), writer_conn_(options.path, false) {
    writer_conn_.exec("PRAGMA journal_mode=WAL");
    // FULL: in WAL mode the WAL is synced at every commit, so a commit that returned survives power loss.
    writer_conn_.exec(options.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // Small on purpose. Every commit ends in sqlite3PcacheTruncate, which walks the page cache's hash table
    // (pager_end_transaction -> pcache1TruncateUnsafe), so its cost grows with the cache, not with the
    // transaction: with 64 MiB it was 22% of the writer's CPU under the throughput bench (perf, DWARF
    // stacks), with 4 MiB it no longer shows. Pages that fall out are re-read from the OS page cache.
    writer_conn_.exec("PRAGMA cache_size=-4096");
    // The per-operation savepoints keep a statement journal, which past 64 KiB spilled to a temporary file:
    // created, written and unlinked in two of every three group commits under the bench (strace -c: 86
    // openat/unlink per 130 fdatasync). A group's journal is bounded by max_group; memory holds it.
    writer_conn_.exec("PRAGMA temp_store=MEMORY");
    migrate();
    if (options.max_bytes > 0) limit_size(options.max_bytes);
    {
      // The only count of rows: once, at open; the writer keeps the counts from here (Connection::moved).
      Statement counted(writer_conn_.raw(), "SELECT state, COUNT(*) FROM messages GROUP BY state");
      while (counted.step())
        if (auto st = parse_state(counted.text(0))) state_counts_[static_cast<size_t>(*st)] = counted.int64(1);
    }
    // Checkpoints run on their own thread and connection, not inside the commit that crossed the threshold
    // (SQLite's auto-checkpoint does that, and it stalled the group commit, and every 202 behind it, for the
    // time it took to copy the WAL into the database and fsync it). The hook replaces the auto-checkpoint.
    sqlite3_wal_hook(writer_conn_.raw(), &SqliteStore::on_wal_commit, this);
    checkpointer_ = std::thread([this] {
      name_this_thread("tayori-ckpt");
      checkpoint_loop();
    });
    writer_ = std::thread([this] {
      name_this_thread("tayori-writer");
      write_loop();
    });
  }

  ~SqliteStore() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (writer_.joinable()) writer_.join();
    {
      std::lock_guard lock(checkpoint_mutex_);
      checkpoint_stopping_ = true;
    }
    checkpoint_wake_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
  }

  void accept(std::vector<NewMessage> batch, int64_t now_ms,
              std::function<void(bool, std::vector<AcceptResult>)> done) override {
    auto results = std::make_shared<std::vector<AcceptResult>>();
    auto shared_batch = std::make_shared<std::vector<NewMessage>>(std::move(batch));
    submit(
        [this, shared_batch, results, now_ms](Connection& c) {
          results->clear();
          for (const NewMessage& m : *shared_batch) results->push_back(accept_one(c, m, now_ms));
        },
        [results, done = std::move(done)](bool ok) { done(ok, ok ? std::move(*results) : std::vector<AcceptResult>{}); });
  }

  void cancel(const std::string& id, int64_t now_ms, std::function<void(bool, CancelResult)> done) override {
    auto result = std::make_shared<CancelResult>();
    submit(
        [id, now_ms, result](Connection& c) {
          Statement& s = c.prepare("SELECT state FROM messages WHERE id = ?1").bind(1, id);
          if (!s.step()) {
            *result = {CancelStatus::not_found, State::scheduled};
            return;
          }
          State state = parse_state(s.text(0)).value_or(State::failed);
          s.run();
          if (state != State::scheduled) {
            *result = {CancelStatus::too_late, state};
            return;
          }
          c.prepare("UPDATE messages SET state = 'cancelled', updated_at = ?2 WHERE id = ?1")
              .bind(1, id)
              .bind(2, now_ms)
              .exec();
          c.move(State::scheduled, State::cancelled);
          insert_event(c, id, {"cancelled", "{}"}, now_ms);
          *result = {CancelStatus::cancelled, State::cancelled};
        },
        [result, done = std::move(done)](bool ok) { done(ok, *result); });
  }

  void apply(Transition t, int64_t now_ms, std::function<void(bool)> done) override {
    auto shared = std::make_shared<Transition>(std::move(t));
    submit(
        [shared, now_ms](Connection& c) {
          const Transition& t = *shared;
          // A fallback starts the new channel's retry budget afresh; a claim that made no attempt gives its
          // attempt back (and the channel's first-claim time, when it was that claim).
          c.prepare(
               "UPDATE messages SET state = ?2, channel = ?3, channel_index = ?4, due_at = ?5, last_reason = ?6, "
               "updated_at = ?7, attempts = attempts - ?9, "
               "channel_since = CASE WHEN ?10 OR (?9 AND channel_attempts = 1) THEN NULL ELSE channel_since END, "
               "channel_attempts = CASE WHEN ?10 THEN 0 ELSE channel_attempts - ?9 END, "
               "provider_message_id = CASE WHEN ?11 != '' THEN ?11 ELSE provider_message_id END "
               "WHERE id = ?1 AND state = 'dispatched' AND (?8 = 0 OR attempts = ?8)")
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
              .exec();
          if (c.changes() == 0) return;  // cancelled, recovered or claimed again meanwhile: this verdict is stale
          c.move(State::dispatched, t.to);
          insert_events(c, t.message_id, t.recipient_id, t.events, now_ms);
        },
        [done = std::move(done)](bool ok) {
          if (done) done(ok);
        });
  }

  std::vector<MessageRecord> claim_due(int64_t now_ms, int limit) override {
    auto claimed = std::make_shared<std::vector<MessageRecord>>();
    bool ok = submit_and_wait([&, claimed](Connection& c) {
      claimed->clear();
      static const std::string sql =
          std::string(kSelectMessage) + " WHERE state = 'scheduled' AND due_at <= ?1 ORDER BY due_at LIMIT ?2";
      Statement& s = c.prepare(sql.c_str())
                         .bind(1, now_ms)
                         .bind(2, static_cast<int64_t>(limit));
      while (s.step()) claimed->push_back(read_message(s));
      s.run();
      for (MessageRecord& r : *claimed) {
        c.prepare(
             "UPDATE messages SET state = 'dispatched', attempts = attempts + 1, channel_attempts = channel_attempts + 1, "
             "channel_since = COALESCE(channel_since, ?2), updated_at = ?2 WHERE id = ?1")
            .bind(1, r.id)
            .bind(2, now_ms)
            .exec();
        c.move(State::scheduled, State::dispatched);
        r.state = State::dispatched;
        r.attempts += 1;
        r.channel_attempts += 1;
        if (!r.channel_since_ms) r.channel_since_ms = now_ms;
      }
    });
    if (!ok) return {};
    return std::move(*claimed);
  }

  std::optional<int64_t> next_due_ms() override {
    return read<std::optional<int64_t>>([](Connection& c) -> std::optional<int64_t> {
      Statement& s = c.prepare("SELECT MIN(due_at) FROM messages WHERE state = 'scheduled'");
      std::optional<int64_t> v = s.step() ? s.opt_int64(0) : std::nullopt;
      s.run();
      return v;
    });
  }

  int requeue_in_flight(int64_t now_ms) override {
    int count = 0;
    submit_and_wait([&](Connection& c) {
      std::vector<std::string> ids;
      Statement& s = c.prepare("SELECT id FROM messages WHERE state = 'dispatched'");
      while (s.step()) ids.push_back(s.text(0));
      s.run();
      for (const auto& id : ids) {
        c.prepare("UPDATE messages SET state = 'scheduled', due_at = ?2, updated_at = ?2 WHERE id = ?1")
            .bind(1, id)
            .bind(2, now_ms)
            .exec();
        c.move(State::dispatched, State::scheduled);
        insert_event(c, id, {"requeued", R"({"reason":"in flight when the gateway stopped"})"}, now_ms);
      }
      count = static_cast<int>(ids.size());
    });
    return count;
  }

  int64_t purge_finished(int64_t before_ms) override {
    int64_t count = 0;
    submit_and_wait([&](Connection& c) {
      static const std::string events_sql = "DELETE FROM events WHERE message_id IN (SELECT id FROM messages WHERE state IN " +
                                            kFinishedStates + " AND updated_at < ?1)";
      static const std::string messages_sql = "DELETE FROM messages WHERE state IN " + kFinishedStates + " AND updated_at < ?1";
      static const std::string counts_sql = "SELECT state, COUNT(*) FROM messages WHERE state IN " + kFinishedStates +
                                            " AND updated_at < ?1 GROUP BY state";
      Statement& counted = c.prepare(counts_sql.c_str()).bind(1, before_ms);
      while (counted.step())
        if (auto st = parse_state(counted.text(0))) c.move(*st, std::nullopt, counted.int64(1));
      counted.run();
      c.prepare(events_sql.c_str()).bind(1, before_ms).exec();
      c.prepare(messages_sql.c_str()).bind(1, before_ms).exec();
      count = c.changes();
    });
    return count;
  }

  std::vector<MessageRecord> list(const MessageFilter& f) override {
    return read<std::vector<MessageRecord>>([&](Connection& c) {
      static const std::string sql =
          std::string(kSelectMessage) +
          " WHERE (?1 = '' OR state = ?1) AND (?2 = '' OR channel = ?2) AND id > ?3 AND (?4 = '' OR id = ?4) "
          "ORDER BY id LIMIT ?5";
      Statement& s = c.prepare(sql.c_str())
                         .bind(1, f.state ? std::string(to_string(*f.state)) : std::string())
                         .bind(2, f.channel)
                         .bind(3, f.after_id)
                         .bind(4, f.id)
                         .bind(5, static_cast<int64_t>(std::max(0, f.limit)));
      std::vector<MessageRecord> out;
      while (s.step()) {
        out.push_back(read_message(s));
        out.back().payload.clear();
      }
      s.run();
      return out;
    });
  }

  void replay(const MessageFilter& f, int64_t now_ms, const std::string& by,
              std::function<void(bool, std::vector<std::string>)> done) override {
    auto ids = std::make_shared<std::vector<std::string>>();
    submit(
        [f, now_ms, by, ids](Connection& c) {
          ids->clear();
          // Only dead letters and permanent failures are replayed; a filter naming another state matches none.
          Statement& s = c.prepare(
                              "SELECT id, state FROM messages WHERE state IN ('dead', 'failed') AND (?1 = '' OR state = ?1) "
                              "AND (?2 = '' OR channel = ?2) AND id > ?3 AND (?4 = '' OR id = ?4) ORDER BY id LIMIT ?5")
                             .bind(1, f.state ? std::string(to_string(*f.state)) : std::string())
                             .bind(2, f.channel)
                             .bind(3, f.after_id)
                             .bind(4, f.id)
                             .bind(5, static_cast<int64_t>(std::max(0, f.limit)));
          std::vector<std::pair<std::string, std::string>> found;
          while (s.step()) found.emplace_back(s.text(0), s.text(1));
          s.run();
          for (const auto& [id, from] : found) {
            c.prepare(
                 "UPDATE messages SET state = 'scheduled', due_at = ?2, updated_at = ?2, channel_index = 0, "
                 "channel_attempts = 0, channel_since = NULL, last_reason = '' WHERE id = ?1")
                .bind(1, id)
                .bind(2, now_ms)
                .exec();
            c.move(parse_state(from), State::scheduled);
            insert_event(c, id, {"replayed", nlohmann::json{{"from", from}, {"by", by}}.dump()}, now_ms);
            ids->push_back(id);
          }
        },
        [ids, done = std::move(done)](bool ok) { done(ok, ok ? std::move(*ids) : std::vector<std::string>{}); });
  }

  std::optional<MessageRecord> find(const std::string& id) override {
    return read<std::optional<MessageRecord>>([&](Connection& c) -> std::optional<MessageRecord> {
      static const std::string sql = std::string(kSelectMessage) + " WHERE id = ?1";
      Statement& s = c.prepare(sql.c_str()).bind(1, id);
      std::optional<MessageRecord> r;
      if (s.step()) r = read_message(s);
      s.run();
      return r;
    });
  }

  std::vector<EventRecord> events(const std::string& id) override {
    return read<std::vector<EventRecord>>([&](Connection& c) {
      std::vector<EventRecord> out;
      Statement& s =
          c.prepare("SELECT seq, message_id, type, at, detail, recipient_id FROM events WHERE message_id = ?1 ORDER BY seq")
              .bind(1, id);
      while (s.step()) out.push_back({s.int64(0), s.text(1), s.text(2), s.int64(3), s.text(4), s.text(5)});
      s.run();
      return out;
    });
  }

  std::map<State, int64_t> count_by_state() override {
    std::map<State, int64_t> out;
    for (State st : kAllStates) out[st] = state_counts_[static_cast<size_t>(st)].load(std::memory_order_relaxed);
    return out;
  }

  std::vector<EventRecord> events_after(int64_t after_seq, int limit) override {
    return read<std::vector<EventRecord>>([&](Connection& c) {
      std::vector<EventRecord> out;
      Statement& s = c.prepare(
                          "SELECT seq, message_id, type, at, detail, recipient_id FROM events WHERE seq > ?1 "
                          "ORDER BY seq LIMIT ?2")
                         .bind(1, after_seq)
                         .bind(2, static_cast<int64_t>(limit));
      while (s.step()) out.push_back({s.int64(0), s.text(1), s.text(2), s.int64(3), s.text(4), s.text(5)});
      s.run();
      return out;
    });
  }

  int64_t last_event_seq() override {
    return read<int64_t>([](Connection& c) {
      Statement& s = c.prepare("SELECT COALESCE(MAX(seq), 0) FROM events");
      int64_t seq = s.step() ? s.int64(0) : 0;
      s.run();
      return seq;
    });
  }

  std::optional<int64_t> webhook_cursor(const std::string& name) override {
    return read<std::optional<int64_t>>([&](Connection& c) -> std::optional<int64_t> {
      Statement& s = c.prepare("SELECT seq FROM webhook_cursors WHERE subscription = ?1").bind(1, name);
      std::optional<int64_t> seq;
      if (s.step()) seq = s.int64(0);
      s.run();
      return seq;
    });
  }

  void set_webhook_cursor(const std::string& name, int64_t seq, std::function<void(bool)> done) override {
    submit(
        [name, seq](Connection& c) {
          // MAX: a cursor never moves back (a late completion of an older send must not rewind it).
          c.prepare(
               "INSERT INTO webhook_cursors(subscription, seq) VALUES(?1, ?2) "
               "ON CONFLICT(subscription) DO UPDATE SET seq = MAX(seq, ?2)")
              .bind(1, name)
              .bind(2, seq)
              .exec();
        },
        std::move(done));
  }

  bool healthy() override {
    try {
      return read<bool>([](Connection& c) {
        Statement& s = c.prepare("SELECT 1");
        bool ok = s.step();
        s.run();
        return ok;
      });
    } catch (const std::exception&) {
      return false;
    }
  }

  std::optional<RecipientProfile> recipient(const std::string& id) override {
    return read<std::optional<RecipientProfile>>([&](Connection& c) -> std::optional<RecipientProfile> {
      Statement& s =
          c.prepare("SELECT id, timezone, locale, contacts, updated_at, erased_at FROM recipients WHERE id = ?1").bind(1, id);
      std::optional<RecipientProfile> r;
      if (s.step())
        r = RecipientProfile{s.text(0), s.text(1), s.text(2), s.text(3), s.int64(4), s.opt_int64(5).has_value()};
      s.run();
      return r;
    });
  }

  void put_recipient(RecipientProfile p, int64_t now_ms, std::function<void(bool)> done) override {
    submit(
        [p, now_ms](Connection& c) {
          c.prepare(
               "INSERT INTO recipients(id, timezone, locale, contacts, updated_at, erased_at) "
               "VALUES(?1, ?2, ?3, ?4, ?5, NULL) ON CONFLICT(id) DO UPDATE SET timezone = ?2, locale = ?3, "
               "contacts = ?4, updated_at = ?5, erased_at = NULL")
              .bind(1, p.id)
              .bind(2, p.timezone)
              .bind(3, p.locale)
              .bind(4, p.contacts_json)
              .bind(5, now_ms)
              .exec();
        },
        std::move(done));
  }

  void erase_recipient(const std::string& id, int64_t now_ms, std::function<void(bool, bool)> done) override {
    auto found = std::make_shared<bool>(false);
    submit(
        [id, now_ms, found](Connection& c) {
          Statement& s = c.prepare("SELECT 1 FROM recipients WHERE id = ?1 UNION SELECT 1 FROM messages WHERE recipient_id = ?1").bind(1, id);
          *found = s.step();
          s.run();
          if (!*found) return;
          c.prepare(
               "UPDATE recipients SET timezone = '', locale = '', contacts = '{}', updated_at = ?2, erased_at = ?2 "
               "WHERE id = ?1")
              .bind(1, id)
              .bind(2, now_ms)
              .exec();
          std::vector<std::string> pending;
          Statement& q = c.prepare("SELECT id FROM messages WHERE recipient_id = ?1 AND state = 'scheduled'").bind(1, id);
          while (q.step()) pending.push_back(q.text(0));
          q.run();
          for (const auto& m : pending) insert_event(c, m, {"cancelled", R"({"reason":"recipient_erased"})"}, now_ms);
          c.move(State::scheduled, State::cancelled, static_cast<int64_t>(pending.size()));
          // The content is personal data; the id, states and timeline stay so the sender can still ask why.
          c.prepare(
               "UPDATE messages SET payload = '{\"erased\":true}', state = CASE state WHEN 'scheduled' THEN "
               "'cancelled' ELSE state END, updated_at = CASE state WHEN 'scheduled' THEN ?2 ELSE updated_at END "
               "WHERE recipient_id = ?1")
              .bind(1, id)
              .bind(2, now_ms)
              .exec();
          // Contact points recorded in timelines (contact_deactivated) and consent evidence are personal data too.
          c.prepare(
               "UPDATE events SET detail = json_remove(detail, '$.contact') WHERE message_id IN "
               "(SELECT id FROM messages WHERE recipient_id = ?1) AND json_extract(detail, '$.contact') IS NOT NULL")
              .bind(1, id)
              .exec();
          c.prepare("UPDATE consent SET evidence = '' WHERE recipient_id = ?1").bind(1, id).exec();
        },
        [found, done = std::move(done)](bool ok) { done(ok, *found); });
  }

  void append_consent(const std::string& recipient_id, policy::ConsentRecord r, std::function<void(bool)> done) override {
    submit(
        [recipient_id, r](Connection& c) {
          c.prepare(
               "INSERT INTO consent(recipient_id, channel, purpose, state, source, evidence, at) "
               "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")
              .bind(1, recipient_id)
              .bind(2, r.channel)
              .bind(3, core::to_string(r.purpose))
              .bind(4, policy::to_string(r.state))
              .bind(5, r.source)
              .bind(6, r.evidence)
              .bind(7, r.at_ms)
              .exec();
        },
        std::move(done));
  }

  std::vector<policy::ConsentRecord> consent_history(const std::string& recipient_id) override {
    return read<std::vector<policy::ConsentRecord>>([&](Connection& c) {
      std::vector<policy::ConsentRecord> out;
      Statement& s = c.prepare(
                          "SELECT channel, purpose, state, source, evidence, at FROM consent WHERE recipient_id = ?1 "
                          "ORDER BY seq")
                         .bind(1, recipient_id);
      while (s.step()) out.push_back(consent_row(s));
      s.run();
      return out;
    });
  }

  std::vector<policy::ConsentRecord> consent_current(const std::string& recipient_id) override {
    return read<std::vector<policy::ConsentRecord>>([&](Connection& c) {
      std::vector<policy::ConsentRecord> out;
      // In index order (recipient, channel, purpose, seq): the last row of each channel x purpose is current.
      Statement& s = c.prepare(
                          "SELECT channel, purpose, state, source, evidence, at FROM consent WHERE recipient_id = ?1 "
                          "ORDER BY channel, purpose, seq")
                         .bind(1, recipient_id);
      while (s.step()) {
        policy::ConsentRecord r = consent_row(s);
        if (!out.empty() && out.back().channel == r.channel && out.back().purpose == r.purpose)
          out.back() = std::move(r);
        else
          out.push_back(std::move(r));
      }
      s.run();
      return out;
    });
  }

  void add_suppression(policy::Suppression sup, std::function<void(bool)> done) override {
    submit(
        [sup](Connection& c) {
          c.prepare(
               "INSERT INTO suppressions(contact, reason, source, at) VALUES(?1, ?2, ?3, ?4) "
               "ON CONFLICT(contact) DO UPDATE SET reason = ?2, source = ?3, at = ?4")
              .bind(1, sup.contact)
              .bind(2, sup.reason)
              .bind(3, sup.source)
              .bind(4, sup.at_ms)
              .exec();
        },
        std::move(done));
  }

  void remove_suppression(const std::string& contact, std::function<void(bool, bool)> done) override {
    auto found = std::make_shared<bool>(false);
    submit(
        [contact, found](Connection& c) {
          c.prepare("DELETE FROM suppressions WHERE contact = ?1").bind(1, contact).exec();
          *found = c.changes() > 0;
        },
        [found, done = std::move(done)](bool ok) { done(ok, *found); });
  }

  std::vector<policy::Suppression> suppressions(const std::vector<std::string>& contacts) override {
    return read<std::vector<policy::Suppression>>([&](Connection& c) {
      std::vector<policy::Suppression> out;
      for (const auto& contact : contacts) {
        Statement& s = c.prepare("SELECT contact, reason, source, at FROM suppressions WHERE contact = ?1").bind(1, contact);
        if (s.step()) out.push_back({s.text(0), s.text(1), s.text(2), s.int64(3)});
        s.run();
      }
      return out;
    });
  }

  std::vector<policy::Suppression> list_suppressions(const std::string& after, int limit) override {
    return read<std::vector<policy::Suppression>>([&](Connection& c) {
      std::vector<policy::Suppression> out;
      Statement& s = c.prepare(
                          "SELECT contact, reason, source, at FROM suppressions WHERE contact > ?1 ORDER BY contact "
                          "LIMIT ?2")
                         .bind(1, after)
                         .bind(2, static_cast<int64_t>(limit));
      while (s.step()) out.push_back({s.text(0), s.text(1), s.text(2), s.int64(3)});
      s.run();
      return out;
    });
  }

  void take_slot(const std::string& recipient_id, const policy::CapSlot& slot) override {
    uint64_t token = 0;
    {
      std::lock_guard lock(pending_slots_mutex_);
      token = ++pending_slot_tokens_;
      auto& held = pending_slots_[recipient_id];
      std::erase_if(held, [&](const PendingSlot& p) { return p.slot.message_id == slot.message_id; });
      held.push_back({slot, token});
    }
    submit(
        [recipient_id, slot](Connection& c) {
          // Keyed by message: a message cleared again after a crash re-takes its own slot, not a second one.
          c.prepare(
               "INSERT INTO cap_slots(recipient_id, message_id, channel, purpose, category, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
               "ON CONFLICT(recipient_id, message_id) DO UPDATE SET channel = ?3, at = ?6")
              .bind(1, recipient_id)
              .bind(2, slot.message_id)
              .bind(3, slot.channel)
              .bind(4, core::to_string(slot.purpose))
              .bind(5, slot.category)
              .bind(6, slot.at_ms)
              .exec();
        },
        [this, recipient_id, token](bool ok) {
          // Not committed (a full disk): the slot stays held in memory, so this process keeps counting it.
          if (!ok) return log::error("store", "a frequency-cap slot could not be recorded; it is held in memory");
          forget_pending_slot(recipient_id, [&](const PendingSlot& p) { return p.token == token; });
        });
  }

  void release_slot(const std::string& recipient_id, const std::string& message_id,
                    std::function<void(bool)> done) override {
    // Until the DELETE commits the stored slot still counts: a cap errs towards sending less, never more.
    forget_pending_slot(recipient_id, [&](const PendingSlot& p) { return p.slot.message_id == message_id; });
    submit(
        [recipient_id, message_id](Connection& c) {
          c.prepare("DELETE FROM cap_slots WHERE recipient_id = ?1 AND message_id = ?2")
              .bind(1, recipient_id)
              .bind(2, message_id)
              .exec();
        },
        [done = std::move(done)](bool ok) {
          if (done) done(ok);
        });
  }

  std::vector<policy::CapSlot> slots_since(const std::string& recipient_id, int64_t since_ms) override {
    // Held slots first, then the table: a slot committed in between is in the table, so none is missed;
    // one in both is counted once (by message).
    std::vector<policy::CapSlot> held;
    {
      std::lock_guard lock(pending_slots_mutex_);
      if (auto it = pending_slots_.find(recipient_id); it != pending_slots_.end())
        for (const auto& p : it->second)
          if (p.slot.at_ms > since_ms) held.push_back(p.slot);
    }
    return read<std::vector<policy::CapSlot>>([&](Connection& c) {
      std::vector<policy::CapSlot> out = held;
      Statement& s = c.prepare(
                          "SELECT message_id, channel, purpose, category, at FROM cap_slots WHERE recipient_id = ?1 "
                          "AND at > ?2")
                         .bind(1, recipient_id)
                         .bind(2, since_ms);
      while (s.step()) {
        std::string id = s.text(0);
        if (std::any_of(held.begin(), held.end(), [&](const policy::CapSlot& h) { return h.message_id == id; }))
          continue;
        out.push_back({std::move(id), s.text(1),
                       s.text(2) == "marketing" ? core::Purpose::marketing : core::Purpose::transactional, s.text(3),
                       s.int64(4)});
      }
      s.run();
      return out;
    });
  }

  int64_t purge_slots(int64_t before_ms) override {
    int64_t count = 0;
    submit_and_wait([&](Connection& c) {
      c.prepare("DELETE FROM cap_slots WHERE at < ?1").bind(1, before_ms).exec();
      count = c.changes();
    });
    return count;
  }

 private:
  static policy::ConsentRecord consent_row(Statement& s) {
    policy::ConsentRecord r;
    r.channel = s.text(0);
    r.purpose = s.text(1) == "marketing" ? core::Purpose::marketing : core::Purpose::transactional;
    r.state = policy::parse_consent_state(s.text(2)).value_or(policy::ConsentState::opted_out);
    r.source = s.text(3);
    r.evidence = s.text(4);
    r.at_ms = s.int64(5);
    return r;
  }

  struct Operation {
    std::function<void(Connection&)> apply;
    std::function<void(bool)> complete;
  };

  // A cap slot taken and not yet committed (take_slot); `token` tells a later take of the same message's
  // slot from this one.
  struct PendingSlot {
    policy::CapSlot slot;
    uint64_t token = 0;
  };

  template <class Match>
  void forget_pending_slot(const std::string& recipient_id, Match match) {
    std::lock_guard lock(pending_slots_mutex_);
    auto it = pending_slots_.find(recipient_id);
    if (it == pending_slots_.end()) return;
    std::erase_if(it->second, match);
    if (it->second.empty()) pending_slots_.erase(it);
  }

  void migrate() {
    int64_t current = 0;
    {
      // Finalised before migrating: an open statement would lock the schema against DROP INDEX.
      Statement version(writer_conn_.raw(), "PRAGMA user_version");
      version.step();
      current = version.int64(0);
    }
    int64_t target = static_cast<int64_t>(std::size(kMigrations));
    if (current > target)
      throw std::runtime_error("the store \"" + options_.path + "\" has schema version " + std::to_string(current) +
                               ", newer than this gateway's " + std::to_string(target));
    for (int64_t v = current; v < target; ++v) {
      writer_conn_.exec("BEGIN IMMEDIATE");
      writer_conn_.exec(kMigrations[v]);
      writer_conn_.exec(("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
      writer_conn_.exec("COMMIT");
    }
  }

  // A database already larger than the limit stays readable; only growth fails (SQLITE_FULL).
  void limit_size(int64_t max_bytes) {
    Statement page_size(writer_conn_.raw(), "PRAGMA page_size");
    page_size.step();
    int64_t pages = std::max<int64_t>(1, max_bytes / std::max<int64_t>(512, page_size.int64(0)));
    writer_conn_.exec(("PRAGMA max_page_count = " + std::to_string(pages)).c_str());
  }

  AcceptResult accept_one(Connection& c, const NewMessage& m, int64_t now_ms) {
    c.prepare(
         "INSERT INTO messages(id, api_key, payload_hash, payload, state, created_at, updated_at, due_at, send_at, "
         "expires_at, recipient_id, attempts, channel_attempts, channel_since) "
         "VALUES(?1, ?2, ?3, ?4, ?10, ?5, ?5, ?6, ?7, ?8, ?9, ?11, ?11, ?12) "
         "ON CONFLICT(id) DO NOTHING")
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
        .bind(12, m.claim ? std::optional<int64_t>(now_ms) : std::nullopt)
        .exec();
    if (c.changes() == 0) {
      Statement& s = c.prepare("SELECT payload_hash, state FROM messages WHERE id = ?1").bind(1, m.id);
      AcceptResult r{AcceptStatus::duplicate, State::scheduled, std::nullopt};
      if (s.step()) {
        r.status = s.text(0) == m.payload_hash ? AcceptStatus::duplicate : AcceptStatus::conflict;
        r.state = parse_state(s.text(1)).value_or(State::failed);
      }
      s.run();
      return r;
    }
    insert_events(c, m.id, m.recipient_id, m.events, now_ms);
    if (!m.recipient_json.empty()) merge_recipient(c, m.recipient_id, m.recipient_json, now_ms);
    if (!m.claim) {
      c.move(std::nullopt, State::scheduled);
      return {AcceptStatus::accepted, State::scheduled, std::nullopt};
    }
    c.move(std::nullopt, State::dispatched);
    return {AcceptStatus::accepted, State::dispatched, claimed_record(m, now_ms)};
  }

  // The claim of a message accepted with NewMessage::claim: the row accept_one inserted, as read_message
  // would read it back.
  static MessageRecord claimed_record(const NewMessage& m, int64_t now_ms) {
    MessageRecord r;
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

  // The message's recipient data updates the profile: time zone and locale when given, contacts per kind
  // (push tokens as a list, replaced whole). An erased recipient who appears again starts afresh.
  static void merge_recipient(Connection& c, const std::string& id, const std::string& recipient_json, int64_t now_ms) {
    nlohmann::json incoming = nlohmann::json::parse(recipient_json, nullptr, false);
    if (!incoming.is_object()) return;
    nlohmann::json contacts = nlohmann::json::object();
    std::string tz, locale, stored_contacts;
    bool current = false;  // stored and not erased
    Statement& s =
        c.prepare("SELECT timezone, locale, contacts, erased_at IS NULL FROM recipients WHERE id = ?1").bind(1, id);
    if (s.step()) {
      tz = s.text(0);
      locale = s.text(1);
      stored_contacts = s.text(2);
      current = s.int64(3) != 0;
      contacts = nlohmann::json::parse(stored_contacts, nullptr, false);
      if (!contacts.is_object()) contacts = nlohmann::json::object();
    }
    s.run();
    const std::string stored_tz = tz, stored_locale = locale;
    if (incoming.contains("timezone") && incoming["timezone"].is_string()) tz = incoming["timezone"];
    if (incoming.contains("locale") && incoming["locale"].is_string()) locale = incoming["locale"];
    if (incoming.contains("contacts") && incoming["contacts"].is_object())
      for (auto it = incoming["contacts"].begin(); it != incoming["contacts"].end(); ++it) contacts[it.key()] = *it;
    std::string merged_contacts = contacts.dump();
    // A recipient who comes back with what is stored already (the usual case) costs no write.
    if (current && tz == stored_tz && locale == stored_locale && merged_contacts == stored_contacts) return;
    c.prepare(
         "INSERT INTO recipients(id, timezone, locale, contacts, updated_at, erased_at) VALUES(?1, ?2, ?3, ?4, ?5, NULL) "
         "ON CONFLICT(id) DO UPDATE SET timezone = ?2, locale = ?3, contacts = ?4, updated_at = ?5, erased_at = NULL")
        .bind(1, id)
        .bind(2, tz)
        .bind(3, locale)
        .bind(4, merged_contacts)
        .bind(5, now_ms)
        .exec();
  }

  void submit(std::function<void(Connection&)> apply, std::function<void(bool)> complete) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) {
        if (complete) complete(false);
        return;
      }
      queue_.push_back({std::move(apply), std::move(complete)});
    }
    wake_.notify_one();
  }

  bool submit_and_wait(std::function<void(Connection&)> apply) {
    std::promise<bool> done;
    auto future = done.get_future();
    submit(std::move(apply), [&done](bool ok) { done.set_value(ok); });
    return future.get();
  }

  // SQLite's WAL hook: runs on the writer thread after each commit with the WAL's size in frames.
  static int on_wal_commit(void* self, sqlite3*, const char*, int frames) {
    if (frames >= kCheckpointFrames) static_cast<SqliteStore*>(self)->checkpoint_wake_.notify_one();
    return SQLITE_OK;
  }

  // PASSIVE: copies what no reader still needs and never blocks the writer or readers; the WAL starts over
  // from the beginning once a checkpoint has copied all of it.
  void checkpoint_loop() {
    std::unique_ptr<Connection> c;
    try {
      c = std::make_unique<Connection>(options_.path, false);
      // A connection opens the WAL at its first read; until then a checkpoint finds no WAL and does nothing.
      c->exec("PRAGMA journal_mode=WAL");
    } catch (const std::exception& e) {
      log::error("store", std::string("no checkpoints: ") + e.what());
      return;
    }
    std::unique_lock lock(checkpoint_mutex_);
    while (!checkpoint_stopping_) {
      checkpoint_wake_.wait_for(lock, std::chrono::seconds(1));
      if (checkpoint_stopping_) break;
      lock.unlock();
      int rc = sqlite3_wal_checkpoint_v2(c->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      if (rc != SQLITE_OK && rc != SQLITE_BUSY) log::warn("store", std::string("checkpoint: ") + sqlite3_errstr(rc));
      lock.lock();
    }
  }

  // The group commit: take everything queued, apply each in its own savepoint (one bad operation does
  // not sink the others), commit once, then complete them all with the commit's verdict.
  void write_loop() {
    std::vector<Operation> group;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty() && stopping_) return;
        while (!queue_.empty() && static_cast<int>(group.size()) < options_.max_group) {
          group.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      std::vector<char> op_ok(group.size(), 0);
      bool committed = false;
      // Transaction control is prepared once like any statement: parsing SAVEPOINT and RELEASE for every
      // operation cost the writer more than some operations themselves.
      try {
        writer_conn_.moved = {};
        writer_conn_.prepare("BEGIN IMMEDIATE").exec();
        for (size_t i = 0; i < group.size(); ++i) {
          writer_conn_.prepare("SAVEPOINT op").exec();
          auto moved_before = writer_conn_.moved;
          auto roll_back_op = [&](const char* what) {
            log::error("store", std::string("operation failed, rolled back: ") + what);
            writer_conn_.prepare("ROLLBACK TO op").exec();
            writer_conn_.prepare("RELEASE op").exec();
            writer_conn_.moved = moved_before;
          };
          try {
            group[i].apply(writer_conn_);
            writer_conn_.prepare("RELEASE op").exec();
            op_ok[i] = 1;
          } catch (const SqliteError& e) {
            // Some errors (SQLITE_FULL, SQLITE_IOERR) make SQLite roll back the whole transaction itself:
            // then there is no savepoint left to return to, and the group fails as a whole below.
            if (sqlite3_get_autocommit(writer_conn_.raw())) throw;
            {
              std::lock_guard lock(error_mutex_);
              last_write_error_ = sqlite3_errstr(e.code & 0xff);
            }
            roll_back_op(e.what());
          } catch (const std::exception& e) {
            // Not SQLite's (data the operation could not handle): that operation alone fails, like a
            // constraint would, and the writer goes on; an exception leaving this thread would end the process.
            roll_back_op(e.what());
          }
        }
        writer_conn_.prepare("COMMIT").exec();
        committed = true;
        commits_.fetch_add(1, std::memory_order_relaxed);
        for (size_t st = 0; st < state_counts_.size(); ++st)
          state_counts_[st].fetch_add(writer_conn_.moved[st], std::memory_order_relaxed);
        int pages = 0, highwater = 0;
        sqlite3_db_status(writer_conn_.raw(), SQLITE_DBSTATUS_CACHE_WRITE, &pages, &highwater, /*reset=*/1);
        pages_written_.fetch_add(pages, std::memory_order_relaxed);
      } catch (const SqliteError& e) {
        // Disk full, I/O error: nothing of this group is durable, and every caller is told so.
        log::error("store", std::string("group commit failed: ") + e.what());
        sqlite3_exec(writer_conn_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
        std::lock_guard lock(error_mutex_);
        last_write_error_ = sqlite3_errstr(e.code & 0xff);
      }
      // A caller that does not wait for the outcome passes no completion.
      for (size_t i = 0; i < group.size(); ++i)
        if (group[i].complete) {
          // A completion belongs to the caller; one that throws must not take the writer, and every other
          // caller's answer, with it.
          try {
            group[i].complete(committed && op_ok[i]);
          } catch (const std::exception& e) {
            log::error("store", std::string("a write's completion failed: ") + e.what());
          }
        }
      group.clear();
    }
  }

  // Runs `fn` on a pooled read connection (WAL: readers never block the writer).
  template <class T>
  T read(const std::function<T(Connection&)>& fn) {
    std::unique_ptr<Connection> c;
    {
      std::lock_guard lock(readers_mutex_);
      if (!readers_.empty()) {
        c = std::move(readers_.back());
        readers_.pop_back();
      }
    }
    if (!c) c = std::make_unique<Connection>(options_.path, true);
    T result = fn(*c);
    std::lock_guard lock(readers_mutex_);
    readers_.push_back(std::move(c));
    return result;
  }

  // ---- Two-way ----
  void apply_inbound(std::vector<InboundWrites> writes, int64_t now_ms,
                     std::function<void(bool, int)> done) override {
    auto shared = std::make_shared<std::vector<InboundWrites>>(std::move(writes));
    auto applied = std::make_shared<int>(0);
    submit(
        [this, shared, applied, now_ms](Connection& c) {
          *applied = 0;
          for (const InboundWrites& w : *shared)
            if (apply_inbound_one(c, w, now_ms)) ++*applied;
        },
        [applied, done = std::move(done)](bool ok) {
          if (done) done(ok, ok ? *applied : 0);
        });
  }

  std::optional<MessageRecord> find_by_provider_id(const std::string& provider_message_id) override {
    if (provider_message_id.empty()) return std::nullopt;
    return read<std::optional<MessageRecord>>([&](Connection& c) -> std::optional<MessageRecord> {
      static const std::string sql = std::string(kSelectMessage) + " WHERE provider_message_id = ?1 LIMIT 1";
      Statement& s = c.prepare(sql.c_str()).bind(1, provider_message_id);
      std::optional<MessageRecord> r;
      if (s.step()) r = read_message(s);
      s.run();
      return r;
    });
  }

  std::string recipient_by_contact(const std::string& contact) override {
    if (contact.empty()) return "";
    return read<std::string>([&](Connection& c) {
      // Contacts are few per profile; a scan of json_each is fine at single-node scale (an index on a
      // contact table would serve many nodes).
      Statement& s = c.prepare(
                          "SELECT r.id FROM recipients r, json_each(r.contacts) j "
                          "WHERE r.erased_at IS NULL AND j.type = 'text' AND j.value = ?1 "
                          "ORDER BY r.updated_at DESC LIMIT 1")
                         .bind(1, contact);
      std::string id = s.step() ? s.text(0) : std::string();
      s.run();
      return id;
    });
  }

  std::optional<Question> open_question(const std::string& contact, const std::string& channel) override {
    return read<std::optional<Question>>([&](Connection& c) -> std::optional<Question> {
      Statement& s = c.prepare("SELECT message_id, options, at FROM questions WHERE contact = ?1 AND channel = ?2")
                         .bind(1, contact)
                         .bind(2, channel);
      std::optional<Question> q;
      if (s.step()) q = Question{s.text(0), s.text(1), s.int64(2)};
      s.run();
      return q;
    });
  }

  void put_question(const std::string& contact, const std::string& channel, Question q,
                    std::function<void(bool)> done) override {
    submit(
        [contact, channel, q](Connection& c) {
          c.prepare(
               "INSERT INTO questions(contact, channel, message_id, options, at) VALUES(?1, ?2, ?3, ?4, ?5) "
               "ON CONFLICT(contact, channel) DO UPDATE SET message_id = ?3, options = ?4, at = ?5")
              .bind(1, contact)
              .bind(2, channel)
              .bind(3, q.message_id)
              .bind(4, q.options_json)
              .bind(5, q.at_ms)
              .exec();
        },
        [done = std::move(done)](bool ok) {
          if (done) done(ok);
        });
  }

  // One inbound event's writes; false when (source, event_id) was seen before (nothing written).
  bool apply_inbound_one(Connection& c, const InboundWrites& w, int64_t now_ms) {
    if (!w.seen_event_id.empty()) {
      c.prepare("INSERT INTO inbound_seen(source, event_id, at) VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING")
          .bind(1, w.seen_source)
          .bind(2, w.seen_event_id)
          .bind(3, now_ms)
          .exec();
      if (c.changes() == 0) return false;
    }
    for (const auto& [recipient_id, r] : w.consent) {
      c.prepare(
           "INSERT INTO consent(recipient_id, channel, purpose, state, source, evidence, at) "
           "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")
          .bind(1, recipient_id)
          .bind(2, r.channel)
          .bind(3, core::to_string(r.purpose))
          .bind(4, policy::to_string(r.state))
          .bind(5, r.source)
          .bind(6, r.evidence)
          .bind(7, r.at_ms != 0 ? r.at_ms : now_ms)
          .exec();
    }
    for (const auto& sup : w.suppress) {
      c.prepare(
           "INSERT INTO suppressions(contact, reason, source, at) VALUES(?1, ?2, ?3, ?4) "
           "ON CONFLICT(contact) DO UPDATE SET reason = ?2, source = ?3, at = ?4")
          .bind(1, sup.contact)
          .bind(2, sup.reason)
          .bind(3, sup.source)
          .bind(4, sup.at_ms != 0 ? sup.at_ms : now_ms)
          .exec();
    }
    for (const auto& sup : w.unsuppress)
      c.prepare("DELETE FROM suppressions WHERE contact = ?1 AND source = ?2").bind(1, sup.contact).bind(2, sup.source).exec();
    for (const auto& e : w.events) {
      if (!e.message_id.empty()) {
        insert_event(c, e.message_id, e.event, now_ms);
        continue;
      }
      c.prepare("INSERT INTO events(message_id, type, at, detail, recipient_id) VALUES('', ?1, ?2, ?3, ?4)")
          .bind(1, e.event.type)
          .bind(2, e.event.at_ms != 0 ? e.event.at_ms : now_ms)
          .bind(3, e.event.detail_json)
          .bind(4, e.recipient_id)
          .exec();
    }
    if (!w.cancel_follow_ups_of.empty()) {
      std::vector<std::string> pending;
      Statement& q = c.prepare("SELECT id FROM messages WHERE parent_id = ?1 AND state = 'scheduled' ORDER BY id")
                         .bind(1, w.cancel_follow_ups_of);
      while (q.step()) pending.push_back(q.text(0));
      q.run();
      for (const auto& id : pending) {
        c.prepare("UPDATE messages SET state = 'cancelled', updated_at = ?2 WHERE id = ?1").bind(1, id).bind(2, now_ms).exec();
        c.move(State::scheduled, State::cancelled);
        insert_event(c, id, {"cancelled", R"({"reason":"answered"})"}, now_ms);
        insert_event(c, w.cancel_follow_ups_of,
                     {"follow_up_cancelled", nlohmann::json{{"follow_up_id", id}, {"reason", "answered"}}.dump()},
                     now_ms);
      }
    }
    for (const auto& f : w.follow_ups) {
      NewMessage m = f.message;
      std::string base = m.id;
      for (int n = 2; n < 100; ++n) {
        Statement& s = c.prepare("SELECT 1 FROM messages WHERE id = ?1").bind(1, m.id);
        bool taken = s.step();
        s.run();
        if (!taken) break;
        m.id = base + "~" + std::to_string(n);
      }
      if (m.id != base) {
        // The payload names the message: keep it the stored id (the dispatcher reads it from there).
        auto payload = nlohmann::json::parse(m.payload, nullptr, false);
        if (!payload.is_object()) continue;
        payload["id"] = m.id;
        m.payload = core::canonical_json(payload);
        m.payload_hash = transport::sha256_hex(m.payload);
      }
      if (accept_one(c, m, now_ms).status != AcceptStatus::accepted) continue;
      c.prepare("UPDATE messages SET parent_id = ?2 WHERE id = ?1").bind(1, m.id).bind(2, f.parent_id).exec();
      nlohmann::json detail = {{"option", f.option}, {"follow_up_id", m.id}};
      // The payload's send_at is the instant core/inbound.cpp formatted (now + after).
      auto payload = nlohmann::json::parse(m.payload, nullptr, false);
      if (payload.is_object() && payload.contains("send_at")) detail["send_at"] = payload["send_at"];
      insert_event(c, f.parent_id, {"follow_up_scheduled", detail.dump()}, now_ms);
    }
    return true;
  }

  WriteStats write_stats() override {
    return {commits_.load(std::memory_order_relaxed), writer_conn_.statements_run(),
            pages_written_.load(std::memory_order_relaxed)};
  }

  std::string last_write_error() override {
    std::lock_guard lock(error_mutex_);
    return last_write_error_;
  }

  SqliteOptions options_;
  std::atomic<int64_t> commits_{0};
  std::array<std::atomic<int64_t>, std::size(kAllStates)> state_counts_{};
  std::atomic<int64_t> pages_written_{0};
  std::mutex error_mutex_;
  std::string last_write_error_;
  Connection writer_conn_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Operation> queue_;
  bool stopping_ = false;
  std::thread writer_;
  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<Connection>> readers_;
  std::mutex pending_slots_mutex_;
  std::unordered_map<std::string, std::vector<PendingSlot>> pending_slots_;
  uint64_t pending_slot_tokens_ = 0;
  // SQLite's default auto-checkpoint threshold (1000 frames, ~4 MiB of WAL).
  static constexpr int kCheckpointFrames = 1000;
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wake_;
  bool checkpoint_stopping_ = false;
  std::thread checkpointer_;
};

}  // namespace

std::unique_ptr<Store> open_sqlite(const SqliteOptions& options) { return std::make_unique<SqliteStore>(options); }

}  // namespace tayori::store
