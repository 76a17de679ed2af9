// core::Clearance against a real SQLite store and a plugin::Registry of real file_sink channels: the
// recipient's state is loaded from the store, decided by the policy engine, and the frequency-cap slot is
// taken under a per-recipient lock. The race tests are the issue's proof that caps hold exactly: many
// threads clear messages of one recipient at once and exactly `limit` get through, with exactly `limit`
// slots stored. Threads start together on a latch; completions are awaited with promises, never sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/time.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "plugin/channel.hpp"
#include "store/sqlite_store.hpp"

namespace tayori::core {
namespace {

using policy::ConsentState;
using policy::Verdict;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

constexpr int64_t kDay = 86'400'000;
// 2026-11-24T03:00:00Z: noon in Tokyo, the middle of the night in New York.
constexpr int64_t kNow = 1'795'489'200'000;

class PinnedClock final : public Clock {
 public:
  int64_t now_ms() const override { return kNow; }
};

policy::PolicyConfig caps_config() {
  policy::PolicyConfig c;
  c.default_timezone = "Asia/Tokyo";
  policy::CapRule daily;
  daily.name = "marketing_daily";
  daily.scope = policy::CapRule::Scope::all;
  daily.purpose = Purpose::marketing;
  daily.limit = 3;
  daily.window_ms = kDay;
  daily.on_exceed = policy::CapRule::OnExceed::drop;
  c.caps.push_back(daily);
  return c;
}

Message marketing(const std::string& id, const std::string& recipient, std::vector<std::string> channels = {"email"}) {
  Message m;
  m.id = id;
  m.recipient.id = recipient;
  m.recipient.contacts = {{"email", recipient + "@example.jp"}};
  m.purpose = Purpose::marketing;
  m.category = "news";
  m.channels = std::move(channels);
  m.content = {{"text", "hello"}};
  return m;
}

class ClearanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tayori_clearance_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    store_ = store::open_sqlite({(dir_ / "tayori.db").string()});

    // Two real channels of the file_sink plugin: `email` uses the email contact, `sms` the phone.
    const std::string yaml = std::string("api_keys:\n") +
                             "  - name: test\n"
                             "    key_env: TAYORI_TEST_KEY\n"
                             "plugin_dirs:\n"
                             "  - " TAYORI_PLUGIN_DIR "\n"
                             "channels:\n"
                             "  - name: email\n"
                             "    plugin: file_sink\n"
                             "    contact: email\n"
                             "    settings:\n"
                             "      path: email.jsonl\n"
                             "  - name: sms\n"
                             "    plugin: file_sink\n"
                             "    contact: phone\n"
                             "    settings:\n"
                             "      path: sms.jsonl\n";
    config::Environment env = [](const std::string& name) -> std::optional<std::string> {
      if (name == "TAYORI_TEST_KEY") return "k-test";
      return std::nullopt;
    };
    auto loaded = config::load_string(yaml, "test.yaml", dir_.string(), env);
    for (auto& e : loaded.errors) ADD_FAILURE() << e.to_string();
    ASSERT_TRUE(loaded.config.has_value());
    auto built = plugin::build_registry(*loaded.config, clock_);
    for (auto& e : built.errors) ADD_FAILURE() << e.to_string();
    ASSERT_NE(built.registry, nullptr);
    registry_ = std::move(built.registry);
    ASSERT_NE(registry_->find("email"), nullptr);
    ASSERT_EQ(registry_->find("email")->contact(), "email");
    ASSERT_EQ(registry_->find("sms")->contact(), "phone");

