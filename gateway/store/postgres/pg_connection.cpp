// libpq under sql::Connection (pg_connection.hpp): statements prepared once per connection and run with their
// parameters, and libpq's errors raised as sql::Error, so store/ops/ runs on PostgreSQL unchanged.
#include "store/postgres/pg_connection.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <regex>
#include <stdexcept>

#include "common/log.hpp"

namespace tayori::store::postgres {

namespace {

// Type OIDs of pg_type.h (a server header, not shipped with libpq-dev); they are fixed in the catalog.
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kInt8Oid = 20;

bool ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

bool starts_with(const char* s, const char* prefix) { return s && std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

std::string trimmed(const char* s) {
  std::string out = s ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string field(const PGresult* r, int code) {
  const char* v = r ? PQresultErrorField(r, code) : nullptr;
  return v ? v : "";
}

// The server's notices (a WARNING, "relation already exists, skipping") go to the log, not to stderr.
void on_notice(void*, const PGresult* r) {
  std::string severity = field(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  log::write(severity == "WARNING" ? log::Level::warn : log::Level::debug, "postgres",
             trimmed(PQresultErrorMessage(r)));
}

const char* const kLost = "connection to the server lost";

// The kind of failure and its short, stable reason, from the SQLSTATE (and whether the connection is gone).
std::pair<sql::Error::Kind, std::string> classify(const std::string& state, bool connection_lost) {
  using Kind = sql::Error::Kind;
  std::string cls = state.substr(0, 2);
  if (connection_lost || cls == "08" || state == "57P01" || state == "57P02" || state == "57P03")
    return {Kind::io, kLost};
  if (cls == "23") return {Kind::constraint, "constraint failed"};
  if (state == "53300") return {Kind::busy, "too many connections"};
  if (cls == "53") return {Kind::full, "database or disk is full"};  // as SQLite says it
  if (state == "57014") return {Kind::busy, "statement timeout"};    // or canceled: what() tells which
  if (state == "40P01") return {Kind::busy, "deadlock detected"};
  if (state == "40001") return {Kind::busy, "serialization failure"};
  if (state == "55P03") return {Kind::busy, "lock not available"};
  if (cls == "58") return {Kind::io, "disk I/O error"};
  return {Kind::other, state.empty() ? "SQL error" : "SQL error (SQLSTATE " + state + ")"};
}

void append_secret(std::vector<std::string>& secrets, std::string s) {
  if (!s.empty()) secrets.push_back(std::move(s));
}

// The end of a quoted run that starts at `p` (*p == quote): a doubled quote stays inside, and so does a
// backslash-escaped character when `backslashes` (E'...').
const char* quoted_end(const char* p, char quote, bool backslashes) {
  for (++p; *p; ++p) {
    if (backslashes && *p == '\\' && p[1]) {
      ++p;
    } else if (*p == quote) {
      if (p[1] != quote) return p + 1;
      ++p;
    }
  }
  return p;
}

// The end of a /* comment */ that starts at `p`: PostgreSQL's block comments nest.
const char* block_comment_end(const char* p) {
  int depth = 0;
  while (*p) {
    if (p[0] == '/' && p[1] == '*') {
      ++depth;
      p += 2;
    } else if (p[0] == '*' && p[1] == '/') {
      p += 2;
      if (--depth == 0) return p;
    } else {
      ++p;
    }
  }
  return p;
}

// The end of a $tag$ ... $tag$ string that starts at `p`, or nullptr when `p` starts none.
const char* dollar_quoted_end(const char* p) {
  const char* q = p + 1;
  if (*q >= '0' && *q <= '9') return nullptr;  // $1, a parameter
  while (*q && ident_char(*q)) ++q;
  if (*q != '$') return nullptr;
  std::string tag(p, q + 1);
  const char* end = std::strstr(q + 1, tag.c_str());
  return end ? end + tag.size() : q + std::strlen(q);
}

}  // namespace

std::string rewrite_parameters(const char* sql, int& parameters) {
  parameters = 0;
  std::string out;
  out.reserve(std::strlen(sql) + 16);
  const char* p = sql;
  while (*p) {
    // What the server reads as text, not SQL, is copied as it is.
    const char* verbatim_end = nullptr;
    bool after_ident = p > sql && ident_char(p[-1]);
    if (*p == '\'') {
      bool escapes = after_ident && (p[-1] == 'E' || p[-1] == 'e') && (p - 1 == sql || !ident_char(p[-2]));
      verbatim_end = quoted_end(p, '\'', escapes);
    } else if (*p == '"') {
      verbatim_end = quoted_end(p, '"', false);
    } else if (p[0] == '-' && p[1] == '-') {
      const char* eol = std::strchr(p, '\n');
      verbatim_end = eol ? eol + 1 : p + std::strlen(p);
    } else if (p[0] == '/' && p[1] == '*') {
      verbatim_end = block_comment_end(p);
    } else if (*p == '$' && !after_ident) {
      verbatim_end = dollar_quoted_end(p);
    }
    if (verbatim_end) {
      out.append(p, verbatim_end);
      p = verbatim_end;
    } else if (p[0] == '?' && p[1] >= '0' && p[1] <= '9') {
      ++p;
      int n = 0;
      out += '$';
      while (*p >= '0' && *p <= '9') {
        n = std::min(n * 10 + (*p - '0'), 1 << 20);
        out += *p++;
      }
      parameters = std::max(parameters, n);
    } else {
      out += *p++;
    }
  }
  return out;
}

std::string redact_password(std::string message, const std::string& conninfo) {
  std::vector<std::string> secrets;
  char* err = nullptr;
  if (PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err)) {
    for (PQconninfoOption* o = opts; o->keyword; ++o)
      if (std::strcmp(o->keyword, "password") == 0 && o->val) append_secret(secrets, o->val);
    PQconninfoFree(opts);
  }
  PQfreemem(err);
  // What a string libpq could not parse may still hold, as written: user:secret@ in a URI, password=...
  static const std::regex uri_password(R"(^postgres(?:ql)?://[^/@?]*?:([^/@?]*)@)");
  static const std::regex keyword_password(R"(password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+))");
  std::smatch m;
  if (std::regex_search(conninfo, m, uri_password)) append_secret(secrets, m[1].str());
  for (auto it = std::sregex_iterator(conninfo.begin(), conninfo.end(), keyword_password); it != std::sregex_iterator();
       ++it) {
    std::string v = (*it)[1].str();
    append_secret(secrets, v);
    if (v.size() >= 2 && v.front() == '\'') append_secret(secrets, v.substr(1, v.size() - 2));
  }
  std::sort(secrets.begin(), secrets.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  for (const std::string& s : secrets)
    for (size_t at = message.find(s); at != std::string::npos; at = message.find(s, at + 8))
      message.replace(at, s.size(), "********");
  return message;
}

// ---- PgStatement ------------------------------------------------------------------------------------------------

PgStatement::PgStatement(PgConnection& connection, std::string name, std::string sql, int parameters)
    : connection_(connection),
      base_name_(std::move(name)),
      sql_(std::move(sql)),
      values_(static_cast<size_t>(parameters)),
      bound_(static_cast<size_t>(parameters), false) {}

PgStatement::~PgStatement() { PQclear(result_); }

sql::Statement& PgStatement::bind(int index, std::string_view value) {
  if (index < 1 || index > parameter_count())
    throw sql::Error(sql::Error::Kind::other, "SQL error",
                     "parameter ?" + std::to_string(index) + " is not in: " + sql_);
  values_[index - 1].assign(value);
  bound_[index - 1] = true;
  return *this;
}

sql::Statement& PgStatement::bind(int index, int64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return bind(index, std::string_view(buf, static_cast<size_t>(end - buf)));
}

sql::Statement& PgStatement::bind_null(int index) {
  bind(index, std::string_view());
  bound_[index - 1] = false;
  return *this;
}

void PgStatement::clear_bindings() {
  for (auto& v : values_) v.clear();
  std::fill(bound_.begin(), bound_.end(), false);
}

std::vector<const char*> PgStatement::parameter_values() const {
  std::vector<const char*> values(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) values[i] = bound_[i] ? values_[i].c_str() : nullptr;
  return values;
}

void PgStatement::take_result(pg_result* result) {
  PQclear(result_);
  result_ = result;
  ran_ = true;
  row_ = -1;
  rows_ = PQntuples(result_);
  connection_.note_changes(result_);
}

bool PgStatement::step() {
  if (!ran_) {
    connection_.ensure_prepared(*this);
    if (connection_.pipelined()) {
      // Statements were sent before this one: it goes in the same pipeline, and one sync answers them all.
      connection_.send_in_pipeline(*this);
      take_result(connection_.drain_pipeline(true));
    } else {
      std::vector<const char*> values = parameter_values();
      PGresult* r =
          PQexecPrepared(connection_.conn_, name_.c_str(), parameter_count(), values.data(), nullptr, nullptr, 0);
      ExecStatusType status = PQresultStatus(r);
      if (!r || (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)) connection_.fail(r, sql_);
      take_result(r);
    }
  }
  if (row_ + 1 < rows_) {
    ++row_;
    return true;
  }
  row_ = rows_;
  return false;
}

void PgStatement::send() {
  connection_.ensure_prepared(*this);
  connection_.send_in_pipeline(*this);
  reset();
}

void PgStatement::reset() {
  PQclear(result_);
  result_ = nullptr;
  ran_ = false;
  row_ = -1;
  rows_ = 0;
}

void PgStatement::check_cell(int column) const {
  if (!result_ || row_ < 0 || row_ >= rows_)
    throw sql::Error(sql::Error::Kind::other, "SQL error", "no current row in: " + sql_);
  if (column < 0 || column >= PQnfields(result_))
    throw sql::Error(sql::Error::Kind::other, "SQL error", "no column " + std::to_string(column) + " in: " + sql_);
}

std::string PgStatement::text(int column) const {
  check_cell(column);
  return std::string(PQgetvalue(result_, row_, column), static_cast<size_t>(PQgetlength(result_, row_, column)));
}

int64_t PgStatement::int64(int column) const {
  check_cell(column);
  if (PQgetisnull(result_, row_, column)) return 0;  // as SQLite reads NULL
  const char* v = PQgetvalue(result_, row_, column);
  const char* end = v + PQgetlength(result_, row_, column);
  int64_t out = 0;
  auto [at, ec] = std::from_chars(v, end, out);
  if (ec != std::errc() || at != end || v == end)
    throw sql::Error(
        sql::Error::Kind::other, "SQL error",
        "column " + std::to_string(column) + " is not a 64-bit integer: \"" + std::string(v, end) + "\" in: " + sql_);
  return out;
}

bool PgStatement::is_null(int column) const {
  check_cell(column);
  return PQgetisnull(result_, row_, column) != 0;
}

// ---- PgConnection -----------------------------------------------------------------------------------------------

PgConnection::PgConnection(const PgOptions& options) : options_(options) { open(); }

PgConnection::~PgConnection() {
  statements_.clear();
  PQfinish(conn_);
}

void PgConnection::open() {
  lost_ = false;
  std::string timeout = options_.connect_timeout_s > 0 ? std::to_string(options_.connect_timeout_s) : "";
  // Entries after "dbname" (the expanded connection string) win over the same settings in it; empty ones
  // are skipped.
  const char* keys[] = {"dbname", "connect_timeout", "application_name", "client_encoding", nullptr};
  const char* values[] = {options_.uri.c_str(), timeout.c_str(), options_.application_name.c_str(), "UTF8", nullptr};
  conn_ = PQconnectdbParams(keys, values, 1);
  // Connection failures are sql::Error (io) like a lost connection: every caller that answers a failed store
  // read with 503, or fails a group as a whole, then treats "the server is away" the same whichever call
  // found out first.
  if (!conn_) throw sql::Error(sql::Error::Kind::io, "out of memory", "cannot connect to PostgreSQL: out of memory");
  auto text = [](const char* s) { return std::string(s && *s ? s : "?"); };
  target_ = "host " + text(PQhost(conn_)) + " port " + text(PQport(conn_)) + " database " + text(PQdb(conn_)) +
            " user " + text(PQuser(conn_));
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string why = redact_password(trimmed(PQerrorMessage(conn_)), options_.uri);
    PQfinish(conn_);
    conn_ = nullptr;
    throw sql::Error(sql::Error::Kind::io, why, "cannot connect to PostgreSQL (" + target_ + "): " + why);
  }
  PQsetNoticeReceiver(conn_, &on_notice, nullptr);
  if (options_.statement_timeout_ms > 0) {
    std::string set = "SET statement_timeout = " + std::to_string(options_.statement_timeout_ms);
    PGresult* r = PQexec(conn_, set.c_str());
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    std::string why = ok ? "" : trimmed(PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
      PQfinish(conn_);
      conn_ = nullptr;
      throw sql::Error(sql::Error::Kind::io, why, "cannot set up the PostgreSQL session (" + target_ + "): " + why);
    }
  }
}

void PgConnection::reconnect() {
  sent_.clear();
  for (auto& [sql, s] : statements_) {
    s->reset();
    s->prepared_ = false;
  }
  PQfinish(conn_);
  conn_ = nullptr;
  open();
}

void PgConnection::fail(pg_result* result, const std::string& sql) {
  std::string state = field(result, PG_DIAG_SQLSTATE);
  std::string message = field(result, PG_DIAG_MESSAGE_PRIMARY);
  if (message.empty()) message = trimmed(result ? PQresultErrorMessage(result) : "");
  if (message.empty()) message = trimmed(PQerrorMessage(conn_));
  std::string detail = field(result, PG_DIAG_MESSAGE_DETAIL);
  PQclear(result);
  // libpq's own errors carry no SQLSTATE: they are about the connection ("server closed the connection
  // unexpectedly", a failed send), which libpq may not have marked bad yet: reading what is left tells.
  if (state.empty() && conn_ && PQstatus(conn_) == CONNECTION_OK) PQconsumeInput(conn_);
  auto [kind, why] = classify(state, state.empty() || PQstatus(conn_) != CONNECTION_OK);
  if (kind == sql::Error::Kind::io && why == kLost) lost_ = true;
  std::string what = message;
  if (!detail.empty()) what += " (" + detail + ")";
  if (!state.empty()) what += " [SQLSTATE " + state + "]";
  throw sql::Error(kind, why, what + " in: " + sql);
}

void PgConnection::ensure_prepared(PgStatement& s) {
  if (s.prepared_) return;
  if (pipelined()) wait();  // PQprepare waits for its answer, which pipeline mode does not allow
  s.name_ = s.base_name_;
  PGresult* r = PQprepare(conn_, s.name_.c_str(), s.sql_.c_str(), s.parameter_count(), nullptr);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) fail(r, s.sql_);
  PQclear(r);
  s.prepared_ = true;
  if (s.parameter_count() == 0) return;
  // The types the server inferred: a narrow integer is declared BIGINT instead, when the statement takes
  // it (`substr(x, ?1)` does not: there is no substr(text, bigint)); else it keeps what was inferred.
  r = PQdescribePrepared(conn_, s.name_.c_str());
  if (PQresultStatus(r) != PGRES_COMMAND_OK) fail(r, s.sql_);
  std::vector<Oid> types(static_cast<size_t>(PQnparams(r)));
  bool widen = false;
  for (size_t i = 0; i < types.size(); ++i) {
    types[i] = PQparamtype(r, static_cast<int>(i));
    if (types[i] == kInt2Oid || types[i] == kInt4Oid) {
      types[i] = kInt8Oid;
      widen = true;
    }
  }
  PQclear(r);
  if (!widen) return;
  // A failed PREPARE fails the transaction around it: inside one, a savepoint keeps it.
  bool in_block = PQtransactionStatus(conn_) == PQTRANS_INTRANS;
  if (in_block) exec("SAVEPOINT tayori_widen");
  std::string wide_name = s.base_name_ + "_wide";
  r = PQprepare(conn_, wide_name.c_str(), s.sql_.c_str(), static_cast<int>(types.size()), types.data());
  bool wide = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!wide && PQstatus(conn_) != CONNECTION_OK) fail(r, s.sql_);
  PQclear(r);
  if (in_block)
    exec(wide ? "RELEASE SAVEPOINT tayori_widen"
              : "ROLLBACK TO SAVEPOINT tayori_widen; RELEASE SAVEPOINT tayori_widen");
  if (!wide) return;
  std::string deallocate = "DEALLOCATE " + s.name_;
  exec(deallocate.c_str());
  s.name_ = wide_name;
}

sql::Statement& PgConnection::prepare(const char* sql) {
  statements_run_.fetch_add(1, std::memory_order_relaxed);
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    int parameters = 0;
    std::string text = rewrite_parameters(sql, parameters);
    std::unique_ptr<PgStatement> s(
        new PgStatement(*this, "tayori_" + std::to_string(++next_name_), std::move(text), parameters));
    it = statements_.emplace(sql, std::move(s)).first;
  }
  PgStatement& s = *it->second;
  s.reset();
  s.clear_bindings();
  ensure_prepared(s);
  return s;
}

