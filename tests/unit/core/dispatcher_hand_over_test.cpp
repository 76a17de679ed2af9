// core::Dispatcher's hand-over: intake reserves room, stores messages due now already claimed
// (NewMessage::claim) and hands the committed claims over, so they are delivered without a claim
// transaction. Against a real SQLite store and a real file_sink channel. The claim loop polls once a minute
// here, so nothing moves unless the test wakes it; time is a clock the test moves. A test waits for a state
// by looking again each time the dispatcher tells of a change (Dispatcher::Observer), never by sleeping.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_guard.hpp"
#include "common/time.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "core/dispatcher.hpp"
#include "plugin/channel.hpp"
#include "plugin_test_support.hpp"
#include "test_support.hpp"

namespace tayori::core {
namespace {

using Json = nlohmann::json;
using plugin::testing::OneChannel;
using plugin::testing::registry_for;

// What the dispatcher's threads tell of their progress (its Observer).
class Changes {
 public:
  Dispatcher::Observer observer() {
    return {[this](int64_t sleep_ms) { tell(sleep_ms); }, [this] { tell(-1); }};
  }
  // Looks at `done` now and again after each change until it holds. False when it does not and nothing has
  // changed for ten seconds (a bound for a broken dispatcher, not a wait for time to pass).
  bool until(const std::function<bool()>& done) {
    for (;;) {
      uint64_t seen;
      {
        std::lock_guard lock(mutex_);
        seen = changes_;
      }
      if (done()) return true;  // not under mutex_: `done` may call into the dispatcher, which tells us
      std::unique_lock lock(mutex_);
      if (!told_.wait_for(lock, std::chrono::seconds(10), [&] { return changes_ != seen; })) {
        lock.unlock();
        return done();
      }
    }
  }
  // Rounds of the claim loop so far, and the sleep the latest one planned.
  int rounds() {
    std::lock_guard lock(mutex_);
    return rounds_;
  }
  int64_t last_sleep_ms() {
    std::lock_guard lock(mutex_);
    return last_sleep_ms_;
  }

 private:
  void tell(int64_t sleep_ms) {
    std::lock_guard lock(mutex_);
    ++changes_;
    if (sleep_ms >= 0) {
      ++rounds_;
      last_sleep_ms_ = sleep_ms;
    }
    told_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable told_;
  uint64_t changes_ = 0;
  int rounds_ = 0;
  int64_t last_sleep_ms_ = -1;
};

class DispatcherHandOver : public test::StoreFixture {
 protected:
  DispatcherHandOver() : StoreFixture("tayori_hand_over_") {}

  void SetUp() override {
    StoreFixture::SetUp();
    OneChannel email{.name = "email",
                     .plugin = "file_sink",
                     .settings = "      path: email.jsonl\n",
                     .channel_extra = "    contact: email\n"};
    auto built = registry_for(email.yaml(), clock_, nullptr, dir_.string());
    for (auto& e : built.errors) ADD_FAILURE() << e.to_string();
    ASSERT_NE(built.registry, nullptr);
    registry_ = std::move(built.registry);
    clearance_ = std::make_unique<Clearance>(*store_, policy_, *registry_);
  }
  void TearDown() override {
    if (dispatcher_) dispatcher_->stop();
    dispatcher_.reset();
    clearance_.reset();
    registry_.reset();
    StoreFixture::TearDown();
  }

  // The capacity is max_in_flight: here, unless given, the least the configuration allows, the larger of
  // workers x 2 and claim_batch.
  Dispatcher& start(int workers, int claim_batch, bool enabled = true, int max_in_flight = 0,
                    int64_t poll_interval_ms = 60'000) {
    config::DispatcherConfig c;
    c.enabled = enabled;
    c.workers = workers;
    c.claim_batch = claim_batch;
    c.max_in_flight = max_in_flight > 0 ? max_in_flight : std::max(workers * 2, claim_batch);
    c.poll_interval_ms = poll_interval_ms;
    dispatcher_ = std::make_unique<Dispatcher>(*store_, *registry_, clock_, c, *clearance_, nullptr, false);
    dispatcher_->set_observer(changes_.observer());
    dispatcher_->start();
    return *dispatcher_;
  }

