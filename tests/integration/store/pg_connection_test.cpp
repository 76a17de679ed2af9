// Tests for the PostgreSQL side of the store's SQL layer (gateway/store/postgres): PgConnection against a
// real server, the schema's migrations, and the throw-away cluster itself (tests/support/pg_cluster.hpp).
// One cluster for this whole binary (shared_pg_cluster: one initdb), a fresh database per test.
// Without PostgreSQL these tests fail: tools/setup.sh installs it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>

#include "pg_cluster.hpp"
#include "store/postgres/pg_connection.hpp"
#include "store/postgres/pg_schema.hpp"

namespace tayori::store::postgres {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Kind = sql::Error::Kind;
using tayori::testing::PgCluster;
using tayori::testing::shared_pg_cluster;

class PgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    uri_ = shared_pg_cluster().fresh_database(info->name());
  }
  PgOptions options() const {
    PgOptions o;
    o.uri = uri_;
    o.connect_timeout_s = 5;
    o.application_name = "tayori test";
    return o;
  }
  std::string scalar(PgConnection& c, const char* sql) {
    sql::Statement& s = c.prepare(sql);
    std::string v = s.step() ? s.text(0) : "(no row)";
    s.reset();
    return v;
  }

  std::string uri_;
};

// Runs `f`, which must throw sql::Error; returns it.
template <class F>
sql::Error error_of(F f) {
  try {
    f();
  } catch (const sql::Error& e) {
    return e;
  }
  ADD_FAILURE() << "no sql::Error";
  return sql::Error(Kind::other, "", "");
}

TEST_F(PgTest, BindsTextIntegersAndNullAndReadsThemBack) {
  PgConnection c(options());
  EXPECT_EQ(c.dialect(), sql::Dialect::postgres);
  c.exec("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, s TEXT)");
  const char* insert = "INSERT INTO t(id, n, s) VALUES(?1, ?2, ?3)";
  c.prepare(insert).bind(1, "a").bind(2, int64_t{INT64_MAX}).bind(3, "ご注文 'quoted' \"double\" ?1 $1").exec();
  EXPECT_EQ(c.changes(), 1);
  c.prepare(insert).bind(1, "b").bind(2, int64_t{INT64_MIN}).bind(3, std::string()).exec();
  c.prepare(insert).bind(1, "c").bind_null(2).bind(3, std::optional<int64_t>{}).exec();
  c.prepare(insert).bind(1, "d").bind(2, std::optional<int64_t>{-42}).exec();  // ?3 unbound: NULL

  sql::Statement& s = c.prepare("SELECT id, n, s, n IS NULL FROM t ORDER BY id");
  ASSERT_TRUE(s.step());
  EXPECT_EQ(s.text(0), "a");
  EXPECT_EQ(s.int64(1), INT64_MAX);
  EXPECT_EQ(s.text(2), "ご注文 'quoted' \"double\" ?1 $1");
  ASSERT_TRUE(s.step());
  EXPECT_EQ(s.int64(1), INT64_MIN);
  EXPECT_EQ(s.text(2), "");
  EXPECT_FALSE(s.is_null(2));
  ASSERT_TRUE(s.step());
  EXPECT_TRUE(s.is_null(1));
  EXPECT_EQ(s.opt_int64(1), std::nullopt);
  EXPECT_EQ(s.int64(1), 0);  // as SQLite reads NULL
  EXPECT_TRUE(s.is_null(2));
  EXPECT_EQ(s.text(2), "");
  ASSERT_TRUE(s.step());
  EXPECT_EQ(s.opt_int64(1), -42);
  EXPECT_TRUE(s.is_null(2));
  EXPECT_FALSE(s.step());
  EXPECT_FALSE(s.step());
  s.reset();
  // A column that is not an integer is an error, not a guess.
  sql::Statement& t = c.prepare("SELECT 'abc', '12x', '', 1.5");
  ASSERT_TRUE(t.step());
  for (int col = 0; col < 4; ++col) EXPECT_EQ(error_of([&] { t.int64(col); }).kind, Kind::other) << col;
  EXPECT_EQ(error_of([&] { t.text(4); }).kind, Kind::other);
  t.reset();
}