void PgConnection::exec(const char* sql) {
  if (pipelined()) wait();  // PQexec is not allowed in pipeline mode
  PGresult* r = PQexec(conn_, sql);
  ExecStatusType status = PQresultStatus(r);
  if (!r || (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)) fail(r, sql);
  note_changes(r);
  PQclear(r);
}

void PgConnection::send_in_pipeline(PgStatement& s) {
  if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF && PQenterPipelineMode(conn_) != 1) fail(nullptr, s.sql_);
  std::vector<const char*> values = s.parameter_values();
  if (PQsendQueryPrepared(conn_, s.name_.c_str(), s.parameter_count(), values.data(), nullptr, nullptr, 0) != 1) {
    sent_.clear();
    lost_ = true;  // a failed send is the connection's (libpq's own error, no SQLSTATE)
    fail(nullptr, s.sql_);
  }
  sent_.push_back(&s.sql_);
}

void PgConnection::wait() {
  if (pipelined()) drain_pipeline(false);
}

pg_result* PgConnection::drain_pipeline(bool keep_last) {
  std::vector<const std::string*> sent = std::move(sent_);
  sent_.clear();
  PGresult* failed = nullptr;
  const std::string* failed_sql = nullptr;
  PGresult* last = nullptr;
  // The answers did not come as the protocol has them: the connection is not to be trusted any more.
  auto lost = [&](const std::string& sql) {
    PQclear(failed);
    PQclear(last);
    lost_ = true;
    fail(nullptr, sql);
  };
  if (PQpipelineSync(conn_) != 1) lost(*sent.back());
  // Each statement's answer, then a null; after a failure the rest are PGRES_PIPELINE_ABORTED; then the sync.
  for (size_t i = 0; i < sent.size(); ++i) {
    PGresult* r = PQgetResult(conn_);
    if (!r) lost(*sent[i]);
    ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      if (keep_last && i + 1 == sent.size()) {
        last = r;
      } else {
        note_changes(r);
        PQclear(r);
      }
    } else if (!failed && status != PGRES_PIPELINE_ABORTED) {
      failed = r;
      failed_sql = sent[i];
    } else {
      PQclear(r);
    }
    while (PGresult* more = PQgetResult(conn_)) PQclear(more);
  }
  PGresult* sync = PQgetResult(conn_);
  const bool synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  if (!synced || PQexitPipelineMode(conn_) != 1) lost(*sent.back());
  if (failed) {
    PQclear(last);
    fail(failed, *failed_sql);
  }
  return last;
}

void PgConnection::note_changes(pg_result* result) {
  const char* status = PQcmdStatus(result);
  // Only writes count, as sqlite3_changes() counts them: a SELECT leaves the last write's count.
  if (starts_with(status, "INSERT") || starts_with(status, "UPDATE") || starts_with(status, "DELETE") ||
      starts_with(status, "MERGE")) {
    const char* n = PQcmdTuples(result);
    int64_t v = 0;
    std::from_chars(n, n + std::strlen(n), v);
    changes_ = v;
  }
}

bool PgConnection::connection_ok() const { return conn_ && !lost_ && PQstatus(conn_) == CONNECTION_OK; }

bool PgConnection::in_failed_transaction() const { return conn_ && PQtransactionStatus(conn_) == PQTRANS_INERROR; }

bool PgConnection::in_transaction() const {
  if (!conn_) return false;
  PGTransactionStatusType t = PQtransactionStatus(conn_);
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}

int PgConnection::backend_pid() const { return conn_ ? PQbackendPID(conn_) : 0; }

int PgConnection::server_version() const { return conn_ ? PQserverVersion(conn_) : 0; }

}  // namespace tayori::store::postgres