  static store::NewMessage message(const std::string& id, int64_t now_ms, bool claim) {
    Json m = {{"id", id},
              {"recipient", {{"id", "r-" + id}, {"contacts", {{"email", id + "@example.jp"}}}}},
              {"purpose", "transactional"},
              {"channels", {"email"}},
              {"content", {{"subject", "s"}, {"text", "t " + id}}}};
    store::NewMessage nm;
    nm.id = id;
    nm.recipient_id = "r-" + id;
    nm.api_key = "t";
    nm.payload = m.dump();
    nm.payload_hash = "h-" + id;
    nm.due_at_ms = now_ms;
    nm.events = {{"accepted", "{}"}};  // as intake records a message due at once
    nm.claim = claim;
    return nm;
  }

  // Stores `ids` as intake does after reserve(): claimed, and returns the claims to hand over, each with the
  // Message intake validated.
  std::vector<Claim> accept_claimed(const std::vector<std::string>& ids) {
    std::vector<store::NewMessage> batch;
    int64_t now = clock_.now_ms();
    for (const auto& id : ids) batch.push_back(message(id, now, true));
    std::vector<Claim> claims;
    for (auto& r : accept(std::move(batch), now))
      if (r.claimed) claims.push_back({*r.claimed, parse_message(Json::parse(r.claimed->payload), {}).message});
    return claims;
  }

  // The room reserve() grants once the claim loop has found the store's due queue drained.
  int reserve_when_open(Dispatcher& d, int wanted) {
    int granted = 0;
    EXPECT_TRUE(changes_.until([&] { return (granted = d.reserve(wanted)) > 0; }));
    return granted;
  }

  std::string state_of(const std::string& id) {
    auto r = store_->find(id);
    return r ? std::string(store::to_string(r->state)) : "missing";
  }

  // Hands `claims` over, waits until each of `ids` is delivered, and returns what the e-mail channel's file sink
  // wrote for each delivery, by message id.
  std::map<std::string, Json> deliver(Dispatcher& d, std::vector<Claim> claims, int reserved,
                                      const std::vector<std::string>& ids) {
    d.hand_over(std::move(claims), reserved);
    for (const std::string& id : ids)
      EXPECT_TRUE(changes_.until([&] { return state_of(id) == "delivered"; })) << id << ": " << state_of(id);
    std::map<std::string, Json> written;
    std::ifstream sink(dir_ / "email.jsonl");
    for (std::string line; std::getline(sink, line);) {
      Json delivery = Json::parse(line);
      std::string id = delivery.value("message_id", "");
      written[id] = std::move(delivery);
    }
    return written;
  }

