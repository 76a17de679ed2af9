// The `push_apns` channel plugin (plugins/push_apns), loaded by the real host and driven through the real
// host transport against a scripted local APNs that checks every provider token's ES256 signature with
// the host's own verify_jwt. The .p8 key is made at test time in-process by OpenSSL (never committed); a
// hand-moved clock makes token ages, apns-expiration and Retry-After exact. (The scripted server speaks
// HTTP/1.1; real APNs gets HTTP/2 from the host transport via ALPN. The settings alone:
// tests/unit/plugins/push_apns/apns_settings_test.cpp.)
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "apns_test_support.hpp"
#include "crypto/crypto.hpp"
#include "plugin_test_support.hpp"
#include "test_support.hpp"

namespace tayori::plugin {
namespace {

using nlohmann::json;

constexpr const char* kDevice = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

using testing::AnswerCase;
using testing::ec_key;
using testing::http_date;
using testing::ManualClock;
using testing::ScriptedProvider;
using namespace testing::apns;  // the identifiers, settings and registry the unit tests share

DeliveryRequest push(const std::string& delivery_id = testing::kDeliveryId) {
  return testing::push_delivery(kDevice, delivery_id);
}

// APNs: verifies each provider token's ES256 signature (with the host's own verify_jwt) and answers 403
// ExpiredProviderToken to tokens issued at or before `expire_issued_through_` (unix s), otherwise as
// scripted; every answer echoes the request's apns-id as APNs does, unless the script names another.
class ApnsPlugin : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(ec_key().private_pem.find("BEGIN PRIVATE KEY"), std::string::npos) << "OpenSSL could not make a key";
    std::ofstream(dir_.file("AuthKey.p8")) << ec_key().private_pem;
    apns_.rule(
        [this](const api::HttpRequest& req, const api::HttpResponse& scripted) { return answer(req, scripted); });
    url_ = apns_.url();
    reg_ = registry();
    ASSERT_TRUE(reg_.registry) << (reg_.errors.empty() ? "" : reg_.errors[0].to_string());
    channel_ = reg_.registry->find("ios");
  }
  void TearDown() override {
    apns_.stop();
    EXPECT_TRUE(problems_.empty()) << problems_.front();
  }

  // Under apns_'s lock.
  api::HttpResponse answer(const api::HttpRequest& req, const api::HttpResponse& scripted) {
    api::HttpResponse r;
    r.headers.emplace_back("apns-id", std::string(req.header("apns-id")));
    std::string auth(req.header("authorization"));
    auto jwt = crypto::verify_jwt(auth.rfind("bearer ", 0) == 0 ? auth.substr(7) : "", ec_key().public_pem);
    if (!jwt || jwt.value().alg != "ES256" || jwt.value().header.value("kid", "") != kKeyId ||
        jwt.value().claims.value("iss", "") != kTeamId || !jwt.value().claims["iat"].is_number_integer()) {
      problems_.push_back("provider token refused: " + (jwt ? jwt.value().claims.dump() : jwt.error().message));
      r.status = 403;
      r.body = R"({"reason":"InvalidProviderToken"})";
      return r;
    }
    tokens_.insert(auth);
    if (jwt.value().claims["iat"].get<int64_t>() <= expire_issued_through_) {
      r.status = 403;
      r.body = R"({"reason":"ExpiredProviderToken"})";
      return r;
    }
    r.status = scripted.status;
    r.body = scripted.body;
    if (r.status != 200) r.content_type = "application/json";
    for (auto& h : scripted.headers) {
      if (h.first == "apns-id") r.headers.clear();
      r.headers.push_back(h);
    }
    return r;
  }

  RegistryResult registry(const std::string& extra = "") {
    return apns_registry("      base_url: " + url_ + "\n" + key_settings(extra), dir_.path(), clock_, &transport_);
  }
  void script(int status, std::string body, ScriptedProvider::Headers headers = {}) {
    apns_.script(status, std::move(body), std::move(headers));
  }
  std::vector<api::HttpRequest> sends() { return apns_.requests(); }
  size_t tokens_seen() {
    auto lock = apns_.lock();
    return tokens_.size();
  }

  test::TempDir dir_{"apns_plugin_test_"};
  ManualClock clock_;
  // What the fake APNs decides by and saw, guarded by apns_.lock().
  std::vector<std::string> problems_;
  std::set<std::string> tokens_;  // distinct provider tokens seen
  int64_t expire_issued_through_ = 0;
  ScriptedProvider apns_;
  std::string url_;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult reg_;
  Channel* channel_ = nullptr;
};

