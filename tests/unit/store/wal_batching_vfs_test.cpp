// Tests for the store writer's VFS (gateway/store/sqlite/wal_batching_vfs.cpp) on real SQLite files: a commit's
// WAL frames reach the file in a few writes, and everything SQLite promises still holds: other connections read
// what was committed, the file survives a reopen (WAL recovery) and passes integrity_check, a transaction that
// spilled pages into the WAL rolls back cleanly, and a write the file refuses fails the commit and loses nothing
// committed before it.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "store/sqlite/sqlite_connection.hpp"
#include "store/sqlite/wal_batching_vfs.hpp"
#include "test_support.hpp"

namespace tayori::store::sqlite {
namespace {

using test::query_column;
using test::TempDir;

// ---- A VFS that refuses writes on demand, to put below the batching one ------------------------------------

std::atomic<bool> g_refuse_writes{false};
sqlite3_vfs g_refusing{};
int g_real_file_size = 0;  // the default VFS's szOsFile, rounded up to 8

// A file of the refusing VFS is the default VFS's own file, followed by a copy of its methods in which xWrite
// is refusing_write, and the methods it had.
struct RefusingMethods {
  sqlite3_io_methods methods;
  const sqlite3_io_methods* original;
};
RefusingMethods* refusing_methods(sqlite3_file* f) {
  return reinterpret_cast<RefusingMethods*>(reinterpret_cast<char*>(f) + g_real_file_size);
}

int refusing_write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  if (g_refuse_writes.load()) return SQLITE_IOERR_WRITE;
  return refusing_methods(f)->original->xWrite(f, data, amount, offset);
}

int refusing_open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  auto* real = static_cast<sqlite3_vfs*>(vfs->pAppData);
  if (int rc = real->xOpen(real, name, file, flags, out_flags); rc != SQLITE_OK) return rc;
  RefusingMethods* m = refusing_methods(file);
  m->original = file->pMethods;
  m->methods = *file->pMethods;
  m->methods.xWrite = refusing_write;
  file->pMethods = &m->methods;
  return SQLITE_OK;
}

// "refusing" over the default VFS, and "batching-over-refusing" over that.
void register_refusing_vfs() {
  configure_sqlite_once();
  if (sqlite3_vfs_find("refusing")) return;
  sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
  g_real_file_size = (real->szOsFile + 7) / 8 * 8;
  g_refusing = *real;
  g_refusing.zName = "refusing";
  g_refusing.pAppData = real;
  g_refusing.szOsFile = g_real_file_size + static_cast<int>(sizeof(RefusingMethods));
  g_refusing.xOpen = refusing_open;
  sqlite3_vfs_register(&g_refusing, 0);
  register_wal_batching_vfs("batching-over-refusing", "refusing");
}

// ---- Helpers ----------------------------------------------------------------------------------------------

void exec(SqliteConnection& c, const std::string& sql) { c.exec(sql.c_str()); }

int64_t count_rows(const std::string& path) { return std::stoll(query_column(path, "SELECT count(*) FROM t").at(0)); }

// A writer as the store opens it: WAL, synchronous=FULL, through `vfs`.
std::unique_ptr<SqliteConnection> open_writer(const std::string& path, const char* vfs) {
  auto c = std::make_unique<SqliteConnection>(path, false, vfs);
  c->exec("PRAGMA journal_mode=WAL");
  c->exec("PRAGMA synchronous=FULL");
  c->exec("PRAGMA wal_autocheckpoint=0");  // the WAL keeps every frame: reopening must recover them all
  c->exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)");
  return c;
}

void insert_rows(SqliteConnection& c, int from, int count) {
  exec(c, "WITH RECURSIVE n(i) AS (SELECT " + std::to_string(from) + " UNION ALL SELECT i + 1 FROM n WHERE i < " +
              std::to_string(from + count - 1) + ") INSERT INTO t SELECT i, printf('%0800d', i) FROM n");
}

// ---- Tests ------------------------------------------------------------------------------------------------

