// The `line` channel plugin (plugins/line), loaded by the real host and driven through the real host
// transport: first against a scripted local server (every provider answer → outcome, table-driven), then
// against the real provider simulator binary (tools/simulator, `tayori-sim`) started as a child process.
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "plugin_test_support.hpp"

namespace tayori::plugin {
namespace {

constexpr const char* kUser = "U0123456789abcdef0123456789abcdef";

RegistryResult line_registry(const std::string& base_url, const std::string& token, SystemClock& clock,
                             transport::HttpTransport* transport) {
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
  transport::HttpTransport transport{transport::TransportOptions{}};
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
  transport::HttpTransport transport{transport::TransportOptions{}};
  RegistryResult reg = line_registry("http://127.0.0.1:1", "tok", clock, &transport);
  ASSERT_TRUE(reg.registry);
  DeliveryOutcome o = reg.registry->find("line")->deliver(push(kUser));
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason.rfind("line.transport: ", 0), 0u) << o.reason;
}

TEST(LineClassify, TooLongOrMissingTextIsPermanentAndSendsNothing) {
  SystemClock clock;
  transport::HttpTransport transport{transport::TransportOptions{}};
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

  testing::SimProcess sim_;
  std::string url_;
  SystemClock clock_;
  transport::HttpTransport transport_{transport::TransportOptions{}};
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

TEST_F(LineSim, AWrongTokenIsPermanentLineAuth) {
  RegistryResult wrong = line_registry(url_, "wrong-token", clock_, &transport_);
  ASSERT_TRUE(wrong.registry);
  DeliveryOutcome o = wrong.registry->find("line")->deliver(push(kUser));
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_EQ(o.reason, "line.auth");
}

}  // namespace
}  // namespace tayori::plugin
