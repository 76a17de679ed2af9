// The `push_fcm` channel plugin (plugins/push_fcm), loaded by the real host and driven through the real
// host transport against a scripted local Google: an OAuth token endpoint that checks the RS256 assertion
// with the host's own verify_jwt, and FCM's messages:send. The service-account key is made at test time
// in-process by OpenSSL (never committed); a hand-moved clock makes expiries, TTLs and Retry-After exact. (The
// settings alone: tests/unit/plugins/push_fcm/fcm_settings_test.cpp.)
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "crypto/crypto.hpp"
#include "fcm_test_support.hpp"
#include "plugin_test_support.hpp"
#include "test_support.hpp"

namespace tayori::plugin {
namespace {

using nlohmann::json;

constexpr const char* kDeviceToken = "fE3xVq7kT0u:APA91bGx-test-registration-token";
constexpr const char* kScope = "https://www.googleapis.com/auth/firebase.messaging";

using testing::AnswerCase;
using testing::http_date;
using testing::ManualClock;
using testing::rsa_key;
using testing::ScriptedProvider;
using namespace testing::fcm;  // the key file and registry the unit tests share

std::string form_value(const std::string& body, const std::string& name) {
  std::stringstream fields(body);
  std::string field;
  while (std::getline(fields, field, '&')) {
    auto eq = field.find('=');
    if (field.substr(0, eq) != name) continue;
    std::string raw = eq == std::string::npos ? "" : field.substr(eq + 1), out;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%' && i + 2 < raw.size()) {
        out += static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += raw[i] == '+' ? ' ' : raw[i];
      }
    }
    return out;
  }
  return {};
}

std::string fcm_error(int code, const std::string& status, const std::string& message,
                      const std::string& error_code = "", json extra_details = json::array()) {
  json details = std::move(extra_details);
  if (!error_code.empty())
    details.push_back({{"@type", "type.googleapis.com/google.firebase.fcm.v1.FcmError"}, {"errorCode", error_code}});
  json error = {{"code", code}, {"message", message}, {"status", status}};
  if (!details.empty()) error["details"] = details;
  return json{{"error", error}}.dump();
}

DeliveryRequest push(const std::string& delivery_id = testing::kDeliveryId) {
  return testing::push_delivery(kDeviceToken, delivery_id);
}

