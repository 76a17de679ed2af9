// The `sms_twilio` channel plugin (plugins/sms_twilio), loaded by the real host and driven through the real
// host transport: against a scripted local server (the exact Create Message request, every provider answer
// → outcome, table-driven), then against the provider simulator binary (`tayori-sim`, Twilio's test
// numbers) started as a child process. (Settings and webhooks, which send nothing:
// tests/unit/plugins/sms_twilio/twilio_channel_test.cpp.)
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <nlohmann/json.hpp>

#include "crypto/crypto.hpp"
#include "plugin_test_support.hpp"
#include "sim_process.hpp"
#include "twilio_test_support.hpp"

namespace tayori::plugin {
namespace {

using testing::AnswerCase;
using testing::ManualClock;
using testing::ScriptedProvider;
using namespace testing::twilio;  // the account and channel config the unit tests share

DeliveryRequest sms(const std::string& to = kTo, const std::string& text = "こんにちは") {
  return testing::delivery(to, {{"text", text}});
}

// application/x-www-form-urlencoded parsing, independent of the plugin's encoder.
std::map<std::string, std::string> form_decode(const std::string& body) {
  std::map<std::string, std::string> out;
  auto decode = [](const std::string& s) {
    std::string r;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') r += ' ';
      else if (s[i] == '%' && i + 2 < s.size()) {
        r += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else r += s[i];
    }
    return r;
  };
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('&', start);
    if (end == std::string::npos) end = body.size();
    std::string pair = body.substr(start, end - start);
    size_t eq = pair.find('=');
    out[decode(pair.substr(0, eq))] = eq == std::string::npos ? "" : decode(pair.substr(eq + 1));
    start = end + 1;
  }
  return out;
}

// Twilio as scripted: Create Message accepted (201 with a Message SID) unless a test scripts otherwise.
class TwilioScripted : public ::testing::Test {
 protected:
  void SetUp() override { provider_.script(201, R"({"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"})"); }
  void TearDown() override { provider_.stop(); }
  std::string base() const { return provider_.url(); }
  Channel* channel(const std::string& settings = "      from: '+15005550006'\n", bool public_url = true) {
    return twilio_channel(reg_, base(), settings, public_url, clock_, &transport_);
  }
  // The one request the plugin sent for `d`, decoded.
  std::map<std::string, std::string> sent_form(Channel* c, const DeliveryRequest& d) {
    DeliveryOutcome o = c->deliver(d);
    EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
    auto got = provider_.take();
    EXPECT_EQ(got.size(), 1u);
    return got.empty() ? std::map<std::string, std::string>{} : form_decode(got[0].body);
  }

  ScriptedProvider provider_{1};
  ManualClock clock_{kNow};
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult reg_;
};

TEST_F(TwilioScripted, TheRequestIsExactlyTwiliosCreateMessage) {
  Channel* c = channel();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->contact(), "phone");
  DeliveryOutcome o = c->deliver(sms(kTo, "こんにちは world & 100%"));
  EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  EXPECT_EQ(o.provider_message_id, "SM0123456789abcdef0123456789abcdef");
  auto got = provider_.take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "POST");
  EXPECT_EQ(got[0].path, std::string("/2010-04-01/Accounts/") + kSid + "/Messages.json");
  EXPECT_EQ(got[0].header("authorization"),
            "Basic " + crypto::base64_encode(std::string(kSid) + ":" + kToken));
  EXPECT_EQ(got[0].header("content-type"), "application/x-www-form-urlencoded");
  // The exact bytes: '+' of E.164 as %2B, UTF-8 percent-encoded upper-case, space as '+', '&' and '%' escaped.
  EXPECT_EQ(got[0].body,
            "To=%2B819012345678&From=%2B15005550006"
            "&Body=%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF+world+%26+100%25"
            "&StatusCallback=http%3A%2F%2F127.0.0.1%3A9%2Finbound%2Fsms_twilio%2Fsms");
  auto form = form_decode(got[0].body);
  EXPECT_EQ(form["Body"], "こんにちは world & 100%");
  EXPECT_EQ(form["StatusCallback"], "http://127.0.0.1:9/inbound/sms_twilio/sms");
  EXPECT_EQ(form.count("ValidityPeriod"), 0u);
}

TEST_F(TwilioScripted, StatusCallbackOnlyWithAPublicUrlAndWhenEnabled) {
  EXPECT_EQ(sent_form(channel("      from: '+15005550006'\n", false), sms()).count("StatusCallback"), 0u);
  EXPECT_EQ(sent_form(channel("      from: '+15005550006'\n      status_callback: false\n"), sms()).count("StatusCallback"),
            0u);
}

