// Several nodes on one PostgreSQL, at the store's level: two PgStores on one real database are two nodes
// (gateway/store/postgres/pg_store.cpp). They never claim one message twice, take over each other's claims
// once a lease has passed (and ignore the late verdict of the node that lost it), never share a node id,
// never exceed a cap together, and agree on one message for one id. The gateway-level tests with two real
// processes are in tests/integration/pg_nodes_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crypto/crypto.hpp"
#include "eventually.hpp"
#include "pg_cluster.hpp"
#include "store/postgres/pg_store.hpp"

namespace tayori::store {
namespace {

using tayori::testing::eventually;
using tayori::testing::shared_pg_cluster;
using ::testing::Contains;
using ::testing::HasSubstr;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

NewMessage message(const std::string& id, int64_t due_at_ms, const std::string& recipient = "r1") {
  NewMessage m;
  m.id = id;
  m.api_key = "upstream";
  m.recipient_id = recipient;
  m.payload = R"({"id":")" + id + R"("})";
  m.payload_hash = crypto::sha256_hex(m.payload);
  m.due_at_ms = due_at_ms;
  m.events = {{"accepted", "{}"}};
  return m;
}

class PgNodesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uri_ = shared_pg_cluster().fresh_database(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::unique_ptr<Store> node(const std::string& id, int64_t lease_ms = 30'000) {
    PostgresOptions o;
    o.uri = uri_;
    o.node_id = id;
    o.lease_ms = lease_ms;
    o.pool_size = 6;
    return open_postgres(o);
  }
  static std::vector<AcceptResult> accept(Store& s, std::vector<NewMessage> batch, int64_t now_ms) {
    std::promise<std::vector<AcceptResult>> done;
    auto f = done.get_future();
    s.accept(std::move(batch), now_ms, [&](Result<std::vector<AcceptResult>> r) {
      EXPECT_TRUE(r.ok());
      done.set_value(r ? std::move(r).value() : std::vector<AcceptResult>{});
    });
    return f.get();
  }
  static void apply(Store& s, Transition t, int64_t now_ms) {
    std::promise<bool> done;
    auto f = done.get_future();
    s.apply(std::move(t), now_ms, [&](const Result<void>& r) { done.set_value(r.ok()); });
    EXPECT_TRUE(f.get());
  }
  std::string uri_;
};

TEST_F(PgNodesTest, TwoNodesClaimingAtOnceNeverTakeTheSameMessage) {
  auto a = node("a"), b = node("b");
  const int64_t now = wall_ms();
  std::vector<NewMessage> batch;
  for (int i = 0; i < 400; ++i) batch.push_back(message("m" + std::to_string(i), now - 1));
  accept(*a, std::move(batch), now);

  std::mutex mutex;
  std::vector<std::string> claimed_a, claimed_b;
  std::latch start(2), both_claimed(2);
  auto claim_all = [&](Store& s, std::vector<std::string>& out) {
    start.arrive_and_wait();
    for (bool first = true;; first = false) {
      auto got = s.claim_due(now, 7).value();
      {
        std::lock_guard lock(mutex);
        for (auto& r : got) out.push_back(r.id);
      }
      // Both nodes hold a claim before either goes on: on a loaded machine one thread could otherwise claim
      // all 400 before the other ran at all, and the test would not be about two nodes at once.
      if (first) both_claimed.arrive_and_wait();
      if (got.empty()) return;
    }
  };
  std::thread ta(claim_all, std::ref(*a), std::ref(claimed_a));
  std::thread tb(claim_all, std::ref(*b), std::ref(claimed_b));
  ta.join();
  tb.join();

  std::set<std::string> all(claimed_a.begin(), claimed_a.end());
  for (const auto& id : claimed_b) EXPECT_TRUE(all.insert(id).second) << id << " claimed by both nodes";
  EXPECT_EQ(all.size(), 400u);
  EXPECT_FALSE(claimed_a.empty());
  EXPECT_FALSE(claimed_b.empty());
  EXPECT_EQ(a->count_by_state()[State::dispatched], 400);
}

TEST_F(PgNodesTest, TheSameIdOnTwoNodesAtOnceIsOneMessage) {
  auto a = node("a"), b = node("b");
  const int64_t now = wall_ms();
  for (int round = 0; round < 20; ++round) {
    std::string id = "same-" + std::to_string(round);
    std::latch start(2);
    AcceptStatus on_a{}, on_b{};
    std::thread ta([&] {
      start.arrive_and_wait();
      on_a = accept(*a, {message(id, now + 60'000)}, now)[0].status;
    });
    std::thread tb([&] {
      start.arrive_and_wait();
      on_b = accept(*b, {message(id, now + 60'000)}, now)[0].status;
    });
    ta.join();
    tb.join();
    EXPECT_EQ((on_a == AcceptStatus::accepted) + (on_b == AcceptStatus::accepted), 1) << id;
    EXPECT_EQ((on_a == AcceptStatus::duplicate) + (on_b == AcceptStatus::duplicate), 1) << id;
  }
  NewMessage other = message("same-0", now);
  other.payload = R"({"id":"same-0","changed":true})";
  other.payload_hash = crypto::sha256_hex(other.payload);
  EXPECT_EQ(accept(*b, {other}, now)[0].status, AcceptStatus::conflict);
  EXPECT_EQ(a->count_by_state()[State::scheduled], 20);
}

TEST_F(PgNodesTest, ADeadNodesClaimsGoToAnotherOnceTheLeasePassesAndItsLateVerdictIsIgnored) {
  auto b = node("b", 1'000);
  auto a = node("a", 1'000);
  const int64_t now = wall_ms();
  accept(*a, {message("m1", now - 1), message("m2", now - 1)}, now);
  auto held = a->claim_due(now, 10).value();
  ASSERT_EQ(held.size(), 2u);
  a.reset();  // a stops renewing: its claims last until their lease passes

  // b requeues them once the lease has passed (it looks every third of its lease), then claims them. Real time,
  // on purpose: each PgStore keeps and ends leases in its own thread on the system clock, so a claim is free to
  // take over only once its lease has truly passed; the test waits for the condition itself, never a fixed time.
  std::vector<MessageRecord> taken;
  ASSERT_TRUE(eventually(
      [&] {
        for (auto& r : b->claim_due(wall_ms(), 10).value()) taken.push_back(r);
        return taken.size() == 2;
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(taken[0].attempts, 2);
  std::vector<std::string> types;
  std::string reason;
  for (const auto& e : b->events("m1")) {
    types.push_back(e.type);
    if (e.type == "requeued") reason = e.detail_json;
  }
  EXPECT_THAT(types, Contains("requeued"));
  EXPECT_THAT(reason, HasSubstr("the lease of node a expired"));

  // The first node's verdict on its claim (attempt 1) comes too late and changes nothing.
  auto late = node("a-late", 1'000);
  Transition t;
  t.message_id = "m1";
  t.attempt = held[0].id == "m1" ? held[0].attempts : held[1].attempts;
  t.to = State::delivered;
  t.channel = "sms";
  apply(*late, t, wall_ms());
  EXPECT_EQ(b->find("m1")->state, State::dispatched);
  EXPECT_EQ(b->find("m1")->attempts, 2);
}

TEST_F(PgNodesTest, ALiveNodesIdCannotBeTakenAndARestartTakesItsOwnClaimsBackAtOnce) {
  auto a = node("a");
  try {
    node("a");
    FAIL() << "a second live node took the id \"a\"";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("store.node_id \"a\""));
  }
  auto b = node("b");
  const int64_t now = wall_ms();
  accept(*a, {message("mine", now - 1)}, now);
  ASSERT_EQ(a->claim_due(now, 10).value().size(), 1u);
  a.reset();

  auto again = node("a");
  EXPECT_EQ(b->requeue_in_flight(now).value(), 0);  // b holds nothing; a's claim is not b's to take before its lease
  EXPECT_EQ(again->requeue_in_flight(now).value(), 1);
  EXPECT_EQ(again->find("mine")->state, State::scheduled);
}

TEST_F(PgNodesTest, NodesDecidingForOneRecipientAtOnceTakeNoMoreSlotsThanTheCap) {
  auto a = node("a"), b = node("b");
  constexpr size_t kCap = 3;
  constexpr int kRecipients = 10;
  std::array<std::atomic<int>, kRecipients> taken{};
  std::latch start(8);
  // Each thread decides for every recipient in turn, as the dispatchers of two nodes would for messages
  // racing for the same people: read the slots, take one while fewer than the cap are taken.
  auto decide = [&](Store& s, int n) {
    start.arrive_and_wait();
    for (int r = 0; r < kRecipients; ++r) {
      std::string recipient = "r" + std::to_string(r);
      for (int i = 0; i < 3; ++i) {
        auto lock = s.lock_decisions(recipient);
        ASSERT_NE(lock, nullptr);
        if (s.slots_since(recipient, 0).size() < kCap) {
          s.take_slot(recipient, {"m" + std::to_string(n) + "-" + std::to_string(i), "sms", policy::Purpose::marketing,
                                  "", wall_ms()});
          ++taken[r];
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int n = 0; n < 8; ++n) threads.emplace_back(decide, std::ref(n % 2 ? *a : *b), n);
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRecipients; ++r) {
    std::string recipient = "r" + std::to_string(r);
    EXPECT_EQ(taken[r].load(), static_cast<int>(kCap)) << recipient;
    EXPECT_EQ(a->slots_since(recipient, 0).size(), kCap) << recipient;
  }
}

TEST_F(PgNodesTest, OneNodeAtATimeDeliversAWebhookSubscriptionAndAnotherTakesItOverWhenItLapses) {
  auto a = node("a", 1'000), b = node("b", 1'000);
  const int64_t now = wall_ms();
  EXPECT_TRUE(a->hold_subscription("crm", now));
  EXPECT_FALSE(b->hold_subscription("crm", now + 10));
  EXPECT_TRUE(b->hold_subscription("other", now + 10));  // per subscription
  EXPECT_TRUE(a->hold_subscription("crm", now + 900));   // renewed: until now + 1900
  EXPECT_FALSE(b->hold_subscription("crm", now + 1'500));
  EXPECT_TRUE(b->hold_subscription("crm", now + 2'000));  // a let it lapse
  EXPECT_FALSE(a->hold_subscription("crm", now + 2'100));
}

// The feed's readers (GET /v1/events, webhooks) move a cursor over seq: an event committed after one with a
// higher seq would be passed over for good. Two nodes write at once; a reader following the feed sees every one.
TEST_F(PgNodesTest, AReaderFollowingTheFeedWhileTwoNodesWriteMissesNoEvent) {
  auto a = node("a"), b = node("b");
  const int64_t now = wall_ms();
  std::atomic<int> writing{2};
  auto write = [&](Store& s, const std::string& prefix) {
    for (int i = 0; i < 150; ++i) {
      std::vector<NewMessage> batch;
      for (int j = 0; j < 1 + i % 3; ++j)
        batch.push_back(message(prefix + std::to_string(i) + "-" + std::to_string(j), now + 60'000));
      accept(s, std::move(batch), now);
    }
    --writing;
  };
  std::vector<int64_t> seen;
  std::thread reader([&] {
    int64_t cursor = 0;
    for (bool last = false; !last;) {
      last = writing == 0;
      for (const auto& e : a->events_after(cursor, std::numeric_limits<int64_t>::max(), 1'000, "")) {
        seen.push_back(e.seq);
        cursor = e.seq;
      }
    }
  });
  std::thread wa(write, std::ref(*a), "a"), wb(write, std::ref(*b), "b");
  wa.join();
  wb.join();
  reader.join();
  auto all = a->events_after(0, std::numeric_limits<int64_t>::max(), 100'000, "");
  EXPECT_EQ(seen.size(), all.size()) << "the reader passed over events committed after a higher seq";
}

}  // namespace
}  // namespace tayori::store