    config_ = caps_config();
    clearance_ = std::make_unique<Clearance>(*store_, config_, *registry_);
  }
  void TearDown() override {
    clearance_.reset();
    registry_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void opt_in(const std::string& recipient, const std::string& channel) {
    std::promise<bool> done;
    auto f = done.get_future();
    store_->append_consent(recipient, {{channel, Purpose::marketing, ConsentState::opted_in, "api", "", kNow - kDay}},
                           [&done](const Result<void>& r) { done.set_value(r.ok()); });
    ASSERT_TRUE(f.get());
  }
  void put_profile(store::RecipientProfile p) {
    std::promise<bool> done;
    auto f = done.get_future();
    store_->put_recipient(std::move(p), kNow - 1'000, [&done](const Result<void>& r) { done.set_value(r.ok()); });
    ASSERT_TRUE(f.get());
  }
  void suppress(const std::string& contact) {
    std::promise<bool> done;
    auto f = done.get_future();
    store_->add_suppression({contact, "hard_bounce", "channel.email", kNow - 1'000},
                            [&done](const Result<void>& r) { done.set_value(r.ok()); });
    ASSERT_TRUE(f.get());
  }
  std::vector<std::string> slot_ids(const std::string& recipient) {
    std::vector<std::string> out;
    for (const auto& s : store_->slots_since(recipient, kNow - kDay)) out.push_back(s.message_id);
    std::sort(out.begin(), out.end());
    return out;
  }

  // THE RACE: `threads` threads each clear `per_thread` distinct messages at the same instant; thread t's
  // k-th message is for recipients[(t + k) % size], so recipients interleave within every thread. Returns
  // the ids that got Verdict::send, per recipient.
  std::map<std::string, std::vector<std::string>> race(const std::vector<std::string>& recipients, int threads,
                                                       int per_thread) {
    std::mutex mutex;
    std::map<std::string, std::vector<std::string>> sent;
    std::map<std::string, int> verdicts;  // "suppress:frequency_cap", ...
    std::latch start(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        std::vector<Message> mine;
        for (int k = 0; k < per_thread; ++k) {
          const std::string& r = recipients[static_cast<size_t>(t + k) % recipients.size()];
          mine.push_back(marketing("t" + std::to_string(t) + "-m" + std::to_string(k), r));
        }
        start.arrive_and_wait();
        for (const Message& m : mine) {
          policy::Decision d = clearance_->clear(m, 0, kNow, 0.0, true);
          std::lock_guard lock(mutex);
          if (d.verdict == Verdict::send) sent[m.recipient.id].push_back(m.id);
          ++verdicts[std::string(d.verdict == Verdict::send ? "send" : d.verdict == Verdict::defer ? "defer" : "suppress") +
                     ":" + d.reason];
        }
      });
    }
    for (auto& th : pool) th.join();
    const int total = threads * per_thread;
    const int sends = 3 * static_cast<int>(recipients.size());
    EXPECT_EQ(verdicts["send:"], sends) << ::testing::PrintToString(verdicts);
    EXPECT_EQ(verdicts["suppress:frequency_cap"], total - sends) << ::testing::PrintToString(verdicts);
    EXPECT_EQ(verdicts.size(), 2u) << "no other verdict (e.g. store_unavailable): " << ::testing::PrintToString(verdicts);
    return sent;
  }

  PinnedClock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<plugin::Registry> registry_;
  policy::PolicyConfig config_;
  std::unique_ptr<Clearance> clearance_;
};

// ---- Caps hold exactly under concurrency ------------------------------------------------------------

TEST_F(ClearanceTest, SixteenThreadsRacingForOneRecipientSendExactlyTheCap) {
  opt_in("hanako", "email");
  auto sent = race({"hanako"}, 16, 8);
  ASSERT_EQ(sent["hanako"].size(), 3u);
  // The store holds exactly those three slots, one per message that was cleared to send.
  std::vector<std::string> winners = sent["hanako"];
  std::sort(winners.begin(), winners.end());
  EXPECT_EQ(slot_ids("hanako"), winners);
  auto slots = store_->slots_since("hanako", 0);
  ASSERT_EQ(slots.size(), 3u);
  for (const auto& s : slots) {
    EXPECT_EQ(s.channel, "email");
    EXPECT_EQ(s.purpose, Purpose::marketing);
    EXPECT_EQ(s.category, "news");
    EXPECT_EQ(s.at_ms, kNow);
  }
}

TEST_F(ClearanceTest, TwoRecipientsInterleavedEachGetExactlyTheCap) {
  opt_in("hanako", "email");
  opt_in("taro", "email");
  auto sent = race({"hanako", "taro"}, 16, 8);
  ASSERT_EQ(sent["hanako"].size(), 3u);
  ASSERT_EQ(sent["taro"].size(), 3u);
  for (const std::string r : {"hanako", "taro"}) {
    SCOPED_TRACE(r);
    std::vector<std::string> winners = sent[r];
    std::sort(winners.begin(), winners.end());
    EXPECT_EQ(slot_ids(r), winners);
  }
}

TEST_F(ClearanceTest, ManyRecipientsRacingEachGetExactlyTheCap) {
  // More recipients than threads per stripe: some share a lock stripe, and none may steal another's slots.
  std::vector<std::string> recipients;
  for (int i = 0; i < 5; ++i) {
    recipients.push_back(std::string(1, 'r') + std::to_string(i));
    opt_in(recipients.back(), "email");
  }
  auto sent = race(recipients, 16, 10);
  for (const auto& r : recipients) {
    SCOPED_TRACE(r);
    EXPECT_EQ(sent[r].size(), 3u);
    EXPECT_EQ(store_->slots_since(r, 0).size(), 3u);
  }
}

// ---- Slots: taken on send, given back on release, never by simulation --------------------------------

TEST_F(ClearanceTest, TheFourthMessageIsSuppressedByTheCapWithItsRule) {
  opt_in("hanako", "email");
  for (int i = 1; i <= 3; ++i) {
    policy::Decision d = clearance_->clear(marketing("m" + std::to_string(i), "hanako"), 0, kNow - 10 + i, 0.0, true);
    ASSERT_EQ(d.verdict, Verdict::send) << i;
    EXPECT_EQ(d.channel, "email");
    EXPECT_EQ(d.contact, "hanako@example.jp");
  }
  policy::Decision d = clearance_->clear(marketing("m4", "hanako"), 0, kNow, 0.0, true);
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "frequency_cap");
  EXPECT_EQ(d.rule, "caps.marketing_daily");
  EXPECT_EQ(d.detail["limit"], 3);
  EXPECT_EQ(d.detail["counted"], 3);
  EXPECT_EQ(d.detail["window"], "1d");
  EXPECT_THAT(slot_ids("hanako"), ElementsAre("m1", "m2", "m3"));
  // A day after the first slot, that slot has left the rolling window: one more may go.
  EXPECT_EQ(clearance_->clear(marketing("m5", "hanako"), 0, kNow - 9 + kDay, 0.0, true).verdict, Verdict::send);
}