TEST_F(TwilioScripted, AMessagingServiceReplacesFromAndBodyFallsBackToBody) {
  Channel* c = channel(std::string("      messaging_service_sid: ") + kService + "\n");
  ASSERT_TRUE(c);
  DeliveryRequest d = sms();
  d.content = {{"title", "ignored"}, {"body", "fallback body"}};
  auto form = sent_form(c, d);
  EXPECT_EQ(form["MessagingServiceSid"], kService);
  EXPECT_EQ(form.count("From"), 0u);
  EXPECT_EQ(form["Body"], "fallback body");
}

TEST_F(TwilioScripted, ValidityPeriodComesFromTheSettingOrASoonerExpiry) {
  Channel* with = channel("      from: '+15005550006'\n      validity_period: 1h\n");
  ASSERT_TRUE(with);
  DeliveryRequest d = sms();
  EXPECT_EQ(sent_form(with, d)["ValidityPeriod"], "3600");
  d.expires_at_ms = kNow + 600'500;  // 600.5 s left: whole seconds, rounded down
  EXPECT_EQ(sent_form(with, d)["ValidityPeriod"], "600");
  d.expires_at_ms = kNow + 2 * 86'400'000;  // later than the setting: the setting
  EXPECT_EQ(sent_form(with, d)["ValidityPeriod"], "3600");
  d.expires_at_ms = kNow + 300;  // under a second: Twilio's minimum
  EXPECT_EQ(sent_form(with, d)["ValidityPeriod"], "1");

  Channel* without = channel();
  ASSERT_TRUE(without);
  d.expires_at_ms = kNow + 2 * 86'400'000;  // beyond Twilio's 10 h: left to Twilio (or the Messaging Service)
  EXPECT_EQ(sent_form(without, d).count("ValidityPeriod"), 0u);
  d.expires_at_ms = kNow + 7200'000;
  EXPECT_EQ(sent_form(without, d)["ValidityPeriod"], "7200");
}

TEST_F(TwilioScripted, WhatCannotBeSentIsPermanentAndSendsNothing) {
  Channel* c = channel();
  ASSERT_TRUE(c);
  std::string limit;
  for (int i = 0; i < 1600; ++i) limit += "あ";
  struct Case {
    DeliveryRequest d;
    std::string reason_part;
  };
  DeliveryRequest expired = sms();
  expired.expires_at_ms = kNow - 1;
  DeliveryRequest no_text = sms();
  no_text.content = {{"text", ""}};
  const Case cases[] = {
      {sms("09012345678"), "contact: \"09012345678\" is not an E.164"},
      {sms("+0123"), "is not an E.164"},
      {sms("+8190123456789012"), "is not an E.164"},  // 16 digits
      {no_text, "text: an SMS needs content"},
      {sms(kTo, limit + "あ"), "1600 characters (1601)"},
      {expired, "expires_at: the message expired"},
  };
  for (const Case& k : cases) {
    DeliveryOutcome o = c->deliver(k.d);
    SCOPED_TRACE(k.reason_part);
    EXPECT_EQ(o.kind, OutcomeKind::permanent);
    EXPECT_NE(o.reason.find(k.reason_part), std::string::npos) << o.reason;
  }
  EXPECT_TRUE(provider_.take().empty());
  EXPECT_EQ(c->deliver(sms(kTo, limit)).kind, OutcomeKind::delivered);  // exactly 1,600 is fine
}

