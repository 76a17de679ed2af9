// The embedded Store: SqlStore (store/sql_store.hpp) on one SQLite file. What is SQLite's own lives here:
// opening the writer with WAL and the durability and cache settings, the migrations and the size limit,
// the checkpointer thread that keeps checkpoints out of the group commit, and the answers SqlStore's writer
// asks of its engine (how a group begins, whether a failure lost the transaction, pages written).
// sqlite3_preupdate_hook is declared only with this; Debian's libsqlite3 is built with it.
#define SQLITE_ENABLE_PREUPDATE_HOOK
#include "store/sqlite_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "common/log.hpp"
#include "common/thread_name.hpp"
#include "store/ops/messages.hpp"
#include "store/presence_filter.hpp"
#include "store/sql_store.hpp"
#include "store/sqlite/sqlite_connection.hpp"
#include "store/sqlite/sqlite_schema.hpp"
#include "store/sqlite/wal_batching_vfs.hpp"

namespace tayori::store {

namespace {

using sqlite::SqliteConnection;
using sqlite::SqliteStatement;

// The connections SqlBackend hands out are SqliteConnections: this backend opened them.
sqlite3* raw(sql::Connection& c) { return static_cast<SqliteConnection&>(c).raw(); }

// One process per data folder, held by an exclusive flock(2) on `<database>.lock` for the store's life. What
// this process keeps in memory of the file's rows (the presence filter) is right only while every write to the
// file is its own, so a second process must not start writing beside it. The kernel lets go when the process
// ends, however it ends, so a crash never leaves the folder locked.
class DataFolderLock {
 public:
  DataFolderLock() = default;
  DataFolderLock(const DataFolderLock&) = delete;
  DataFolderLock& operator=(const DataFolderLock&) = delete;
  ~DataFolderLock() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Throws std::runtime_error naming the file (and the holder's pid, which it writes there) when another
  // process, or another store of this one, holds it.
  void take(const std::string& database) {
    const std::string path = database + ".lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char holder[32] = {0};
      ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
      ::close(fd_);
      fd_ = -1;
      std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : std::string("unknown");
      throw std::runtime_error(database + " is in use by another process (pid " + pid +
                               "): one tayori per SQLite data folder; several nodes share PostgreSQL instead "
                               "(store.backend: postgres)");
    }
    // The pid is only for the message a second process prints: the lock holds whether or not it is written.
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
  }

 private:
  int fd_ = -1;
};

class SqliteBackend final : public SqlBackend {
 public:
  explicit SqliteBackend(const SqliteOptions& options) : options_(options) {}

  ~SqliteBackend() override {
    {
      std::lock_guard lock(checkpoint_mutex_);
      checkpoint_stopping_ = true;
    }
    checkpoint_wake_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
  }