TEST_F(ClearanceTest, ReleaseGivesTheSlotBackSoTheNextClearSends) {
  opt_in("hanako", "email");
  std::vector<Message> sent;
  for (int i = 1; i <= 3; ++i) {
    sent.push_back(marketing("m" + std::to_string(i), "hanako"));
    ASSERT_EQ(clearance_->clear(sent.back(), 0, kNow, 0.0, true).verdict, Verdict::send);
  }
  ASSERT_EQ(clearance_->clear(marketing("m4", "hanako"), 0, kNow, 0.0, true).verdict, Verdict::suppress);

  clearance_->release(sent[1]);  // m2's delivery failed permanently
  // release() is asynchronous, and until its DELETE commits the slot still counts (a cap errs towards
  // sending less). Wait for the release through an empty group-committed fence.
  std::promise<bool> fence;
  auto f = fence.get_future();
  store_->release_slot("fence", "fence", [&fence](const Result<void>& r) { fence.set_value(r.ok()); });
  ASSERT_TRUE(f.get());
  EXPECT_THAT(slot_ids("hanako"), ElementsAre("m1", "m3"));

  policy::Decision d = clearance_->clear(marketing("m5", "hanako"), 0, kNow, 0.0, true);
  EXPECT_EQ(d.verdict, Verdict::send);
  EXPECT_THAT(slot_ids("hanako"), ElementsAre("m1", "m3", "m5"));
  EXPECT_EQ(clearance_->clear(marketing("m6", "hanako"), 0, kNow, 0.0, true).verdict, Verdict::suppress);
}