// Google as far as push_fcm meets it: the OAuth token endpoint verifies each assertion (with the host's
// own verify_jwt) and issues "tok-N"; messages:send answers 401 to a refused token, otherwise as scripted.
// Built like ApnsPlugin's fixture but not shared with it: the fake provider's checks are what each fixture is.
class FcmPlugin : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(rsa_key().private_pem.find("BEGIN PRIVATE KEY"), std::string::npos) << "OpenSSL could not make a key";
    google_.script(200, R"({"name":"projects/tayori-test/messages/0:1780000000000000%31bd1c9631bd1c96"})");
    google_.route("/token", [this](const api::HttpRequest& req) { return grant(req); });
    google_.rule([this](const api::HttpRequest& req, api::HttpResponse scripted) {
      std::string auth(req.header("authorization"));
      if (auth.rfind("Bearer ", 0) == 0 && !refused_.count(auth.substr(7))) return scripted;
      api::HttpResponse r;
      r.status = 401;
      r.body = fcm_error(
          401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", "",
          json::array({{{"@type", "type.googleapis.com/google.rpc.ErrorInfo"}, {"reason", "ACCESS_TOKEN_EXPIRED"}}}));
      return r;
    });
    url_ = google_.url();
    token_uri_ = url_ + "/token";
    write_json(dir_.file("sa.json"), service_account());  // token_uri: Google's; the setting overrides it
    reg_ = fcm_registry(
        "      base_url: " + url_ + "\n      service_account: sa.json\n      token_uri: " + url_ + "/token\n",
        dir_.path(), clock_, &transport_);
    ASSERT_TRUE(reg_.registry) << (reg_.errors.empty() ? "" : reg_.errors[0].to_string());
    channel_ = reg_.registry->find("fcm");
  }
  void TearDown() override {
    google_.stop();
    EXPECT_TRUE(problems_.empty()) << problems_.front();
  }

  // The token endpoint (RFC 7523 §2.1 grant), under google_'s lock.
  api::HttpResponse grant(const api::HttpRequest& req) {
    ++grants_;
    api::HttpResponse r;
    if (req.method != "POST" || req.header("content-type") != "application/x-www-form-urlencoded")
      problems_.push_back("grant: not a form POST");
    if (form_value(req.body, "grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer")
      problems_.push_back("grant: grant_type " + form_value(req.body, "grant_type"));
    auto jwt = crypto::verify_jwt(form_value(req.body, "assertion"), rsa_key().public_pem);
    if (!jwt) {
      problems_.push_back("grant: assertion: " + jwt.error().message);
    } else {
      const json& c = jwt.value().claims;
      int64_t now_s = clock_.now_ms() / 1000;
      if (jwt.value().alg != "RS256" || jwt.value().header.value("kid", "") != "key-1")
        problems_.push_back("grant: header");
      if (c.value("iss", "") != kClientEmail || c.value("scope", "") != kScope || c.value("aud", "") != token_uri_ ||
          c.value("iat", int64_t{0}) != now_s || c.value("exp", int64_t{0}) != now_s + 3600)
        problems_.push_back("grant: claims " + c.dump());
    }
    if (grant_status_ != 200) {
      r.status = grant_status_;
      r.body = grant_body_;
      return r;
    }
    r.body =
        json{{"access_token", "tok-" + std::to_string(grants_)}, {"expires_in", 3599}, {"token_type", "Bearer"}}.dump();
    return r;
  }

  void script(int status, std::string body, ScriptedProvider::Headers headers = {}) {
    google_.script(status, std::move(body), std::move(headers));
  }
  int grants() {
    auto lock = google_.lock();
    return grants_;
  }
  std::vector<api::HttpRequest> sends() { return google_.requests(); }
  json last_message() { return json::parse(sends().back().body)["message"]; }

  test::TempDir dir_{"fcm_plugin_test_"};
  ManualClock clock_;
  // What the fake Google decides by, guarded by google_.lock().
  std::string token_uri_;
  int grants_ = 0;
  int grant_status_ = 200;
  std::string grant_body_;
  std::vector<std::string> problems_;
  std::set<std::string> refused_;
  ScriptedProvider google_;
  std::string url_;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult reg_;
  Channel* channel_ = nullptr;
};

TEST_F(FcmPlugin, SendsTheV1RequestWithAnAccessTokenFromAVerifiedAssertion) {
  DeliveryOutcome o = channel_->deliver(push());
  EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  EXPECT_EQ(o.provider_message_id, "projects/tayori-test/messages/0:1780000000000000%31bd1c9631bd1c96");
  ASSERT_EQ(sends().size(), 1u);
  const api::HttpRequest sent = sends()[0];
  EXPECT_EQ(sent.method, "POST");
  EXPECT_EQ(sent.path, "/v1/projects/tayori-test/messages:send");
  EXPECT_EQ(sent.header("authorization"), "Bearer tok-1");
  EXPECT_EQ(sent.header("content-type"), "application/json; charset=UTF-8");
  json expected = {{"message",
                    {{"token", kDeviceToken},
                     {"notification", {{"title", "ご注文の発送"}, {"body", "荷物を発送しました"}}},
                     {"data", {{"tayori_message_id", "m-1"}}},
                     {"android", {{"ttl", "86400s"}, {"priority", "high"}}}}}};
  EXPECT_EQ(json::parse(sent.body), expected);
  EXPECT_EQ(grants(), 1);
}