TEST_F(PgTest, ParametersAreNumberedReusedAndNotReadInsideLiterals) {
  PgConnection c(options());
  auto& s = static_cast<PgStatement&>(
      c.prepare("SELECT ?1 || '?2 ''?3''' || ?1 || \"x?4\".v -- ?5\n"
                "  /* ?6 /* ?7 */ */ || E'\\'?8' || $$?9$$ || ?2 FROM (SELECT '-' AS v) AS \"x?4\""));
  EXPECT_EQ(s.parameter_count(), 2);
  s.bind(1, "<").bind(2, ">");
  ASSERT_TRUE(s.step());
  EXPECT_EQ(s.text(0), "<?2 '?3'<-'?8?9>");
  s.reset();

  int n = 0;
  EXPECT_EQ(rewrite_parameters("SELECT ?12, ?3 FROM t WHERE a ? 'k' AND b ?| ?1", n),
            "SELECT $12, $3 FROM t WHERE a ? 'k' AND b ?| $1");
  EXPECT_EQ(n, 12);
  EXPECT_EQ(rewrite_parameters("SELECT 'it''s ?1', e'\\\\', ?2", n), "SELECT 'it''s ?1', e'\\\\', $2");
  EXPECT_EQ(n, 2);
  EXPECT_EQ(rewrite_parameters("SELECT a$b, $tag$ ?1 $tag$, ?2", n), "SELECT a$b, $tag$ ?1 $tag$, $2");
  EXPECT_EQ(n, 2);
  EXPECT_EQ(rewrite_parameters("SELECT 1", n), "SELECT 1");
  EXPECT_EQ(n, 0);
}

