// Tests for the Store on both engines (gateway/store/: the operations of ops/ run by sql_store.cpp) on a real
// SQLite file per test here, and on a real PostgreSQL database per test in pg_store_tests (the same file,
// TAYORI_STORE_TESTS_ON_POSTGRES): idempotent accept, the event timeline, cancel, the due queue (claim, apply,
// requeue), purge, durability across close/reopen, group commit under concurrency, and refusing a newer schema.
// Asynchronous completions are awaited with promises and latches, never with sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/message.hpp"
#include "store/ops/erasure.hpp"
#include "store/ops/suppressions.hpp"
#include "store/sqlite_store.hpp"
#include "crypto/crypto.hpp"
#include "test_support.hpp"

namespace tayori::store {
namespace {

using test::event_types;
using test::exec_sql;
using test::user_version;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

NewMessage new_message(const std::string& id, int64_t due_at_ms, const std::string& payload = "") {
  NewMessage m;
  m.id = id;
  m.api_key = "upstream";
  m.payload = payload.empty() ? R"({"id":")" + id + R"("})" : payload;
  m.payload_hash = crypto::sha256_hex(m.payload);
  m.due_at_ms = due_at_ms;
  m.events = {{"accepted", R"({"api_key":"upstream"})"}};
  return m;
}

std::vector<std::string> ids(const std::vector<MessageRecord>& records) {
  return test::pluck(records, &MessageRecord::id);
}

class StoreTestBase : public test::StoreFixture {
 protected:
  StoreTestBase() : StoreFixture("tayori_store_test_") {}

  AcceptResult accept_one(NewMessage m, int64_t now_ms) {
    auto results = accept({std::move(m)}, now_ms);
    EXPECT_EQ(results.size(), 1u);
    return results.empty() ? AcceptResult{} : results[0];
  }
  CancelResult cancel(const std::string& id, int64_t now_ms) {
    return await<CancelResult>([&](auto done) { store_->cancel(id, now_ms, std::move(done)); });
  }
  // Accepts `id` at `now_ms` and claims it, leaving it dispatched.
  MessageRecord dispatched(const std::string& id, int64_t now_ms) {
    EXPECT_EQ(accept_one(new_message(id, now_ms), now_ms).status, AcceptStatus::accepted);
    auto claimed = store_->claim_due(now_ms, 1).value();
    EXPECT_EQ(claimed.size(), 1u);
    if (!claimed.empty()) {
      EXPECT_EQ(claimed[0].id, id) << "another message was due first";
    }
    return claimed.empty() ? MessageRecord{} : claimed[0];
  }
  void put_question(const std::string& contact, const std::string& channel, InboundStore::Question q) {
    await([&](auto done) { store_->put_question(contact, channel, std::move(q), std::move(done)); });
  }
  int apply_inbound(InboundStore::InboundWrites writes, int64_t now_ms) {
    return await<int>([&](auto done) { store_->apply_inbound({std::move(writes)}, now_ms, std::move(done)); });
  }
  // Brings `id` to a final state at `now_ms` through the dispatcher's path.
  void finish(const std::string& id, State to, int64_t now_ms) {
    dispatched(id, now_ms);
    Transition t;
    t.message_id = id;
    t.to = to;
    t.channel = "email";
    t.events = {{std::string(to_string(to)), "{}"}};
    apply(t, now_ms);
    ASSERT_EQ(store_->find(id)->state, to);
  }
};

// What every engine must do: run on SQLite here, on PostgreSQL in pg_store_tests (the same file).
class StoreTest : public StoreTestBase, public ::testing::WithParamInterface<test::StoreBackend> {
 protected:
  test::StoreBackend backend() const override { return GetParam(); }