TEST(WalBatchingVfs, ACommitsFramesReachTheFileInAFewWritesAndEveryConnectionReadsThem) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto writer = open_writer(path, wal_batching_vfs());
  const WalBatchingCounts before = wal_batching_counts();
  exec(*writer, "BEGIN IMMEDIATE");
  insert_rows(*writer, 1, 2000);  // about 400 pages
  exec(*writer, "COMMIT");
  const WalBatchingCounts after = wal_batching_counts();
  const int64_t asked = after.asked - before.asked, issued = after.issued - before.issued;
  // Two writes per frame asked; at most 31 frames per write issued.
  EXPECT_GT(asked, 700);
  EXPECT_LE(issued, asked / 40) << "asked " << asked << ", issued " << issued;
  EXPECT_EQ(count_rows(path), 2000);  // a reader with the default VFS, its own file handles

  for (int i = 0; i < 20; ++i) insert_rows(*writer, 3000 + i, 1);  // small commits, one after another
  EXPECT_EQ(count_rows(path), 2020);
  writer.reset();  // closing the last connection checkpoints the WAL into the database
  EXPECT_EQ(query_column(path, "PRAGMA integrity_check").at(0), "ok");
  EXPECT_EQ(count_rows(path), 2020);
}

TEST(WalBatchingVfs, AReopenedFileRecoversEveryCommitFromItsWal) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto writer = open_writer(path, wal_batching_vfs());
  for (int i = 0; i < 10; ++i) insert_rows(*writer, i * 100, 100);
  // A second connection that stays open keeps the WAL when the writer closes, as after a crash.
  SqliteConnection holder(path, true);
  EXPECT_EQ(count_rows(path), 1000);
  writer.reset();
  auto again = open_writer(path, wal_batching_vfs());
  insert_rows(*again, 5000, 10);
  EXPECT_EQ(count_rows(path), 1010);
  EXPECT_EQ(query_column(path, "PRAGMA integrity_check").at(0), "ok");
}

TEST(WalBatchingVfs, ATransactionThatSpilledIntoTheWalRollsBackAndTheNextCommits) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto writer = open_writer(path, wal_batching_vfs());
  insert_rows(*writer, 1, 10);
  // A cache of 20 pages makes SQLite write dirty pages to the WAL before the commit, and read them back.
  writer->exec("PRAGMA cache_size=20");
  exec(*writer, "BEGIN IMMEDIATE");
  const int64_t asked_before = wal_batching_counts().asked;
  insert_rows(*writer, 100, 3000);
  ASSERT_GT(wal_batching_counts().asked, asked_before) << "nothing spilled: the test would prove nothing";
  EXPECT_EQ(std::stoll(query_column(path, "SELECT count(*) FROM t").at(0)), 10);  // not committed: not seen
  exec(*writer, "ROLLBACK");
  exec(*writer, "BEGIN IMMEDIATE");
  insert_rows(*writer, 10000, 3000);
  exec(*writer, "COMMIT");
  EXPECT_EQ(count_rows(path), 3010);
  EXPECT_EQ(query_column(path, "PRAGMA integrity_check").at(0), "ok");
}

TEST(WalBatchingVfs, AWriteTheFileRefusesFailsTheCommitAndLosesNothingCommittedBefore) {
  register_refusing_vfs();
  TempDir dir;
  const std::string path = dir.file("store.db");
  auto writer = open_writer(path, "batching-over-refusing");
  insert_rows(*writer, 1, 100);

  g_refuse_writes = true;
  exec(*writer, "BEGIN IMMEDIATE");
  insert_rows(*writer, 1000, 100);  // gathered, not yet sent: nothing fails until the commit sends it
  try {
    exec(*writer, "COMMIT");
    ADD_FAILURE() << "the commit succeeded although its frames were never written";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("disk I/O error"), std::string::npos) << e.what();
  }
  g_refuse_writes = false;
  if (!sqlite3_get_autocommit(writer->raw())) exec(*writer, "ROLLBACK");
  EXPECT_EQ(count_rows(path), 100);

  insert_rows(*writer, 2000, 100);
  EXPECT_EQ(count_rows(path), 200);
  writer.reset();
  EXPECT_EQ(query_column(path, "PRAGMA integrity_check").at(0), "ok");
  EXPECT_EQ(count_rows(path), 200);
}

// Registering the VFS looks SQLite's default VFS up, which initialises SQLite; its memory statistics (one
// process-wide mutex around every allocation, sqlite_connection.cpp) can only be turned off before that. Run in
// a process of its own, where nothing has initialised SQLite yet.
// Opens a writer through the VFS in a fresh process and exits 0 when SQLite counts no memory (statistics off).
[[noreturn]] void exit_with_memory_statistics_state() {
  TempDir dir;
  auto writer = open_writer(dir.file("store.db"), wal_batching_vfs());
  insert_rows(*writer, 1, 10);
  sqlite3_int64 used = -1;
  sqlite3_int64 highwater = -1;
  sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used, &highwater, 0);
  std::exit(used == 0 ? 0 : 1);
}

TEST(WalBatchingVfs, RegisteringItLeavesSqlitesMemoryStatisticsOff) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(exit_with_memory_statistics_state(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace tayori::store::sqlite