TEST_F(ClearanceTest, SimulationNeverWritesASlot) {
  opt_in("hanako", "email");
  for (int i = 0; i < 5; ++i) {
    policy::Decision d = clearance_->clear(marketing("sim" + std::to_string(i), "hanako"), 0, kNow, 0.0, false);
    EXPECT_EQ(d.verdict, Verdict::send) << i;  // nothing counted: every simulation sees an empty cap
  }
  EXPECT_THAT(store_->slots_since("hanako", 0), IsEmpty());

  for (int i = 1; i <= 3; ++i)
    ASSERT_EQ(clearance_->clear(marketing("m" + std::to_string(i), "hanako"), 0, kNow, 0.0, true).verdict, Verdict::send);
  policy::Decision d = clearance_->clear(marketing("sim-full", "hanako"), 0, kNow, 0.0, false);
  EXPECT_EQ(d.verdict, Verdict::suppress);  // the simulation sees the real slots...
  EXPECT_EQ(d.reason, "frequency_cap");
  EXPECT_THAT(slot_ids("hanako"), ElementsAre("m1", "m2", "m3"));  // ...and adds none
}

TEST_F(ClearanceTest, TransactionalMessagesBypassTheMarketingCapAndTakeNoMarketingSlot) {
  for (int i = 1; i <= 5; ++i) {
    Message m = marketing("tx" + std::to_string(i), "hanako");
    m.purpose = Purpose::transactional;  // consent default opted_in, no cap covers it
    ASSERT_EQ(clearance_->clear(m, 0, kNow, 0.0, true).verdict, Verdict::send) << i;
  }
  // Whatever slots were written, they do not count against marketing: three marketing messages still go.
  opt_in("hanako", "email");
  for (int i = 1; i <= 3; ++i)
    EXPECT_EQ(clearance_->clear(marketing("m" + std::to_string(i), "hanako"), 0, kNow, 0.0, true).verdict, Verdict::send)
        << i;
  EXPECT_EQ(clearance_->clear(marketing("m4", "hanako"), 0, kNow, 0.0, true).verdict, Verdict::suppress);
}

// ---- The state comes from the store ------------------------------------------------------------------

TEST_F(ClearanceTest, ConsentAndSuppressionAreReadFromTheStore) {
  // No consent recorded: marketing defaults to opted_out, so email is skipped and nothing is usable.
  policy::Decision d = clearance_->clear(marketing("m1", "hanako"), 0, kNow, 0.0, true);
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "no_usable_channel");
  EXPECT_EQ(d.detail["skipped"][0]["reason"], "no_consent");
  EXPECT_THAT(store_->slots_since("hanako", 0), IsEmpty());

  opt_in("hanako", "email");
  EXPECT_EQ(clearance_->clear(marketing("m2", "hanako"), 0, kNow, 0.0, false).verdict, Verdict::send);

  suppress("hanako@example.jp");
  d = clearance_->clear(marketing("m3", "hanako"), 0, kNow, 0.0, true);
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "no_usable_channel");
  EXPECT_EQ(d.detail["skipped"][0]["reason"], "suppressed_contact");
  EXPECT_THAT(store_->slots_since("hanako", 0), IsEmpty());
}

