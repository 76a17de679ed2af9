// SQLite behind the common SQL layer (store/sql.hpp): the connections the SQLite store's writer, readers
// and checkpointer use. The raw handle stays reachable for what only SQLite has (WAL hook, checkpoints,
// page statistics, autocommit state).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "store/sql.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace tayori::store::sqlite {

// sql::Error from an SQLite result code: the kind from its primary code, `why` as sqlite3_errstr says it
// ("database or disk is full"), which is what last_write_error reports.
sql::Error error(int code, const std::string& what);

// SqliteStatement and SqliteConnection declare the same overrides as PgStatement and PgConnection
// (store/postgres/pg_connection.hpp), on purpose: each engine implements the one interface of store/sql.hpp
// that store/ops/ is written against, so the lists match and only the bodies differ.
class SqliteStatement final : public sql::Statement {
 public:
  // Prepared SQLITE_PREPARE_PERSISTENT: the connection keeps it for its lifetime. Also usable on its own for
  // a statement that must be finalised at once (see migrate()).
  SqliteStatement(sqlite3* db, const char* sql);
  ~SqliteStatement() override;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  using sql::Statement::bind;
  sql::Statement& bind(int index, std::string_view value) override;
  sql::Statement& bind(int index, int64_t value) override;
  sql::Statement& bind_null(int index) override;
  bool step() override;
  void reset() override;
  std::string text(int column) const override;
  int64_t int64(int column) const override;
  bool is_null(int column) const override;

  // Reset with its bindings cleared: how the connection hands it out again.
  void rewind();

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// SQLite's process-wide configuration (sqlite_connection.cpp says what and why), applied once, before anything
// initialises SQLite: opening a connection or looking up a VFS does.
void configure_sqlite_once();

class SqliteConnection final : public sql::Connection {
 public:
  // How long a statement waits for a lock another connection holds before it fails with SQLITE_BUSY.
  static constexpr int kBusyTimeoutMs = 5000;

  // Throws std::runtime_error naming the file when it cannot open it. `vfs`: the SQLite VFS to open it with
  // (nullptr: the default one).
  SqliteConnection(const std::string& path, bool readonly, const char* vfs = nullptr);
  ~SqliteConnection() override;
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  sql::Dialect dialect() const override { return sql::Dialect::sqlite; }
  sql::Statement& prepare(const char* sql) override;
  void exec(const char* sql) override;
  int64_t changes() const override;
  std::optional<int64_t> last_insert_rowid() const override;
  int64_t statements_run() const override { return statements_run_.load(std::memory_order_relaxed); }

  sqlite3* raw() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::atomic<int64_t> statements_run_{0};
  std::unordered_map<const char*, std::unique_ptr<SqliteStatement>> statements_;
};

}  // namespace tayori::store::sqlite
