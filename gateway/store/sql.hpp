// The little SQL the store's operations need, the same on every backend: a connection that prepares
// statements once and reuses them, statements with numbered parameters, rows read by column. The store's
// operations (accept, claim, apply, consent, ...) are written once against this and run on SQLite (one
// node) and PostgreSQL (several nodes); docs/architecture.md §5 "One store, two engines".
//
// The SQL they write is the common part of both dialects:
// - parameters are written ?1, ?2, ... (a PostgreSQL connection sends them as $1, $2, ...) and bound as
//   text, integers or NULL; a parameter used as a truth value is compared (`?9 <> 0`), never used bare,
//   since PostgreSQL infers one type per parameter;
// - truth values are read back as integers (`CASE WHEN x IS NULL THEN 1 ELSE 0 END`), not as booleans;
// - no engine-specific functions (MAX(a, b) is CASE; JSON functions differ: an operation that needs them
//   asks Connection::dialect() for its own statement).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tayori::store::sql {

enum class Dialect { sqlite, postgres };

// A failure of the database inside an operation. The store rolls that operation back (or the whole group
// when the transaction itself is lost) and answers its caller with to_error(); `why` is what an operator
// reads (last_write_error: "database or disk is full", "connection to the server lost").
struct Error : std::runtime_error {
  enum class Kind {
    constraint,  // the data broke a rule of the schema: that operation alone fails
    full,        // no space left (SQLITE_FULL, PostgreSQL class 53)
    io,          // the disk or the server failed (SQLITE_IOERR, a lost connection)
    busy,        // locked by another connection longer than the timeout
    other,
  };
  Kind kind;
  std::string why;  // short and stable, for last_write_error and metrics
  Error(Kind k, std::string short_why, const std::string& what)
      : std::runtime_error(what), kind(k), why(std::move(short_why)) {}

  // The data path's Error for it: a broken constraint is the data's, the rest the database's (retrying may
  // work), except what the engine could not name.
  tayori::Error to_error() const {
    ErrorCode code = kind == Kind::constraint ? ErrorCode::conflict
                     : kind == Kind::other    ? ErrorCode::internal
                                              : ErrorCode::unavailable;
    return tayori::Error{code, why};
  }
};

class Statement {
 public:
  virtual ~Statement() = default;

  // Text is bound by reference on SQLite (not copied): it must stay alive and unchanged until the statement has
  // run to its end or been reset. Binding in the same expression that runs the statement
  // (`c.prepare(...).bind(1, x).exec()`, `all_rows(c.prepare(...).bind(1, f()), read)`) always is; a statement
  // kept in a variable and stepped later may bind only what outlives it (a parameter, a member, a literal).
  virtual Statement& bind(int index, std::string_view value) = 0;
  virtual Statement& bind(int index, int64_t value) = 0;
  virtual Statement& bind_null(int index) = 0;
  Statement& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, std::optional<int64_t> value) { return value ? bind(index, *value) : bind_null(index); }

  // Runs the statement at the first call, then moves row by row: true while there is a row. Throws Error.
  virtual bool step() = 0;
  // Runs it to the end (a write), then resets it.
  void exec() {
    while (step()) {
    }
    reset();
  }
  // Runs a write whose rows and changes() nobody reads, without waiting for it where the engine can: PostgreSQL
  // sends it at once and reads its answer with the next statement that waits (step(), exec(), Connection::exec,
  // Connection::wait), so that a round trip to the server serves several statements; a failure shows there.
  // SQLite, in process, runs it now.
  virtual void send() { exec(); }
  // Ends this run: a reader that stops early must call it, so the engine lets go of what the run holds
  // (SQLite keeps a read transaction open on an unfinished statement). Bindings stay until the next prepare.
  virtual void reset() = 0;

  // The current row's columns, from 0.
  virtual std::string text(int column) const = 0;
  virtual int64_t int64(int column) const = 0;
  virtual bool is_null(int column) const = 0;
  std::optional<int64_t> opt_int64(int column) const {
    if (is_null(column)) return std::nullopt;
    return int64(column);
  }
};

class Connection {
 public:
  virtual ~Connection() = default;

  virtual Dialect dialect() const = 0;
  // Prepared once per connection and reused: the SQL text's address is the cache key, so pass a string
  // literal or a static string. Returns it reset, with its bindings cleared.
  virtual Statement& prepare(const char* sql) = 0;
  // Runs SQL without parameters or rows: schema, pragmas, transaction control. Throws Error.
  virtual void exec(const char* sql) = 0;
  // Waits for every statement sent (Statement::send) and throws the first failure among them.
  virtual void wait() {}
  // Rows changed by the last write run to its end and waited for on this connection.
  virtual int64_t changes() const = 0;
  // The rowid of the row the last INSERT on this connection made, where the engine keeps it without being asked
  // (SQLite); none where it does not (PostgreSQL, which answers it in the INSERT's RETURNING instead).
  virtual std::optional<int64_t> last_insert_rowid() const { return std::nullopt; }
  // Statements run on this connection since it opened (write amplification: WriteStats::statements).
  virtual int64_t statements_run() const = 0;
};

// A statement written once per engine where their SQL differs, {SQLite's, PostgreSQL's}: the one `c` speaks.
inline const char* for_dialect(const Connection& c, const char* const (&texts)[2]) {
  return texts[c.dialect() == Dialect::sqlite ? 0 : 1];
}

}  // namespace tayori::store::sql
