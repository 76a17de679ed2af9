// What the `line` plugin's tests share (tests/unit/plugins/line, tests/integration/plugins/line): a user id, and
// a two-way channel loaded by the real host that verifies webhooks with a channel secret.
#ifndef TAYORI_TESTS_SUPPORT_LINE_TEST_SUPPORT_HPP
#define TAYORI_TESTS_SUPPORT_LINE_TEST_SUPPORT_HPP

#include <string>

#include "plugin_test_support.hpp"

namespace tayori::plugin::testing::line {

inline constexpr const char* kUser = "U0123456789abcdef0123456789abcdef";
inline constexpr const char* kSecret = "line-channel-secret";

// A channel sending to `base_url` that can verify webhooks (channel_secret) unless `secret` is empty;
// `extra` lines belong to the channel itself (a batch_window).
inline RegistryResult two_way_registry(const std::string& base_url, const std::string& secret, const Clock& clock,
                                       transport::OutboundTransport* transport, const std::string& extra = "") {
  OneChannel channel{.name = "line",
                     .plugin = "line",
                     .settings = "      base_url: " + base_url + "\n      channel_access_token_env: LINE_TOKEN\n" +
                                 (secret.empty() ? "" : "      channel_secret_env: LINE_SECRET\n"),
                     .channel_extra = extra};
  return registry_for(channel.yaml(), clock, transport, "/tmp", {{"LINE_TOKEN", "tok"}, {"LINE_SECRET", secret}});
}

}  // namespace tayori::plugin::testing::line

#endif  // TAYORI_TESTS_SUPPORT_LINE_TEST_SUPPORT_HPP
