// Host-side batching (plugin.h on_build_batch, gateway/plugin/channel.cpp): concurrent deliveries of
// identical content on a channel with a batch_window share one request, and each still gets its own
// verdict. Driven through the real host and transport against a scripted local server, with the SDK
// fixture tests/fixtures/plugins/fixture_batch.cpp (batch_max 3, singles POST /send, batches POST /batch).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "api/http_server.hpp"
#include "batch_test_support.hpp"
#include "config/config.hpp"
#include "plugin/channel.hpp"
#include "transport/http_transport.hpp"

namespace tayori::plugin {
namespace {

using testing::deliver_concurrently;
using ::testing::HasSubstr;

constexpr int kWindowMs = 200;

// Answers /send with 200 {"id":"single"} and /batch with what the test scripts; records every request.
class Provider final : public api::Handler {
 public:
  void handle(api::HttpRequest request, api::Responder respond) override {
    api::HttpResponse r;
    {
      std::lock_guard lock(mutex_);
      seen_.push_back({request.path, nlohmann::json::parse(request.body, nullptr, false)});
      if (request.path == "/batch") {
        r.status = batch_status_;
        r.body = batch_body_;
      } else {
        r.body = R"({"id":"single"})";
      }
    }
    respond(r);
  }
  void answer_batches(int status, std::string body) {
    std::lock_guard lock(mutex_);
    batch_status_ = status;
    batch_body_ = std::move(body);
  }
  struct Seen {
    std::string path;
    nlohmann::json body;
  };
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  std::vector<Seen> seen(const std::string& path) {
    std::vector<Seen> out;
    for (auto& s : seen())
      if (s.path == path) out.push_back(s);
    return out;
  }

 private:
  std::mutex mutex_;
  std::vector<Seen> seen_;
  int batch_status_ = 200;
  std::string batch_body_ = R"({"id":"batch"})";
};

class ChannelBatch : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = server_.start("127.0.0.1", 0);
    reg_ = registry("fixture_batch", "    batch_window: " + std::to_string(kWindowMs) + "ms\n");
    ASSERT_TRUE(reg_.registry) << (reg_.errors.empty() ? "" : reg_.errors[0].to_string());
    channel_ = reg_.registry->find("batched");
  }
  void TearDown() override { server_.stop(0); }

  RegistryResult registry(const std::string& plugin, const std::string& channel_extra) {
    std::string yaml = "api_keys: [{name: t, key_env: K}]\nplugin_dirs: [" TAYORI_FIXTURE_DIR
                       "]\n"
                       "channels:\n  - name: batched\n    plugin: " +
                       plugin + "\n" + channel_extra +
                       "    settings:\n      url: http://127.0.0.1:" + std::to_string(port_) + "\n";
    loaded_ = config::load_string(yaml, "t.yaml", "/tmp", [](const std::string&) { return std::string("k"); });
    if (!loaded_.config) return {{}, loaded_.errors};
    return build_registry(*loaded_.config, clock_, &transport_);
  }

  static DeliveryRequest delivery(const std::string& contact, const std::string& text = "same for all") {
    DeliveryRequest d;
    d.message_id = "m-" + contact;
    d.delivery_id = "d-" + contact;
    d.contact = contact;
    d.content = {{"text", text}};
    return d;
  }
  static std::vector<DeliveryRequest> deliveries(int n, const std::string& text = "same for all") {
    std::vector<DeliveryRequest> out;
    for (int i = 0; i < n; ++i) out.push_back(delivery("c" + std::to_string(i), text));
    return out;
  }

  Provider provider_;
  api::HttpServer server_{provider_, api::ServerLimits{}, 2};
  uint16_t port_ = 0;
  SystemClock clock_;
  transport::HttpTransport transport_{transport::TransportOptions{}};
  config::LoadResult loaded_;
  RegistryResult reg_;
  Channel* channel_ = nullptr;
};

TEST_F(ChannelBatch, SevenDeliveriesMakeTwoFullBatchesOfThreeAndOneSingle) {
  auto outcomes = deliver_concurrently(*channel_, deliveries(7));
  auto batches = provider_.seen("/batch");
  auto singles = provider_.seen("/send");
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
  auto batches = provider_.seen("/batch");
  ASSERT_EQ(batches.size(), 1u);
  std::set<std::string> together(batches[0].body["to"].begin(), batches[0].body["to"].end());
  EXPECT_EQ(together, (std::set<std::string>{"a", "b"})) << "only a and b are alike";
  EXPECT_EQ(provider_.seen("/send").size(), 4u);
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

TEST_F(ChannelBatch, OneContactIsNeverNamedTwiceInARequest) {
  std::vector<DeliveryRequest> all = {delivery("a"), delivery("b"), delivery("a")};
  all[2].delivery_id = "d-a-second-message";
  auto outcomes = deliver_concurrently(*channel_, all);
  auto batches = provider_.seen("/batch");
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].body["to"].size(), 2u);
  EXPECT_EQ(provider_.seen("/send").size(), 1u);
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

TEST_F(ChannelBatch, AMemberTheBatchAnswerRefusesIsDeliveredSinglyAndTheOthersStand) {
  provider_.answer_batches(200, R"({"id":"batch","refused":["c1"]})");
  auto outcomes = deliver_concurrently(*channel_, deliveries(3));
  EXPECT_EQ(provider_.seen("/batch").size(), 1u);
  auto singles = provider_.seen("/send");
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
    provider_.answer_batches(c.status, R"({"id":"batch"})");
    size_t singles_before = provider_.seen("/send").size();
    auto outcomes = deliver_concurrently(*channel_, deliveries(3));
    EXPECT_EQ(provider_.seen("/send").size() - singles_before, c.singles);
    for (auto& o : outcomes) {
      EXPECT_EQ(o.kind, c.kind) << o.reason;
      EXPECT_EQ(o.reason, c.reason);
    }
  }
  EXPECT_EQ(provider_.seen("/batch").size(), std::size(cases));
}

TEST_F(ChannelBatch, AFailedBatchBuildSendsNothingAndDeliversEachOnItsOwn) {
  for (const char* text : {"batch_throws", "batch_twice"}) {
    SCOPED_TRACE(text);
    size_t before = provider_.seen("/send").size();
    auto outcomes = deliver_concurrently(*channel_, deliveries(3, text));
    EXPECT_EQ(provider_.seen("/send").size() - before, 3u);
    for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  }
  EXPECT_TRUE(provider_.seen("/batch").empty());
  EXPECT_EQ(channel_->batches_sent(), 0u);
}

TEST_F(ChannelBatch, RetryLaterFromTheBatchBuildIsARetryForEveryMemberWithNothingSent) {
  auto outcomes = deliver_concurrently(*channel_, deliveries(3, "batch_retry_later"));
  EXPECT_TRUE(provider_.seen().empty());
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
  EXPECT_EQ(provider_.seen("/send").size(), 1u);
}

TEST_F(ChannelBatch, WithoutABatchWindowNothingIsBatched) {
  RegistryResult plain = registry("fixture_batch", "");
  ASSERT_TRUE(plain.registry);
  Channel& channel = *plain.registry->find("batched");
  EXPECT_EQ(channel.batch_window_ms(), 0);
  auto outcomes = deliver_concurrently(channel, deliveries(6));
  EXPECT_EQ(provider_.seen("/send").size(), 6u);
  EXPECT_TRUE(provider_.seen("/batch").empty());
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