TEST_F(ClearanceTest, AContactPointOnlyTheProfileHoldsIsCheckedForSuppression) {
  // The message names only a LINE id; sms is usable through the profile's phone, until that phone is suppressed.
  opt_in("hanako", "sms");
  put_profile({"hanako", "", "", R"({"phone":"+819000000001"})", 0, false});
  Message m = marketing("m1", "hanako", {"sms"});
  m.recipient.contacts = {{"line", "U0123"}};
  clearance_->complete_recipient(m);
  EXPECT_EQ(clearance_->clear(m, 0, kNow, 0.0, false).verdict, Verdict::send);

  suppress("+819000000001");
  policy::Decision d = clearance_->clear(m, 0, kNow, 0.0, true);
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.detail["skipped"][0]["reason"], "suppressed_contact");
  EXPECT_THAT(store_->slots_since("hanako", 0), IsEmpty());
}

// ---- complete_recipient -----------------------------------------------------------------------------

TEST_F(ClearanceTest, CompleteRecipientFillsWhatTheMessageLacksFromTheProfile) {
  put_profile({"hanako", "America/New_York", "en-US",
               R"({"email":"profile@example.jp","phone":"+819000000001","push":[{"platform":"fcm","token":"tok-p"}]})",
               0, false});
  Message m = marketing("m1", "hanako");  // has its own email
  m.recipient.locale = "ja-JP";           // and its own locale, but no zone, phone or push
  clearance_->complete_recipient(m);
  EXPECT_EQ(m.recipient.contacts.at("email"), "hanako@example.jp");  // the message's own wins
  EXPECT_EQ(m.recipient.contacts.at("phone"), "+819000000001");      // filled from the profile
  EXPECT_EQ(m.recipient.contacts.size(), 2u);
  ASSERT_EQ(m.recipient.push.size(), 1u);
  EXPECT_EQ(m.recipient.push[0].platform, "fcm");
  EXPECT_EQ(m.recipient.push[0].token, "tok-p");
  EXPECT_EQ(m.recipient.timezone, "America/New_York");
  EXPECT_EQ(m.recipient.locale, "ja-JP");
  EXPECT_EQ(clearance_->zone_for(m).name(), "America/New_York");

  // A message with its own zone and push tokens keeps them.
  Message own = marketing("m2", "hanako");
  own.recipient.timezone = "Europe/Paris";
  own.recipient.push = {{"apns", "tok-own"}};
  clearance_->complete_recipient(own);
  EXPECT_EQ(own.recipient.timezone, "Europe/Paris");
  EXPECT_EQ(own.recipient.locale, "en-US");
  ASSERT_EQ(own.recipient.push.size(), 1u);
  EXPECT_EQ(own.recipient.push[0].token, "tok-own");
  EXPECT_EQ(clearance_->zone_for(own).name(), "Europe/Paris");
}

TEST_F(ClearanceTest, CompleteRecipientWithoutAProfileOrAfterErasureChangesNothing) {
  Message m = marketing("m1", "nobody");
  clearance_->complete_recipient(m);
  EXPECT_EQ(m.recipient.contacts.size(), 1u);
  EXPECT_EQ(m.recipient.timezone, "");
  EXPECT_EQ(clearance_->zone_for(m).name(), "Asia/Tokyo");  // the configured default

  put_profile({"hanako", "America/New_York", "en-US", R"({"phone":"+819000000001"})", 0, false});
  std::promise<std::pair<bool, bool>> erased;
  auto f = erased.get_future();
  store_->erase_recipient("hanako", kNow, [&erased](const Result<bool>& found) {
    erased.set_value({found.ok(), found && *found});
  });
  ASSERT_EQ(f.get(), std::make_pair(true, true));
  Message after = marketing("m2", "hanako");
  clearance_->complete_recipient(after);
  EXPECT_EQ(after.recipient.contacts.count("phone"), 0u);
  EXPECT_EQ(after.recipient.timezone, "");
  EXPECT_EQ(after.recipient.locale, "");
}

