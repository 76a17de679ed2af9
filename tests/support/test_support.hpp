// Helpers shared by the unit tests: a fresh temporary folder, a SQLite Store opened in one per test (with
// waiting wrappers for its asynchronous operations), and a little raw SQLite for looking at the file
// behind the Store's back.
#ifndef TAYORI_TESTS_SUPPORT_TEST_SUPPORT_HPP
#define TAYORI_TESTS_SUPPORT_TEST_SUPPORT_HPP

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "store/sqlite_store.hpp"
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
#include "pg_cluster.hpp"
#include "store/postgres/pg_store.hpp"
#endif

namespace tayori::test {

// A folder made afresh (mkdtemp) and removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "tayori_test_") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `sql` (several statements may follow one another) on the SQLite file at `path`, creating it if need be.
inline void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string why = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << why;
}

// The first column of every row `sql` returns on the SQLite file at `path`, opened read-only.
inline std::vector<std::string> query_column(const std::string& path, const std::string& sql, int column = 0) {
  std::vector<std::string> out;
  sqlite3* db = nullptr;
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK) << path;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql;
  while (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(st, column);
    out.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

// The file's PRAGMA user_version (the Store's schema version); -1 if it cannot be read.
inline int64_t user_version(const std::string& path) {
  auto rows = query_column(path, "PRAGMA user_version");
  return rows.size() == 1 ? std::stoll(rows[0]) : -1;
}

// Undoes SQLite migration 11 and PostgreSQL migration 6 (a message's events indexed by its number, not its id), for
// a test that puts a store back to an older version to see a migration run: the migrations it then runs again
// from there add those columns, which must not exist yet.
inline constexpr const char* kEventsByMessageIdSqlite =
    "DROP INDEX events_message; ALTER TABLE events DROP COLUMN message_seq; "
    "CREATE INDEX events_message ON events(message_id, seq);";
inline constexpr const char* kEventsByMessageIdPostgres =
    "ALTER TABLE events DROP COLUMN message_seq; ALTER TABLE messages DROP COLUMN seq; "
    "CREATE INDEX events_message ON events(message_id, seq);";

// The schema exactly as migration 1 of the first release shipped it (no recipients, consent, suppressions,
// cap slots, no messages.recipient_id), without rows: a test adds its own, then `PRAGMA user_version = 1`.
// A copy of the store's migration 1 on purpose: an upgrade test must start from what was shipped, even if
// that migration's text is later edited.
inline constexpr const char* kStoreSchemaV1 = R"sql(
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
)sql";

// One member of each element, in order (the ids of some records, say), so a whole list compares at once.
template <typename T, typename M>
std::vector<M> pluck(const std::vector<T>& items, M T::*member) {
  std::vector<M> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(item.*member);
  return out;
}

// The types of a timeline, in order.
inline std::vector<std::string> event_types(const std::vector<store::TimelineEvent>& events) {
  return pluck(events, &store::TimelineEvent::type);
}

// The engines the store's tests run on: SQLite in unit_tests; PostgreSQL in pg_store_tests, which compiles the
// same test files with TAYORI_STORE_TESTS_ON_POSTGRES and one throw-away cluster (tests/support/pg_cluster.hpp).
enum class StoreBackend { sqlite, postgres };

inline std::string backend_name(const ::testing::TestParamInfo<StoreBackend>& info) {
  return info.param == StoreBackend::sqlite ? "sqlite" : "postgres";
}

// Instantiates a store test suite (TEST_P on StoreBackend) on this binary's engine: `Engine/Suite.Test/sqlite`
// in unit_tests, `.../postgres` in pg_store_tests.
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
#define TAYORI_STORE_ENGINE_SUITE(Suite)                                                                    \
  INSTANTIATE_TEST_SUITE_P(Engine, Suite, ::testing::Values(::tayori::test::StoreBackend::postgres), \
                           ::tayori::test::backend_name)
#else
#define TAYORI_STORE_ENGINE_SUITE(Suite)                                                                  \
  INSTANTIATE_TEST_SUITE_P(Engine, Suite, ::testing::Values(::tayori::test::StoreBackend::sqlite), \
                           ::tayori::test::backend_name)
#endif

// A SQLite Store on a real file (path_) in a fresh folder (dir_) per test. Each wrapper waits for the
// operation's completion (the commit) and checks that it succeeded.
class StoreFixture : public ::testing::Test {
 protected:
  explicit StoreFixture(const std::string& prefix) : temp_(prefix) {}
  void SetUp() override { open(); }
  void TearDown() override { store_.reset(); }

  // The engine under test. A fixture run on both (TEST_P) returns its parameter.
  virtual StoreBackend backend() const { return StoreBackend::sqlite; }

  // Opens the store: the same file, or the same PostgreSQL database, every time in one test.
  void open() {
    if (backend() == StoreBackend::sqlite) {
      store_ = store::open_sqlite({path_});
      return;
    }
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
    if (pg_uri_.empty()) pg_uri_ = tayori::testing::shared_pg_cluster().fresh_database("store");
    store::PostgresOptions options;
    options.uri = pg_uri_;
    options.pool_size = 4;
    options.node_id = "test-node";
    store_ = store::open_postgres(options);
#else
    FAIL() << "this test binary has no PostgreSQL (pg_store_tests has)";
#endif
  }
  // Closes the store and opens it again (what survives a restart).
  void reopen() {
    store_.reset();
    open();
  }
  // SQLite: closes the store and opens it again, unable to grow past `max_bytes` (store.max_size): a write past
  // it fails like a full disk.
  void reopen_limited_to(int64_t max_bytes) {
    store_.reset();
    store::SqliteOptions options;
    options.path = path_;
    options.max_bytes = max_bytes;
    store_ = store::open_sqlite(options);
  }

