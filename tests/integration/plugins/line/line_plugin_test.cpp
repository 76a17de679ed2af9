// The `line` channel plugin (plugins/line), loaded by the real host and driven through the real host
// transport: first against a scripted local server (every provider answer → outcome, table-driven), then
// against the real provider simulator binary (tools/simulator, `tayori-sim`) started as a child process.
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "line_test_support.hpp"
#include "plugin_test_support.hpp"
#include "sim_process.hpp"

namespace tayori::plugin {
namespace {

using namespace testing::line;  // the user and the two-way channel the unit tests share

RegistryResult line_registry(const std::string& base_url, const std::string& token, SystemClock& clock,
                             transport::OutboundTransport* transport) {
  testing::OneChannel line{
      .name = "line",
      .plugin = "line",
      .settings = "      base_url: " + base_url + "\n      channel_access_token_env: LINE_TOKEN\n"};
  return testing::registry_for(line.yaml(), clock, transport, "/tmp", {{"LINE_TOKEN", token}});
}

DeliveryRequest push(const std::string& to, const std::string& text = "こんにちは",
                     const std::string& delivery_id = testing::kDeliveryId) {
  return testing::delivery(to, {{"text", text}}, delivery_id);
}

// ---- Every provider answer → outcome, against a scripted server -------------------------------------

TEST(LineClassify, ProviderAnswersBecomeOutcomes) {
  struct Case {
    int status;
    std::string body;
    OutcomeKind kind;
    std::string reason;
    std::string provider_id;
  };
  const Case cases[] = {
      {200, R"({"sentMessages":[{"id":"461230966842064897","quoteToken":"q"}]})", OutcomeKind::delivered, "",
       "461230966842064897"},
      {200, "{}", OutcomeKind::delivered, "", ""},
      {409, R"({"message":"The retry key is already accepted"})", OutcomeKind::delivered,
       "line.409_already_accepted", ""},
      {400, R"j({"message":"The request body has 1 error(s)","details":[{"message":"Invalid user ID","property":"to"}]})j",
       OutcomeKind::permanent, "line.400: The request body has 1 error(s); to: Invalid user ID", ""},
      {400, "not json", OutcomeKind::permanent, "line.400: no error message", ""},
      {401, R"({"message":"Authentication failed"})", OutcomeKind::permanent, "line.auth", ""},
      {403, R"({"message":"Not allowed"})", OutcomeKind::permanent, "line.auth", ""},
      {429, R"({"message":"You have reached your monthly limit."})", OutcomeKind::retry, "line.429", ""},
      {500, "", OutcomeKind::retry, "line.500", ""},
      {503, "", OutcomeKind::retry, "line.503", ""},
  };
  testing::ScriptedProvider provider(1);
  SystemClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  RegistryResult reg = line_registry(provider.url(), "tok", clock, &transport);
  ASSERT_TRUE(reg.registry);
  for (const Case& c : cases) {
    provider.script(c.status, c.body);
    DeliveryOutcome o = reg.registry->find("line")->deliver(push(kUser));
    SCOPED_TRACE(std::to_string(c.status) + " " + c.body);
    EXPECT_EQ(o.kind, c.kind) << o.reason;
    EXPECT_EQ(o.reason, c.reason);
    EXPECT_EQ(o.provider_message_id, c.provider_id);
    EXPECT_FALSE(o.deactivate_contact);
  }
  provider.stop();
}

TEST(LineClassify, AnUnreachableProviderIsATransportRetry) {
  SystemClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  RegistryResult reg = line_registry("http://127.0.0.1:1", "tok", clock, &transport);
  ASSERT_TRUE(reg.registry);
  DeliveryOutcome o = reg.registry->find("line")->deliver(push(kUser));
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason.rfind("line.transport: ", 0), 0u) << o.reason;
}

TEST(LineClassify, TooLongOrMissingTextIsPermanentAndSendsNothing) {
  SystemClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  RegistryResult reg = line_registry("http://127.0.0.1:1", "tok", clock, &transport);  // never reached
  ASSERT_TRUE(reg.registry);
  std::string limit;
  for (int i = 0; i < 5001; ++i) limit += "あ";  // 5,001 characters (15,003 bytes)
  DeliveryOutcome o = reg.registry->find("line")->deliver(push(kUser, limit));
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("5000"), std::string::npos) << o.reason;
  DeliveryRequest empty = push(kUser);
  empty.content.clear();
  EXPECT_EQ(reg.registry->find("line")->deliver(empty).kind, OutcomeKind::permanent);
}