TEST_F(TwilioScripted, ProviderAnswersBecomeOutcomes) {
  auto error = [](int status, int code, const std::string& message) {
    return nlohmann::json{{"code", code},
                          {"message", message},
                          {"more_info", "https://www.twilio.com/docs/errors/" + std::to_string(code)},
                          {"status", status}}
        .dump();
  };
  const AnswerCase cases[] = {
      {201, R"({"sid":"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"queued"})", {}, OutcomeKind::delivered, "", false,
       0, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
      {200, R"({"sid":"SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","status":"accepted"})", {}, OutcomeKind::delivered, "", false,
       0, "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
      // The whole Message resource, with a nested member that is also called sid: the top-level one counts.
      {201,
       R"({"account_sid":"ACxx","api_version":"2010-04-01","body":"hi","error_code":null,"num_media":"0",)"
       R"("price":null,"nested":{"sid":"NOTtheSID","list":[{"sid":"NOR"}]},"sid":"SMcccccccccccccccccccccccccccccccc",)"
       R"("status":"queued","subresource_uris":{"media":"/2010-04-01/Accounts/ACxx/Messages/SMc/Media.json"}})",
       {}, OutcomeKind::delivered, "", false, 0, "SMcccccccccccccccccccccccccccccccc"},
      // Accepted, but no usable sid: a number, or an answer cut short after it. Delivered, with no id to match.
      {201, R"({"sid":42,"status":"queued"})", {}, OutcomeKind::delivered, "", false, 0, ""},
      {201, R"({"sid":"SMdddddddddddddddddddddddddddddddd","status":)", {}, OutcomeKind::delivered, "", false, 0, ""},
      // The body is walked, not parsed: a string that quotes a sid, or holds brackets and escaped quotes, is
      // text; a pretty-printed answer and an escaped sid read as Twilio meant them; an unbalanced answer or one
      // with more after its object gives no sid.
      {201,
       "{\n  \"body\": \"\\\"sid\\\": \\\"SMfake\\\"} ] {\",\n  \"sid\" : \"SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"\n}\n",
       {}, OutcomeKind::delivered, "", false, 0, "SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"},
      {201, R"({"sid":"SM\u0066fffffffffffffffffffffffffffffff"})", {}, OutcomeKind::delivered, "", false, 0,
       "SMffffffffffffffffffffffffffffffff"},
      {201, R"({"sid":"SMgggggggggggggggggggggggggggggggg","links":{"media":"x"})", {}, OutcomeKind::delivered, "", false,
       0, ""},
      {201, R"({"sid":"SMhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"} {"sid":"SMother"})", {}, OutcomeKind::delivered, "", false,
       0, ""},
      {201, R"(["SMiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"])", {}, OutcomeKind::delivered, "", false, 0, ""},
      {400, error(400, 21211, "The 'To' number +819012345678 is not a valid phone number."), {},
       OutcomeKind::permanent, "twilio.21211: The 'To' number +819012345678 is not a valid phone number.", true, 0, ""},
      {400, error(400, 21614, "'To' number is not a valid mobile number"), {}, OutcomeKind::permanent,
       "twilio.21614: 'To' number is not a valid mobile number", true, 0, ""},
      {400, error(400, 21610, "Attempt to send to unsubscribed recipient"), {}, OutcomeKind::permanent,
       "twilio.21610", true, 0, ""},
      {400, error(400, 21408, "Permission to send an SMS has not been enabled for the region"), {},
       OutcomeKind::permanent, "twilio.21408: Permission to send an SMS has not been enabled for the region", false, 0,
       ""},
      {400, error(400, 21617, "The concatenated message body exceeds the 1600 character limit."), {},
       OutcomeKind::permanent, "twilio.21617: The concatenated message body exceeds the 1600 character limit.", false,
       0, ""},
      {401, error(401, 20003, "Authenticate"), {}, OutcomeKind::permanent, "twilio.20003: Authenticate", false, 0, ""},
      {403, "", {}, OutcomeKind::permanent, "twilio.403", false, 0, ""},
      {404, error(404, 20404, "The requested resource was not found"), {}, OutcomeKind::permanent,
       "twilio.20404: The requested resource was not found", false, 0, ""},
      {400, "not json", {}, OutcomeKind::permanent, "twilio.400", false, 0, ""},
      {429, error(429, 20429, "Too Many Requests"), {{"Retry-After", "7"}}, OutcomeKind::retry,
       "twilio.20429: Too Many Requests", false, 7000, ""},
      // Retry-After as an HTTP-date (RFC 9110 §10.2.3), 30 s after the pinned clock.
      {429, "", {{"Retry-After", "Thu, 01 Jan 2026 00:00:30 GMT"}}, OutcomeKind::retry, "twilio.429", false, 30000, ""},
      {429, error(429, 20429, "Too Many Requests"), {}, OutcomeKind::retry, "twilio.20429: Too Many Requests", false, 0,
       ""},
      {500, error(500, 20500, "Internal Server Error"), {}, OutcomeKind::retry, "twilio.20500: Internal Server Error",
       false, 0, ""},
      {503, "", {{"Retry-After", "2"}}, OutcomeKind::retry, "twilio.503", false, 2000, ""},
  };
  Channel* c = channel();
  ASSERT_TRUE(c);
  testing::expect_outcomes(provider_, *c, sms(), cases);
}

TEST(TwilioTransport, AnUnreachableProviderIsATransportRetry) {
  ManualClock clock(kNow);
  transport::OutboundTransport transport{transport::TransportOptions{}};
  RegistryResult reg = twilio_registry(yaml_for("http://127.0.0.1:1", "      from: '+15005550006'\n", false), clock,
                                       &transport);
  ASSERT_TRUE(reg.registry);
  DeliveryOutcome o = reg.registry->find("sms")->deliver(sms());
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_EQ(o.reason.rfind("twilio.transport: ", 0), 0u) << o.reason;
}

// ---- Two-way: numbered choices out (webhooks in: tests/unit/plugins/sms_twilio/twilio_channel_test.cpp) ----