  // Starts an operation with the completion it is given, waits for it and checks that it succeeded.
  static void await(const std::function<void(std::function<void(Result<void>)>)>& start) {
    std::promise<Result<void>> done;
    auto f = done.get_future();
    start([&done](Result<void> verdict) { done.set_value(std::move(verdict)); });
    Result<void> verdict = f.get();
    EXPECT_TRUE(verdict.ok()) << verdict.error().message;
  }
  // The same for a completion handed a value; returns the value (a default one when the write failed).
  template <typename T>
  static T await(const std::function<void(std::function<void(Result<T>)>)>& start) {
    std::promise<Result<T>> done;
    auto f = done.get_future();
    start([&done](Result<T> value) { done.set_value(std::move(value)); });
    Result<T> value = f.get();
    EXPECT_TRUE(value.ok()) << value.error().message;
    return value ? std::move(value).value() : T{};
  }

  std::vector<store::AcceptResult> accept(std::vector<store::NewMessage> batch, int64_t now_ms) {
    return await<std::vector<store::AcceptResult>>(
        [&](auto done) { store_->accept(std::move(batch), now_ms, std::move(done)); });
  }
  void apply(store::Transition t, int64_t now_ms) {
    await([&](auto done) { store_->apply(std::move(t), now_ms, std::move(done)); });
  }
  void put_recipient(store::RecipientProfile p, int64_t now_ms) {
    await([&](auto done) { store_->put_recipient(std::move(p), now_ms, std::move(done)); });
  }
  bool erase(const std::string& recipient_id, int64_t now_ms) {
    return await<bool>([&](auto done) { store_->erase_recipient(recipient_id, now_ms, std::move(done)); });
  }
  void suppress(policy::Suppression s) {
    await([&](auto done) { store_->add_suppression(std::move(s), std::move(done)); });
  }

#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
  // The name of the test's own database, out of its URI.
  std::string pg_database() const {
    std::string database = pg_uri_.substr(std::string("postgresql:///").size());
    return database.substr(0, database.find('?'));
  }
#endif

  // Runs SQL on the store's database behind its back, on a connection of its own (DDL a test needs, such as
  // a trigger that makes one write fail). `sqlite_sql` on SQLite, `postgres_sql` on PostgreSQL.
  void run_sql_behind(const std::string& sqlite_sql, const std::string& postgres_sql) {
    if (backend() == StoreBackend::sqlite) return exec_sql(path_, sqlite_sql);
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
    tayori::testing::shared_pg_cluster().execute(postgres_sql, pg_database());
#else
    (void)postgres_sql;
    FAIL() << "this test binary has no PostgreSQL (pg_store_tests has)";
#endif
  }

  // The first column of every row `sql` returns, as text, in byte order, joined by commas.
  std::string sorted_rows(const std::string& sql) {
    if (backend() == StoreBackend::sqlite) {
      std::vector<std::string> rows = query_column(path_, sql);
      std::sort(rows.begin(), rows.end());
      std::string out;
      for (const auto& row : rows) out += (out.empty() ? "" : ",") + row;
      return out;
    }
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
    return tayori::testing::shared_pg_cluster().execute(
        "SELECT COALESCE(string_agg(r, ',' ORDER BY r COLLATE \"C\"), '') FROM (" + sql + ") AS q(r)", pg_database());
#else
    ADD_FAILURE() << "this test binary has no PostgreSQL (pg_store_tests has)";
    return "";
#endif
  }

  // Every value of every row of every table of the store's database, as text, one table after another: a
  // test of erasure searches it for a contact point or a reply, which cannot then hide in a table it forgot.
  // (PostgreSQL: query_to_xml writes a table's rows; an `&`, `<` or `>` in a value comes out escaped.)
  std::string all_text() {
    if (backend() == StoreBackend::sqlite) {
      std::string out;
      for (const auto& table : query_column(path_, "SELECT name FROM sqlite_master WHERE type = 'table'")) {
        std::string columns = "''";
        for (const auto& column : query_column(path_, "SELECT name FROM pragma_table_info('" + table + "')"))
          columns += " || ' ' || COALESCE(CAST(\"" + column + "\" AS TEXT), '')";
        for (const auto& row : query_column(path_, "SELECT " + columns + " FROM \"" + table + "\""))
          out += table + ": " + row + "\n";
      }
      return out;
    }
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
    return tayori::testing::shared_pg_cluster().execute(
        "SELECT string_agg(query_to_xml(format('SELECT * FROM %I', table_name), true, false, '')::text, E'\\n') "
        "FROM information_schema.tables WHERE table_schema = 'public'",
        pg_database());
#else
    ADD_FAILURE() << "this test binary has no PostgreSQL (pg_store_tests has)";
    return "";
#endif
  }

 private:
  TempDir temp_;  // declared first: outlives the store opened in it

 protected:
  std::filesystem::path dir_ = temp_.path();
  std::string path_ = (dir_ / "tayori.db").string();
  std::unique_ptr<store::Store> store_;
  std::string pg_uri_;  // the test's own database, when on PostgreSQL
};

}  // namespace tayori::test

#endif  // TAYORI_TESTS_SUPPORT_TEST_SUPPORT_HPP
