// SQLite's implementation of the common SQL layer (store/sql.hpp). The store's operations (store/ops/)
// prepare, bind and step through these on the SQLite store's writer and read connections; every SQLite
// failure leaves here as an sql::Error, whose `why` the writer reports as last_write_error.
#include "store/sqlite/sqlite_connection.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace tayori::store::sqlite {

sql::Error error(int code, const std::string& what) {
  using Kind = sql::Error::Kind;
  Kind kind = Kind::other;
  switch (code & 0xff) {
    case SQLITE_FULL:
      kind = Kind::full;
      break;
    case SQLITE_IOERR:
      kind = Kind::io;
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      kind = Kind::busy;
      break;
    case SQLITE_CONSTRAINT:
      kind = Kind::constraint;
      break;
    default:
      break;
  }
  return sql::Error(kind, sqlite3_errstr(code & 0xff), what);
}

SqliteStatement::SqliteStatement(sqlite3* db, const char* sql) : db_(db) {
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
    throw error(sqlite3_errcode(db), std::string("prepare: ") + sqlite3_errmsg(db) + " in: " + sql);
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

sql::Statement& SqliteStatement::bind(int index, std::string_view value) {
  // A null data pointer would bind NULL, and an empty view may have one: empty text stays text. SQLITE_STATIC:
  // the text is not copied (sql.hpp's bind contract keeps it alive while the statement runs); the copy, and the
  // allocation and free around it, were about 2 of the store writer's 37 µs per message on e2e-batch.
  sqlite3_bind_text(stmt_, index, value.data() ? value.data() : "", static_cast<int>(value.size()), SQLITE_STATIC);
  return *this;
}

sql::Statement& SqliteStatement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

sql::Statement& SqliteStatement::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

bool SqliteStatement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw error(rc, std::string("step: ") + sqlite3_errmsg(db_));
}

void SqliteStatement::reset() { sqlite3_reset(stmt_); }

void SqliteStatement::rewind() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string SqliteStatement::text(int column) const {
  auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, sqlite3_column_bytes(stmt_, column)) : std::string();
}

int64_t SqliteStatement::int64(int column) const { return sqlite3_column_int64(stmt_, column); }

bool SqliteStatement::is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

// SQLite's memory statistics (on by default) take one process-wide mutex around every allocation and
// free, so the writer and every reader thread queue on it: with them off, perf showed a tenth of the
// writer's samples and most of the readers' futex waits gone (https://sqlite.org/c3ref/c_config_covering_index_scan.html,
// SQLITE_CONFIG_MEMSTATUS). Nothing here reads sqlite3_memory_used. It must be set before SQLite
// initialises, so before the first connection; if something in the process initialised SQLite already,
// the call is refused (SQLITE_MISUSE) and the statistics simply stay on.
void configure_sqlite_once() {
  static const int configured = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)configured;
}

SqliteConnection::SqliteConnection(const std::string& path, bool readonly, const char* vfs) {
  configure_sqlite_once();
  int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX;
  if (int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs); rc != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    // The store's error like any other (a reader opened when the process is out of file descriptors fails
    // here): callers answer it as the store being unavailable.
    throw error(rc, "cannot open the store \"" + path + "\": " + why);
  }
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  sqlite3_extended_result_codes(db_, 1);
  // Deleted and overwritten content is zeroed, not left in free space and on freelist pages where it would
  // outlive an erasure (GDPR Art. 17) in the file and every copy of it (https://sqlite.org/pragma.html
  // #pragma_secure_delete). Off by default unless SQLite was built with SQLITE_SECURE_DELETE (Debian's is,
  // others are not), and per connection, so every connection sets it.
  exec("PRAGMA secure_delete=ON");
}

SqliteConnection::~SqliteConnection() {
  statements_.clear();
  sqlite3_close(db_);
}

void SqliteConnection::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "unknown";
    sqlite3_free(err);
    throw error(sqlite3_errcode(db_), why + " in: " + sql);
  }
}

sql::Statement& SqliteConnection::prepare(const char* sql) {
  statements_run_.fetch_add(1, std::memory_order_relaxed);
  auto it = statements_.find(sql);
  if (it == statements_.end()) it = statements_.emplace(sql, std::make_unique<SqliteStatement>(db_, sql)).first;
  it->second->rewind();
  return *it->second;
}

int64_t SqliteConnection::changes() const { return sqlite3_changes(db_); }

std::optional<int64_t> SqliteConnection::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

}  // namespace tayori::store::sqlite
