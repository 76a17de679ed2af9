// The `line` channel plugin's webhook (plugins/line, Channel::inbound), loaded by the real host: every kind of
// call LINE makes becomes its provider reports, and a call whose x-line-signature does not verify is refused.
// Nothing is sent: the channel's provider URL is never called. (Deliveries, against a scripted server and the
// simulator: tests/integration/plugins/line/.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crypto/crypto.hpp"
#include "line_test_support.hpp"
#include "plugin_test_support.hpp"

namespace tayori::plugin {
namespace {

using namespace testing::line;

constexpr const char* kWebhookUrl = "https://gw.example/inbound/line/line";

// x-line-signature as LINE computes it: base64(HMAC-SHA256(channel secret, body)), independent of the plugin.
std::string line_signature(const std::string& secret, const std::string& body) {
  return crypto::base64_encode(crypto::hmac_sha256(secret, body).value());
}

// A webhook call carrying `events`, signed with `secret`.
InboundRequest webhook(const std::vector<nlohmann::json>& events, const std::string& secret = kSecret) {
  std::string body = nlohmann::json{{"destination", "Uf00dfeed"}, {"events", nlohmann::json(events)}}.dump();
  return testing::inbound_request(
      kWebhookUrl, {{"content-type", "application/json"}, {"x-line-signature", line_signature(secret, body)}}, body);
}

// One webhook event of `type` from kUser, with its id and time; `extra` merged in.
nlohmann::json event(const std::string& type, const std::string& id,
                     const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json e = {{"type", type},
                      {"mode", "active"},
                      {"timestamp", 1780000000123},
                      {"source", {{"type", "user"}, {"userId", kUser}}},
                      {"webhookEventId", id},
                      {"deliveryContext", {{"isRedelivery", false}}}};
  e.update(extra);
  return e;
}

TEST(LineInbound, WebhookCallsBecomeEventsOrAreRefused) {
  testing::ManualClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};  // never used: inbound calls send nothing
  RegistryResult reg = two_way_registry("http://127.0.0.1:1", kSecret, clock, &transport);
  ASSERT_TRUE(reg.registry) << (reg.errors.empty() ? "" : reg.errors[0].to_string());
  const std::string who = std::string(" contact=") + kUser;
  const std::string at = " at=1780000000123";
  auto redelivered = event("postback", "01REDELIVERED",
                           {{"postback", {{"data", "r.later-ref"}}}, {"deliveryContext", {{"isRedelivery", true}}}});
  InboundRequest tampered = webhook({event("follow", "01F")});
  tampered.body.replace(tampered.body.find("follow"), 6, "unfoll");  // signature no longer covers the body
  InboundRequest unsigned_call = webhook({event("follow", "01F")});
  unsigned_call.headers.pop_back();
  std::string not_json = "{\"events\":";
  // clang-format off
  const testing::InboundCase cases[] = {
      {"verification call: no events", webhook({}), 200, {}},
      {"postback -> response with the echoed ref",
       webhook({event("postback", "01P", {{"postback", {{"data", "r.interested-ref"}}}})}), 200,
       {"response id=01P" + who + " ref=r.interested-ref" + at}},
      {"text message -> reply", webhook({event("message", "01M", {{"message", {{"type", "text"}, {"id", "1"}, {"text", "あとで見ます"}}}})}),
       200, {"reply id=01M" + who + " text=あとで見ます" + at}},
      {"follow -> opt_in that lifts a suppression", webhook({event("follow", "01F")}), 200,
       {"opt_in id=01F" + who + " reactivate" + at}},
      {"unfollow -> opt_out that suppresses", webhook({event("unfollow", "01U")}), 200,
       {"opt_out id=01U" + who + " deactivate" + at}},
      {"a redelivery keeps its webhookEventId", webhook({redelivered}), 200,
       {"response id=01REDELIVERED" + who + " ref=r.later-ref" + at}},
      {"kinds Tayori ignores, and events without a user",
       webhook({event("message", "01I", {{"message", {{"type", "image"}, {"id", "2"}}}}),
                event("follow", "01G", {{"source", {{"type", "group"}, {"groupId", "Cabc"}}}}), event("read", "01R")}),
       200, {}},
      {"several events, in order",
       webhook({event("follow", "01A"), event("postback", "01B", {{"postback", {{"data", "r.x"}}}})}), 200,
       {"opt_in id=01A" + who + " reactivate" + at, "response id=01B" + who + " ref=r.x" + at}},
      {"signed with another secret", webhook({event("follow", "01F")}, "not-the-secret"), 401, {}},
      {"body changed after signing", tampered, 401, {}},
      {"no signature", unsigned_call, 401, {}},
      {"signed but not JSON",
       testing::inbound_request(kWebhookUrl, {{"x-line-signature", line_signature(kSecret, not_json)}}, not_json),
       400, {}},
  };
  // clang-format on
  testing::expect_inbound(*reg.registry->find("line"), cases);
}

TEST(LineInbound, WithoutAChannelSecretEveryCallIsRefused) {
  testing::ManualClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  RegistryResult reg = two_way_registry("http://127.0.0.1:1", "", clock, &transport);
  ASSERT_TRUE(reg.registry);
  const testing::InboundCase cases[] = {{"no secret to verify with", webhook({event("follow", "01F")}), 401, {}}};
  testing::expect_inbound(*reg.registry->find("line"), cases);
}

}  // namespace
}  // namespace tayori::plugin