TEST_F(TwilioScripted, ResponseOptionsAreNumberedAfterTheText) {
  Channel* c = channel();
  ASSERT_TRUE(c);
  DeliveryRequest d = sms(kTo, "新商品のご案内");
  d.responses = testing::sample_responses();
  EXPECT_EQ(sent_form(c, d)["Body"], "新商品のご案内\n1 気になる / 2 あとで / 3 興味なし");
  // The choices count towards Twilio's 1600 characters.
  DeliveryRequest full = sms(kTo, std::string(1590, 'a'));
  full.responses = testing::sample_responses();
  DeliveryOutcome o = c->deliver(full);
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("1600"), std::string::npos) << o.reason;
}

// ---- Against the real simulator binary -----------------------------------------------------------------

class TwilioSim : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(sim_.start({"--twilio-account-sid", kSid, "--twilio-auth-token", kToken}));
    url_ = sim_.url();
  }
  DeliveryOutcome deliver(const DeliveryRequest& d, const std::string& token = kToken) {
    RegistryResult reg = twilio_registry(yaml_for(url_, "      from: '+15005550006'\n", false), clock_, &transport_, token);
    EXPECT_TRUE(reg.registry);
    return reg.registry ? reg.registry->find("sms")->deliver(d) : DeliveryOutcome{};
  }

  test::SimProcess sim_;
  std::string url_;
  SystemClock clock_;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
};

// The simulator's webhooks (POST /_sim/webhooks/twilio, and the status callback of a sent message) are
// signed exactly as the plugin verifies them.
TEST_F(TwilioSim, TheSimulatorsSignedWebhooksVerify) {
  ScriptedProvider gateway(1);
  gateway.script(200, kTwiml, {{"Content-Type", "text/xml"}});
  const std::string callback = gateway.url() + "/inbound/sms_twilio/sms?x=1";
  nlohmann::json control = {
      {"url", callback},
      {"params", {{"From", kTo}, {"To", "+15005550006"}, {"Body", "2"}, {"MessageSid", "SM9"}, {"AccountSid", kSid}}}};
  transport::Request r;
  r.method = "POST";
  r.url = url_ + "/_sim/webhooks/twilio";
  r.body = control.dump();
  r.headers = {{"Content-Type", "application/json"}};
  std::promise<transport::Response> done;
  auto answered = done.get_future();
  transport_.submit(r, [&done](transport::Response resp) { done.set_value(std::move(resp)); });
  ASSERT_EQ(answered.get().status, 200);
  auto calls = testing::await_requests(gateway, 1);
  ASSERT_EQ(calls.size(), 1u);

  RegistryResult reg = twilio_registry(yaml_for(url_, "      from: '+15005550006'\n", true), clock_, &transport_);
  ASSERT_TRUE(reg.registry);
  std::vector<ProviderReport> events = testing::inbound_reports(*reg.registry->find("sms"), calls[0], gateway.url());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(testing::describe(events[0]), std::string("reply id=SM9 contact=") + kTo + " option=2 text=2");
  gateway.stop();
}

TEST_F(TwilioSim, TwiliosTestNumbersGiveTheDocumentedOutcomes) {
  DeliveryOutcome ok = deliver(sms(kTo, "テスト"));
  EXPECT_EQ(ok.kind, OutcomeKind::delivered) << ok.reason;
  EXPECT_EQ(ok.provider_message_id.rfind("SM", 0), 0u);
  EXPECT_EQ(ok.provider_message_id.size(), 34u);

  DeliveryOutcome invalid = deliver(sms("+15005550001"));
  EXPECT_EQ(invalid.kind, OutcomeKind::permanent);
  EXPECT_EQ(invalid.reason.rfind("twilio.21211: ", 0), 0u) << invalid.reason;
  EXPECT_TRUE(invalid.deactivate_contact);

  DeliveryOutcome stopped = deliver(sms("+15005550004"));
  EXPECT_EQ(stopped.kind, OutcomeKind::permanent);
  EXPECT_EQ(stopped.reason, "twilio.21610");
  EXPECT_TRUE(stopped.deactivate_contact);

  DeliveryOutcome landline = deliver(sms("+15005550009"));
  EXPECT_EQ(landline.kind, OutcomeKind::permanent);
  EXPECT_EQ(landline.reason.rfind("twilio.21614: ", 0), 0u) << landline.reason;
  EXPECT_TRUE(landline.deactivate_contact);

  DeliveryOutcome wrong_token = deliver(sms(), "not-the-token");
  EXPECT_EQ(wrong_token.kind, OutcomeKind::permanent);
  EXPECT_EQ(wrong_token.reason, "twilio.20003: Authenticate");
  EXPECT_FALSE(wrong_token.deactivate_contact);
}

}  // namespace
}  // namespace tayori::plugin