  // A trigger that refuses a row of `table` whose `column` is 'poison': a failure of the engine's own.
  void poison(const std::string& table, const std::string& column) {
    run_sql_behind("CREATE TRIGGER poison BEFORE INSERT ON " + table + " WHEN NEW." + column +
                       " = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
                   "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW." + column +
                       " = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; "
                       "CREATE TRIGGER poison BEFORE INSERT ON " +
                       table + " FOR EACH ROW EXECUTE FUNCTION poison()");
  }
  // A batch large enough to keep the writer busy while the operations submitted after it queue behind it, so
  // that they share a group (a test counts the commits to tell).
  static std::vector<NewMessage> busy_batch() {
    std::vector<NewMessage> batch;
    for (int i = 0; i < 2'000; ++i) batch.push_back(new_message("big-" + std::to_string(i), 50'000));
    return batch;
  }
};
TAYORI_STORE_ENGINE_SUITE(StoreTest);

// What only the embedded file has: its WAL and checkpoints, PRAGMA user_version, a size limit.
class SqliteStoreTest : public StoreTestBase {};

// ---- accept -------------------------------------------------------------------------------------------

TEST_P(StoreTest, AcceptStoresEveryField) {
  NewMessage m = new_message("m1", 5'000, R"({"id":"m1","x":1})");
  m.api_key = "ops";
  m.send_at_ms = 5'000;
  m.expires_at_ms = 90'000;
  AcceptResult r = accept_one(m, 1'000);
  EXPECT_EQ(r.status, AcceptStatus::accepted);
  EXPECT_EQ(r.state, State::scheduled);

  auto found = store_->find("m1");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, "m1");
  EXPECT_EQ(found->api_key, "ops");
  EXPECT_EQ(found->payload, R"({"id":"m1","x":1})");
  EXPECT_EQ(found->payload_hash, crypto::sha256_hex(R"({"id":"m1","x":1})"));
  EXPECT_EQ(found->state, State::scheduled);
  EXPECT_EQ(found->channel_index, 0);
  EXPECT_EQ(found->channel, "");
  EXPECT_EQ(found->attempts, 0);
  EXPECT_EQ(found->created_at_ms, 1'000);
  EXPECT_EQ(found->updated_at_ms, 1'000);
  EXPECT_EQ(found->due_at_ms, 5'000);
  EXPECT_EQ(found->send_at_ms, 5'000);
  EXPECT_EQ(found->expires_at_ms, 90'000);
  EXPECT_EQ(found->last_reason, "");

  // Optional instants stay absent.
  accept_one(new_message("m2", 1'000), 1'000);
  EXPECT_FALSE(store_->find("m2")->send_at_ms.has_value());
  EXPECT_FALSE(store_->find("m2")->expires_at_ms.has_value());

  EXPECT_FALSE(store_->find("nope").has_value());
  EXPECT_TRUE(store_->healthy());
}

TEST_P(StoreTest, SameIdAndHashIsADuplicateWithTheCurrentState) {
  ASSERT_EQ(accept_one(new_message("m1", 1'000), 1'000).status, AcceptStatus::accepted);
  AcceptResult again = accept_one(new_message("m1", 9'000), 2'000);
  EXPECT_EQ(again.status, AcceptStatus::duplicate);
  EXPECT_EQ(again.state, State::scheduled);
  // Nothing about the stored message changed, and no second timeline was started.
  EXPECT_EQ(store_->find("m1")->due_at_ms, 1'000);
  EXPECT_EQ(store_->find("m1")->created_at_ms, 1'000);
  EXPECT_THAT(event_types(store_->events("m1")), ElementsAre("accepted"));

  ASSERT_EQ(cancel("m1", 3'000).status, CancelStatus::cancelled);
  again = accept_one(new_message("m1", 1'000), 4'000);
  EXPECT_EQ(again.status, AcceptStatus::duplicate);
  EXPECT_EQ(again.state, State::cancelled);
}

TEST_P(StoreTest, SameIdDifferentHashIsAConflict) {
  ASSERT_EQ(accept_one(new_message("m1", 1'000, R"({"v":1})"), 1'000).status, AcceptStatus::accepted);
  AcceptResult r = accept_one(new_message("m1", 1'000, R"({"v":2})"), 2'000);
  EXPECT_EQ(r.status, AcceptStatus::conflict);
  EXPECT_EQ(r.state, State::scheduled);
  EXPECT_EQ(store_->find("m1")->payload, R"({"v":1})");  // the first one stands
  EXPECT_THAT(event_types(store_->events("m1")), ElementsAre("accepted"));
}

TEST_P(StoreTest, DuplicatesInsideOneBatch) {
  auto results = accept({new_message("a", 1'000, R"({"a":1})"), new_message("a", 1'000, R"({"a":1})"),
                         new_message("b", 1'000), new_message("a", 1'000, R"({"a":2})")},
                        1'000);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].status, AcceptStatus::accepted);
  EXPECT_EQ(results[1].status, AcceptStatus::duplicate);
  EXPECT_EQ(results[2].status, AcceptStatus::accepted);
  EXPECT_EQ(results[3].status, AcceptStatus::conflict);
  EXPECT_THAT(event_types(store_->events("a")), ElementsAre("accepted"));
  EXPECT_EQ(store_->count_by_state()[State::scheduled], 2);
}

TEST_P(StoreTest, AClaimedAcceptIsStoredAsClaimDueWouldHaveClaimedIt) {
  NewMessage m = new_message("c1", 1'000, R"({"id":"c1"})");
  m.claim = true;
  AcceptResult r = accept_one(m, 1'000);
  EXPECT_EQ(r.status, AcceptStatus::accepted);
  EXPECT_EQ(r.state, State::dispatched);
  ASSERT_TRUE(r.claimed.has_value());
  auto stored = store_->find("c1");
  ASSERT_TRUE(stored.has_value());
  // The claim handed over is the row as stored, field by field.
  for (const MessageRecord* c : {&*r.claimed, &*stored}) {
    EXPECT_EQ(c->state, State::dispatched);
    EXPECT_EQ(c->attempts, 1);
    EXPECT_EQ(c->channel_attempts, 1);
    EXPECT_EQ(c->channel_since_ms, 1'000);
    EXPECT_EQ(c->payload, R"({"id":"c1"})");
    EXPECT_EQ(c->api_key, "upstream");
  }
  EXPECT_EQ(store_->count_by_state()[State::dispatched], 1);
  EXPECT_EQ(store_->count_by_state()[State::scheduled], 0);
  EXPECT_THAT(store_->claim_due(5'000, 10).value(), IsEmpty());  // never claimed twice

  // A duplicate is never claimed: the message it repeats has its own state.
  AcceptResult again = accept_one(m, 2'000);
  EXPECT_EQ(again.status, AcceptStatus::duplicate);
  EXPECT_FALSE(again.claimed.has_value());

  // A crash before its outcome: requeued at the next start like any claim.
  EXPECT_EQ(store_->requeue_in_flight(3'000).value(), 1);
  EXPECT_EQ(store_->find("c1")->state, State::scheduled);
}

TEST_P(StoreTest, EmptyBatchCompletesOk) { EXPECT_THAT(accept({}, 1'000), IsEmpty()); }

TEST_P(StoreTest, AcceptMergesTheRecipientIntoItsProfile) {
  NewMessage first = new_message("m1", 1'000);
  first.recipient_id = "u1";
  first.recipient =
      RecipientUpdate::parse(R"({"id":"u1","timezone":"Asia/Tokyo","contacts":{"email":"a@example.jp"}})");
  accept_one(first, 1'000);
  NewMessage second = new_message("m2", 1'000);
  second.recipient_id = "u1";
  second.recipient = RecipientUpdate::parse(R"({"id":"u1","locale":"ja-JP","contacts":{"phone":"+819012345678"}})");
  accept_one(second, 2'000);
  auto profile = store_->recipient("u1");
  ASSERT_TRUE(profile.has_value());
  EXPECT_EQ(profile->timezone, "Asia/Tokyo");  // kept: the second message did not say
  EXPECT_EQ(profile->locale, "ja-JP");
  EXPECT_EQ(nlohmann::json::parse(profile->contacts_json),
            nlohmann::json::parse(R"({"email":"a@example.jp","phone":"+819012345678"})"));
  EXPECT_EQ(profile->updated_at_ms, 2'000);

  // A duplicate is not a new submission: it changes nothing.
  NewMessage again = second;
  again.recipient = RecipientUpdate::parse(R"({"id":"u1","locale":"en-US"})");
  EXPECT_EQ(accept_one(again, 3'000).status, AcceptStatus::duplicate);
  EXPECT_EQ(store_->recipient("u1")->locale, "ja-JP");
  EXPECT_FALSE(store_->recipient("nobody").has_value());
}

// The merge's three cases, each as the writer takes it: a new recipient gets the message's contacts and
// contact points; one who comes back with the contacts stored costs no write (updated_at stays); one whose
// message names fewer contacts keeps the others, and a push token list is never a contact point.
TEST_P(StoreTest, AcceptWritesANewProfileKeepsAnUnchangedOneAndMergesAPartialOne) {
  const char* full = R"({"id":"u1","contacts":{"email":"a@example.jp","phone":"+819012345678",)"
                     R"("push":[{"platform":"fcm","token":"tok-1"}]}})";
  NewMessage first = new_message("m1", 1'000);
  first.recipient_id = "u1";
  first.recipient = RecipientUpdate::parse(full);
  accept_one(first, 1'000);
  EXPECT_EQ(store_->recipients_by_contact("a@example.jp"), std::vector<std::string>{"u1"});
  EXPECT_EQ(store_->recipients_by_contact("+819012345678"), std::vector<std::string>{"u1"});
  EXPECT_TRUE(store_->recipients_by_contact("tok-1").empty());

  NewMessage same = new_message("m2", 1'000);
  same.recipient_id = "u1";
  same.recipient = RecipientUpdate::parse(full);
  accept_one(same, 2'000);
  EXPECT_EQ(store_->recipient("u1")->updated_at_ms, 1'000);

  NewMessage partial = new_message("m3", 1'000);
  partial.recipient_id = "u1";
  partial.recipient = RecipientUpdate::parse(R"({"id":"u1","contacts":{"email":"b@example.jp"}})");
  accept_one(partial, 3'000);
  auto profile = store_->recipient("u1");
  EXPECT_EQ(profile->updated_at_ms, 3'000);
  EXPECT_EQ(nlohmann::json::parse(profile->contacts_json),
            nlohmann::json::parse(R"({"email":"b@example.jp","phone":"+819012345678",)"
                                  R"("push":[{"platform":"fcm","token":"tok-1"}]})"));
  EXPECT_TRUE(store_->recipients_by_contact("a@example.jp").empty());
  EXPECT_EQ(store_->recipients_by_contact("b@example.jp"), std::vector<std::string>{"u1"});
  EXPECT_EQ(store_->recipients_by_contact("+819012345678"), std::vector<std::string>{"u1"});

  // Not an object: nothing to merge.
  EXPECT_FALSE(RecipientUpdate::parse(R"(["u1"])").has_value());
  EXPECT_FALSE(RecipientUpdate::parse("not json").has_value());
}

// ---- events, counts -----------------------------------------------------------------------------------

TEST_P(StoreTest, EventsAreRecordedInOrderWithTheirTypesAndTimes) {
  NewMessage m = new_message("m1", 1'000);
  m.events = {{"accepted", R"({"api_key":"upstream"})"}, {"scheduled", R"({"until":"x"})", 777}, {"note", "{}"}};
  accept_one(m, 1'000);
  auto events = store_->events("m1");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_THAT(event_types(events), ElementsAre("accepted", "scheduled", "note"));
  EXPECT_EQ(events[0].message_id, "m1");
  EXPECT_EQ(events[0].at_ms, 1'000);  // at_ms 0: the time of the write
  EXPECT_EQ(events[0].detail_json, R"({"api_key":"upstream"})");
  EXPECT_EQ(events[1].at_ms, 777);  // given explicitly
  EXPECT_EQ(events[1].detail_json, R"({"until":"x"})");
  EXPECT_EQ(events[2].detail_json, "{}");
  EXPECT_LT(events[0].seq, events[1].seq);
  EXPECT_LT(events[1].seq, events[2].seq);
  EXPECT_THAT(store_->events("other"), IsEmpty());
}

// The feed read with a type filter and newest first (GET /v1/events?types=&order=desc), on each engine's own
// substring function: a type matches only as a whole ("opted_in" is not "opted").
TEST_P(StoreTest, TheFeedFiltersByTypeInEitherOrder) {
  for (const char* id : {"f1", "f2", "f3"}) {
    NewMessage m = new_message(id, 1'000);
    m.events = {{"accepted", "{}"}, {std::string(id) == "f2" ? "opted_out" : "opted_in", "{}"}};
    accept_one(m, 1'000);
  }
  auto ids = [](const std::vector<TimelineEvent>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.message_id + ":" + e.type);
    return out;
  };
  FeedQuery q;
  q.types = {"opted_in"};
  EXPECT_THAT(ids(store_->read_feed(q)), ElementsAre("f1:opted_in", "f3:opted_in"));
  q.types = {"opted_in", "opted_out"};
  q.newest_first = true;
  EXPECT_THAT(ids(store_->read_feed(q)), ElementsAre("f3:opted_in", "f2:opted_out", "f1:opted_in"));
  q.limit = 1;
  auto newest = store_->read_feed(q);
  ASSERT_EQ(newest.size(), 1u);
  q.up_to_seq = newest[0].seq - 1;
  EXPECT_THAT(ids(store_->read_feed(q)), ElementsAre("f2:opted_out"));
  q.types = {"opted"};
  EXPECT_THAT(store_->read_feed(q), IsEmpty());
  q.types = {};
  q.limit = 100;
  EXPECT_EQ(store_->read_feed(q).size(), 5u);  // everything below the newest, newest first
}

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
// Checkpoints run on their own thread (not in the commit that crosses the threshold): the WAL's pages reach
// the database file and the WAL starts over, so it does not grow without end. (A first version opened a
// connection that never read the database and so never opened the WAL: its checkpoints did nothing, and a
// million messages left a 1.3 GB WAL beside a 4 KiB database.)
TEST_F(SqliteStoreTest, CheckpointsMoveTheWalIntoTheDatabase) {
  // The checkpointer tells each checkpoint it runs (SqliteOptions::on_checkpoint); the test waits for those,
  // never for time to pass. (Besides the commits that wake it, it checkpoints once a second on its own.)
  struct Checkpoints {
    std::mutex mutex;
    std::condition_variable ran;
    int all = 0, complete = 0;  // complete: the whole WAL is in the database
    // Waits until `count` (all or complete) exceeds `seen`. False after 30 s: the checkpointer has stopped.
    bool wait_past(const int& count, int seen) {
      std::unique_lock lock(mutex);
      return ran.wait_for(lock, std::chrono::seconds(30), [&] { return count > seen; });
    }
  };
  // Shared with the callback: the store, and its checkpointer, outlive this body (TearDown closes it).
  auto shared = std::make_shared<Checkpoints>();
  Checkpoints& checkpoints = *shared;
  store_.reset();
  store::SqliteOptions options{path_};
  options.on_checkpoint = [shared](int rc, int wal_frames, int checkpointed_frames) {
    std::lock_guard lock(shared->mutex);
    ++shared->all;
    if (rc == SQLITE_OK && checkpointed_frames == wal_frames) ++shared->complete;
    shared->ran.notify_all();
  };
  store_ = store::open_sqlite(options);

  const std::string filler(3000, 'x');  // about one page per message
  std::vector<NewMessage> batch;
  for (int i = 0; i < 2500; ++i) {
    batch.push_back(new_message("cp-" + std::to_string(i), 1'000, R"({"pad":")" + filler + std::to_string(i) + R"("})"));
    if (batch.size() == 250) {
      accept(std::move(batch), 1'000);
      batch.clear();
    }
  }
  // About 10 MB went through the WAL; checkpoints copy it into the database file, which grows past 4 MB.
  // (Without them it stays at its first pages, checkpoint after checkpoint.)
  for (int i = 0; i < 20 && std::filesystem::file_size(path_) <= 4'000'000; ++i) {
    int seen;
    {
      std::lock_guard lock(checkpoints.mutex);
      seen = checkpoints.all;
    }
    if (std::filesystem::file_size(path_) > 4'000'000) break;
    ASSERT_TRUE(checkpoints.wait_past(checkpoints.all, seen)) << "the checkpointer stopped";
  }
  EXPECT_GT(std::filesystem::file_size(path_), 4'000'000u)
      << "database " << std::filesystem::file_size(path_) << " bytes, WAL "
      << std::filesystem::file_size(path_ + "-wal") << " bytes";
  // Once a checkpoint has copied the whole WAL, the next commit reuses the WAL from its start instead of
  // appending to it: a commit that leaves the file's size as it was. (A checkpoint that began before the
  // previous commit did not copy that commit's pages: then the next complete one is waited for. Without
  // checkpoints every commit appends its pages and no complete checkpoint comes.)
  bool reused = false;
  for (int i = 0; i < 20 && !reused; ++i) {
    int seen;
    {
      std::lock_guard lock(checkpoints.mutex);
      seen = checkpoints.complete;
    }
    ASSERT_TRUE(checkpoints.wait_past(checkpoints.complete, seen))
        << "no complete checkpoint; WAL " << std::filesystem::file_size(path_ + "-wal") << " bytes";
    auto before = std::filesystem::file_size(path_ + "-wal");
    accept_one(new_message("after-" + std::to_string(i), 1'000), 1'000);
    reused = std::filesystem::file_size(path_ + "-wal") == before;
  }
  EXPECT_TRUE(reused) << "WAL " << std::filesystem::file_size(path_ + "-wal") << " bytes";
}

// Under writes that never pause, the checkpointer copies the WAL into the database but never catches up with
// the writer, and SQLite writes at the WAL's start again only when a transaction begins with all of it copied:
// the WAL grew by every page written (550 MB after the bench's 200,000 messages). The writer starts it over
// itself once it holds SqliteOptions::wal_restart_frames, so it stays near that length.
TEST_F(SqliteStoreTest, UnderWritesWithoutAPauseTheWalStartsOverAndStaysNearItsLimit) {
  store_.reset();
  store::SqliteOptions options{path_};
  options.max_group = 4;             // many small groups, back to back
  options.wal_restart_frames = 256;  // 1 MiB
  store_ = store::open_sqlite(options);
  const std::string filler(3000, 'x');  // about one page per message
  constexpr int kBatches = 1500;        // about 6,000 pages through the WAL, 24 MB
  std::mutex mutex;
  std::condition_variable done;
  int answered = 0, failed = 0;
  for (int i = 0; i < kBatches; ++i) {
    std::vector<NewMessage> batch;
    for (int k = 0; k < 2; ++k) {
      const std::string id = "nonstop-" + std::to_string(i) + "-" + std::to_string(k);
      batch.push_back(new_message(id, 1'000, R"({"pad":")" + filler + id + R"("})"));
    }
    store_->accept(std::move(batch), 1'000, [&](const Result<std::vector<AcceptResult>>& r) {
      std::lock_guard lock(mutex);
      ++answered;
      if (!r) ++failed;
      done.notify_all();
    });
  }
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(done.wait_for(lock, std::chrono::seconds(120), [&] { return answered == kBatches; }));
  }
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(store_->count_by_state()[State::scheduled], 2 * kBatches);
  // The limit, what the groups committed while a restart waited, and the WAL's header: well under 4 MiB.
  const auto wal_bytes = std::filesystem::file_size(path_ + "-wal");
  EXPECT_LT(wal_bytes, 4u * 1024 * 1024) << "WAL " << wal_bytes << " bytes";
}

// A reader that holds an old snapshot keeps the WAL from starting over; the writer's attempt waits for it (2 ms at
// most) and gives up. Trying again at every group would add that wait to each of them while the read lasts: after
// an attempt that waited in vain, the writer lets 64 groups pass. Once the reader is gone, a restart goes through.
TEST_F(SqliteStoreTest, AReaderHoldingTheWalDelaysItsRestartWithoutAWaitInEveryGroup) {
  struct Attempts {
    std::mutex mutex;
    int busy = 0, done = 0;
  };
  auto attempts = std::make_shared<Attempts>();  // the store's writer outlives this body (TearDown closes it)
  store_.reset();
  store::SqliteOptions options{path_};
  options.wal_restart_frames = 16;
  options.on_wal_restart = [attempts](int rc) {
    std::lock_guard lock(attempts->mutex);
    ++(rc == SQLITE_OK ? attempts->done : attempts->busy);
  };
  store_ = store::open_sqlite(options);
  const std::string filler(3000, 'x');  // about one page per message
  auto write = [&](const std::string& id) {
    ASSERT_EQ(accept_one(new_message(id, 1'000, R"({"pad":")" + filler + id + R"("})"), 1'000).status,
              AcceptStatus::accepted);
  };
  for (int i = 0; i < 30; ++i) write("before-" + std::to_string(i));
  // A reader's snapshot from here on: the WAL cannot start over while it lasts.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM messages;", nullptr, nullptr, nullptr), SQLITE_OK);
  int busy_before = 0;
  {
    std::lock_guard lock(attempts->mutex);
    busy_before = attempts->busy;
  }
  constexpr int kGroups = 200;
  for (int i = 0; i < kGroups; ++i) write("during-" + std::to_string(i));
  int busy_during = 0;
  {
    std::lock_guard lock(attempts->mutex);
    busy_during = attempts->busy - busy_before;
  }
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  // One attempt per 64 groups and a few besides (the checkpointer's own checkpoint in the way costs no wait and is
  // tried again at the next group), not one per group.
  EXPECT_GE(busy_during, 1);
  EXPECT_LE(busy_during, kGroups / 8) << "attempts while the reader held the WAL";
  int done_before = 0;
  {
    std::lock_guard lock(attempts->mutex);
    done_before = attempts->done;
  }
  const auto grown = std::filesystem::file_size(path_ + "-wal");
  for (int i = 0; i < 100; ++i) write("after-" + std::to_string(i));
  {
    std::lock_guard lock(attempts->mutex);
    EXPECT_GT(attempts->done, done_before) << "no restart once the reader was gone";
  }
  // The WAL grew while the reader held it (200 pages and more); once it started over it was cut back to twice the
  // restart length (32 pages), and has stayed near it since.
  EXPECT_GT(grown, 200u * 4096);
  EXPECT_LT(std::filesystem::file_size(path_ + "-wal"), 100u * 4096) << "grown to " << grown << " bytes";
}

// While a reader holds an old snapshot a checkpoint cannot copy the newest frames, and the WAL stays over the
// threshold: the writer wakes the checkpointer each time the WAL grows by a step, not at every commit (which
// ran a checkpoint, with its sync of the database file, per commit).
TEST_F(SqliteStoreTest, ACheckpointIsWokenPerStepOfWalGrowthNotPerCommit) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  store_.reset();
  store::SqliteOptions options{path_};
  options.on_checkpoint = [calls](int, int, int) { ++*calls; };
  store_ = store::open_sqlite(options);
  const std::string filler(3000, 'x');  // about one page per message
  std::vector<NewMessage> batch;
  for (int i = 0; i < 1100; ++i)
    batch.push_back(
        new_message("big-" + std::to_string(i), 1'000, R"({"pad":")" + filler + std::to_string(i) + R"("})"));
  accept(std::move(batch), 1'000);
  // A reader's snapshot from here on: what is committed after it stays in the WAL.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM messages;", nullptr, nullptr, nullptr), SQLITE_OK);
  int before = calls->load();
  constexpr int kCommits = 150;
  for (int i = 0; i < kCommits; ++i) accept_one(new_message("small-" + std::to_string(i), 1'000), 1'000);
  int during = calls->load() - before;
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  // A few frames a commit: a few steps in all, and the checkpointer's own once-a-second round.
  EXPECT_LE(during, 15) << "checkpoints during " << kCommits << " commits";
}
#endif

// A read the database cannot answer throws the one read error, holding an Error with the engine's reason;
// the store goes on answering what it can. The failure is the engine's own: the table is gone.
TEST_P(StoreTest, AReadThatFailsThrowsReadErrorAndTheStoreGoesOn) {
  ASSERT_EQ(accept_one(new_message("kept", 1'000), 1'000).status, AcceptStatus::accepted);
  run_sql_behind("DROP TABLE suppressions", "DROP TABLE suppressions");
  try {
    (void)store_->suppressions({"someone@example.com"});
    ADD_FAILURE() << "a read of a dropped table answered";
  } catch (const ReadError& e) {
    EXPECT_FALSE(e.error.message.empty());
    EXPECT_NE(std::string(e.what()).find("suppressions"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(store_->find("kept").has_value());
}

// The blocking writes (the claim, the requeue at start, the purge) answer the engine's error instead of an
// empty claim or a count of 0, which would read as "nothing due" or "nothing to do"; nothing of theirs is
// committed, and once the engine takes the write again they do it. The failures are the engine's own: a
// trigger refuses the row's change. (The Error holds the engine's short reason, "constraint failed"; its
// detail is in the store's log line.)
TEST_P(StoreTest, BlockingWritesAnswerTheEnginesErrorAndCommitNothing) {
  // One trigger per write, each refusing one kind of change to a message row.
  auto refuse = [&](const std::string& name, const std::string& event, const std::string& when) {
    run_sql_behind("CREATE TRIGGER " + name + " BEFORE " + event + " ON messages WHEN " + when +
                       " BEGIN SELECT RAISE(ABORT, 'refused by " + name + "'); END",
                   "CREATE FUNCTION " + name + "() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by " + name +
                       "'; END $$ LANGUAGE plpgsql; CREATE TRIGGER " + name + " BEFORE " + event +
                       " ON messages FOR EACH ROW WHEN (" + when + ") EXECUTE FUNCTION " + name + "()");
  };
  auto allow = [&](const std::string& name) {
    run_sql_behind("DROP TRIGGER " + name, "DROP TRIGGER " + name + " ON messages; DROP FUNCTION " + name + "()");
  };
  ASSERT_EQ(accept_one(new_message("due", 1'000), 1'000).status, AcceptStatus::accepted);

  refuse("no_claim", "UPDATE", "NEW.state = 'dispatched'");
  Result<std::vector<MessageRecord>> claim = store_->claim_due(2'000, 10);
  ASSERT_FALSE(claim.ok()) << "a failed claim read as nothing due";
  EXPECT_FALSE(claim.error().message.empty());
  EXPECT_EQ(store_->find("due")->state, State::scheduled);
  EXPECT_EQ(store_->find("due")->attempts, 0);
  allow("no_claim");
  EXPECT_THAT(ids(store_->claim_due(2'000, 10).value()), ElementsAre("due"));

  refuse("no_requeue", "UPDATE", "OLD.state = 'dispatched' AND NEW.state = 'scheduled'");
  Result<int> requeued = store_->requeue_in_flight(3'000);
  ASSERT_FALSE(requeued.ok()) << "a failed requeue read as nothing in flight";
  EXPECT_FALSE(requeued.error().message.empty());
  EXPECT_EQ(store_->find("due")->state, State::dispatched);
  EXPECT_EQ(store_->count_by_state()[State::dispatched], 1);
  allow("no_requeue");
  EXPECT_EQ(store_->requeue_in_flight(3'000).value(), 1);

  accept_one(new_message("gone", 60'000), 1'000);
  cancel("gone", 1'000);
  refuse("no_purge", "DELETE", "OLD.id = 'gone'");
  Result<int64_t> purged = store_->purge_finished(5'000);
  ASSERT_FALSE(purged.ok()) << "a failed purge read as nothing past retention";
  EXPECT_FALSE(purged.error().message.empty());
  EXPECT_TRUE(store_->find("gone").has_value());
  allow("no_purge");
  EXPECT_EQ(store_->purge_finished(5'000).value(), 1);
  EXPECT_FALSE(store_->find("gone").has_value());
}

// The writer is the one thread every durable answer goes through: a caller's completion that throws is
// logged, and the writer goes on with the next group.
TEST_P(StoreTest, ACompletionThatThrowsDoesNotStopTheWriter) {
  store_->release_slot("r", "m", [](const Result<void>&) { throw std::runtime_error("a caller's bug"); });
  EXPECT_EQ(accept_one(new_message("after", 1'000), 1'000).status, AcceptStatus::accepted);
  EXPECT_TRUE(store_->find("after").has_value());
}

// A group runs its operations first with no savepoint each (two statements fewer per operation). When one
// fails, the group is rolled back and runs again with a savepoint per operation: the failed one alone is
// refused, every other is committed once, its results and the state counts as if it had run once. The
// failure is the engine's own: a trigger refuses one suppression.
TEST_P(StoreTest, AnOperationThatFailsInAGroupFailsAloneAndTheOthersCommitOnce) {
  poison("suppressions", "contact");
  std::vector<NewMessage> batch = busy_batch();
  int64_t commits_before = store_->write_stats().commits;
  std::promise<Result<std::vector<AcceptResult>>> big, small;
  std::promise<Result<void>> ok_first, poisoned, ok_last;
  store_->accept(std::move(batch), 1'000, [&](Result<std::vector<AcceptResult>> r) { big.set_value(std::move(r)); });
  store_->add_suppression({"ok-first", "stop", "test", 1'000}, [&](const Result<void>& r) { ok_first.set_value(r); });
  store_->add_suppression({"poison", "stop", "test", 1'000}, [&](const Result<void>& r) { poisoned.set_value(r); });
  store_->accept({new_message("after-poison", 50'000)}, 1'000,
                 [&](Result<std::vector<AcceptResult>> r) { small.set_value(std::move(r)); });
  store_->add_suppression({"ok-last", "stop", "test", 1'000}, [&](const Result<void>& r) { ok_last.set_value(r); });

  Result<std::vector<AcceptResult>> big_done = big.get_future().get();
  Result<std::vector<AcceptResult>> small_done = small.get_future().get();
  ASSERT_TRUE(big_done.ok());
  EXPECT_TRUE(ok_first.get_future().get().ok());
  // The refused operation is told what the engine said, not only that it failed.
  Result<void> poison = poisoned.get_future().get();
  ASSERT_FALSE(poison.ok());
  EXPECT_FALSE(poison.error().message.empty());
  ASSERT_TRUE(small_done.ok());
  EXPECT_TRUE(ok_last.get_future().get().ok());
  const std::vector<AcceptResult>& big_results = *big_done;
  const std::vector<AcceptResult>& small_results = *small_done;
  EXPECT_LE(store_->write_stats().commits - commits_before, 3) << "the poison shared no group: nothing was tested";

  ASSERT_EQ(big_results.size(), 2'000u);
  for (const auto& r : big_results) EXPECT_EQ(r.status, AcceptStatus::accepted);
  ASSERT_EQ(small_results.size(), 1u);
  EXPECT_EQ(small_results[0].status, AcceptStatus::accepted);  // not `duplicate` of its own first run
  std::vector<std::string> suppressed;
  for (const auto& s : store_->suppressions({"ok-first", "poison", "ok-last"})) suppressed.push_back(s.contact);
  EXPECT_THAT(suppressed, ::testing::UnorderedElementsAre("ok-first", "ok-last"));
  EXPECT_EQ(store_->count_by_state()[State::scheduled], 2'001);
  EXPECT_THAT(event_types(store_->events("after-poison")), ElementsAre("accepted"));
  EXPECT_TRUE(store_->healthy());
}

// The same when what fails is a statement sent without waiting (sql::Statement::send: an event's insert, which
// PostgreSQL pipelines), in the group's last operation: its failure shows after the operation has returned, at
// the wait that ends the group's operations, and still fails that operation alone.
TEST_P(StoreTest, AFailedStatementSentWithoutWaitingFailsItsOperationAlone) {
  poison("events", "message_id");
  std::vector<NewMessage> batch = busy_batch();
  int64_t commits_before = store_->write_stats().commits;
  std::promise<Result<std::vector<AcceptResult>>> big, ok, poisoned;
  auto into = [](std::promise<Result<std::vector<AcceptResult>>>& p) {
    return [&p](Result<std::vector<AcceptResult>> r) { p.set_value(std::move(r)); };
  };
  store_->accept(std::move(batch), 1'000, into(big));
  store_->accept({new_message("ok", 50'000)}, 1'000, into(ok));
  store_->accept({new_message("poison", 50'000)}, 1'000, into(poisoned));

  ASSERT_TRUE(big.get_future().get().ok());
  Result<std::vector<AcceptResult>> ok_done = ok.get_future().get();
  Result<std::vector<AcceptResult>> poison_done = poisoned.get_future().get();
  EXPECT_LE(store_->write_stats().commits - commits_before, 3) << "the poison shared no group: nothing was tested";
  ASSERT_TRUE(ok_done.ok());
  EXPECT_EQ(ok_done->at(0).status, AcceptStatus::accepted);
  ASSERT_FALSE(poison_done.ok());
  EXPECT_FALSE(poison_done.error().message.empty());
  EXPECT_FALSE(store_->find("poison").has_value()) << "its message went with its event";
  EXPECT_THAT(event_types(store_->events("ok")), ElementsAre("accepted"));
  EXPECT_EQ(store_->count_by_state()[State::scheduled], 2'001);
  EXPECT_TRUE(store_->healthy());
}

TEST_P(StoreTest, CountByStateListsEveryStateEvenWhenEmpty) {
  auto counts = store_->count_by_state();
  EXPECT_EQ(counts.size(), std::size(kAllStates));
  for (State s : kAllStates) {
    ASSERT_TRUE(counts.count(s)) << to_string(s);
    EXPECT_EQ(counts[s], 0) << to_string(s);
  }
}

TEST_P(StoreTest, CountByStateCountsExactly) {
  for (int i = 0; i < 3; ++i) accept_one(new_message("s" + std::to_string(i), 50'000), 1'000);
  accept_one(new_message("c", 60'000), 1'000);
  cancel("c", 1'000);
  finish("d", State::delivered, 2'000);  // due 2000 < 50000: claimed first
  finish("f", State::failed, 2'000);
  finish("p", State::suppressed, 2'000);
  dispatched("x", 2'000);
  auto counts = store_->count_by_state();
  EXPECT_EQ(counts[State::suppressed], 1);
  EXPECT_EQ(counts[State::scheduled], 3);
  EXPECT_EQ(counts[State::dispatched], 1);
  EXPECT_EQ(counts[State::delivered], 1);
  EXPECT_EQ(counts[State::failed], 1);
  EXPECT_EQ(counts[State::cancelled], 1);

  // The counts are kept with the changes (schema 6), not scanned: a requeue, a purge and a duplicate
  // move them exactly as the rows move.
  EXPECT_EQ(store_->requeue_in_flight(3'000).value(), 1);
  EXPECT_EQ(store_->purge_finished(2'500).value(), 4);
  EXPECT_EQ(accept_one(new_message("s0", 50'000), 3'000).status, AcceptStatus::duplicate);
  counts = store_->count_by_state();
  EXPECT_EQ(counts[State::scheduled], 4);
  EXPECT_EQ(counts[State::dispatched], 0);
  for (State s : {State::delivered, State::failed, State::suppressed, State::cancelled, State::dead})
    EXPECT_EQ(counts[s], 0) << to_string(s);
}

// ---- cancel -------------------------------------------------------------------------------------------

TEST_P(StoreTest, CancelAScheduledMessage) {
  accept_one(new_message("m1", 50'000), 1'000);
  CancelResult r = cancel("m1", 2'000);
  EXPECT_EQ(r.status, CancelStatus::cancelled);
  EXPECT_EQ(r.state, State::cancelled);
  auto found = store_->find("m1");
  EXPECT_EQ(found->state, State::cancelled);
  EXPECT_EQ(found->updated_at_ms, 2'000);
  auto events = store_->events("m1");
  ASSERT_THAT(event_types(events), ElementsAre("accepted", "cancelled"));
  EXPECT_EQ(events[1].at_ms, 2'000);
  // A cancelled message is no longer due.
  EXPECT_FALSE(store_->next_due_ms().has_value());
  EXPECT_THAT(store_->claim_due(100'000, 10).value(), IsEmpty());
  // Cancelling again is too late, and adds nothing.
  r = cancel("m1", 3'000);
  EXPECT_EQ(r.status, CancelStatus::too_late);
  EXPECT_EQ(r.state, State::cancelled);
  EXPECT_EQ(store_->events("m1").size(), 2u);
}

TEST_P(StoreTest, CancelUnknownIsNotFound) {
  EXPECT_EQ(cancel("ghost", 1'000).status, CancelStatus::not_found);
  EXPECT_FALSE(store_->find("ghost").has_value());
  EXPECT_THAT(store_->events("ghost"), IsEmpty());
}

TEST_P(StoreTest, CancelAfterHandOverIsTooLate) {
  dispatched("d", 1'000);
  CancelResult r = cancel("d", 2'000);
  EXPECT_EQ(r.status, CancelStatus::too_late);
  EXPECT_EQ(r.state, State::dispatched);
  EXPECT_EQ(store_->find("d")->state, State::dispatched);

  finish("v", State::delivered, 3'000);
  r = cancel("v", 4'000);
  EXPECT_EQ(r.status, CancelStatus::too_late);
  EXPECT_EQ(r.state, State::delivered);
  EXPECT_THAT(event_types(store_->events("v")), ElementsAre("accepted", "delivered"));

  finish("s", State::suppressed, 5'000);
  r = cancel("s", 6'000);
  EXPECT_EQ(r.status, CancelStatus::too_late);
  EXPECT_EQ(r.state, State::suppressed);
}

// ---- the due queue ------------------------------------------------------------------------------------

TEST_P(StoreTest, ClaimDueTakesTheEarliestFirstUpToTheLimit) {
  accept({new_message("c", 300), new_message("a", 100), new_message("future", 5'000), new_message("b", 200)}, 50);
  auto first = store_->claim_due(1'000, 2).value();
  EXPECT_THAT(ids(first), ElementsAre("a", "b"));
  for (const auto& r : first) {
    EXPECT_EQ(r.state, State::dispatched);
    EXPECT_EQ(r.attempts, 1);
  }
  EXPECT_EQ(first[0].due_at_ms, 100);
  auto a = store_->find("a");
  EXPECT_EQ(a->state, State::dispatched);
  EXPECT_EQ(a->attempts, 1);
  EXPECT_EQ(a->updated_at_ms, 1'000);

  EXPECT_THAT(ids(store_->claim_due(1'000, 10).value()), ElementsAre("c"));
  EXPECT_THAT(store_->claim_due(1'000, 10).value(), IsEmpty());  // "future" is not due yet
  EXPECT_EQ(store_->find("future")->state, State::scheduled);
  EXPECT_THAT(store_->claim_due(4'999, 10).value(), IsEmpty());
  EXPECT_THAT(ids(store_->claim_due(5'000, 10).value()), ElementsAre("future"));  // due_at <= now
  EXPECT_THAT(store_->claim_due(1'000'000, 0).value(), IsEmpty());
}

TEST_P(StoreTest, NextDueIsTheEarliestScheduled) {
  EXPECT_FALSE(store_->next_due_ms().has_value());
  accept({new_message("a", 700), new_message("b", 300), new_message("c", 900)}, 50);
  EXPECT_EQ(store_->next_due_ms(), 300);
  store_->claim_due(300, 1).value();  // b is dispatched: no longer counted
  EXPECT_EQ(store_->next_due_ms(), 700);
  cancel("a", 400);
  EXPECT_EQ(store_->next_due_ms(), 900);
}

TEST_P(StoreTest, ApplyUpdatesADispatchedMessageAndAppendsEvents) {
  MessageRecord r = dispatched("m1", 1'000);
  EXPECT_EQ(r.attempts, 1);
  Transition t;
  t.message_id = "m1";
  t.to = State::scheduled;
  t.channel = "push";
  t.channel_index = 1;
  t.due_at_ms = 9'000;
  t.last_reason = "http_503";
  t.events = {{"dispatched", R"({"channel":"push","attempt":1})", 1'100}, {"retry_scheduled", R"({"reason":"http_503"})"}};
  apply(t, 1'500);

  auto found = store_->find("m1");
  EXPECT_EQ(found->state, State::scheduled);
  EXPECT_EQ(found->channel, "push");
  EXPECT_EQ(found->channel_index, 1);
  EXPECT_EQ(found->due_at_ms, 9'000);
  EXPECT_EQ(found->last_reason, "http_503");
  EXPECT_EQ(found->updated_at_ms, 1'500);
  EXPECT_EQ(found->attempts, 1);
  auto events = store_->events("m1");
  ASSERT_THAT(event_types(events), ElementsAre("accepted", "dispatched", "retry_scheduled"));
  EXPECT_EQ(events[1].at_ms, 1'100);
  EXPECT_EQ(events[2].at_ms, 1'500);
  EXPECT_EQ(events[2].detail_json, R"({"reason":"http_503"})");
  EXPECT_EQ(store_->next_due_ms(), 9'000);

  // The retry is claimed again when due, counting the second attempt.
  auto again = store_->claim_due(9'000, 10).value();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 2);
  EXPECT_EQ(again[0].channel_index, 1);
  EXPECT_EQ(again[0].channel, "push");
}

// A message's number (MessageRecord::seq) grows with arrival whatever its id, reads the same from every path that
// hands a record out, and a verdict that carries it is recorded on that message alone: with another message's
// number it is recorded on neither.
TEST_P(StoreTest, AMessagesNumberGrowsWithArrivalAndAVerdictRecordsByIt) {
  accept({new_message("zz-first", 100), new_message("aa-second", 200)}, 50);
  NewMessage handed = new_message("mm-third", 100);
  handed.claim = true;
  AcceptResult third = accept_one(handed, 60);
  ASSERT_TRUE(third.claimed.has_value());
  auto claimed = store_->claim_due(1'000, 10).value();
  ASSERT_THAT(ids(claimed), ElementsAre("zz-first", "aa-second"));
  const int64_t first = claimed[0].seq, second = claimed[1].seq;
  EXPECT_GT(first, 0);
  EXPECT_GT(second, first);
  EXPECT_GT(third.claimed->seq, second);
  EXPECT_EQ(store_->find("zz-first")->seq, first);
  EXPECT_EQ(store_->find("mm-third")->seq, third.claimed->seq);
  EXPECT_THAT(ids(store_->list({})), ElementsAre("aa-second", "mm-third", "zz-first"));
  for (const MessageRecord& r : store_->list({})) EXPECT_EQ(r.seq, store_->find(r.id)->seq) << r.id;

  Transition t;
  t.message_id = "zz-first";
  t.recipient_id = "u1";
  t.to = State::delivered;
  t.channel = "email";
  t.events = {{"dispatched", "{}"}, {"delivered", "{}"}};
  t.message_seq = second;  // aa-second's: a verdict about no claim this store made
  apply(t, 1'100);
  EXPECT_EQ(store_->find("zz-first")->state, State::dispatched);
  EXPECT_EQ(store_->find("aa-second")->state, State::dispatched);
  EXPECT_THAT(event_types(store_->events("aa-second")), ElementsAre("accepted"));

  t.message_seq = first;
  apply(t, 1'200);
  EXPECT_EQ(store_->find("zz-first")->state, State::delivered);
  EXPECT_THAT(event_types(store_->events("zz-first")), ElementsAre("accepted", "dispatched", "delivered"));
  t.message_id = "mm-third";
  t.message_seq = third.claimed->seq;
  apply(t, 1'300);
  EXPECT_EQ(store_->find("mm-third")->state, State::delivered);
  EXPECT_THAT(event_types(store_->events("mm-third")), ElementsAre("accepted", "dispatched", "delivered"));
  EXPECT_THAT(event_types(store_->events("aa-second")), ElementsAre("accepted"));
}

TEST_P(StoreTest, ApplyIsIgnoredWhenTheMessageIsNoLongerDispatched) {
  Transition delivered;
  delivered.to = State::delivered;
  delivered.channel = "email";
  delivered.events = {{"dispatched", "{}"}, {"delivered", "{}"}};

  // Still scheduled, then cancelled: a verdict for it is stale.
  accept_one(new_message("cancelled", 50'000), 1'000);
  delivered.message_id = "cancelled";
  apply(delivered, 1'100);
  EXPECT_EQ(store_->find("cancelled")->state, State::scheduled);
  cancel("cancelled", 1'200);
  apply(delivered, 1'300);
  auto c = store_->find("cancelled");
  EXPECT_EQ(c->state, State::cancelled);
  EXPECT_EQ(c->channel, "");
  EXPECT_EQ(c->updated_at_ms, 1'200);
  EXPECT_THAT(event_types(store_->events("cancelled")), ElementsAre("accepted", "cancelled"));

  // Requeued by recovery while the attempt was out.
  dispatched("requeued", 2'000);
  ASSERT_EQ(store_->requeue_in_flight(2'100).value(), 1);
  delivered.message_id = "requeued";
  apply(delivered, 2'200);
  auto q = store_->find("requeued");
  EXPECT_EQ(q->state, State::scheduled);
  EXPECT_EQ(q->updated_at_ms, 2'100);
  EXPECT_THAT(event_types(store_->events("requeued")), ElementsAre("accepted", "requeued"));

  // Unknown id: nothing happens, and the completion still says ok.
  delivered.message_id = "ghost";
  apply(delivered, 2'300);
  EXPECT_THAT(store_->events("ghost"), IsEmpty());
}

TEST_P(StoreTest, ApplyWithoutACompletionIsStillApplied) {
  dispatched("m1", 1'000);
  Transition t;
  t.message_id = "m1";
  t.to = State::failed;
  t.last_reason = "bounced";
  t.events = {{"failed", R"({"reason":"bounced"})"}};
  store_->apply(t, 1'100, nullptr);
  // Operations are applied in submission order: once a later write has completed, so has the apply.
  EXPECT_EQ(cancel("other", 1'200).status, CancelStatus::not_found);
  EXPECT_EQ(store_->find("m1")->state, State::failed);
  EXPECT_EQ(store_->find("m1")->last_reason, "bounced");
}

TEST_P(StoreTest, RequeueInFlightMovesDispatchedBackToScheduled) {
  accept({new_message("a", 100), new_message("b", 200), new_message("c", 300)}, 50);
  ASSERT_EQ(store_->claim_due(250, 10).value().size(), 2u);  // a and b dispatched; c not yet due
  EXPECT_EQ(store_->requeue_in_flight(7'000).value(), 2);
  for (const char* id : {"a", "b"}) {
    auto r = store_->find(id);
    EXPECT_EQ(r->state, State::scheduled) << id;
    EXPECT_EQ(r->due_at_ms, 7'000) << id;
    EXPECT_EQ(r->updated_at_ms, 7'000) << id;
    EXPECT_EQ(r->attempts, 1) << id;  // the interrupted attempt still counts
    auto events = store_->events(id);
    ASSERT_THAT(event_types(events), ElementsAre("accepted", "requeued")) << id;
    EXPECT_EQ(events[1].at_ms, 7'000);
    EXPECT_EQ(nlohmann::json::parse(events[1].detail_json)["reason"], "in flight when the gateway stopped");
  }
  EXPECT_EQ(store_->find("c")->due_at_ms, 300);
  EXPECT_THAT(event_types(store_->events("c")), ElementsAre("accepted"));
  EXPECT_EQ(store_->requeue_in_flight(8'000).value(), 0);
  EXPECT_EQ(store_->next_due_ms(), 300);
}

// ---- purge --------------------------------------------------------------------------------------------

TEST_P(StoreTest, PurgeDeletesOnlyFinishedMessagesOlderThanTheCutoff) {
  finish("old_delivered", State::delivered, 1'000);
  finish("old_failed", State::failed, 1'000);
  finish("old_suppressed", State::suppressed, 1'000);
  accept_one(new_message("old_cancelled", 90'000), 1'000);
  cancel("old_cancelled", 1'500);
  finish("at_cutoff", State::delivered, 2'000);
  finish("new_delivered", State::delivered, 3'000);
  accept_one(new_message("old_scheduled", 90'000), 1'000);
  dispatched("old_dispatched", 1'000);

  EXPECT_EQ(store_->purge_finished(2'000).value(), 4);
  for (const char* gone : {"old_delivered", "old_failed", "old_suppressed", "old_cancelled"}) {
    EXPECT_FALSE(store_->find(gone).has_value()) << gone;
    EXPECT_THAT(store_->events(gone), IsEmpty()) << gone;
  }
  for (const char* kept : {"at_cutoff", "new_delivered", "old_scheduled", "old_dispatched"}) {
    EXPECT_TRUE(store_->find(kept).has_value()) << kept;
    EXPECT_THAT(store_->events(kept), Not(IsEmpty())) << kept;
  }
  // Their events went with them: the feed, which reads every event by seq, has none of theirs, only the kept ones'.
  std::set<std::string> in_feed;
  for (const TimelineEvent& e : store_->events_after(0, std::numeric_limits<int64_t>::max(), 1'000, ""))
    in_feed.insert(e.message_id);
  EXPECT_THAT(in_feed, ElementsAre("at_cutoff", "new_delivered", "old_dispatched", "old_scheduled"));
  EXPECT_EQ(store_->purge_finished(2'000).value(), 0);

  // The idempotency key went with it: the same id is a new message now.
  AcceptResult r = accept_one(new_message("old_delivered", 10'000), 10'000);
  EXPECT_EQ(r.status, AcceptStatus::accepted);
  EXPECT_EQ(store_->find("old_delivered")->state, State::scheduled);
  EXPECT_THAT(event_types(store_->events("old_delivered")), ElementsAre("accepted"));
}

// The feed's readers keep their place by an event's number (events_after): a number given once is never given
// again, also when purge deleted the newest events and the store was closed before any other came (on SQLite the
// writer numbers events, migration 12; numbers_given keeps what purge deleted).
TEST_P(StoreTest, AnEventNumberIsNeverGivenAgainAfterPurgeDeletedTheNewest) {
  finish("first", State::delivered, 1'000);
  finish("second", State::delivered, 1'000);
  int64_t last = 0;
  for (const TimelineEvent& e : store_->events("second")) last = std::max(last, e.seq);
  ASSERT_GT(last, 0);
  EXPECT_EQ(store_->purge_finished(2'000).value(), 2);
  EXPECT_THAT(store_->events_after(0, std::numeric_limits<int64_t>::max(), 1'000, ""), IsEmpty());

  store_.reset();
  reopen();
  accept_one(new_message("after_purge", 10'000), 10'000);
  auto events = store_->events("after_purge");
  ASSERT_THAT(event_types(events), ElementsAre("accepted"));
  EXPECT_GT(events[0].seq, last);
  // And its reader, placed after the last event it had seen before the purge, sees it.
  EXPECT_THAT(store_->events_after(last, std::numeric_limits<int64_t>::max(), 1'000, ""), ::testing::SizeIs(1));
}

// ---- durability ---------------------------------------------------------------------------------------

TEST_P(StoreTest, DataSurvivesCloseAndReopen) {
  accept_one(new_message("waiting", 50'000), 1'000);
  finish("done", State::delivered, 2'000);
  dispatched("in_flight", 3'000);
  const auto events_before = store_->events("done");
  store_.reset();  // closes the file: the writer thread finishes and the connections close

  reopen();
  EXPECT_EQ(store_->find("waiting")->state, State::scheduled);
  EXPECT_EQ(store_->find("waiting")->due_at_ms, 50'000);
  EXPECT_EQ(store_->find("done")->state, State::delivered);
  EXPECT_EQ(store_->find("in_flight")->state, State::dispatched);
  auto events_after = store_->events("done");
  ASSERT_EQ(events_after.size(), events_before.size());
  for (size_t i = 0; i < events_after.size(); ++i) {
    EXPECT_EQ(events_after[i].seq, events_before[i].seq);
    EXPECT_EQ(events_after[i].type, events_before[i].type);
    EXPECT_EQ(events_after[i].at_ms, events_before[i].at_ms);
  }
  EXPECT_EQ(accept_one(new_message("waiting", 50'000), 4'000).status, AcceptStatus::duplicate);
  EXPECT_EQ(store_->requeue_in_flight(5'000).value(), 1);
  EXPECT_EQ(store_->next_due_ms(), 5'000);
  // New events continue the sequence rather than reuse it.
  accept_one(new_message("later", 6'000), 6'000);
  EXPECT_GT(store_->events("later")[0].seq, events_before.back().seq);
}

// ---- concurrency --------------------------------------------------------------------------------------

TEST_P(StoreTest, ConcurrentAcceptsOfDistinctIdsAllComplete) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::latch completed(kThreads * kPerThread);
  std::atomic<int> ok{0};
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        store_->accept({new_message(id, 1'000 + i)}, 1'000, [&](const Result<std::vector<AcceptResult>>& results) {
          if (results) ++ok;
          if (results && results->size() == 1 && (*results)[0].status == AcceptStatus::accepted) ++accepted;
          completed.count_down();
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  completed.wait();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(accepted.load(), kThreads * kPerThread);
  int found = 0;
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPerThread; ++i)
      if (store_->find("t" + std::to_string(t) + "-" + std::to_string(i))) ++found;
  EXPECT_EQ(found, kThreads * kPerThread);
  EXPECT_EQ(store_->count_by_state()[State::scheduled], kThreads * kPerThread);
}

// Completions run on the store's completer thread, one at a time in the order of their commits, so the writer
// goes on to the next group while a caller's answer is built. A completion that waits for a later write
// (which the guide to MessageStore::accept asks callers not to do) shows it: with completions on the
// writer, the later write could never commit.
TEST_P(StoreTest, CompletionsRunInCommitOrderWithoutHoldingTheWriter) {
  std::promise<void> first_running;
  std::promise<void> release_first;
  std::shared_future<void> released = release_first.get_future().share();
  std::latch completed(2);
  std::mutex mutex;
  std::vector<std::string> order;
  auto record = [&](const std::string& id) {
    std::lock_guard lock(mutex);
    order.push_back(id);
  };
  store_->accept({new_message("first", 1'000)}, 1'000, [&](const Result<std::vector<AcceptResult>>&) {
    record("first");
    first_running.set_value();
    released.wait_for(std::chrono::seconds(10));  // bounded: a writer held here fails the test, not the run
    completed.count_down();
  });
  first_running.get_future().wait();
  store_->accept({new_message("second", 1'000)}, 1'000, [&](const Result<std::vector<AcceptResult>>&) {
    record("second");
    completed.count_down();
  });
  // The writer commits `second` while `first`'s completion waits: a read finds it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  bool committed = false;
  while (!(committed = store_->find("second").has_value()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_TRUE(committed) << "the writer waited for a completion";
  release_first.set_value();
  completed.wait();
  std::lock_guard lock(mutex);
  EXPECT_THAT(order, ElementsAre("first", "second"));
}

// When the store closes, every completion of what it committed has run: callers are answered.
TEST_P(StoreTest, ClosingTheStoreRunsTheCompletionsOfEverythingItCommitted) {
  constexpr int kWrites = 300;
  std::atomic<int> completed{0};
  for (int i = 0; i < kWrites; ++i)
    store_->accept({new_message("m" + std::to_string(i), 1'000)}, 1'000,
                   [&](const Result<std::vector<AcceptResult>>&) { ++completed; });
  store_.reset();
  EXPECT_EQ(completed.load(), kWrites);
}

TEST_P(StoreTest, RacingAcceptsOfTheSameIdAcceptExactlyOne) {
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::latch completed(kThreads);
  std::mutex mutex;
  std::vector<AcceptResult> results;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();  // all at once
      store_->accept({new_message("same", 1'000)}, 1'000, [&](const Result<std::vector<AcceptResult>>& r) {
        {
          std::lock_guard lock(mutex);
          if (r && r->size() == 1) results.push_back((*r)[0]);
        }
        completed.count_down();
      });
    });
  }
  for (auto& th : threads) th.join();
  completed.wait();
  ASSERT_EQ(results.size(), static_cast<size_t>(kThreads));
  int accepted = 0, duplicate = 0;
  for (const auto& r : results) {
    if (r.status == AcceptStatus::accepted) ++accepted;
    if (r.status == AcceptStatus::duplicate) {
      ++duplicate;
      EXPECT_EQ(r.state, State::scheduled);
    }
  }
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(duplicate, kThreads - 1);
  EXPECT_THAT(event_types(store_->events("same")), ElementsAre("accepted"));
}

// ---- opening ------------------------------------------------------------------------------------------

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
// One store per SQLite file at a time (DataFolderLock in sqlite_store.cpp): what it keeps in memory of the rows
// is right only while every write is its own. A second open is refused, naming the file and who holds it, and
// leaves the first working; once the first is closed the file opens again.
TEST_F(SqliteStoreTest, RefusesASecondStoreOnTheSameFileWhileTheFirstIsOpen) {
  try {
    open_sqlite({path_});
    FAIL() << "opened a second store on " << path_;
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), path_ + " is in use by another process (pid " + std::to_string(::getpid()) +
                                         "): one tayori per SQLite data folder; several nodes share PostgreSQL "
                                         "instead (store.backend: postgres)");
  }
  accept_one(new_message("still-open", 1'000), 1'000);
  store_.reset();
  store_ = open_sqlite({path_});
  EXPECT_TRUE(store_->find("still-open").has_value());
}

TEST_F(SqliteStoreTest, RefusesAStoreWithANewerSchema) {
  // A new file is migrated all the way: at least the two migrations this test knows about.
  const int64_t current = user_version(path_);
  EXPECT_GE(current, 2);
  accept_one(new_message("kept", 1'000), 1'000);
  store_.reset();

  // Reopening at its own version is fine and migrates nothing.
  store_ = open_sqlite({path_});
  EXPECT_EQ(user_version(path_), current);
  EXPECT_TRUE(store_->find("kept").has_value());
  store_.reset();

  // One version ahead (written by a newer gateway): refused, naming the file and both versions.
  exec_sql(path_, "PRAGMA user_version = " + std::to_string(current + 1));
  try {
    open_sqlite({path_});
    FAIL() << "opened a store with a newer schema";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "the store \"" + path_ + "\" has schema version " + std::to_string(current + 1) +
                                         ", newer than this gateway's " + std::to_string(current));
  }
  EXPECT_EQ(user_version(path_), current + 1);  // and left as it was
}
#endif

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
TEST_F(SqliteStoreTest, RefusesAForeignFileWithAHighVersion) {
  const std::string newer = (dir_ / "newer.db").string();
  exec_sql(newer, "CREATE TABLE future(x); PRAGMA user_version = 99;");
  try {
    open_sqlite({newer});
    FAIL() << "opened a store with schema version 99";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("\"" + newer + "\""));
    EXPECT_THAT(e.what(), HasSubstr("schema version 99, newer than this gateway's"));
  }
  EXPECT_EQ(user_version(newer), 99);
}
#endif

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
// A file written by the first release (schema version 1, copied here as it shipped) is migrated in place
// and keeps its messages. Migration 2 drops an index: this also guards against a statement left open on
// the connection during migration ("database table is locked").
TEST_F(SqliteStoreTest, MigratesAVersion1File) {
  const std::string v1 = (dir_ / "v1.db").string();
  exec_sql(v1, std::string(test::kStoreSchemaV1) + R"sql(
    INSERT INTO messages(id, api_key, payload_hash, payload, state, created_at, updated_at, due_at)
      VALUES ('old', 'upstream', 'h', '{}', 'scheduled', 10, 10, 500),
             ('done', 'upstream', 'h', '{}', 'delivered', 10, 10, 10);
    INSERT INTO events(message_id, type, at) VALUES ('old', 'accepted', 10);
    PRAGMA user_version = 1;
  )sql");
  std::unique_ptr<Store> migrated = open_sqlite({v1});
  EXPECT_GE(user_version(v1), 2);
  auto old = migrated->find("old");
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->state, State::scheduled);
  EXPECT_EQ(old->due_at_ms, 500);
  EXPECT_THAT(event_types(migrated->events("old")), ElementsAre("accepted"));
  EXPECT_EQ(migrated->next_due_ms(), 500);
  EXPECT_EQ(migrated->purge_finished(1'000).value(), 1);  // the rebuilt finished index still serves purge
  EXPECT_FALSE(migrated->find("done").has_value());
}
#endif

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
TEST_F(SqliteStoreTest, OpeningInAMissingFolderNamesTheFile) {
  const std::string missing = (dir_ / "no" / "such" / "folder" / "tayori.db").string();
  try {
    open_sqlite({missing});
    FAIL() << "opened " << missing;
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(missing));
  }
}
#endif

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
TEST_F(SqliteStoreTest, NewFileIsInWalMode) {
  EXPECT_THAT(test::query_column(path_, "PRAGMA journal_mode"), ElementsAre("wal"));
}
#endif

// ---- dead letters: listing and replay --------------------------------------------------------------------

class DeadLetterStoreTest : public StoreTest {
 protected:
  // Accepts `id` and brings it to `to` on `channel` (index `channel_index`) after one attempt, as the
  // dispatcher does when a channel's retry budget is spent.
  void end_on(const std::string& id, State to, const std::string& channel, int64_t now_ms, int channel_index = 0) {
    dispatched(id, now_ms);
    Transition t;
    t.message_id = id;
    t.to = to;
    t.channel = channel;
    t.channel_index = channel_index;
    t.last_reason = "http_503";
    t.events = {{std::string(to_string(to)), R"({"reason":"max_attempts"})"}};
    apply(t, now_ms);
  }
  std::vector<std::string> replay(const MessageFilter& filter, int64_t now_ms, const std::string& by = "ops") {
    return await<std::vector<std::string>>(
        [&](auto done) { store_->replay(filter, now_ms, by, std::move(done)); });
  }
};

TAYORI_STORE_ENGINE_SUITE(DeadLetterStoreTest);

TEST_P(DeadLetterStoreTest, ListFiltersByStateAndChannelInIdOrder) {
  end_on("d2", State::dead, "sms", 1'000);
  end_on("d1", State::dead, "sms", 1'100);
  end_on("d3", State::dead, "line", 1'200);
  end_on("f1", State::failed, "sms", 1'300);
  end_on("ok", State::delivered, "sms", 1'400);
  accept_one(new_message("waiting", 99'000), 1'500);

  MessageFilter dead;
  dead.state = State::dead;
  EXPECT_THAT(ids(store_->list(dead)), ElementsAre("d1", "d2", "d3"));
  dead.channel = "sms";
  auto sms = store_->list(dead);
  EXPECT_THAT(ids(sms), ElementsAre("d1", "d2"));
  EXPECT_EQ(sms[0].channel, "sms");
  EXPECT_EQ(sms[0].last_reason, "http_503");
  EXPECT_EQ(sms[0].attempts, 1);
  EXPECT_EQ(sms[0].updated_at_ms, 1'100);
  EXPECT_THAT(sms[0].payload, IsEmpty());  // a listing leaves the content out

  MessageFilter any;  // no filter: every message
  EXPECT_THAT(ids(store_->list(any)), ElementsAre("d1", "d2", "d3", "f1", "ok", "waiting"));
  MessageFilter by_channel;
  by_channel.channel = "sms";
  EXPECT_THAT(ids(store_->list(by_channel)), ElementsAre("d1", "d2", "f1", "ok"));
  MessageFilter one;
  one.id = "f1";
  EXPECT_THAT(ids(store_->list(one)), ElementsAre("f1"));
  MessageFilter none;
  none.state = State::cancelled;
  EXPECT_THAT(store_->list(none), IsEmpty());
}

TEST_P(DeadLetterStoreTest, ListPagesWithAfterAndLimit) {
  for (const char* id : {"a", "b", "c", "d", "e"}) end_on(id, State::dead, "sms", 1'000);
  MessageFilter page;
  page.state = State::dead;
  page.limit = 2;
  EXPECT_THAT(ids(store_->list(page)), ElementsAre("a", "b"));
  page.after_id = "b";
  EXPECT_THAT(ids(store_->list(page)), ElementsAre("c", "d"));
  page.after_id = "d";
  EXPECT_THAT(ids(store_->list(page)), ElementsAre("e"));
  page.after_id = "e";
  EXPECT_THAT(store_->list(page), IsEmpty());
}

TEST_P(DeadLetterStoreTest, ReplaySchedulesADeadLetterAgainFromItsFirstChannelWithAFreshBudget) {
  end_on("m1", State::dead, "line", 1'000, 1);
  MessageFilter f;
  f.id = "m1";
  EXPECT_THAT(replay(f, 5'000, "it"), ElementsAre("m1"));

  auto m = store_->find("m1");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, State::scheduled);
  EXPECT_EQ(m->due_at_ms, 5'000);
  EXPECT_EQ(m->updated_at_ms, 5'000);
  EXPECT_EQ(m->channel_index, 0);
  EXPECT_EQ(m->channel_attempts, 0);
  EXPECT_FALSE(m->channel_since_ms.has_value());
  EXPECT_EQ(m->last_reason, "");
  EXPECT_EQ(m->attempts, 1);  // the plugin's attempt numbers keep counting up
  auto events = store_->events("m1");
  ASSERT_THAT(event_types(events), ElementsAre("accepted", "dead", "replayed"));
  EXPECT_EQ(core::Json::parse(events.back().detail_json), (core::Json{{"from", "dead"}, {"by", "it"}}));
  EXPECT_EQ(events.back().at_ms, 5'000);
  EXPECT_EQ(store_->next_due_ms(), 5'000);

  // Claimed again like any due message, its channel budget counting from 1.
  auto again = store_->claim_due(5'000, 10).value();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].channel_attempts, 1);
  EXPECT_EQ(again[0].attempts, 2);
}

TEST_P(DeadLetterStoreTest, ReplayLeavesEveryOtherStateAlone) {
  end_on("ok", State::delivered, "sms", 1'000);
  end_on("gone", State::suppressed, "sms", 1'000);
  accept_one(new_message("waiting", 99'000), 1'000);
  dispatched("busy", 1'000);
  for (const char* id : {"ok", "gone", "waiting", "busy", "unknown"}) {
    MessageFilter f;
    f.id = id;
    EXPECT_THAT(replay(f, 2'000), IsEmpty()) << id;
  }
  MessageFilter scheduled;  // a filter naming a state that is not replayable matches nothing
  scheduled.state = State::scheduled;
  EXPECT_THAT(replay(scheduled, 2'000), IsEmpty());
  EXPECT_EQ(store_->find("ok")->state, State::delivered);
  EXPECT_EQ(store_->find("busy")->state, State::dispatched);
  EXPECT_THAT(event_types(store_->events("ok")), Not(::testing::Contains("replayed")));
}

TEST_P(DeadLetterStoreTest, ReplayByFilterTakesStateChannelAndLimit) {
  end_on("a", State::dead, "sms", 1'000);
  end_on("b", State::dead, "sms", 1'000);
  end_on("c", State::dead, "sms", 1'000);
  end_on("l", State::dead, "line", 1'000);
  end_on("f", State::failed, "sms", 1'000);

  MessageFilter f;
  f.state = State::dead;
  f.channel = "sms";
  f.limit = 2;
  EXPECT_THAT(replay(f, 2'000), ElementsAre("a", "b"));
  EXPECT_THAT(replay(f, 2'000), ElementsAre("c"));  // replayed ones no longer match: calling again drains
  EXPECT_THAT(replay(f, 2'000), IsEmpty());
  EXPECT_EQ(store_->find("l")->state, State::dead);
  EXPECT_EQ(store_->find("f")->state, State::failed);

  MessageFilter failed;
  failed.state = State::failed;
  EXPECT_THAT(replay(failed, 2'000), ElementsAre("f"));
  EXPECT_EQ(event_types(store_->events("f")).back(), "replayed");
  EXPECT_EQ(core::Json::parse(store_->events("f").back().detail_json)["from"], "failed");
}

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
// store.max_size: once the file would grow past it, a commit fails like a full disk: the caller hears !ok
// (the API answers 503), nothing of the refused batch is stored, and what was committed before stays readable.
TEST_F(SqliteStoreTest, MaxBytesRefusesGrowthAndKeepsWhatWasCommitted) {
  reopen_limited_to(128 * 1024);
  const std::string big(4'000, 'x');
  std::vector<std::string> stored;
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    std::string id = "m" + std::to_string(1000 + i);
    std::promise<Result<std::vector<AcceptResult>>> done;
    auto f = done.get_future();
    store_->accept({new_message(id, 1'000, R"({"id":")" + id + R"(","text":")" + big + R"("})")}, 1'000,
                   [&done](Result<std::vector<AcceptResult>> r) { done.set_value(std::move(r)); });
    Result<std::vector<AcceptResult>> r = f.get();
    if (r) {
      stored.push_back(id);
      continue;
    }
    refused = true;
    // The caller is told what the writer knows: the database is full, which retrying later may get past.
    EXPECT_EQ(r.error().code, ErrorCode::unavailable);
    EXPECT_EQ(r.error().message, "database or disk is full");
  }
  ASSERT_TRUE(refused) << "128 KiB held " << stored.size() << " messages of 4 KB";
  ASSERT_FALSE(stored.empty());
  EXPECT_FALSE(store_->find("m" + std::to_string(1000 + stored.size())).has_value());  // the refused one
  for (const auto& id : stored) ASSERT_TRUE(store_->find(id).has_value()) << id;
  EXPECT_TRUE(store_->healthy());

  // Without the limit (the operator raised store.max_size), the same file takes writes again.
  store_.reset();
  store_ = open_sqlite({path_});
  EXPECT_EQ(accept_one(new_message("after", 2'000), 2'000).status, AcceptStatus::accepted);
  EXPECT_THAT(store_->find(stored.front())->payload, HasSubstr(big));
}
#endif

// ---- right to erasure ---------------------------------------------------------------------------------

// A message of `recipient_id` whose payload names the recipient's contacts, as intake stores one.
NewMessage message_of(const std::string& id, const std::string& recipient_id, const nlohmann::json& contacts,
                      int64_t due_at_ms) {
  nlohmann::json recipient = {{"id", recipient_id}, {"contacts", contacts}};
  NewMessage m = new_message(id, due_at_ms, nlohmann::json{{"id", id}, {"recipient", recipient}}.dump());
  m.recipient_id = recipient_id;
  m.recipient = RecipientUpdate::of(recipient);
  return m;
}

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
// The whole file, and its WAL when one is left beside it, as bytes.
std::string file_bytes(const std::string& path) {
  std::string out;
  for (const std::string& p : {path, path + "-wal"}) {
    std::ifstream in(p, std::ios::binary);
    out.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

// An UPDATE or DELETE leaves the old bytes in the page's free space or on the freelist unless secure_delete
// overwrites them: erased data would still be in the file (and in every copy of it) for anyone to read.
TEST_F(SqliteStoreTest, ErasureLeavesNoTraceOfTheAddressInTheFile) {
  const std::string address = "zq-canary-7731@erasure.example";
  put_recipient({"u1", "Asia/Tokyo", "ja-JP", nlohmann::json{{"email", address}}.dump(), 0, false}, 1'000);
  accept({message_of("m1", "u1", {{"email", address}}, 5'000)}, 1'000);
  ASSERT_NE(file_bytes(path_).find(address), std::string::npos) << "the address was never written";
  ASSERT_TRUE(erase("u1", 2'000));
  store_.reset();
  exec_sql(path_, "PRAGMA wal_checkpoint(TRUNCATE)");
  EXPECT_EQ(file_bytes(path_).find(address), std::string::npos);
}
#endif

// What one recipient leaves in the store, each piece distinctive so that a search of every table finds it.
struct Canary {
  std::string email = "Erin.Canary@mail.example";
  std::string phone = "+819011112222";
  std::string token = "fcm-token-canary-0123456789";
  std::string reply = "canary reply, call me at home";
  std::string unbound_reply = "canary reply to no message";
  std::string orphan_reply = "canary reply to a purged message";
  nlohmann::json contacts() const {
    return {{"email", email}, {"phone", phone}, {"push", {{{"platform", "fcm"}, {"token", token}}}}};
  }
  std::vector<std::string> all() const { return {email, phone, token, reply, unbound_reply, orphan_reply}; }
};

// Which of `needles` occur in `haystack`, letters in any case (an SMTP server may echo an address in its own).
std::vector<std::string> found_in(std::string haystack, const std::vector<std::string>& needles) {
  auto lower = [](std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  haystack = lower(haystack);
  std::vector<std::string> out;
  for (const auto& n : needles)
    if (haystack.find(lower(n)) != std::string::npos) out.push_back(n);
  return out;
}

// A provider's answer naming the address as the provider spells it.
std::string bounce_of(const std::string& email) { return "550 5.1.1 <" + email + "> user unknown"; }

// A failed delivery that found the address dead: its last_reason, events and suppression, as the dispatcher
// writes them (core/dispatcher.cpp).
Transition bounced(const std::string& message_id, const std::string& email) {
  Transition t;
  t.message_id = message_id;
  t.to = State::failed;
  t.channel = "email";
  t.contact = email;
  t.last_reason = bounce_of(email);
  t.events = {{"failed", nlohmann::json{{"channel", "email"}, {"reason", bounce_of(email)}}.dump()},
              {"contact_deactivated",
               nlohmann::json{{"channel", "email"}, {"contact", email}, {"reason", bounce_of(email)}}.dump()}};
  return t;
}

InboundStore::TimelineWrite reply_event(const std::string& message_id, const std::string& recipient_id,
                                        const std::string& text) {
  return {message_id, recipient_id, {"replied", nlohmann::json{{"channel", "sms"}, {"text", text}}.dump()}};
}

// What a conversion may be attributed to (MessageStore::touches): the delivered and clicked events of the
// recipient's own messages in the range, the latest first; other events, other recipients and other times
// are left out.
TEST_P(StoreTest, TouchesAreARecipientsDeliveriesAndClicksInARangeLatestFirst) {
  accept({message_of("t-1", "tina", {{"email", "t@example.jp"}}, 1'000),
          message_of("t-2", "tina", {{"email", "t@example.jp"}}, 1'000),
          message_of("o-1", "otto", {{"email", "o@example.jp"}}, 1'000)},
         1'000);
  ASSERT_EQ(store_->claim_due(1'000, 3).value().size(), 3u);
  for (const auto& [id, at] : std::vector<std::pair<std::string, int64_t>>{{"t-1", 1'100}, {"t-2", 1'300}, {"o-1", 1'200}}) {
    Transition t;
    t.message_id = id;
    t.to = State::delivered;
    t.channel = "email";
    t.events = {{"delivered", R"({"channel":"email"})", at}};
    apply(t, at);
  }
  InboundStore::InboundWrites clicks;
  clicks.events = {{"t-1", "tina", {"clicked", R"({"channel":"email","link":0})", 1'400}},
                   {"t-1", "tina", {"converted", "{}", 1'450}},
                   {"o-1", "otto", {"clicked", "{}", 1'400}}};
  EXPECT_EQ(apply_inbound(clicks, 1'400), 1);
  std::vector<std::string> got;
  for (const auto& e : store_->touches("tina", 1'000, 1'500)) got.push_back(e.message_id + ":" + e.type);
  EXPECT_EQ(got, (std::vector<std::string>{"t-1:clicked", "t-2:delivered", "t-1:delivered"}));
  got.clear();
  for (const auto& e : store_->touches("tina", 1'200, 1'350)) got.push_back(e.message_id + ":" + e.type);
  EXPECT_EQ(got, (std::vector<std::string>{"t-2:delivered"}));
  EXPECT_TRUE(store_->touches("nobody", 0, 10'000).empty());
}

// Everything erasure must remove, put where each finding of issue #13 saw it left behind: event details and
// replies on a message, on no message and on a message that is gone; an answer's text; an open question;
// suppressions; a failure reason naming the address; consent evidence.
TEST_P(StoreTest, ErasureLeavesNoContactPointOrReplyInAnyTable) {
  const Canary erin;
  put_recipient({"erin", "Asia/Tokyo", "ja-JP", erin.contacts().dump(), 0, false}, 500);
  put_recipient({"other", "", "", R"({"email":"other@mail.example"})", 0, false}, 500);
  accept({message_of("bounced", "erin", erin.contacts(), 1'000), message_of("asked", "erin", erin.contacts(), 1'000)},
         1'000);
  for (const auto& m : store_->claim_due(1'000, 2).value()) EXPECT_EQ(m.recipient_id, "erin");
  apply(bounced("bounced", erin.email), 1'100);
  suppress({erin.email, bounce_of(erin.email), "channel.email", 1'100});
  Transition delivered;
  delivered.message_id = "asked";
  delivered.to = State::delivered;
  delivered.channel = "sms";
  delivered.events = {{"delivered", "{}"}};
  apply(delivered, 1'200);
  put_question(erin.phone, "sms", {"asked", R"(["yes","no"])", 1'200});
  InboundStore::InboundWrites inbound;
  inbound.events = {reply_event("asked", "erin", erin.reply),
                    reply_event("", "erin", erin.unbound_reply),
                    reply_event("purged-long-ago", "erin", erin.orphan_reply),
                    {"asked", "erin", {"responded", nlohmann::json{{"option", "no"}, {"text", erin.reply}}.dump()}}};
  inbound.suppress = {{erin.phone, "opted_out", "channel.sms", 1'300}};
  inbound.consent = {{"erin",
                      {"sms", policy::Purpose::marketing, policy::ConsentState::opted_out, "sms_keyword",
                       "keyword STOP from " + erin.phone, 1'300}}};
  EXPECT_EQ(apply_inbound(inbound, 1'300), 1);
  ASSERT_THAT(found_in(all_text(), erin.all()), ::testing::UnorderedElementsAreArray(erin.all()));

  EXPECT_TRUE(erase("erin", 2'000));

  EXPECT_THAT(found_in(all_text(), erin.all()), IsEmpty()) << all_text();
  // What erasure keeps: the timelines, with why the bounce failed (the address gone from it).
  EXPECT_EQ(store_->find("bounced")->state, State::failed);
  EXPECT_EQ(store_->find("bounced")->last_reason, "550 5.1.1 <[erased]> user unknown");
  EXPECT_THAT(event_types(store_->events("bounced")), ElementsAre("accepted", "failed", "contact_deactivated"));
  EXPECT_THAT(event_types(store_->events("asked")), ElementsAre("accepted", "delivered", "replied", "responded"));
  // Nobody else's data goes.
  EXPECT_THAT(all_text(), HasSubstr("other@mail.example"));
}

TEST_P(StoreTest, AnErasedRecipientsSuppressionsStillBlockUnderTheirKey) {
  const Canary erin;
  accept({message_of("m1", "erin", erin.contacts(), 1'000)}, 1'000);
  suppress({erin.email, bounce_of(erin.email), "channel.email", 1'100});
  suppress({erin.phone, "opted_out", "channel.sms", 1'100});
  suppress({"someone@else.example", "manual", "api", 1'100});
  EXPECT_TRUE(erase("erin", 2'000));

  // A new profile that brings the address or the number back finds them suppressed, named as asked.
  auto found = store_->suppressions({erin.email, erin.phone, "fresh@mail.example"});
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].contact, erin.email);
  EXPECT_EQ(found[0].reason, "550 5.1.1 <[erased]> user unknown");
  EXPECT_EQ(found[0].source, "channel.email");
  EXPECT_EQ(found[0].at_ms, 1'100);
  EXPECT_EQ(found[1].contact, erin.phone);
  // The list shows the keys, not the contact points; someone else's stays in clear.
  auto listed = test::pluck(store_->list_suppressions("", 10), &policy::Suppression::contact);
  EXPECT_THAT(listed, ::testing::UnorderedElementsAre(ops::suppression_key(erin.email),
                                                      ops::suppression_key(erin.phone), "someone@else.example"));
  // A START lifts what its channel made, by the number as it comes in.
  InboundStore::InboundWrites start;
  start.unsuppress = {{erin.phone, "", "channel.sms", 0}};
  EXPECT_EQ(apply_inbound(start, 3'000), 1);
  EXPECT_EQ(store_->suppressions({erin.phone}).size(), 0u);
  // The operator lifts one by the address.
  EXPECT_TRUE(await<bool>([&](auto done) { store_->remove_suppression(erin.email, std::move(done)); }));
  EXPECT_THAT(store_->suppressions({erin.email}), IsEmpty());
}

// A delivery in flight when its recipient is erased completes afterwards: its verdict, its suppression of
// a dead address and its open question must not write the contact points back.
TEST_P(StoreTest, ADeliveryCompletingAfterErasureWritesNoContactPointBack) {
  const Canary erin;
  accept({message_of("bounced", "erin", erin.contacts(), 1'000), message_of("asked", "erin", erin.contacts(), 1'000)},
         1'000);
  ASSERT_EQ(store_->claim_due(1'000, 2).value().size(), 2u);
  EXPECT_TRUE(erase("erin", 1'500));

  // What the dispatcher writes when the answers come (core/dispatcher.cpp), in its order.
  suppress({erin.email, bounce_of(erin.email), "channel.email", 2'000});
  apply(bounced("bounced", erin.email), 2'000);
  put_question(erin.phone, "sms", {"asked", R"(["yes","no"])", 2'000});
  Transition delivered;
  delivered.message_id = "asked";
  delivered.to = State::delivered;
  delivered.channel = "sms";
  delivered.contact = erin.phone;
  delivered.events = {{"delivered", nlohmann::json{{"channel", "sms"}, {"to", erin.phone}}.dump()}};
  apply(delivered, 2'000);

  EXPECT_THAT(found_in(all_text(), erin.all()), IsEmpty()) << all_text();
  EXPECT_EQ(store_->find("bounced")->state, State::failed);
  EXPECT_EQ(store_->find("asked")->state, State::delivered);
  EXPECT_EQ(store_->find("bounced")->last_reason, "550 5.1.1 <[erased]> user unknown");
  EXPECT_THAT(event_types(store_->events("bounced")), ElementsAre("accepted", "failed", "contact_deactivated"));
  EXPECT_FALSE(store_->open_question(erin.phone, "sms").has_value());
  EXPECT_EQ(store_->suppressions({erin.email}).size(), 1u) << "the dead address must stay suppressed";
  EXPECT_EQ(store_->recipient("erin")->contacts_json, "{}");
}

// Erasures made before the migration left open questions and reply text behind, and inbound events could
// name a message that was gone: the migration (SQLite 7, PostgreSQL 3) removes the first and puts the
// second on its recipient alone, where erasure finds it.
TEST_P(StoreTest, TheErasureMigrationCleansWhatEarlierErasuresLeft) {
  const Canary erin;
  accept({message_of("m1", "erin", erin.contacts(), 1'000)}, 1'000);
  EXPECT_TRUE(erase("erin", 2'000));
  // As a store of the version before left it, put back behind the store's back; the migration runs again.
  const std::string leftovers =
      "INSERT INTO questions(contact, channel, message_id, options, at) VALUES('" + erin.phone +
      "', 'sms', 'm1', '[]', 1);"
      "INSERT INTO events(message_id, type, at, detail, recipient_id) VALUES"
      "('m1', 'replied', 1, '{\"channel\":\"sms\",\"text\":\"" + erin.reply + "\"}', 'erin'),"
      "('m1', 'contact_deactivated', 1, '{\"channel\":\"sms\",\"contact\":\"" + erin.phone + "\"}', 'erin'),"
      "('purged', 'replied', 1, '{\"channel\":\"sms\"}', 'someone');";
  run_sql_behind(
      std::string(test::kEventsByMessageIdSqlite) + "DROP INDEX events_unowned; PRAGMA user_version = 6;" + leftovers,
      std::string(test::kEventsByMessageIdPostgres) +
          "DROP INDEX events_unowned; DELETE FROM schema_version WHERE version >= 3;" + leftovers);
  ASSERT_THAT(found_in(all_text(), erin.all()), ::testing::UnorderedElementsAre(erin.phone, erin.reply));
  reopen();

  EXPECT_THAT(found_in(all_text(), erin.all()), IsEmpty()) << all_text();
  EXPECT_THAT(event_types(store_->events("m1")),
              ElementsAre("accepted", "cancelled", "replied", "contact_deactivated"));
  EXPECT_THAT(store_->events("purged"), IsEmpty());
  auto feed = store_->events_after(0, std::numeric_limits<int64_t>::max(), 100, "");
  ASSERT_FALSE(feed.empty());
  EXPECT_EQ(feed.back().message_id, "");
  EXPECT_EQ(feed.back().recipient_id, "someone");
}

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
TEST(ErasureScrub, ReplacesKnownContactsAddressesAndNumbersInAnyCase) {
  EXPECT_EQ(ops::scrub_text("550 5.1.1 <ALICE@Example.COM> unknown", {"alice@example.com"}),
            "550 5.1.1 <[erased]> unknown");
  EXPECT_EQ(ops::scrub_text("bounced: bob.smith+news@mail.example.org.", {}), "bounced: [erased].");
  EXPECT_EQ(ops::scrub_text("21211: '+819012345678' is not a valid phone number", {}),
            "21211: '[erased]' is not a valid phone number");
  EXPECT_EQ(ops::scrub_text("token abcDEF123 unregistered", {"abcDEF123"}), "token [erased] unregistered");
  // Not addresses: a status code, an offset, a user name without a domain.
  EXPECT_EQ(ops::scrub_text("5.1.1 at 2026-12-04T09:00:00+09:00 to user@localhost", {}),
            "5.1.1 at 2026-12-04T09:00:00+09:00 to user@localhost");
}

TEST(ErasureScrub, RedactDropsTextAndContactAndScrubsTheRest) {
  EXPECT_EQ(nlohmann::json::parse(ops::redact_detail(
                R"({"channel":"sms","text":"hi","contact":"+819012345678","reason":"x <a@b.example>","n":1})", {})),
            nlohmann::json::parse(R"({"channel":"sms","reason":"x <[erased]>","n":1})"));
  EXPECT_EQ(ops::redact_detail("not json a@b.example", {}), "not json [erased]");
}
#endif

// ---- state names --------------------------------------------------------------------------------------

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
TEST(StoreState, NamesRoundTrip) {
  for (State s : kAllStates) EXPECT_EQ(parse_state(to_string(s)), s);
  EXPECT_EQ(to_string(State::cancelled), "cancelled");
  EXPECT_FALSE(parse_state("accepted").has_value());  // an event, not a state
  EXPECT_FALSE(parse_state("").has_value());
  EXPECT_FALSE(is_final(State::scheduled));
  EXPECT_FALSE(is_final(State::dispatched));
  EXPECT_TRUE(is_final(State::delivered));
  EXPECT_TRUE(is_final(State::failed));
  EXPECT_TRUE(is_final(State::cancelled));
  EXPECT_TRUE(is_final(State::suppressed));
  EXPECT_EQ(to_string(State::suppressed), "suppressed");
}
#endif

}  // namespace
}  // namespace tayori::store