// ---- Two-way: quick replies out (webhooks in: tests/unit/plugins/line/line_inbound_test.cpp) ---------------

TEST(LineRender, ResponseOptionsBecomeQuickReplyPostbacks) {
  testing::ScriptedProvider provider(1);
  provider.script(200, "{}");
  SystemClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  RegistryResult reg = two_way_registry(provider.url(), kSecret, clock, &transport);
  ASSERT_TRUE(reg.registry);
  DeliveryRequest d = push(kUser, "新商品のご案内");
  d.responses = testing::sample_responses();
  ASSERT_EQ(reg.registry->find("line")->deliver(d).kind, OutcomeKind::delivered);
  auto sent = provider.take();
  ASSERT_EQ(sent.size(), 1u);
  auto item = [](const char* label, const char* ref) {
    return nlohmann::json{{"type", "action"},
                          {"action", {{"type", "postback"}, {"label", label}, {"data", ref}, {"displayText", label}}}};
  };
  nlohmann::json expected = {
      {"to", kUser},
      {"messages",
       {{{"type", "text"},
         {"text", "新商品のご案内"},
         {"quickReply",
          {{"items",
            {item("気になる", "r.interested-ref"), item("あとで", "r.later-ref"),
             item("興味なし", "r.not-interested-ref")}}}}}}}};
  EXPECT_EQ(nlohmann::json::parse(sent[0].body), expected);

  // LINE's limits are checked before anything is sent: a label over 20 characters, a ref over 300.
  DeliveryRequest long_label = d;
  long_label.responses[1].label = "あいうえおかきくけこさしすせそたちつてとな";  // 21
  DeliveryOutcome o = reg.registry->find("line")->deliver(long_label);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("responses[1].label"), std::string::npos) << o.reason;
  DeliveryRequest long_ref = d;
  long_ref.responses[0].ref = std::string(301, 'r');
  o = reg.registry->find("line")->deliver(long_ref);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("responses[0].ref"), std::string::npos) << o.reason;
  EXPECT_TRUE(provider.take().empty());
  provider.stop();
}

TEST(LineRender, DeliveriesWithResponseOptionsAreNeverMulticast) {
  testing::ScriptedProvider provider(2);
  provider.script(200, "{}");
  SystemClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  RegistryResult reg = two_way_registry(provider.url(), kSecret, clock, &transport, "    batch_window: 200ms\n");
  ASSERT_TRUE(reg.registry) << (reg.errors.empty() ? "" : reg.errors[0].to_string());
  std::vector<DeliveryRequest> both;
  for (unsigned i = 0; i < 2; ++i) {
    both.push_back(push(testing::hex_id("U", i), "同じ本文", testing::hex_id("", i)));
    both.back().responses = testing::sample_responses();  // each message's refs are its own
  }
  for (const DeliveryOutcome& o : testing::deliver_concurrently(*reg.registry->find("line"), both))
    EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  EXPECT_EQ(provider.requests("/v2/bot/message/push").size(), 2u);
  EXPECT_EQ(reg.registry->find("line")->batches_sent(), 0u);
  provider.stop();
}

// ---- Against the real simulator binary -----------------------------------------------------------------

class LineSim : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(sim_.start({"--line-token", "sim-token"}));
    url_ = sim_.url();
    reg_ = line_registry(url_, "sim-token", clock_, &transport_);
    ASSERT_TRUE(reg_.registry);
  }

  transport::Response call(const std::string& method, const std::string& path, const std::string& body = "") {
    transport::Request r;
    r.method = method;
    r.url = url_ + path;
    r.body = body;
    if (!body.empty()) r.headers = {{"Content-Type", "application/json"}};
    std::promise<transport::Response> done;
    auto answer = done.get_future();
    transport_.submit(r, [&done](transport::Response resp) { done.set_value(std::move(resp)); });
    return answer.get();
  }
  nlohmann::json requests() { return nlohmann::json::parse(call("GET", "/_sim/requests").body); }
  DeliveryOutcome deliver(const DeliveryRequest& d) { return reg_.registry->find("line")->deliver(d); }

  test::SimProcess sim_;
  std::string url_;
  SystemClock clock_;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult reg_;
};

