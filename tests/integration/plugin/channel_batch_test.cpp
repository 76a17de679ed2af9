// Host-side batching (plugin.h on_build_batch, gateway/plugin/batching.cpp): concurrent deliveries of
// identical content on a channel with a batch_window share one request, and each still gets its own
// verdict. Driven through the real host and transport against a scripted local server, with the SDK
// fixture tests/fixtures/plugins/fixture_batch.cpp (batch_max 3, singles POST /send, batches POST /batch).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "plugin_test_support.hpp"

namespace tayori::plugin {
namespace {

using testing::deliver_concurrently;
using ::testing::HasSubstr;

constexpr int kWindowMs = 200;

// A request as the provider saw it.
struct Seen {
  std::string path;
  nlohmann::json body;
};

// The provider answers /send with 200 {"id":"single"} and /batch with what the test scripts.
class ChannelBatch : public ::testing::Test {
 protected:
  void SetUp() override {
    provider_.script(200, R"({"id":"single"})");
    answer_batches(200, R"({"id":"batch"})");
    reg_ = registry("fixture_batch", "    batch_window: " + std::to_string(kWindowMs) + "ms\n");
    ASSERT_TRUE(reg_.registry) << (reg_.errors.empty() ? "" : reg_.errors[0].to_string());
    channel_ = reg_.registry->find("batched");
  }
  void TearDown() override { provider_.stop(); }

  RegistryResult registry(const std::string& plugin, const std::string& channel_extra) {
    testing::OneChannel batched{.name = "batched",
                                .plugin = plugin,
                                .settings = "      url: " + provider_.url() + "\n",
                                .channel_extra = channel_extra,
                                .plugin_dir = TAYORI_FIXTURE_DIR};
    return testing::registry_for(batched.yaml(), clock_, &transport_);
  }
  void answer_batches(int status, std::string body) { provider_.script("/batch", status, std::move(body)); }
  std::vector<Seen> seen(const std::string& path = "") {
    std::vector<Seen> out;
    for (const api::HttpRequest& r : provider_.requests(path))
      out.push_back({r.path, nlohmann::json::parse(r.body, nullptr, false)});
    return out;
  }

  static DeliveryRequest delivery(const std::string& contact, const std::string& text = "same for all") {
    return testing::delivery_to(contact, text);
  }
  static std::vector<DeliveryRequest> deliveries(int n, const std::string& text = "same for all") {
    std::vector<DeliveryRequest> out;
    for (int i = 0; i < n; ++i) out.push_back(delivery("c" + std::to_string(i), text));
    return out;
  }