TEST_F(ApnsPlugin, SendsTheRequestApnsExpects) {
  DeliveryOutcome o = channel_->deliver(push());
  EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  EXPECT_EQ(o.provider_message_id, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");  // APNs echoes our apns-id
  ASSERT_EQ(sends().size(), 1u);
  const api::HttpRequest sent = sends()[0];
  EXPECT_EQ(sent.method, "POST");
  EXPECT_EQ(sent.path, std::string("/3/device/") + kDevice);
  auto jwt = crypto::verify_jwt(std::string(sent.header("authorization")).substr(7), ec_key().public_pem);
  ASSERT_TRUE(jwt) << jwt.error().message;
  EXPECT_EQ(jwt.value().header, json({{"alg", "ES256"}, {"typ", "JWT"}, {"kid", kKeyId}}));
  EXPECT_EQ(jwt.value().claims, json({{"iss", kTeamId}, {"iat", clock_.now / 1000}}));
  EXPECT_EQ(sent.header("apns-topic"), kTopic);
  EXPECT_EQ(sent.header("apns-push-type"), "alert");
  EXPECT_EQ(sent.header("apns-priority"), "10");
  EXPECT_EQ(sent.header("apns-expiration"), std::to_string(clock_.now / 1000 + 86'400));  // ttl 1d
  EXPECT_EQ(sent.header("apns-id"), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  EXPECT_EQ(sent.header("apns-collapse-id"), "");
  EXPECT_EQ(sent.header("content-type"), "application/json");
  json expected = {
      {"aps", {{"alert", {{"title", "ご注文の発送"}, {"body", "荷物を発送しました"}}}, {"sound", "default"}}},
      {"tayori_message_id", "m-1"}};
  EXPECT_EQ(json::parse(sent.body), expected);
}

// Response options: the alert shows the channel's responses category (the app registered its buttons under
// it) and the payload lists the options with their refs, for the app to answer with.
TEST_F(ApnsPlugin, ResponseOptionsGoInTheCategoryAndThePayload) {
  auto options = [] {
    json list = json::array();
    for (const auto& o : testing::sample_responses()) list.push_back({{"id", o.id}, {"label", o.label}, {"ref", o.ref}});
    return list;
  };
  struct Case {
    std::string name, settings;
    std::vector<std::pair<std::string, std::string>> extra_content;
    std::string category;
  };
  const Case cases[] = {
      {"the default category", "", {}, "TAYORI_RESPONSES"},
      {"the channel's category", "      category: SURVEY\n", {}, "SURVEY"},
      {"a message that names its own", "", {{"category", "ORDER"}}, "ORDER"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RegistryResult reg = registry(c.settings);
    ASSERT_TRUE(reg.registry) << (reg.errors.empty() ? "" : reg.errors[0].to_string());
    DeliveryRequest d = push();
    d.responses = testing::sample_responses();
    for (auto& kv : c.extra_content) d.content.push_back(kv);
    ASSERT_EQ(reg.registry->find("ios")->deliver(d).kind, OutcomeKind::delivered);
    json body = json::parse(sends().back().body);
    EXPECT_EQ(body["aps"]["category"], c.category);
    EXPECT_EQ(body["responses"], options());
  }
  // Without options nothing changes (SendsTheRequestApnsExpects pins the whole payload).
  ASSERT_EQ(channel_->deliver(push()).kind, OutcomeKind::delivered);
  json plain = json::parse(sends().back().body);
  EXPECT_FALSE(plain["aps"].contains("category"));
  EXPECT_FALSE(plain.contains("responses"));
}

TEST_F(ApnsPlugin, ProviderAnswersBecomeOutcomes) {
  // clang-format off
  const AnswerCase cases[] = {
      {200, "", {{"apns-id", "7c4a7e4e-0000-4000-8000-000000000001"}}, OutcomeKind::delivered, "", false, 0,
       "7c4a7e4e-0000-4000-8000-000000000001"},
      {400, R"({"reason":"BadDeviceToken"})", {}, OutcomeKind::permanent, "apns.BadDeviceToken", true},
      {400, R"({"reason":"DeviceTokenNotForTopic"})", {}, OutcomeKind::permanent, "apns.DeviceTokenNotForTopic", true},
      {410, R"({"reason":"Unregistered","timestamp":1779990000000})", {}, OutcomeKind::permanent, "apns.Unregistered", true},
      {410, R"({"reason":"ExpiredToken"})", {}, OutcomeKind::permanent, "apns.ExpiredToken", true},
      {403, R"({"reason":"InvalidProviderToken"})", {}, OutcomeKind::retry, "apns.InvalidProviderToken"},
      {403, R"({"reason":"Forbidden"})", {}, OutcomeKind::permanent, "apns.Forbidden"},
      {403, R"({"reason":"MissingProviderToken"})", {}, OutcomeKind::permanent, "apns.MissingProviderToken"},
      {413, R"({"reason":"PayloadTooLarge"})", {}, OutcomeKind::permanent, "apns.PayloadTooLarge"},
      {429, R"({"reason":"TooManyRequests"})", {{"Retry-After", "10"}}, OutcomeKind::retry, "apns.TooManyRequests",
       false, 10'000},
      {429, R"({"reason":"TooManyProviderTokenUpdates"})", {}, OutcomeKind::retry, "apns.TooManyProviderTokenUpdates"},
      {500, R"({"reason":"InternalServerError"})", {}, OutcomeKind::retry, "apns.InternalServerError"},
      {503, R"({"reason":"ServiceUnavailable"})", {{"Retry-After", http_date(clock_.now + 60'000)}}, OutcomeKind::retry,
       "apns.ServiceUnavailable", false, 60'000},
      {503, R"({"reason":"Shutdown"})", {}, OutcomeKind::retry, "apns.Shutdown"},
      {502, "", {}, OutcomeKind::retry, "apns.502"},
      {400, R"({"reason":"IdleTimeout"})", {}, OutcomeKind::retry, "apns.IdleTimeout"},
      {400, R"({"reason":"BadTopic"})", {}, OutcomeKind::permanent, "apns.BadTopic"},
      {400, R"({"reason":"MissingTopic"})", {}, OutcomeKind::permanent, "apns.MissingTopic"},
      {400, R"({"reason":"BadPriority"})", {}, OutcomeKind::permanent, "apns.BadPriority"},
      {404, R"({"reason":"BadPath"})", {}, OutcomeKind::permanent, "apns.BadPath"},
      {405, "", {}, OutcomeKind::permanent, "apns.405"},
  };
  // clang-format on
  testing::expect_outcomes(apns_, *channel_, push(), cases);
}

TEST_F(ApnsPlugin, AnUnreachableProviderIsATransportRetry) {
  RegistryResult reg =
      apns_registry("      base_url: http://127.0.0.1:1\n" + key_settings(), dir_.path(), clock_, &transport_);
  ASSERT_TRUE(reg.registry);
  DeliveryOutcome o = reg.registry->find("ios")->deliver(push());
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason.rfind("apns.transport: ", 0), 0u) << o.reason;
}

TEST_F(ApnsPlugin, OneProviderTokenServesEveryDeliveryForTokenRefresh) {
  for (int i = 0; i < 5; ++i) ASSERT_EQ(channel_->deliver(push("d-" + std::to_string(i))).kind, OutcomeKind::delivered);
  EXPECT_EQ(channel_->tokens_minted(), 1u);
  EXPECT_EQ(tokens_seen(), 1u);
  clock_.now += 39 * 60'000;  // token_refresh defaults to 40m
  ASSERT_EQ(channel_->deliver(push("d-5")).kind, OutcomeKind::delivered);
  EXPECT_EQ(channel_->tokens_minted(), 1u);
  clock_.now += 2 * 60'000;
  ASSERT_EQ(channel_->deliver(push("d-6")).kind, OutcomeKind::delivered);
  EXPECT_EQ(channel_->tokens_minted(), 2u);
  EXPECT_EQ(tokens_seen(), 2u);

  RegistryResult hourly = registry("      token_refresh: 60m\n");
  ASSERT_TRUE(hourly.registry);
  Channel* ch = hourly.registry->find("ios");
  ASSERT_EQ(ch->deliver(push()).kind, OutcomeKind::delivered);
  clock_.now += 59 * 60'000;
  ASSERT_EQ(ch->deliver(push()).kind, OutcomeKind::delivered);
  EXPECT_EQ(ch->tokens_minted(), 1u);
}

TEST_F(ApnsPlugin, ABurstRefusedWithExpiredProviderTokenReMintsOnce) {
  // One delivery first: it mints the token, and the transport learns the fake speaks HTTP/1.1 (until then
  // libcurl holds further requests back hoping to multiplex them on the first connection).
  ASSERT_EQ(channel_->deliver(push("warm-up")).kind, OutcomeKind::delivered);
  {
    auto lock = apns_.lock();
    expire_issued_through_ = clock_.now / 1000;  // the token in use is now refused as expired
  }
  apns_.hold(4);
  std::vector<DeliveryRequest> burst;
  for (int i = 0; i < 4; ++i) burst.push_back(push("burst-" + std::to_string(i)));
  for (const auto& o : testing::deliver_concurrently(*channel_, burst)) {
    EXPECT_EQ(o.kind, OutcomeKind::retry);
    EXPECT_EQ(o.reason, "apns.ExpiredProviderToken");
  }
  EXPECT_EQ(channel_->tokens_minted(), 1u);
  apns_.hold(0);
  clock_.now += 1000;
  for (DeliveryRequest& again : burst) {
    again.attempt = 2;
    EXPECT_EQ(channel_->deliver(again).kind, OutcomeKind::delivered);
  }
  EXPECT_EQ(channel_->tokens_minted(), 2u);  // four refusals of one token forgot it once
  EXPECT_EQ(tokens_seen(), 2u);
}

TEST_F(ApnsPlugin, ApnsIdIsStableAcrossAttemptsAndHeadersFollowTheMessage) {
  script(503, R"({"reason":"ServiceUnavailable"})");
  DeliveryRequest d = push("delivery-7");
  ASSERT_EQ(channel_->deliver(d).kind, OutcomeKind::retry);
  script(200, "");
  d.attempt = 2;
  d.expires_at_ms = clock_.now + 7'200'999;
  d.marketing = true;
  d.metadata_json = R"({"collapse_id":"order-42"})";
  d.content.emplace_back("category", "ORDER_ACTIONS");
  ASSERT_EQ(channel_->deliver(d).kind, OutcomeKind::delivered);
  auto sent = sends();
  ASSERT_EQ(sent.size(), 2u);
  std::string id(sent[0].header("apns-id"));
  EXPECT_EQ(sent[1].header("apns-id"), id);
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef-"), std::string::npos) << id;
  EXPECT_EQ(id[8], '-');
  EXPECT_EQ(id[23], '-');
  // The hash of a non-hex id, pinned: ids already sent must keep matching their resends across releases.
  EXPECT_EQ(id, "ca8e16d8-c918-91cd-259b-5cb0e7759716");
  EXPECT_EQ(sent[1].header("apns-expiration"), std::to_string((clock_.now + 7'200'999) / 1000));
  EXPECT_EQ(sent[1].header("apns-priority"), "5");  // marketing
  EXPECT_EQ(sent[1].header("apns-collapse-id"), "order-42");
  EXPECT_EQ(json::parse(sent[1].body)["aps"]["category"], "ORDER_ACTIONS");
  ASSERT_EQ(channel_->deliver(push("delivery-8")).kind, OutcomeKind::delivered);
  EXPECT_NE(sends().back().header("apns-id"), id);

  DeliveryRequest collapse = push();
  collapse.content.emplace_back("collapse_id", std::string(65, 'c'));
  DeliveryOutcome o = channel_->deliver(collapse);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("collapse_id"), std::string::npos) << o.reason;

  RegistryResult no_store = registry("      ttl: 0s\n      push_type: background\n      sound: ''\n");
  ASSERT_TRUE(no_store.registry) << (no_store.errors.empty() ? "" : no_store.errors[0].to_string());
  DeliveryRequest quiet = push();
  quiet.content.clear();  // a background update carries no visible text
  ASSERT_EQ(no_store.registry->find("ios")->deliver(quiet).kind, OutcomeKind::delivered);
  const api::HttpRequest bg = sends().back();
  EXPECT_EQ(bg.header("apns-expiration"), "0");  // try once, do not store
  EXPECT_EQ(bg.header("apns-push-type"), "background");
  EXPECT_EQ(bg.header("apns-priority"), "5");  // Apple: background pushes must not use 10
  EXPECT_EQ(json::parse(bg.body), json({{"aps", {{"content-available", 1}}}, {"tayori_message_id", "m-1"}}));
}

TEST_F(ApnsPlugin, BadDeviceTokensOversizedPayloadsAndExpiredMessagesAreRefusedBeforeSending) {
  for (const char* bad : {"not-hex-at-all", "abc", ""}) {
    DeliveryRequest d = push();
    d.contact = bad;
    DeliveryOutcome o = channel_->deliver(d);
    EXPECT_EQ(o.kind, OutcomeKind::permanent) << bad;
    EXPECT_NE(o.reason.find("apns.BadDeviceToken"), std::string::npos) << o.reason;
  }
  DeliveryRequest big = push();
  big.content = {{"title", "t"}, {"body", std::string(4050, 'x')}};
  DeliveryOutcome o = channel_->deliver(big);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("4096-byte limit"), std::string::npos) << o.reason;
  DeliveryRequest expired = push();
  expired.expires_at_ms = clock_.now;
  EXPECT_EQ(channel_->deliver(expired).kind, OutcomeKind::permanent);
  DeliveryRequest empty = push();
  empty.content.clear();
  EXPECT_EQ(channel_->deliver(empty).kind, OutcomeKind::permanent);
  EXPECT_TRUE(sends().empty());
  big.content = {{"title", "t"}, {"body", std::string(3900, 'x')}};
  EXPECT_EQ(channel_->deliver(big).kind, OutcomeKind::delivered);
}

}  // namespace
}  // namespace tayori::plugin