TEST_F(PgTest, IntegersTheServerWouldInferAsInt4AreBigint) {
  PgConnection c(options());
  // PostgreSQL infers int4 for these parameters; SQLite's integers (and the store's ms times) are 64-bit.
  sql::Statement& s = c.prepare("SELECT ?1 + 1000, CASE WHEN ?2 <> 0 THEN 1 ELSE 0 END, COALESCE(?3, 0), ?4 = 'x'");
  s.bind(1, int64_t{5'000'000'000}).bind(2, int64_t{5'000'000'000}).bind(3, int64_t{-5'000'000'000}).bind(4, "x");
  ASSERT_TRUE(s.step());
  EXPECT_EQ(s.int64(0), 5'000'001'000);
  EXPECT_EQ(s.int64(1), 1);
  EXPECT_EQ(s.int64(2), -5'000'000'000);
  EXPECT_EQ(s.text(3), "t");
  s.reset();
  // Where int4 is all the statement takes (substr(text, int4)), it keeps what the server inferred; inside
  // a transaction, trying did not fail it.
  c.exec("CREATE TABLE t (n INTEGER)");
  c.exec("BEGIN");
  c.prepare("INSERT INTO t(n) VALUES(?1 + 1)").bind(1, int64_t{41}).exec();
  sql::Statement& sub = c.prepare("SELECT substr('abcdef', ?1), n FROM t WHERE n = ?2");
  sub.bind(1, int64_t{4}).bind(2, int64_t{42});
  ASSERT_TRUE(sub.step());
  EXPECT_EQ(sub.text(0), "def");
  sub.reset();
  EXPECT_FALSE(c.in_failed_transaction());
  c.exec("COMMIT");
  EXPECT_EQ(scalar(c, "SELECT n FROM t"), "42");
  // A value too large for the int4 the statement needs fails as PostgreSQL says.
  sql::Error e = error_of([&] { c.prepare("SELECT substr('abcdef', ?1)").bind(1, int64_t{5'000'000'000}).exec(); });
  EXPECT_EQ(e.kind, Kind::other);
  EXPECT_THAT(e.what(), HasSubstr("out of range"));
}

TEST_F(PgTest, StatementsArePreparedOncePerConnectionAndComeBackCleared) {
  PgConnection c(options());
  static const char* kSql = "SELECT ?1::TEXT IS NULL";
  sql::Statement& a = c.prepare(kSql);
  a.bind(1, "x");
  ASSERT_TRUE(a.step());
  EXPECT_EQ(a.text(0), "f");
  // Unfinished run; prepare again: the same statement, reset, its binding gone (NULL).
  sql::Statement& b = c.prepare(kSql);
  EXPECT_EQ(&a, &b);
  ASSERT_TRUE(b.step());
  EXPECT_EQ(b.text(0), "t");
  b.reset();
  // reset() keeps the bindings for the next run.
  b.bind(1, "y");
  ASSERT_TRUE(b.step());
  b.reset();
  ASSERT_TRUE(b.step());
  EXPECT_EQ(b.text(0), "f");
  b.reset();
  EXPECT_EQ(c.statements_run(), 2);
  EXPECT_EQ(scalar(c, "SELECT COUNT(*) FROM pg_prepared_statements"), "2");
}

TEST_F(PgTest, ChangesCountTheLastWrite) {
  PgConnection c(options());
  c.exec("CREATE TABLE t (n BIGINT); INSERT INTO t VALUES (1), (2), (3)");
  EXPECT_EQ(c.changes(), 3);
  c.prepare("UPDATE t SET n = n + ?1 WHERE n >= ?2").bind(1, int64_t{10}).bind(2, int64_t{2}).exec();
  EXPECT_EQ(c.changes(), 2);
  EXPECT_EQ(scalar(c, "SELECT SUM(n) FROM t"), "26");
  EXPECT_EQ(c.changes(), 2);  // reads do not count, as in SQLite
  sql::Statement& d = c.prepare("DELETE FROM t WHERE n > ?1 RETURNING n");
  d.bind(1, int64_t{0});
  ASSERT_TRUE(d.step());
  EXPECT_EQ(c.changes(), 3);
  d.reset();
  c.prepare("DELETE FROM t").exec();
  EXPECT_EQ(c.changes(), 0);
}

// send() does not wait for the server: statements sent go out in one pipeline, in order, and are answered with
// the next statement that waits, which sees what they did; a failure among them is thrown there (or by wait()),
// naming the statement that failed, and the connection goes on once the transaction is rolled back.
TEST_F(PgTest, SentStatementsRunInOrderAndAnswerWithTheNextThatWaits) {
  PgConnection c(options());
  c.exec("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0)");
  const char* insert = "INSERT INTO t(id) VALUES(?1)";
  c.exec("BEGIN");
  for (const char* id : {"a", "b", "c"}) c.prepare(insert).bind(1, id).send();
  c.prepare("UPDATE t SET n = n + 1 WHERE id >= ?1").bind(1, "b").exec();
  EXPECT_EQ(c.changes(), 2) << "the update ran after the inserts sent before it";
  c.prepare(insert).bind(1, "d").send();
  c.exec("COMMIT");
  EXPECT_EQ(scalar(c, "SELECT string_agg(id || n, ',' ORDER BY id) FROM t"), "a0,b1,c1,d0");

  c.exec("BEGIN");
  c.prepare(insert).bind(1, "a").send();  // a duplicate: nothing fails yet
  c.prepare(insert).bind(1, "e").send();
  sql::Error e = error_of([&] { scalar(c, "SELECT COUNT(*) FROM t"); });
  EXPECT_EQ(e.kind, Kind::constraint);
  EXPECT_THAT(e.what(), HasSubstr("INSERT INTO t(id) VALUES($1)"));
  EXPECT_TRUE(c.connection_ok());
  EXPECT_TRUE(c.in_failed_transaction());
  c.exec("ROLLBACK");
  c.prepare(insert).bind(1, "a").send();
  EXPECT_EQ(error_of([&] { c.wait(); }).kind, Kind::constraint);
  c.wait();  // nothing left to wait for
  EXPECT_EQ(scalar(c, "SELECT string_agg(id, ',' ORDER BY id) FROM t"), "a,b,c,d");
}

TEST_F(PgTest, ConstraintFailsOneOperationAndTheTransactionGoesOnFromItsSavepoint) {
  PgConnection c(options());
  c.exec("CREATE TABLE t (id TEXT PRIMARY KEY)");
  const char* insert = "INSERT INTO t(id) VALUES(?1)";
  c.exec("BEGIN");
  c.prepare(insert).bind(1, "a").exec();
  c.exec("SAVEPOINT op");
  sql::Error e = error_of([&] { c.prepare(insert).bind(1, "a").exec(); });
  EXPECT_EQ(e.kind, Kind::constraint);
  EXPECT_EQ(e.why, "constraint failed");
  EXPECT_THAT(e.what(), HasSubstr("duplicate key value violates unique constraint"));
  EXPECT_THAT(e.what(), HasSubstr("23505"));
  EXPECT_THAT(e.what(), HasSubstr("INSERT INTO t(id) VALUES($1)"));
  EXPECT_TRUE(c.connection_ok());
  EXPECT_TRUE(c.in_failed_transaction());
  EXPECT_EQ(error_of([&] { c.prepare(insert).bind(1, "b").exec(); }).kind, Kind::other);  // 25P02
  c.exec("ROLLBACK TO SAVEPOINT op");
  EXPECT_FALSE(c.in_failed_transaction());
  EXPECT_TRUE(c.in_transaction());
  c.exec("RELEASE SAVEPOINT op");
  c.prepare(insert).bind(1, "b").exec();
  c.exec("COMMIT");
  EXPECT_FALSE(c.in_transaction());
  EXPECT_EQ(scalar(c, "SELECT string_agg(id, ',' ORDER BY id) FROM t"), "a,b");
}

TEST_F(PgTest, ErrorsAreClassifiedBySqlstate) {
  PgConnection c(options());
  struct Case {
    const char* sqlstate;
    Kind kind;
    const char* why;
  };
  for (const Case& k :
       {Case{"53100", Kind::full, "database or disk is full"}, Case{"53200", Kind::full, "database or disk is full"},
        Case{"40P01", Kind::busy, "deadlock detected"}, Case{"40001", Kind::busy, "serialization failure"},
        Case{"55P03", Kind::busy, "lock not available"}, Case{"23503", Kind::constraint, "constraint failed"},
        Case{"58030", Kind::io, "disk I/O error"}, Case{"42P01", Kind::other, "SQL error (SQLSTATE 42P01)"}}) {
    std::string sql = std::string("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '") + k.sqlstate + "'; END $$";
    sql::Error e = error_of([&] { c.exec(sql.c_str()); });
    EXPECT_EQ(e.kind, k.kind) << k.sqlstate;
    EXPECT_EQ(e.why, k.why) << k.sqlstate;
    EXPECT_THAT(e.what(), HasSubstr("raised")) << k.sqlstate;
    EXPECT_THAT(e.what(), HasSubstr("RAISE EXCEPTION")) << k.sqlstate;
  }
  // An error in prepare() (the SQL is wrong) is an error of the operation, too.
  EXPECT_EQ(error_of([&] { c.prepare("SELECT * FROM no_such_table"); }).kind, Kind::other);
  EXPECT_TRUE(c.connection_ok());
}

TEST_F(PgTest, StatementTimeoutIsBusy) {
  PgOptions o = options();
  o.statement_timeout_ms = 200;
  PgConnection c(o);
  EXPECT_EQ(scalar(c, "SELECT current_setting('statement_timeout')"), "200ms");
  auto started = std::chrono::steady_clock::now();
  // pg_sleep runs on the server: a statement the timeout must cancel there. Nothing here sleeps.
  sql::Error e = error_of([&] { c.prepare("SELECT pg_sleep(?1)").bind(1, int64_t{30}).exec(); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  EXPECT_EQ(e.kind, Kind::busy);
  EXPECT_EQ(e.why, "statement timeout");
  EXPECT_THAT(e.what(), HasSubstr("57014"));
  EXPECT_TRUE(c.connection_ok());
  EXPECT_EQ(scalar(c, "SELECT 1"), "1");
}

TEST_F(PgTest, KilledBackendIsIoAndReconnectPreparesAgain) {
  PgConnection c(options());
  const char* select = "SELECT ?1::BIGINT * 2";
  EXPECT_EQ(scalar(c, "SELECT current_setting('application_name')"), "tayori test");
  c.prepare(select);
  int pid = c.backend_pid();
  ASSERT_GT(pid, 0);
  EXPECT_GE(c.server_version(), 100000);
  EXPECT_EQ(shared_pg_cluster().execute("SELECT pg_terminate_backend(" + std::to_string(pid) + ", 5000)"), "t");

  sql::Error e = error_of([&] {
    sql::Statement& s = c.prepare(select);
    s.bind(1, int64_t{21});
    s.step();
  });
  EXPECT_EQ(e.kind, Kind::io);
  EXPECT_EQ(e.why, "connection to the server lost");
  EXPECT_FALSE(c.connection_ok());
  EXPECT_FALSE(c.in_failed_transaction());
  // Everything else fails the same way until the writer reconnects.
  EXPECT_EQ(error_of([&] { c.exec("SELECT 1"); }).kind, Kind::io);

  c.reconnect();
  EXPECT_TRUE(c.connection_ok());
  EXPECT_NE(c.backend_pid(), pid);
  sql::Statement& s = c.prepare(select);
  s.bind(1, int64_t{21});
  ASSERT_TRUE(s.step());
  EXPECT_EQ(s.int64(0), 42);
  s.reset();
  EXPECT_EQ(scalar(c, "SELECT current_setting('application_name')"), "tayori test");
}

TEST_F(PgTest, FailingToConnectNamesTheDatabaseButNeverThePassword) {
  const std::string sock = shared_pg_cluster().socket_dir();
  for (const std::string& uri : {"postgresql://tayori:S3cretPW@/no_such_db?host=" + sock + "&port=5432",
                                 "postgresql://tayori:S3cretPW@/no_such_db?host=" + sock + "/missing&port=5432",
                                 "host=" + sock + " port=5432 dbname=no_such_db user=tayori password=S3cretPW",
                                 "host=" + sock + " dbname=no_such_db password='S3cretPW' junk",
                                 "postgresql://tayori:S3cretPW@/no_such_db?host=" + sock + "&bogus=S3cretPW",
                                 "postgresql://tayori:S3cretPW%zz@/no_such_db?host=" + sock}) {
    PgOptions o;
    o.uri = uri;
    o.connect_timeout_s = 2;
    try {
      PgConnection c(o);
      ADD_FAILURE() << "connected: " << uri;
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), Not(HasSubstr("S3cretPW"))) << uri;
      EXPECT_THAT(e.what(), HasSubstr("cannot connect to PostgreSQL")) << uri;
    }
  }
  PgOptions o;
  o.uri = "postgresql://tayori:S3cretPW@/no_such_db?host=" + sock + "&port=5432";
  try {
    PgConnection c(o);
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("database no_such_db"));
    EXPECT_THAT(e.what(), HasSubstr("host " + sock));
  }
  EXPECT_EQ(redact_password("password S3cret in text", "host=x password=S3cret"), "password ******** in text");
}

TEST_F(PgTest, MigrateBringsAFreshDatabaseToTheLatestVersionOnce) {
  PgConnection c(options());
  EXPECT_EQ(schema_version(c), 0);
  EXPECT_EQ(migrate(c), 0);
  EXPECT_EQ(schema_version(c), latest_schema_version());
  EXPECT_EQ(migrate(c), latest_schema_version());  // again: nothing to do
  EXPECT_EQ(scalar(c, "SELECT COUNT(*) FROM schema_version"), std::to_string(latest_schema_version()));
  EXPECT_FALSE(c.in_transaction());

  EXPECT_EQ(scalar(c,
                   "SELECT string_agg(table_name::TEXT, ',' ORDER BY table_name::TEXT) FROM information_schema.tables "
                   "WHERE table_schema = 'public'"),
            "cap_slots,consent,contact_points,events,inbound_seen,messages,nodes,questions,recipients,schema_version,"
            "stats,suppressions,webhook_cursors,webhook_holders");
  EXPECT_EQ(
      scalar(c,
             "SELECT string_agg(column_name::TEXT, ',' ORDER BY ordinal_position) FROM information_schema.columns "
             "WHERE table_name = 'messages'"),
      "id,api_key,payload_hash,payload,state,channel_index,channel,attempts,created_at,updated_at,due_at,"
      "send_at,expires_at,last_reason,recipient_id,channel_attempts,channel_since,provider_message_id,"
      "parent_id,claimed_by,lease_until,seq");
  // Migration 6: a message's events are found by its number, which grows as messages arrive, not by its id.
  EXPECT_EQ(scalar(c, "SELECT indexdef FROM pg_indexes WHERE indexname = 'events_message'"),
            "CREATE INDEX events_message ON public.events USING btree (message_seq, seq)");
  EXPECT_EQ(scalar(c,
                   "SELECT string_agg(indexname::TEXT, ',' ORDER BY indexname::TEXT) FROM pg_indexes "
                   "WHERE tablename = 'messages'"),
            "messages_due,messages_finished,messages_in_flight,messages_lease,messages_parent,messages_pkey,"
            "messages_provider_message,messages_recipient,messages_replayable");
  EXPECT_EQ(scalar(c, "SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_lease'"),
            "CREATE INDEX messages_lease ON public.messages USING btree (lease_until) WHERE (state = "
            "'dispatched'::text)");
  // Byte order, as SQLite compares, whatever the database's collation.
  EXPECT_EQ(scalar(c,
                   "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'public' "
                   "AND data_type = 'text' AND collation_name IS DISTINCT FROM 'C'"),
            "0");
  // Times are 64-bit; events and consent number themselves.
  c.prepare("INSERT INTO events(message_id, type, at) VALUES(?1, ?2, ?3)")
      .bind(1, "m")
      .bind(2, "accepted")
      .bind(3, int64_t{4'102'444'800'000})
      .exec();
  c.prepare("INSERT INTO consent(recipient_id, channel, purpose, state, source, at) VALUES('r', 'c', 'p', 's', 'x', 1)")
      .exec();
  EXPECT_EQ(scalar(c, "SELECT seq || ':' || at || ':' || detail FROM events"), "1:4102444800000:{}");
  EXPECT_EQ(scalar(c, "SELECT seq FROM consent"), "1");
}

TEST_F(PgTest, NodesMigratingAtOnceAgreeOnOneSchema) {
  PgConnection a(options()), b(options());
  std::latch go(2);
  int found_a = -1, found_b = -1;
  std::string error;
  auto run = [&](PgConnection& c, int& found) {
    go.arrive_and_wait();
    try {
      found = migrate(c);
    } catch (const std::exception& e) {
      error = e.what();
    }
  };
  std::thread ta(run, std::ref(a), std::ref(found_a)), tb(run, std::ref(b), std::ref(found_b));
  ta.join();
  tb.join();
  ASSERT_EQ(error, "");
  // One applied the migrations, the other waited for its lock and found them applied.
  EXPECT_EQ(std::min(found_a, found_b), 0);
  EXPECT_EQ(std::max(found_a, found_b), latest_schema_version());
  EXPECT_EQ(scalar(a, "SELECT COUNT(*) || ':' || MAX(version) FROM schema_version"),
            std::to_string(latest_schema_version()) + ":" + std::to_string(latest_schema_version()));
}

TEST_F(PgTest, ADatabaseNewerThanThisBuildIsRefused) {
  PgConnection c(options());
  migrate(c);
  int newer = latest_schema_version() + 3;
  c.prepare("INSERT INTO schema_version(version, applied_at) VALUES(?1, 0)").bind(1, int64_t{newer}).exec();
  try {
    migrate(c);
    FAIL() << "migrated a newer database";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("version " + std::to_string(newer)));
    EXPECT_THAT(e.what(), HasSubstr("version " + std::to_string(latest_schema_version())));
  }
  EXPECT_FALSE(c.in_transaction());
  EXPECT_EQ(schema_version(c), newer);
}

TEST_F(PgTest, TheClusterRestartsAndKeepsItsData) {
  PgCluster& pg = shared_pg_cluster();
  PgConnection c(options());
  c.exec("CREATE TABLE t (n BIGINT); INSERT INTO t VALUES (7)");
  for (PgCluster::Stop how : {PgCluster::Stop::fast, PgCluster::Stop::immediate}) {
    pg.restart(how);
    EXPECT_TRUE(pg.running());
    // The old session is gone (a fast stop ended it, an immediate one crashed it).
    sql::Error lost = error_of([&] { c.exec("SELECT 1"); });
    EXPECT_EQ(lost.kind, Kind::io) << lost.what();
    EXPECT_FALSE(c.connection_ok());
    c.reconnect();
    EXPECT_EQ(scalar(c, "SELECT n FROM t"), "7");
  }
  // Any name: quoted in SQL, encoded in the URI.
  std::string odd = pg.create_database("Odd name/é?&\"");
  PgConnection o(PgOptions{odd, 5, 0, ""});
  EXPECT_EQ(scalar(o, "SELECT current_database()"), "Odd name/é?&\"");
  pg.stop();
  EXPECT_FALSE(pg.running());
  // A server that is away is the store's io error, as a lost session is (the API answers it 503).
  sql::Error away = error_of([&] { PgConnection{options()}; });
  EXPECT_EQ(away.kind, Kind::io) << away.what();
  EXPECT_THAT(away.what(), HasSubstr("cannot connect to PostgreSQL"));
  pg.start();
  EXPECT_TRUE(pg.running());
  PgConnection again(options());
  EXPECT_EQ(scalar(again, "SELECT n FROM t"), "7");
}

}  // namespace
}  // namespace tayori::store::postgres