TEST_F(LineSim, APushIsDeliveredWithExactlyTheExpectedRequest) {
  DeliveryOutcome o = deliver(push(kUser, "こんにちは"));
  EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  EXPECT_FALSE(o.provider_message_id.empty());
  nlohmann::json got = requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["method"], "POST");
  EXPECT_EQ(got[0]["path"], "/v2/bot/message/push");
  EXPECT_EQ(got[0]["headers"]["authorization"], "Bearer sim-token");
  EXPECT_EQ(got[0]["headers"]["content-type"], "application/json");
  EXPECT_EQ(got[0]["headers"]["x-line-retry-key"], "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  nlohmann::json expected = {{"to", kUser}, {"messages", {{{"type", "text"}, {"text", "こんにちは"}}}}};
  EXPECT_EQ(nlohmann::json::parse(got[0]["body"].get<std::string>()), expected);
}

TEST_F(LineSim, ARetryOfTheSameDeliveryGets409AndIsDelivered) {
  DeliveryRequest d = push(kUser);
  ASSERT_EQ(deliver(d).kind, OutcomeKind::delivered);
  d.attempt = 2;
  DeliveryOutcome again = deliver(d);
  EXPECT_EQ(again.kind, OutcomeKind::delivered);
  EXPECT_EQ(again.reason, "line.409_already_accepted");
  nlohmann::json got = requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]["headers"]["x-line-retry-key"], got[1]["headers"]["x-line-retry-key"]);
  // A different delivery gets a different key and is accepted afresh; a non-hex id still maps to a UUID.
  DeliveryOutcome other = deliver(push(kUser, "x", "not-hex-delivery"));
  EXPECT_EQ(other.kind, OutcomeKind::delivered) << other.reason;
  std::string key = requests()[2]["headers"]["x-line-retry-key"];
  EXPECT_EQ(key.size(), 36u);
  EXPECT_EQ(key[8], '-');
  EXPECT_EQ(key[23], '-');
  // The hash of a non-hex id, pinned: a key LINE has seen must keep naming its request across releases.
  EXPECT_EQ(key, "9a83ce88-d924-3575-284f-aea93503f2f0");
}

TEST_F(LineSim, AnInvalidUserIdIsPermanent) {
  DeliveryOutcome o = deliver(push("not-a-line-user"));
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_EQ(o.reason, "line.400: The request body has 1 error(s); to: Invalid user ID");
}

TEST_F(LineSim, AnInjected503IsARetryThenTheRetrySucceeds) {
  ASSERT_EQ(call("POST", "/_sim/faults", R"({"status":503,"count":1})").status, 200);
  DeliveryRequest d = push(kUser);
  DeliveryOutcome first = deliver(d);
  EXPECT_EQ(first.kind, OutcomeKind::retry);
  EXPECT_EQ(first.reason, "line.503");
  d.attempt = 2;
  DeliveryOutcome second = deliver(d);  // the faulted attempt was never accepted: no 409
  EXPECT_EQ(second.kind, OutcomeKind::delivered) << second.reason;
  EXPECT_EQ(second.reason, "");
}

// The simulator's webhook sender (POST /_sim/webhooks/line) signs exactly as the plugin verifies.
TEST_F(LineSim, TheSimulatorsSignedWebhooksVerify) {
  testing::ScriptedProvider gateway(1);
  nlohmann::json control = {
      {"url", gateway.url() + "/inbound/line/line"},
      {"channel_secret", kSecret},
      {"events",
       {{{"type", "postback"},
         {"source", {{"type", "user"}, {"userId", kUser}}},
         {"postback", {{"data", "r.interested-ref"}}},
         {"webhookEventId", "01SIM"}}}}};
  ASSERT_EQ(call("POST", "/_sim/webhooks/line", control.dump()).status, 200);
  auto calls = testing::await_requests(gateway, 1);
  ASSERT_EQ(calls.size(), 1u);
  RegistryResult reg = two_way_registry(url_, kSecret, clock_, &transport_);
  ASSERT_TRUE(reg.registry);
  std::vector<ProviderReport> events = testing::inbound_reports(*reg.registry->find("line"), calls[0], gateway.url());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ReportKind::response);
  EXPECT_EQ(events[0].report_id, "01SIM");
  EXPECT_EQ(events[0].ref, "r.interested-ref");
  EXPECT_EQ(events[0].contact, kUser);
  gateway.stop();
}

TEST_F(LineSim, AWrongTokenIsPermanentLineAuth) {
  RegistryResult wrong = line_registry(url_, "wrong-token", clock_, &transport_);
  ASSERT_TRUE(wrong.registry);
  DeliveryOutcome o = wrong.registry->find("line")->deliver(push(kUser));
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_EQ(o.reason, "line.auth");
}

}  // namespace
}  // namespace tayori::plugin
