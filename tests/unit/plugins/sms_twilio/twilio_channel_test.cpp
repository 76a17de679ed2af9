// The `sms_twilio` channel plugin (plugins/sms_twilio) loaded by the real host, in what it does without sending:
// the settings it refuses, naming the setting, whether it takes inbound calls, and Twilio's webhook calls (incoming
// SMS, status callbacks) becoming provider reports, or refused when X-Twilio-Signature does not verify. (Deliveries,
// against a scripted server and the simulator: tests/integration/plugins/sms_twilio/twilio_plugin_test.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include "crypto/crypto.hpp"
#include "plugin_test_support.hpp"
#include "twilio_test_support.hpp"

namespace tayori::plugin {
namespace {

using namespace testing::twilio;

// A channel whose provider URL is never called: nothing here sends.
class TwilioChannel : public ::testing::Test {
 protected:
  static constexpr const char* kUnused = "http://127.0.0.1:1";
  std::string base() const { return kUnused; }
  Channel* channel(const std::string& settings = "      from: '+15005550006'\n", bool public_url = true) {
    return twilio_channel(reg_, base(), settings, public_url, clock_, &transport_);
  }

  testing::ManualClock clock_{kNow};
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult reg_;
};

TEST_F(TwilioChannel, BadSettingsAreRefusedNamingTheSetting) {
  const std::pair<std::string, std::string> cases[] = {
      {"      from: '+15005550006'\n", "account_sid: must be \"AC\""},  // the SID is replaced below
      {"", "from, messaging_service_sid: give exactly one"},
      {std::string("      from: '+15005550006'\n      messaging_service_sid: ") + kService + "\n",
       "from, messaging_service_sid: give exactly one"},
      {"      from: '05550006'\n", "from: must be an E.164 number"},
      {"      messaging_service_sid: MG123\n", "messaging_service_sid: must be \"MG\""},
      {std::string("      messaging_service_sid: ") + kSid + "\n", "messaging_service_sid: must be \"MG\""},
      {"      from: '+15005550006'\n      validity_period: 36001s\n", "validity_period: Twilio accepts"},
      {"      from: '+15005550006'\n      validity_period: 1500ms\n", "validity_period: Twilio accepts"},
      {"      from: '+15005550006'\n      validity_period: 500ms\n", "validity_period: Twilio accepts"},
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    std::string yaml = yaml_for(base(), cases[i].first, false);
    if (i == 0) yaml.replace(yaml.find(kSid), std::string(kSid).size(), "AC123");
    RegistryResult reg = twilio_registry(yaml, clock_, &transport_);
    SCOPED_TRACE(cases[i].second);
    ASSERT_FALSE(reg.registry);
    ASSERT_FALSE(reg.errors.empty());
    EXPECT_NE(reg.errors[0].to_string().find(cases[i].second), std::string::npos) << reg.errors[0].to_string();
  }
  // The limits themselves are accepted.
  EXPECT_TRUE(twilio_registry(yaml_for(base(), "      from: '+15005550006'\n      validity_period: 10h\n", false),
                              clock_, &transport_)
                  .registry);
  EXPECT_TRUE(twilio_registry(yaml_for(base(), "      from: '+15005550006'\n      validity_period: 1s\n", false),
                              clock_, &transport_)
                  .registry);
}

// A receipt reaches a channel's deliveries only through its webhook (Channel::takes_inbound), so the dispatcher
// keeps a delivery findable by its provider id only where the webhook is on.
TEST_F(TwilioChannel, TakesInboundOnlyWithItsWebhookOn) {
  Channel* with_webhook = channel();
  ASSERT_TRUE(with_webhook);
  EXPECT_TRUE(with_webhook->takes_inbound());
  Channel* outbound_only = channel("      from: '+15005550006'\n", /*public_url=*/false);
  ASSERT_TRUE(outbound_only);
  EXPECT_FALSE(outbound_only->takes_inbound());
}

// ---- Webhooks in ---------------------------------------------------------------------------------------

constexpr const char* kInboundUrl = "https://gw.example/inbound/sms_twilio/sms";
constexpr const char* kMessageSid = "SM0123456789abcdef0123456789abcdef";

using Params = std::vector<std::pair<std::string, std::string>>;

// X-Twilio-Signature as Twilio's docs compute it, independent of the plugin: the URL, then each parameter's
// name and value sorted by name, HMAC-SHA1 with the auth token, base64.
std::string twilio_signature(const std::string& token, const std::string& url, Params params) {
  std::sort(params.begin(), params.end());
  std::string data = url;
  for (auto& [k, v] : params) data += k + v;
  return crypto::base64_encode(crypto::hmac_sha1(token, data).value());
}

// A form-encoded webhook call to `url` (Twilio posts the parameters in no particular order), signed for
// `signed_url` with `token`.
InboundRequest twilio_call(const Params& params, const std::string& url = kInboundUrl,
                           const std::string& token = kToken, const std::string& signed_url = "") {
  std::string body;
  for (auto& [k, v] : params) {
    std::string pair = k + "=";
    for (unsigned char c : v) {
      static const char* hex = "0123456789ABCDEF";
      if (std::isalnum(c))
        pair += static_cast<char>(c);
      else if (c == ' ')
        pair += '+';
      else
        (pair += '%') += std::string{hex[c >> 4], hex[c & 15]};
    }
    body += (body.empty() ? "" : "&") + pair;
  }
  return testing::inbound_request(
      url,
      {{"content-type", "application/x-www-form-urlencoded"},
       {"x-twilio-signature", twilio_signature(token, signed_url.empty() ? url : signed_url, params)}},
      body);
}

// An incoming SMS from kTo saying `body`.
InboundRequest incoming(const std::string& body) {
  return twilio_call({{"ToCountry", "JP"},
                      {"Body", body},
                      {"From", kTo},
                      {"To", "+15005550006"},
                      {"MessageSid", kMessageSid},
                      {"SmsStatus", "received"},
                      {"AccountSid", kSid},
                      {"NumMedia", "0"}});
}

// A status callback for kMessageSid.
InboundRequest status_callback(const std::string& status, const std::string& error_code = "") {
  Params p = {{"MessageStatus", status},
              {"MessageSid", kMessageSid},
              {"SmsSid", kMessageSid},
              {"SmsStatus", status},
              {"To", kTo},
              {"From", "+15005550006"},
              {"AccountSid", kSid},
              {"ApiVersion", "2010-04-01"}};
  if (!error_code.empty()) p.emplace_back("ErrorCode", error_code);
  return twilio_call(p);
}

TEST_F(TwilioChannel, WebhookCallsBecomeEventsOrAreRefused) {
  Channel* c = channel();
  ASSERT_TRUE(c);
  const std::string from = std::string(" id=") + kMessageSid + " contact=" + kTo;
  const std::string receipt = std::string(" contact=") + kTo + " message=" + kMessageSid;
  InboundRequest tampered = incoming("STOP");
  tampered.body.replace(tampered.body.find("Body=STOP"), 9, "Body=STAY");
  InboundRequest unsigned_call = incoming("1");
  unsigned_call.headers.pop_back();
  // clang-format off
  const testing::InboundCase cases[] = {
      {"STOP -> opt_out", incoming("STOP"), 200, {"opt_out" + from + " text=STOP"}, "text/xml", kTwiml},
      {"stop family, any case, trimmed", incoming("  unsubscribe \n"), 200, {"opt_out" + from + " text=unsubscribe"}},
      {"Quit", incoming("Quit"), 200, {"opt_out" + from + " text=Quit"}},
      {"START -> opt_in lifting Twilio's block", incoming("START"), 200, {"opt_in" + from + " text=START reactivate"}},
      {"yes", incoming("yes"), 200, {"opt_in" + from + " text=yes reactivate"}},
      {"a number answers a numbered question", incoming(" 2 "), 200, {"reply" + from + " option=2 text= 2 "}},
      {"10 is no choice", incoming("10"), 200, {"reply" + from + " text=10"}},
      {"free text", incoming("STOP please & thanks"), 200, {"reply" + from + " text=STOP please & thanks"}},
      {"delivered receipt", status_callback("delivered"), 200,
       {std::string("delivered id=") + kMessageSid + ":delivered" + receipt}, "text/xml", kTwiml},
      {"undelivered to a dead number deactivates it", status_callback("undelivered", "30005"), 200,
       {std::string("failed id=") + kMessageSid + ":undelivered" + receipt + " reason=twilio.30005 deactivate"}},
      {"landline or unreachable carrier", status_callback("failed", "30006"), 200,
       {std::string("failed id=") + kMessageSid + ":failed" + receipt + " reason=twilio.30006 deactivate"}},
      {"an unreachable handset may come back", status_callback("undelivered", "30003"), 200,
       {std::string("failed id=") + kMessageSid + ":undelivered" + receipt + " reason=twilio.30003"}},
      {"failed without a code", status_callback("failed"), 200,
       {std::string("failed id=") + kMessageSid + ":failed" + receipt + " reason=twilio.failed"}},
      {"intermediate statuses say nothing", status_callback("sent"), 200, {}, "text/xml", kTwiml},
      {"signed with another token", twilio_call({{"From", kTo}, {"Body", "1"}}, kInboundUrl, "wrong"), 401, {}},
      {"signed for another URL",
       twilio_call({{"From", kTo}, {"Body", "1"}}, kInboundUrl, kToken, "https://gw.example/inbound/sms_twilio/other"),
       401, {}},
      {"a parameter changed after signing", tampered, 401, {}},
      {"no signature", unsigned_call, 401, {}},
      {"a status callback without MessageSid", twilio_call({{"MessageStatus", "delivered"}, {"To", kTo}}), 400, {}},
  };
  // clang-format on
  testing::expect_inbound(*c, cases);
}

TEST_F(TwilioChannel, TheSignatureCoversTheQueryString) {
  Channel* c = channel();
  ASSERT_TRUE(c);
  const std::string url = std::string(kInboundUrl) + "?tenant=a";
  // clang-format off
  const testing::InboundCase cases[] = {
      {"signed with the query", twilio_call({{"From", kTo}, {"Body", "hi"}, {"MessageSid", "SM1"}}, url), 200,
       {std::string("reply id=SM1 contact=") + kTo + " text=hi"}},
      {"signed without it", twilio_call({{"From", kTo}, {"Body", "hi"}}, url, kToken, kInboundUrl), 401, {}},
  };
  // clang-format on
  testing::expect_inbound(*c, cases);
}

}  // namespace
}  // namespace tayori::plugin