// Response options travel in data.responses as JSON text (FCM data values are strings).
TEST_F(FcmPlugin, ResponseOptionsTravelAsJsonTextInData) {
  DeliveryRequest d = push();
  d.responses = testing::sample_responses();
  ASSERT_EQ(channel_->deliver(d).kind, OutcomeKind::delivered);
  json data = last_message()["data"];
  ASSERT_TRUE(data["responses"].is_string()) << data.dump();
  json expected = json::array();
  for (const auto& o : testing::sample_responses()) expected.push_back({{"id", o.id}, {"label", o.label}, {"ref", o.ref}});
  EXPECT_EQ(json::parse(data["responses"].get<std::string>()), expected);
  EXPECT_EQ(data["tayori_message_id"], "m-1");
  ASSERT_EQ(channel_->deliver(push()).kind, OutcomeKind::delivered);
  EXPECT_FALSE(last_message()["data"].contains("responses"));
}

TEST_F(FcmPlugin, ProviderAnswersBecomeOutcomes) {
  const json token_violation = json::array(
      {{{"@type", "type.googleapis.com/google.rpc.BadRequest"},
        {"fieldViolations", {{{"field", "message.token"}, {"description", "Invalid registration token"}}}}}});
  // clang-format off
  const AnswerCase cases[] = {
      {404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), {}, OutcomeKind::permanent,
       "fcm.UNREGISTERED", true},
      {403, fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"), {}, OutcomeKind::permanent,
       "fcm.SENDER_ID_MISMATCH", true},
      {400, fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                      "INVALID_ARGUMENT"),
       {}, OutcomeKind::permanent, "fcm.INVALID_ARGUMENT", true},
      {400, fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "INVALID_ARGUMENT", token_violation),
       {}, OutcomeKind::permanent, "fcm.INVALID_ARGUMENT", true},
      {400, fcm_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl'", "INVALID_ARGUMENT"), {},
       OutcomeKind::permanent, "fcm.INVALID_ARGUMENT: Invalid value at 'message.android.ttl'"},
      {401, fcm_error(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR"), {},
       OutcomeKind::permanent, "fcm.THIRD_PARTY_AUTH_ERROR: Auth error from APNS or Web Push Service"},
      {403, fcm_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied"), {},
       OutcomeKind::permanent, "fcm.PERMISSION_DENIED: Permission 'cloudmessaging.messages.create' denied"},
      {404, fcm_error(404, "NOT_FOUND", "Requested entity was not found."), {}, OutcomeKind::permanent,
       "fcm.NOT_FOUND: Requested entity was not found."},  // no FcmError: a wrong project, not a dead token
      {429, fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", "QUOTA_EXCEEDED"),
       {{"Retry-After", "30"}}, OutcomeKind::retry, "fcm.QUOTA_EXCEEDED", false, 30'000},
      {429, "", {}, OutcomeKind::retry, "fcm.429"},
      {503, fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
       {{"Retry-After", http_date(clock_.now_ms() + 120'000)}}, OutcomeKind::retry, "fcm.UNAVAILABLE", false, 120'000},
      {500, fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"), {}, OutcomeKind::retry, "fcm.INTERNAL"},
      {502, "<html>Bad Gateway</html>", {{"Retry-After", "soon"}}, OutcomeKind::retry, "fcm.502"},
      {401, fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), {}, OutcomeKind::retry,
       "fcm.UNAUTHENTICATED"},
      {418, "", {}, OutcomeKind::permanent, "fcm.418"},
  };
  // clang-format on
  testing::expect_outcomes(google_, *channel_, push(), cases);
}

TEST_F(FcmPlugin, AnUnreachableProviderIsATransportRetry) {
  RegistryResult reg = fcm_registry(
      "      base_url: http://127.0.0.1:1\n      service_account: sa.json\n"
      "      token_uri: " +
          url_ + "/token\n",
      dir_.path(), clock_, &transport_);
  ASSERT_TRUE(reg.registry);
  DeliveryOutcome o = reg.registry->find("fcm")->deliver(push());
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason.rfind("fcm.transport: ", 0), 0u) << o.reason;
}

TEST_F(FcmPlugin, ManyDeliveriesShareOneGrantUntilItIsDue) {
  for (int i = 0; i < 5; ++i) ASSERT_EQ(channel_->deliver(push("d-" + std::to_string(i))).kind, OutcomeKind::delivered);
  EXPECT_EQ(grants(), 1);
  EXPECT_EQ(channel_->tokens_minted(), 1u);
  clock_.now += 54 * 60'000;  // the token (expires_in 3599 s) is still more than 5 min from expiry
  ASSERT_EQ(channel_->deliver(push("d-5")).kind, OutcomeKind::delivered);
  EXPECT_EQ(grants(), 1);
  clock_.now += 2 * 60'000;  // now within 5 min of expiry: renewed before it can be refused
  ASSERT_EQ(channel_->deliver(push("d-6")).kind, OutcomeKind::delivered);
  EXPECT_EQ(grants(), 2);
  EXPECT_EQ(channel_->tokens_minted(), 2u);
  EXPECT_EQ(sends().back().header("authorization"), "Bearer tok-2");
}

TEST_F(FcmPlugin, ABurstRefusedWith401CostsASingleNewGrant) {
  {
    auto lock = google_.lock();
    refused_ = {"tok-1"};
  }
  google_.hold(4);  // all four are in flight with tok-1 before any is refused
  std::vector<DeliveryRequest> burst;
  for (int i = 0; i < 4; ++i) burst.push_back(push("burst-" + std::to_string(i)));
  for (const auto& o : testing::deliver_concurrently(*channel_, burst)) {
    EXPECT_EQ(o.kind, OutcomeKind::retry);
    EXPECT_EQ(o.reason, "fcm.UNAUTHENTICATED");
  }
  EXPECT_EQ(grants(), 1);
  google_.hold(0);
  for (DeliveryRequest& again : burst) {
    again.attempt = 2;
    EXPECT_EQ(channel_->deliver(again).kind, OutcomeKind::delivered);
  }
  EXPECT_EQ(grants(), 2);  // four refusals of tok-1 forgot it once; tok-2 was never forgotten
  EXPECT_EQ(channel_->tokens_minted(), 2u);
}

TEST_F(FcmPlugin, AGrantFailureRetriesWhenTransientAndIsPermanentWhenTheKeyIsRefused) {
  auto grant_answers = [&](int status, std::string body) {
    auto lock = google_.lock();
    grant_status_ = status;
    grant_body_ = std::move(body);
  };
  grant_answers(503, "");
  DeliveryOutcome o = channel_->deliver(push());
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason, "fcm.oauth.503");
  grant_answers(429, "");
  EXPECT_EQ(channel_->deliver(push()).kind, OutcomeKind::retry);
  grant_answers(400, R"({"error":"invalid_grant","error_description":"Invalid JWT Signature."})");
  o = channel_->deliver(push());
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("fcm.oauth.invalid_grant: Invalid JWT Signature."), std::string::npos) << o.reason;
  grant_answers(401, R"({"error":"invalid_client","error_description":"The OAuth client was not found."})");
  EXPECT_EQ(channel_->deliver(push()).kind, OutcomeKind::permanent);
  EXPECT_TRUE(sends().empty());
  EXPECT_EQ(channel_->tokens_minted(), 0u);
  grant_answers(200, "");
  EXPECT_EQ(channel_->deliver(push()).kind, OutcomeKind::delivered);

  RegistryResult unreachable = fcm_registry(
      "      base_url: " + url_ + "\n      service_account: sa.json\n      token_uri: http://127.0.0.1:1/token\n",
      dir_.path(), clock_, &transport_);
  ASSERT_TRUE(unreachable.registry);
  o = unreachable.registry->find("fcm")->deliver(push());
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason.rfind("fcm.oauth.transport: ", 0), 0u) << o.reason;
}