  std::unique_ptr<sql::Connection> open_writer() override {
    lock_.take(options_.path);
    // A commit's WAL frames go to the file in a few large writes (wal_batching_vfs.cpp), which is safe only when
    // every commit syncs the WAL before SQLite publishes its frames: with FULL.
    auto c = std::make_unique<SqliteConnection>(options_.path, false,
                                                options_.synchronous_full ? sqlite::wal_batching_vfs() : nullptr);
    c->exec("PRAGMA journal_mode=WAL");
    // FULL: in WAL mode the WAL is synced at every commit, so a commit that returned survives power loss.
    c->exec(options_.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // Small on purpose. Every commit ends in sqlite3PcacheTruncate, which walks the page cache's hash table
    // (pager_end_transaction -> pcache1TruncateUnsafe), so its cost grows with the cache, not with the
    // transaction: with 64 MiB it was 22% of the writer's CPU under the throughput bench (perf, DWARF
    // stacks), with 4 MiB it no longer shows. Pages that fall out are re-read from the OS page cache.
    c->exec("PRAGMA cache_size=-4096");
    // The per-operation savepoints keep a statement journal, which past 64 KiB spilled to a temporary file:
    // created, written and unlinked in two of every three group commits under the bench (strace -c: 86
    // openat/unlink per 130 fdatasync). A group's journal is bounded by max_group; memory holds it.
    c->exec("PRAGMA temp_store=MEMORY");
    // A WAL that grew past twice the restart length (a long reader held restarts off) is cut back to that at the
    // first commit that writes from its start again (between_groups); below it, commits write over blocks the
    // file has. 64 MiB by default.
    c->exec(("PRAGMA journal_size_limit=" + std::to_string(2 * int64_t{options_.wal_restart_frames} * page_size(*c)))
                .c_str());
    sqlite::migrate(*c, options_.path);
    if (options_.max_bytes > 0) limit_size(*c, options_.max_bytes);
    number_events(*c);
    watch_presence(*c);
    // Checkpoints run on their own thread and connection, not inside the commit that crossed the threshold
    // (SQLite's auto-checkpoint does that, and it stalled the group commit, and every 202 behind it, for the
    // time it took to copy the WAL into the database and fsync it). The hook replaces the auto-checkpoint.
    sqlite3_wal_hook(c->raw(), &SqliteBackend::on_wal_commit, this);
    checkpointer_ = std::thread([this] {
      name_this_thread("tayori-ckpt");
      checkpoint_loop();
    });
    return c;
  }

  std::unique_ptr<sql::Connection> open_reader() override {
    return std::make_unique<SqliteConnection>(options_.path, true);
  }

  void begin_group(sql::Connection& writer) override { writer.prepare("BEGIN IMMEDIATE").exec(); }

  // A deferred BEGIN takes the WAL read lock at the first SELECT and keeps it to COMMIT: one lock for a
  // decision's three reads instead of one each.
  bool begin_snapshot(sql::Connection& reader) override {
    reader.prepare("BEGIN").exec();
    return true;
  }
  void end_snapshot(sql::Connection& reader) override { reader.prepare("COMMIT").exec(); }

  // Some errors (SQLITE_FULL, SQLITE_IOERR) make SQLite roll back the whole transaction itself.
  bool transaction_lost(sql::Connection& writer, const sql::Error&) override {
    return sqlite3_get_autocommit(raw(writer)) != 0;
  }

  int64_t pages_written(sql::Connection& writer) override {
    int pages = 0, highwater = 0;
    sqlite3_db_status(raw(writer), SQLITE_DBSTATUS_CACHE_WRITE, &pages, &highwater, /*reset=*/1);
    return pages;
  }

  StateCounts initial_counts(sql::Connection& writer) override { return ops::count_by_state(writer); }

  PresenceFilter* presence_filter() override { return &presence_; }

  // SQLite writes a commit's frames at the start of the WAL again only when the writer begins its transaction
  // with every frame already copied into the database (https://sqlite.org/wal.html, "Avoiding Excessively Large
  // WAL Files"); the checkpointer, copying while the writer commits, never catches up under load, so the WAL
  // grew by every frame written: 550 MB after 200,000 messages, each commit extending the file and its
  // fdatasync writing the inode too. Once the WAL holds wal_restart_frames, the writer checkpoints itself between
  // groups in RESTART mode: it copies what is left, waits (briefly) for readers to leave the WAL, and the
  // next commit writes from the start. The checkpointer's checkpoint under way makes it try after the next group;
  // a reader that kept it waiting the whole 2 ms holds an old snapshot (a long read), and trying again at every
  // group would add that wait to each: then it tries after kRestartBackoffGroups groups.
  void between_groups(sql::Connection& writer) override {
    if (!restart_wanted_) return;
    if (groups_until_restart_ > 0) {
      --groups_until_restart_;
      return;
    }
    sqlite3* db = raw(writer);
    restart_gave_up_ = false;
    sqlite3_busy_handler(db, &SqliteBackend::wait_briefly, this);
    int rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
    sqlite3_busy_timeout(db, SqliteConnection::kBusyTimeoutMs);
    if (rc == SQLITE_OK) restart_wanted_ = false;
    if (restart_gave_up_) groups_until_restart_ = kRestartBackoffGroups;
    if (options_.on_wal_restart) options_.on_wal_restart(rc);
  }

 private:
  // Events take their numbers from this connection's next_event_seq(), not from AUTOINCREMENT (SQLite
  // migration 12): one past the last number given, which is the larger of the highest event stored and the
  // last number purge saw before it deleted events (numbers_given), so that no number is given twice. Only the
  // writer's thread calls it; a group rolled back leaves a gap, which the feed's readers (who wait for numbers
  // above theirs) never notice.
  void number_events(SqliteConnection& c) {
    SqliteStatement last(c.raw(),
                         "SELECT MAX(COALESCE((SELECT MAX(seq) FROM events), 0), "
                         "COALESCE((SELECT last FROM numbers_given WHERE name = 'events'), 0))");
    last.step();
    last_event_seq_ = last.int64(0);
    int rc = sqlite3_create_function_v2(c.raw(), "next_event_seq", 0, SQLITE_UTF8 | SQLITE_DIRECTONLY, this,
                                        &SqliteBackend::on_next_event_seq, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) throw std::runtime_error(std::string("next_event_seq(): ") + sqlite3_errstr(rc));
  }

  // The restart's busy handler: readers' transactions are short, so up to 2 ms in steps of 50 us.
  static int wait_briefly(void* self, int tries) {
    if (tries >= 40) {
      static_cast<SqliteBackend*>(self)->restart_gave_up_ = true;
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    return 1;
  }

  static void on_next_event_seq(sqlite3_context* context, int, sqlite3_value**) {
    auto* backend = static_cast<SqliteBackend*>(sqlite3_user_data(context));
    sqlite3_result_int64(context, ++backend->last_event_seq_);
  }

  // The tables the presence filter counts, and the column each is keyed by (presence_filter.hpp).
  struct Watched {
    const char* table;
    const char* key_column;
    PresenceFilter::Table counted_as;
    int key_index = -1;  // the column's position, as the preupdate hook numbers them (declaration order)
  };

  // Counts the rows there are, then has the writer's connection report every change to them: only this
  // process writes the file (one process per data folder), and only through this connection.
  void watch_presence(SqliteConnection& c) {
    for (Watched& w : watched_) {
      SqliteStatement columns(c.raw(), ("SELECT cid FROM pragma_table_info('" + std::string(w.table) +
                                        "') WHERE name = '" + w.key_column + "'")
                                           .c_str());
      if (!columns.step()) throw std::runtime_error(std::string("no column ") + w.key_column + " in " + w.table);
      w.key_index = static_cast<int>(columns.int64(0));
      SqliteStatement rows(c.raw(), ("SELECT " + std::string(w.key_column) + " FROM " + w.table).c_str());
      while (rows.step()) presence_.loaded(w.counted_as, rows.text(0));
    }
    sqlite3_preupdate_hook(c.raw(), &SqliteBackend::on_preupdate, this);
  }

  // SQLite's preupdate hook: on the writer's thread, before each row of a statement changes. An UPDATE that
  // rewrote a row's key would move it from one key to the other (none does today: an erased recipient's
  // suppression is deleted and inserted again under its erased form); one that keeps the key changes nothing.
  static void on_preupdate(void* self, sqlite3* db, int op, const char* schema, const char* table, sqlite3_int64,
                           sqlite3_int64) {
    auto* backend = static_cast<SqliteBackend*>(self);
    if (std::strcmp(schema, "main") != 0) return;
    for (const Watched& w : backend->watched_) {
      if (std::strcmp(table, w.table) != 0) continue;
      std::string_view before =
          op == SQLITE_INSERT ? std::string_view() : key_of(db, w.key_index, sqlite3_preupdate_old);
      std::string_view after =
          op == SQLITE_DELETE ? std::string_view() : key_of(db, w.key_index, sqlite3_preupdate_new);
      if (op == SQLITE_UPDATE && before == after) return;
      if (op != SQLITE_INSERT) backend->presence_.deleted(w.counted_as, before);
      if (op != SQLITE_DELETE) backend->presence_.inserted(w.counted_as, after);
      return;
    }
  }

  static std::string_view key_of(sqlite3* db, int column, int (*value)(sqlite3*, int, sqlite3_value**)) {
    sqlite3_value* v = nullptr;
    if (value(db, column, &v) != SQLITE_OK || !v) return {};
    const unsigned char* text = sqlite3_value_text(v);
    return text ? std::string_view(reinterpret_cast<const char*>(text), static_cast<size_t>(sqlite3_value_bytes(v)))
                : std::string_view();
  }

  // A database already larger than the limit stays readable; only growth fails (SQLITE_FULL).
  static int64_t page_size(SqliteConnection& c) {
    SqliteStatement size(c.raw(), "PRAGMA page_size");
    size.step();
    return std::max<int64_t>(512, size.int64(0));
  }

  static void limit_size(SqliteConnection& c, int64_t max_bytes) {
    int64_t pages = std::max<int64_t>(1, max_bytes / page_size(c));
    c.exec(("PRAGMA max_page_count = " + std::to_string(pages)).c_str());
  }

  // SQLite's WAL hook: runs on the writer thread after each commit with the WAL's size in frames.
  // Wakes the checkpointer once the WAL holds kCheckpointFrames, then again each time it has grown by
  // kCheckpointStep. A checkpoint cannot copy what a reader may still need, so under load the WAL stays over
  // the threshold for a while; waking at every commit past it ran a checkpoint (a scan of the WAL index and
  // a sync of the database file) per commit, and smaller groups doubled the checkpointer's CPU per message.
  // frames_at_wake_ needs no lock: this hook is all that touches it.
  static int on_wal_commit(void* self, sqlite3*, const char*, int frames) {
    auto* backend = static_cast<SqliteBackend*>(self);
    if (frames < backend->frames_at_wake_) backend->frames_at_wake_ = 0;  // the WAL started over
    if (frames >= backend->options_.wal_restart_frames) backend->restart_wanted_ = true;
    if (frames >= kCheckpointFrames && frames - backend->frames_at_wake_ >= kCheckpointStep) {
      backend->frames_at_wake_ = frames;
      backend->checkpoint_wake_.notify_one();
    }
    return SQLITE_OK;
  }

  // PASSIVE: copies what no reader still needs and never blocks the writer or readers; the WAL starts over
  // from the beginning once a checkpoint has copied all of it.
  void checkpoint_loop() {
    std::unique_ptr<SqliteConnection> c;
    try {
      c = std::make_unique<SqliteConnection>(options_.path, false);
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
      int wal_frames = -1, checkpointed = -1;
      int rc = sqlite3_wal_checkpoint_v2(c->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &checkpointed);
      if (rc != SQLITE_OK && rc != SQLITE_BUSY) log::warn("store", std::string("checkpoint: ") + sqlite3_errstr(rc));
      if (options_.on_checkpoint) options_.on_checkpoint(rc, wal_frames, checkpointed);
      lock.lock();
    }
  }

  SqliteOptions options_;
  DataFolderLock lock_;  // taken before the writer opens the file; the backend outlives every connection
  PresenceFilter presence_;
  Watched watched_[3] = {{"consent", "recipient_id", PresenceFilter::Table::consent},
                         {"suppressions", "contact", PresenceFilter::Table::suppressions},
                         {"cap_slots", "recipient_id", PresenceFilter::Table::cap_slots}};
  // SQLite's default auto-checkpoint threshold (1000 frames, ~4 MiB of WAL).
  static constexpr int kCheckpointFrames = 1000;
  static constexpr int kCheckpointStep = 256;
  // On the writer's thread only (on_wal_commit, between_groups, wait_briefly).
  static constexpr int kRestartBackoffGroups = 64;
  bool restart_wanted_ = false;
  bool restart_gave_up_ = false;  // the last restart's wait for readers ran out
  int groups_until_restart_ = 0;
  int64_t last_event_seq_ = 0;  // the last number next_event_seq() gave (number_events)
  int frames_at_wake_ = 0;  // the WAL's size when the writer last woke the checkpointer (on_wal_commit)
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wake_;
  bool checkpoint_stopping_ = false;
  std::thread checkpointer_;
};

}  // namespace

std::unique_ptr<Store> open_sqlite(const SqliteOptions& options) {
  return std::make_unique<SqlStore>(std::make_unique<SqliteBackend>(options), SqlStoreOptions{options.max_group});
}

}  // namespace tayori::store