TEST_F(ClearanceTest, AContactFromTheProfileMakesAChannelUsable) {
  put_profile({"hanako", "", "", R"({"phone":"+819000000001"})", 0, false});
  opt_in("hanako", "sms");
  Message m = marketing("m1", "hanako", {"sms", "email"});
  m.recipient.contacts.clear();  // the message names no contact at all
  policy::Decision before = clearance_->clear(m, 0, kNow, 0.0, false);
  EXPECT_EQ(before.verdict, Verdict::suppress);
  EXPECT_EQ(before.reason, "no_usable_channel");

  clearance_->complete_recipient(m);
  policy::Decision d = clearance_->clear(m, 0, kNow, 0.0, true);
  EXPECT_EQ(d.verdict, Verdict::send);
  EXPECT_EQ(d.channel, "sms");
  EXPECT_EQ(d.channel_index, 0);
  EXPECT_EQ(d.contact, "+819000000001");
  auto slots = store_->slots_since("hanako", 0);
  ASSERT_EQ(slots.size(), 1u);
  EXPECT_EQ(slots[0].channel, "sms");
}

TEST_F(ClearanceTest, QuietHoursUseTheZoneFromTheProfile) {
  config_.quiet_hours.push_back({"night", {}, Purpose::marketing, 21 * 60, 8 * 60,
                                 policy::QuietHoursRule::Action::defer, 0});
  put_profile({"hanako", "America/New_York", "", "{}", 0, false});
  opt_in("hanako", "email");
  Message m = marketing("m1", "hanako");
  // Noon in Tokyo (the default zone): no quiet hours.
  EXPECT_EQ(clearance_->clear(m, 0, kNow, 0.0, false).verdict, Verdict::send);
  clearance_->complete_recipient(m);
  // 22:00 in New York on Nov 23: deferred to 08:00 there (13:00Z) on Nov 24, and no slot is taken.
  policy::Decision d = clearance_->clear(m, 0, kNow, 0.0, true);
  EXPECT_EQ(d.verdict, Verdict::defer);
  EXPECT_EQ(d.reason, "quiet_hours");
  EXPECT_EQ(d.until_ms, *parse_rfc3339_ms("2026-11-24T13:00:00Z"));
  EXPECT_EQ(d.detail["until"], "2026-11-24T08:00:00-05:00");
  EXPECT_THAT(store_->slots_since("hanako", 0), IsEmpty());
}

TEST_F(ClearanceTest, AnUnknownDefaultZoneIsRefusedAtConstruction) {
  policy::PolicyConfig bad = caps_config();
  bad.default_timezone = "Mars/Olympus_Mons";
  try {
    Clearance c(*store_, bad, *registry_);
    FAIL() << "constructed with an unknown default zone";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "policy.default_timezone: unknown time zone Mars/Olympus_Mons");
  }
}

// ---- A message cleared again keeps its own slot -------------------------------------------------------

// A message that got the last slot and is cleared again (its delivery is retried, or the gateway crashed
// after the slot was taken and requeued it) must re-take its own slot, not be capped by it: take_slot is
// idempotent per message precisely for this. (Without load_state dropping the message's own slot, the
// retry of the message that took the last slot was suppressed with frequency_cap by that very slot.)
TEST_F(ClearanceTest, AMessageClearedAgainIsNotCappedByItsOwnSlot) {
  opt_in("hanako", "email");
  std::vector<Message> sent;
  for (int i = 1; i <= 3; ++i) {
    sent.push_back(marketing("m" + std::to_string(i), "hanako"));
    ASSERT_EQ(clearance_->clear(sent.back(), 0, kNow, 0.0, true).verdict, Verdict::send);
  }
  policy::Decision retry = clearance_->clear(sent[2], 0, kNow + 60'000, 0.0, true);
  EXPECT_EQ(retry.verdict, Verdict::send) << retry.reason << " " << retry.detail.dump();
  EXPECT_EQ(store_->slots_since("hanako", 0).size(), 3u);
  // A genuinely new message is still capped.
  EXPECT_EQ(clearance_->clear(marketing("m4", "hanako"), 0, kNow + 60'000, 0.0, true).verdict, Verdict::suppress);
}

}  // namespace
}  // namespace tayori::core