TEST_F(FcmPlugin, TtlPriorityAndCollapseKeyFollowTheMessage) {
  DeliveryRequest d = push();
  d.expires_at_ms = clock_.now + 3'600'900;  // rounded down: never stored past the expiry
  ASSERT_EQ(channel_->deliver(d).kind, OutcomeKind::delivered);
  EXPECT_EQ(last_message()["android"]["ttl"], "3600s");
  d.expires_at_ms = clock_.now + 40LL * 86'400'000;  // FCM keeps at most 28 days
  ASSERT_EQ(channel_->deliver(d).kind, OutcomeKind::delivered);
  EXPECT_EQ(last_message()["android"]["ttl"], "2419200s");
  d.expires_at_ms = clock_.now + 400;
  ASSERT_EQ(channel_->deliver(d).kind, OutcomeKind::delivered);
  EXPECT_EQ(last_message()["android"]["ttl"], "0s");

  DeliveryRequest m = push();
  m.marketing = true;
  m.metadata_json = R"({"collapse_id":"order-42","campaign":"x"})";
  m.content = {{"text", "セール開始"}, {"image", "https://img.example.com/a.png"}};
  ASSERT_EQ(channel_->deliver(m).kind, OutcomeKind::delivered);
  json sent = last_message();
  EXPECT_EQ(sent["android"], json({{"ttl", "86400s"}, {"priority", "normal"}, {"collapse_key", "order-42"}}));
  EXPECT_EQ(sent["notification"], json({{"body", "セール開始"}, {"image", "https://img.example.com/a.png"}}));
  m.content.emplace_back("collapse_id", "from-content");
  ASSERT_EQ(channel_->deliver(m).kind, OutcomeKind::delivered);
  EXPECT_EQ(last_message()["android"]["collapse_key"], "from-content");

  size_t before = sends().size();
  DeliveryRequest expired = push();
  expired.expires_at_ms = clock_.now - 1;
  DeliveryOutcome o = channel_->deliver(expired);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("expires_at"), std::string::npos) << o.reason;
  EXPECT_EQ(sends().size(), before);
}