  plugin::testing::ManualClock clock_;
  Changes changes_;  // outlives the store (closed in StoreFixture::TearDown), whose writer tells it too
  policy::PolicyConfig policy_;
  std::unique_ptr<plugin::Registry> registry_;
  std::unique_ptr<Clearance> clearance_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(DispatcherHandOver, ReservesNothingUnlessRunning) {
  config::DispatcherConfig c;
  Dispatcher not_started(*store_, *registry_, clock_, c, *clearance_, nullptr, false);
  EXPECT_EQ(not_started.reserve(3), 0);

  Dispatcher& intake_only = start(2, 4, /*enabled=*/false);
  EXPECT_EQ(intake_only.reserve(3), 0);
}

TEST_F(DispatcherHandOver, HandedOverClaimsAreDeliveredOnceWithoutAClaimOfTheirOwn) {
  Dispatcher& d = start(2, 8);
  ASSERT_EQ(reserve_when_open(d, 3), 3);

  // Stored claimed: attempt 1, on no channel yet, counted as dispatched.
  std::vector<Claim> claims = accept_claimed({"h-1", "h-2", "h-3"});
  ASSERT_EQ(claims.size(), 3u);
  EXPECT_EQ(claims[0].record.state, store::State::dispatched);
  EXPECT_EQ(claims[0].record.attempts, 1);
  EXPECT_EQ(store_->count_by_state()[store::State::dispatched], 3);

  d.hand_over(std::move(claims), 3);
  for (const char* id : {"h-1", "h-2", "h-3"}) {
    ASSERT_TRUE(changes_.until([&] { return state_of(id) == "delivered"; })) << id << ": " << state_of(id);
    EXPECT_EQ(store_->find(id)->attempts, 1) << id;
    EXPECT_EQ(test::event_types(store_->events(id)), (std::vector<std::string>{"accepted", "dispatched", "delivered"}))
        << id;
  }
  EXPECT_TRUE(changes_.until([&] { return d.in_flight() == 0; }));
  // file_sink takes no inbound calls, so no receipt can come back: its id for the delivery stays in the
  // timeline, and out of the provider-id index (Store::find_by_provider_id finds nothing by it).
  std::string provider_id;
  for (const auto& e : store_->events("h-1"))
    if (e.type == "delivered") provider_id = Json::parse(e.detail_json).value("provider_message_id", "");
  ASSERT_FALSE(provider_id.empty());
  EXPECT_FALSE(store_->find_by_provider_id(provider_id)) << provider_id;
  // The channel received each exactly once.
  std::ifstream sink(dir_ / "email.jsonl");
  int lines = 0;
  for (std::string line; std::getline(sink, line);) ++lines;
  EXPECT_EQ(lines, 3);
}

// Intake validated the message a moment ago: the worker delivers that Message and does not read the stored
// payload again. The handed Message's text differs from the stored one here, so the sink shows which was used;
// a claim handed over without one is read from the store.
TEST_F(DispatcherHandOver, AHandedOverMessageGoesAsIntakeValidatedItWithoutReadingThePayloadAgain) {
  Dispatcher& d = start(2, 8);
  ASSERT_EQ(reserve_when_open(d, 2), 2);
  std::vector<Claim> claims = accept_claimed({"v-1", "v-2"});
  ASSERT_EQ(claims.size(), 2u);
  ASSERT_TRUE(claims[0].message);
  claims[0].message->content["text"] = "as intake validated it";
  claims[1].message.reset();
  std::map<std::string, Json> written = deliver(d, std::move(claims), 2, {"v-1", "v-2"});
  ASSERT_EQ(written.size(), 2u);
  EXPECT_EQ(written["v-1"]["content"]["text"], "as intake validated it") << written["v-1"];
  EXPECT_EQ(written["v-2"]["content"]["text"], "t v-2") << written["v-2"];
}

// A handed-over claim is completed from the profile its commit left (Claim::recipient), not from a read of the
// store; one without carries on reading. Here the stored profile changed after the commit: the claim that carries
// the profile goes to the address the commit saw, the other to the stored one.
TEST_F(DispatcherHandOver, AHandedOverClaimIsCompletedFromTheProfileItsCommitLeft) {
  Dispatcher& d = start(2, 8);
  ASSERT_EQ(reserve_when_open(d, 2), 2);
  std::vector<Claim> claims = accept_claimed({"p-1", "p-2"});
  ASSERT_EQ(claims.size(), 2u);
  for (Claim& c : claims) {
    ASSERT_TRUE(c.message);
    c.message->recipient.contacts.clear();  // nothing of its own: the e-mail address comes from the profile
    c.message->recipient.id = "shared";
  }
  put_recipient({"shared", "", "", R"({"email":"stored@example.jp"})", 0, false}, clock_.now_ms());
  claims[0].recipient = store::RecipientProfile{"shared", "", "", R"({"email":"committed@example.jp"})", 0, false};
  claims[1].recipient.reset();
  std::map<std::string, Json> written = deliver(d, std::move(claims), 2, {"p-1", "p-2"});
  EXPECT_EQ(written["p-1"].value("contact", ""), "committed@example.jp");
  EXPECT_EQ(written["p-2"].value("contact", ""), "stored@example.jp");
}

// A claim whose write the engine refuses is a failed round of the claim loop, counted and logged like a read
// that throws, not a claim that found nothing due: once the engine takes the write again, the loop claims and
// delivers what waited. The refusal is the engine's own: a trigger on the claim's update.
TEST_F(DispatcherHandOver, AClaimTheStoreRefusesIsAFailedRoundAndTheLoopGoesOn) {
  run_sql_behind(
      "CREATE TRIGGER no_claim BEFORE UPDATE ON messages WHEN NEW.state = 'dispatched' "
      "BEGIN SELECT RAISE(ABORT, 'refused by no_claim'); END",
      "");
  const int64_t errors_before = thread_errors()["dispatcher"];
  accept({message("waits", clock_.now_ms(), false)}, clock_.now_ms());
  start(2, 8);
  ASSERT_TRUE(changes_.until([&] { return thread_errors()["dispatcher"] > errors_before; }))
      << "a refused claim was not counted as a failed round";
  EXPECT_EQ(state_of("waits"), "scheduled");

  run_sql_behind("DROP TRIGGER no_claim", "");
  EXPECT_TRUE(changes_.until([&] { return state_of("waits") == "delivered"; })) << state_of("waits");
}

TEST_F(DispatcherHandOver, RoomNotTurnedIntoClaimsIsFreeAgain) {
  Dispatcher& d = start(1, 4);  // capacity 4
  ASSERT_EQ(reserve_when_open(d, 3), 3);
  accept({message("dup-1", clock_.now_ms(), false)}, clock_.now_ms());  // already there: a duplicate
  std::vector<Claim> claims = accept_claimed({"dup-1", "new-1"});
  ASSERT_EQ(claims.size(), 1u);
  EXPECT_EQ(claims[0].record.id, "new-1");
  EXPECT_EQ(d.in_flight(), 3);
  d.hand_over(std::move(claims), 3);  // one claim for three reserved: two are free at once
  EXPECT_LE(d.in_flight(), 1);
  EXPECT_TRUE(changes_.until([&] { return d.in_flight() == 0 && state_of("new-1") == "delivered"; }));
}

TEST_F(DispatcherHandOver, CapacityBoundsReservationsAndDueMessagesInTheStoreGoFirst) {
  Dispatcher& d = start(1, 4);  // capacity 4
  ASSERT_EQ(reserve_when_open(d, 6), 4);
  // Two of the six could not be claimed: they wait in the store, due. Until the claim loop has taken them,
  // newer messages are not handed over ahead of them.
  d.hand_over({}, 4);
  EXPECT_EQ(d.in_flight(), 0);
  EXPECT_EQ(d.reserve(1), 0);
  accept({message("waiting-1", clock_.now_ms(), false), message("waiting-2", clock_.now_ms(), false)},
         clock_.now_ms());
  d.wake();
  EXPECT_TRUE(changes_.until([&] { return state_of("waiting-1") == "delivered" && state_of("waiting-2") == "delivered"; }));
  EXPECT_EQ(reserve_when_open(d, 1), 1);
  d.hand_over({}, 1);
}

TEST_F(DispatcherHandOver, MaxInFlightBoundsReservationsBeyondOneClaim) {
  Dispatcher& d = start(1, 2, true, 5);
  ASSERT_EQ(reserve_when_open(d, 9), 5);
  EXPECT_EQ(d.in_flight(), 5);
  EXPECT_EQ(d.reserve(1), 0);  // full, and four are due in the store now
  d.hand_over({}, 5);
  EXPECT_EQ(d.in_flight(), 0);
}

// The poll interval makes the loop look at the store for what the wake-ups miss (another process's writes). With no
// room to claim, it reads whether anything is due instead of assuming it: nothing due, intake goes on handing over;
// something due, newer messages wait behind it, and it is claimed once there is room.
TEST_F(DispatcherHandOver, ThePollIntervalWithoutRoomLeavesHandOverOpenUnlessSomethingIsDue) {
  Dispatcher& d = start(1, 4, true, 0, /*poll_interval_ms=*/10);  // capacity 4: the loop claims at 2 free
  ASSERT_EQ(reserve_when_open(d, 3), 3);                          // 1 free
  // The loop's sleeps are real 10 ms; its clock is the test's. Past the poll interval, a few rounds look. The loop
  // never stops telling of rounds here, so a wait is bounded by rounds (a thousand: ten seconds of polls).
  auto rounds_pass = [&] {
    int from = changes_.rounds();
    return changes_.until([&] { return changes_.rounds() >= from + 3; });
  };
  auto within_rounds = [&](const std::function<bool()>& done) {
    int limit = changes_.rounds() + 1000;
    bool held = false;  // `done` is asked once per look: it may take room
    changes_.until([&] { return (held = done()) || changes_.rounds() > limit; });
    return held;
  };
  clock_.now += 11;
  ASSERT_TRUE(rounds_pass());
  EXPECT_EQ(d.reserve(1), 1) << "nothing is due in the store, yet hand-over closed at the poll interval";
  d.hand_over({}, 1);  // back to 1 free
  // A message due that no wake-up announced (written by another node, say): the next look finds it, and nothing
  // newer is handed over ahead of it.
  accept({message("unannounced", clock_.now_ms(), false)}, clock_.now_ms());
  clock_.now += 11;
  ASSERT_TRUE(rounds_pass());
  EXPECT_EQ(d.reserve(1), 0);
  // Once the room is free it is claimed and delivered, and hand-over opens again.
  d.hand_over({}, 3);
  EXPECT_TRUE(within_rounds([&] { return state_of("unannounced") == "delivered"; })) << state_of("unannounced");
  int granted = 0;
  EXPECT_TRUE(within_rounds([&] { return (granted = d.reserve(1)) > 0; }));
  d.hand_over({}, granted);
}

// A wake-up with room to claim and nothing due claims nothing: the loop reads the due time first. An empty claim is
// a commit of the writer's, and hand-over waited for it.
TEST_F(DispatcherHandOver, AWakeUpWithNothingDueCostsNoClaim) {
  Dispatcher& d = start(1, 4);
  ASSERT_EQ(reserve_when_open(d, 1), 1);
  d.hand_over({}, 1);
  const int64_t commits = store_->write_stats().commits;
  for (int i = 0; i < 3; ++i) {
    int rounds = changes_.rounds();
    d.wake();
    ASSERT_TRUE(changes_.until([&] { return changes_.rounds() > rounds; }));
  }
  EXPECT_EQ(store_->write_stats().commits, commits);
  EXPECT_EQ(d.reserve(1), 1);  // and hand-over stayed open
  d.hand_over({}, 1);
}

TEST_F(DispatcherHandOver, TheLoopSleepsUntilTheStoresNextDueTimeNotThePollInterval) {
  // Finished deliveries no longer make the loop claim; it must learn when the store's next message falls
  // due. The poll interval here is a minute; the message is due in 300 ms.
  Dispatcher& d = start(1, 4);
  ASSERT_EQ(reserve_when_open(d, 1), 1);
  d.hand_over({}, 1);
  auto soon = message("soon-1", clock_.now_ms() + 300, false);
  accept({soon}, clock_.now_ms());
  int rounds = changes_.rounds();
  d.wake();  // what intake does for a message it leaves in the store
  // The round after the wake-up reads the due time and sleeps until then (the clock has not moved): not due
  // yet, so nothing is claimed.
  ASSERT_TRUE(changes_.until([&] { return changes_.rounds() > rounds && changes_.last_sleep_ms() == 300; }))
      << "the loop planned to sleep " << changes_.last_sleep_ms() << " ms";
  EXPECT_EQ(state_of("soon-1"), "scheduled");
  // At the due time it goes out. (The loop's sleep runs on real time; the wake-up stands in for its end.)
  clock_.now += 300;
  d.wake();
  EXPECT_TRUE(changes_.until([&] { return state_of("soon-1") == "delivered"; })) << state_of("soon-1");
  EXPECT_GE(store_->find("soon-1")->updated_at_ms, soon.due_at_ms);
}

TEST_F(DispatcherHandOver, ClaimsHandedOverAfterStopGoBackToScheduledWithTheirAttempt) {
  Dispatcher& d = start(2, 4);
  ASSERT_EQ(reserve_when_open(d, 1), 1);
  std::vector<Claim> claims = accept_claimed({"late-1"});
  ASSERT_EQ(claims.size(), 1u);
  // A reload or shutdown stops the dispatcher while the accepting commit is on its way: the hand-over
  // arrives at a stopped dispatcher, which must not lose the message nor keep it `dispatched`.
  std::thread stopping([&] { d.stop(); });
  // Running, reserve() grants (backlog is clear); once stopping it grants nothing.
  ASSERT_TRUE(changes_.until([&] {
    int granted = d.reserve(1);
    if (granted > 0) d.hand_over({}, granted);
    return granted == 0;
  }));
  d.hand_over(std::move(claims), 1);
  stopping.join();
  ASSERT_TRUE(changes_.until([&] { return state_of("late-1") == "scheduled"; })) << state_of("late-1");
  auto r = store_->find("late-1");
  EXPECT_EQ(r->attempts, 0);
  EXPECT_EQ(test::event_types(store_->events("late-1")), (std::vector<std::string>{"accepted", "requeued"}));
  EXPECT_EQ(d.in_flight(), 0);
}

}  // namespace
}  // namespace tayori::core