  testing::ScriptedProvider provider_;
  SystemClock clock_;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult reg_;
  Channel* channel_ = nullptr;
};

TEST_F(ChannelBatch, SevenDeliveriesMakeTwoFullBatchesOfThreeAndOneSingle) {
  auto outcomes = deliver_concurrently(*channel_, deliveries(7));
  auto batches = seen("/batch");
  auto singles = seen("/send");
  ASSERT_EQ(batches.size(), 2u);
  ASSERT_EQ(singles.size(), 1u);  // the seventh waited out the window alone: a group of one goes singly
  EXPECT_EQ(channel_->batches_sent(), 2u);
  std::multiset<std::string> contacts;
  for (auto& b : batches) {
    EXPECT_EQ(b.body["to"].size(), 3u) << b.body;  // batch_max 3: full groups close at once
    EXPECT_EQ(b.body["ids"].size(), 3u);
    EXPECT_EQ(b.body["text"], "same for all");
    for (auto& c : b.body["to"]) contacts.insert(c.get<std::string>());
  }
  contacts.insert(singles[0].body["to"].get<std::string>());
  EXPECT_EQ(contacts, (std::multiset<std::string>{"c0", "c1", "c2", "c3", "c4", "c5", "c6"}));  // each once
  int from_batches = 0;
  for (auto& o : outcomes) {
    EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
    from_batches += o.provider_message_id == "batch";
  }
  EXPECT_EQ(from_batches, 6);
}

TEST_F(ChannelBatch, OnlyIdenticalPurposeCategoryAndContentShareARequest) {
  std::vector<DeliveryRequest> all = {delivery("a"), delivery("b"), delivery("c", "other text"), delivery("d"),
                                      delivery("e")};
  all[3].marketing = true;
  all[4].category = "reminders";
  all.push_back(delivery("f"));
  all.back().content.emplace_back("title", "an extra field");
  auto outcomes = deliver_concurrently(*channel_, all);
  auto batches = seen("/batch");
  ASSERT_EQ(batches.size(), 1u);
  std::set<std::string> together(batches[0].body["to"].begin(), batches[0].body["to"].end());
  EXPECT_EQ(together, (std::set<std::string>{"a", "b"})) << "only a and b are alike";
  EXPECT_EQ(seen("/send").size(), 4u);
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

TEST_F(ChannelBatch, OneContactIsNeverNamedTwiceInARequest) {
  std::vector<DeliveryRequest> all = {delivery("a"), delivery("b"), delivery("a")};
  all[2].delivery_id = "d-a-second-message";
  auto outcomes = deliver_concurrently(*channel_, all);
  auto batches = seen("/batch");
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].body["to"].size(), 2u);
  EXPECT_EQ(seen("/send").size(), 1u);
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

TEST_F(ChannelBatch, AMemberTheBatchAnswerRefusesIsDeliveredSinglyAndTheOthersStand) {
  answer_batches(200, R"({"id":"batch","refused":["c1"]})");
  auto outcomes = deliver_concurrently(*channel_, deliveries(3));
  EXPECT_EQ(seen("/batch").size(), 1u);
  auto singles = seen("/send");
  ASSERT_EQ(singles.size(), 1u);
  EXPECT_EQ(singles[0].body["to"], "c1");
  EXPECT_EQ(outcomes[0].provider_message_id, "batch");
  EXPECT_EQ(outcomes[1].provider_message_id, "single");
  EXPECT_EQ(outcomes[2].provider_message_id, "batch");
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

// A batch answer -> what each member gets, and whether members were then sent on their own.
TEST_F(ChannelBatch, BatchAnswersBecomePerMemberOutcomes) {
  struct Case {
    int status;
    OutcomeKind kind;
    std::string reason;
    size_t singles;  // requests to /send that followed
  };
  const Case cases[] = {
      {200, OutcomeKind::delivered, "", 0},
      // Permanent for every member: a refused request delivered nothing, so each is resent on its own (and
      // the scripted /send accepts it).
      {400, OutcomeKind::delivered, "", 3},
      {403, OutcomeKind::delivered, "", 3},
      // Retry: the request may have been accepted after all, so nothing is resent; the backoff decides.
      {500, OutcomeKind::retry, "fixture.500", 0},
      {503, OutcomeKind::retry, "fixture.503", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status);
    answer_batches(c.status, R"({"id":"batch"})");
    size_t singles_before = seen("/send").size();
    auto outcomes = deliver_concurrently(*channel_, deliveries(3));
    EXPECT_EQ(seen("/send").size() - singles_before, c.singles);
    for (auto& o : outcomes) {
      EXPECT_EQ(o.kind, c.kind) << o.reason;
      EXPECT_EQ(o.reason, c.reason);
    }
  }
  EXPECT_EQ(seen("/batch").size(), std::size(cases));
}

TEST_F(ChannelBatch, AFailedBatchBuildSendsNothingAndDeliversEachOnItsOwn) {
  for (const char* text : {"batch_throws", "batch_twice"}) {
    SCOPED_TRACE(text);
    size_t before = seen("/send").size();
    auto outcomes = deliver_concurrently(*channel_, deliveries(3, text));
    EXPECT_EQ(seen("/send").size() - before, 3u);
    for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  }
  EXPECT_TRUE(seen("/batch").empty());
  EXPECT_EQ(channel_->batches_sent(), 0u);
}

TEST_F(ChannelBatch, RetryLaterFromTheBatchBuildIsARetryForEveryMemberWithNothingSent) {
  auto outcomes = deliver_concurrently(*channel_, deliveries(3, "batch_retry_later"));
  EXPECT_TRUE(seen().empty());
  for (auto& o : outcomes) {
    EXPECT_EQ(o.kind, OutcomeKind::retry);
    EXPECT_EQ(o.reason, "grant: unavailable for now");
  }
}

TEST_F(ChannelBatch, ALoneDeliveryWaitsOutTheWindowThenGoesSingly) {
  auto started = std::chrono::steady_clock::now();
  DeliveryOutcome o = channel_->deliver(delivery("alone"));
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  EXPECT_EQ(o.provider_message_id, "single");
  EXPECT_GE(waited, std::chrono::milliseconds(kWindowMs));
  EXPECT_EQ(seen("/send").size(), 1u);
}

TEST_F(ChannelBatch, WithoutABatchWindowNothingIsBatched) {
  RegistryResult plain = registry("fixture_batch", "");
  ASSERT_TRUE(plain.registry);
  Channel& channel = *plain.registry->find("batched");
  EXPECT_EQ(channel.batch_window_ms(), 0);
  auto outcomes = deliver_concurrently(channel, deliveries(6));
  EXPECT_EQ(seen("/send").size(), 6u);
  EXPECT_TRUE(seen("/batch").empty());
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

TEST_F(ChannelBatch, ABatchWindowOnAPluginThatDoesNotBatchIsRefusedAtItsKey) {
  RegistryResult r = registry("fixture_http", "    batch_window: 100ms\n");
  EXPECT_FALSE(r.registry);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "t.yaml:6:19: channels[0].batch_window: plugin fixture_http does not batch deliveries (it has no "
            "on_build_batch): remove batch_window");
}

}  // namespace
}  // namespace tayori::plugin
