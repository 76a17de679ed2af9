// sql::Connection over libpq: the store's operations on PostgreSQL, where several gateway nodes share one
// database (docs/architecture.md §5 "One store, two engines").
//
// - Statements are prepared once per connection (PQprepare, under a generated name) and run with
//   PQexecPrepared; parameters go as text (NULL as NULL), results come back as text.
// - `?N` in the SQL becomes `$N` (not inside '...' literals, "..." identifiers or comments; a bare `?`, the
//   jsonb operator, stays). The server infers each parameter's type, except that an integer it infers
//   narrower than 64 bits (`?1 + 1000`, `COALESCE(?2, 0)`, `?9 <> 0` are int4 to PostgreSQL) is declared
//   BIGINT instead, where the statement allows it: the store binds int64 milliseconds, and SQLite's
//   integers are 64-bit. (That costs a describe, and for such statements a second prepare, once per
//   connection.)
// - Failures are sql::Error by SQLSTATE (pg_connection.cpp, to_error). A lost connection stays lost:
//   connection_ok() says so, and reconnect() opens it again (statements are prepared again as they are used).
//
// One thread at a time uses a connection (like an SQLite connection): there is no locking inside.
// libpq's header stays out of here: only gateway/store/postgres includes it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/sql.hpp"

struct pg_conn;
struct pg_result;

namespace tayori::store::postgres {

struct PgOptions {
  // A libpq connection string: a URI (`postgresql://user:secret@host:5432/tayori?sslmode=require`) or
  // keyword/value pairs (`host=/run/postgresql dbname=tayori`). The options below win over the same
  // settings in it when they are set.
  std::string uri;
  int connect_timeout_s = 10;        // libpq's connect_timeout (whole seconds; 0 = wait forever)
  int64_t statement_timeout_ms = 0;  // SET statement_timeout for the session; 0 = none
  std::string application_name;      // shown in pg_stat_activity, e.g. "tayori node-1"
};

class PgConnection;

// PgStatement and PgConnection declare the same overrides as SqliteStatement and SqliteConnection
// (store/sqlite/sqlite_connection.hpp), on purpose: each engine implements the one interface of store/sql.hpp
// that store/ops/ is written against, so the lists match and only the bodies differ.
class PgStatement final : public sql::Statement {
 public:
  ~PgStatement() override;
  PgStatement(const PgStatement&) = delete;
  PgStatement& operator=(const PgStatement&) = delete;

  using sql::Statement::bind;
  sql::Statement& bind(int index, std::string_view value) override;
  sql::Statement& bind(int index, int64_t value) override;
  sql::Statement& bind_null(int index) override;
  bool step() override;
  void send() override;
  void reset() override;
  std::string text(int column) const override;
  int64_t int64(int column) const override;
  bool is_null(int column) const override;

  // The SQL as sent to the server ($N parameters) and how many parameters it takes (the highest N).
  const std::string& sql() const { return sql_; }
  int parameter_count() const { return static_cast<int>(values_.size()); }

 private:
  friend class PgConnection;
  PgStatement(PgConnection& connection, std::string name, std::string sql, int parameters);
  void clear_bindings();
  void check_cell(int column) const;
  std::vector<const char*> parameter_values() const;  // for libpq: the bound values, nullptr for NULL
  void take_result(pg_result* result);                // a successful run's rows

  PgConnection& connection_;
  std::string base_name_;  // tayori_<n>, unique on the connection
  std::string name_;       // as prepared: base_name_, or base_name_ + "_wide" (see ensure_prepared)
  std::string sql_;
  bool prepared_ = false;  // on the server, on this connection's current session
  std::vector<std::string> values_;
  std::vector<bool> bound_;  // false: NULL
  pg_result* result_ = nullptr;
  bool ran_ = false;
  int row_ = -1;
  int rows_ = 0;
};

class PgConnection final : public sql::Connection {
 public:
  // Connects, then sets the session's statement_timeout. Throws std::runtime_error naming the host and the
  // database (never a password) when it cannot.
  explicit PgConnection(const PgOptions& options);
  ~PgConnection() override;
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  sql::Dialect dialect() const override { return sql::Dialect::postgres; }
  sql::Statement& prepare(const char* sql) override;
  // Parameterless SQL, possibly several statements (PQexec).
  void exec(const char* sql) override;
  void wait() override;
  int64_t changes() const override { return changes_; }
  int64_t statements_run() const override { return statements_run_.load(std::memory_order_relaxed); }

  // Whether the connection to the server stands: PQstatus is CONNECTION_OK, and no statement failed for
  // the want of it (Kind::io, "connection to the server lost"). When it does not, the operation and its
  // transaction are lost: the writer reconnects rather than rolls back to a savepoint.
  bool connection_ok() const;
  // Inside a transaction that failed (PQTRANS_INERROR): every statement fails until ROLLBACK [TO SAVEPOINT].
  bool in_failed_transaction() const;
  // Inside a transaction block, failed or not.
  bool in_transaction() const;
  // Connects again with the same options (a new session: no transaction, statements prepared again as
  // they are next used). Throws std::runtime_error like the constructor.
  void reconnect();

  // The server process serving this session (pg_stat_activity.pid), 0 when not connected.
  int backend_pid() const;
  // The server's version as a number (150018 for 15.18).
  int server_version() const;
  // "host ... port ... database ...", for logs and errors; no password.
  const std::string& describe() const { return target_; }

 private:
  friend class PgStatement;
  void open();
  // sql::Error from a failed result (or none), with `sql` for the message. Clears `result`.
  [[noreturn]] void fail(pg_result* result, const std::string& sql);
  void ensure_prepared(PgStatement& s);
  void note_changes(pg_result* result);
  // Pipeline mode (libpq, PostgreSQL 14+): statements sent without waiting, answered in order after a sync.
  // Sends `s` (prepared) in the pipeline, entering it first if need be.
  void send_in_pipeline(PgStatement& s);
  // Syncs the pipeline and reads every answer in it, leaving pipeline mode; returns the last statement's result
  // when `keep_last` (the caller's, which waits), else nullptr. Throws the first failure.
  pg_result* drain_pipeline(bool keep_last);
  bool pipelined() const { return !sent_.empty(); }

  PgOptions options_;
  std::string target_;
  pg_conn* conn_ = nullptr;
  bool lost_ = false;  // a statement found the connection gone (set in fail())
  int64_t changes_ = 0;
  std::atomic<int64_t> statements_run_{0};
  int64_t next_name_ = 0;
  std::vector<const std::string*> sent_;  // the SQL of each statement in the pipeline, unanswered yet
  std::unordered_map<const char*, std::unique_ptr<PgStatement>> statements_;
};

// `?N` → `$N` outside literals, quoted identifiers and comments; `parameters` gets the highest N.
// Exposed for tests.
std::string rewrite_parameters(const char* sql, int& parameters);

// The message of a failed connection attempt with the password in `conninfo`, if any, blanked out.
std::string redact_password(std::string message, const std::string& conninfo);

}  // namespace tayori::store::postgres
