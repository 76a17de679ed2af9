// What the `sms_twilio` plugin's tests share (tests/unit/plugins/sms_twilio, tests/integration/plugins/sms_twilio):
// the account, and a channel's config loaded by the real host.
#ifndef TAYORI_TESTS_SUPPORT_TWILIO_TEST_SUPPORT_HPP
#define TAYORI_TESTS_SUPPORT_TWILIO_TEST_SUPPORT_HPP

#include <cstdint>
#include <string>

#include "plugin_test_support.hpp"

namespace tayori::plugin::testing::twilio {

inline constexpr const char* kSid = "AC0123456789abcdef0123456789abcdef";
inline constexpr const char* kService = "MG0123456789abcdef0123456789abcdef";
inline constexpr const char* kToken = "twilio-token";
inline constexpr const char* kTo = "+819012345678";
inline constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
// What the channel answers a webhook call with.
inline constexpr const char* kTwiml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

// The channel's YAML: `settings` are extra lines under settings:; with `public_url`, a server: block.
inline std::string yaml_for(const std::string& base_url, const std::string& settings, bool public_url) {
  return OneChannel{
      .name = "sms",
      .plugin = "sms_twilio",
      .settings = "      base_url: " + base_url + "\n      account_sid: " + kSid +
                  "\n      auth_token_env: TWILIO_TOKEN\n" + settings,
      // Without a public URL the channel cannot verify Twilio's calls: it is outbound only.
      .channel_extra = public_url ? "" : "    inbound: false\n",
      .preamble = public_url ? "server: {public_url: 'http://127.0.0.1:9', link_secret_env: LINK_SECRET}\n" : ""}
      .yaml();
}

inline RegistryResult twilio_registry(const std::string& yaml, const Clock& clock,
                                      transport::OutboundTransport* transport, const std::string& token = kToken) {
  return registry_for(yaml, clock, transport, "/tmp", {{"TWILIO_TOKEN", token}, {"LINK_SECRET", "link-secret"}});
}

// The channel "sms" of yaml_for(base_url, settings, public_url), loaded into `registry`; null (and the test
// failed) when it does not load.
inline Channel* twilio_channel(RegistryResult& registry, const std::string& base_url, const std::string& settings,
                               bool public_url, const Clock& clock, transport::OutboundTransport* transport) {
  registry = twilio_registry(yaml_for(base_url, settings, public_url), clock, transport);
  EXPECT_TRUE(registry.registry) << (registry.errors.empty() ? "" : registry.errors[0].to_string());
  return registry.registry ? registry.registry->find("sms") : nullptr;
}

}  // namespace tayori::plugin::testing::twilio

#endif  // TAYORI_TESTS_SUPPORT_TWILIO_TEST_SUPPORT_HPP