TEST_F(FcmPlugin, AnOversizedOrEmptyMessageIsPermanentAndSendsNothing) {
  DeliveryRequest big = push();
  big.content = {{"title", "t"}, {"body", std::string(4000, 'x')}};
  DeliveryOutcome o = channel_->deliver(big);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("4096-byte limit"), std::string::npos) << o.reason;
  DeliveryRequest empty = push();
  empty.content = {{"html", "<p>no push text</p>"}};
  o = channel_->deliver(empty);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("body:"), std::string::npos) << o.reason;
  DeliveryRequest nobody = push();
  nobody.contact.clear();
  EXPECT_EQ(channel_->deliver(nobody).kind, OutcomeKind::permanent);
  EXPECT_TRUE(sends().empty());
  EXPECT_EQ(grants(), 0);  // checked before any token is fetched
  big.content = {{"title", "t"}, {"body", std::string(3900, 'x')}};
  EXPECT_EQ(channel_->deliver(big).kind, OutcomeKind::delivered);
}

TEST_F(FcmPlugin, TheKeyFileSuppliesTokenUriAndProjectUnlessOverridden) {
  write_json(dir_.file("sa2.json"), service_account(url_ + "/token"));
  RegistryResult reg = fcm_registry("      base_url: " + url_ + "\n      service_account: " + dir_.file("sa2.json") +
                                        "\n      project_id: other-project\n",
                                    dir_.path(), clock_, &transport_);
  ASSERT_TRUE(reg.registry);
  ASSERT_EQ(reg.registry->find("fcm")->deliver(push()).kind, OutcomeKind::delivered);
  EXPECT_EQ(sends().back().path, "/v1/projects/other-project/messages:send");
  EXPECT_EQ(grants(), 1);  // and the assertion's aud was the key file's token_uri (checked by the fake)
}

}  // namespace
}  // namespace tayori::plugin
