// What the `push_apns` plugin's tests share (tests/unit/plugins/push_apns, tests/integration/plugins/push_apns):
// the team's identifiers, the settings naming them, and the plugin loaded by the real host.
#ifndef TAYORI_TESTS_SUPPORT_APNS_TEST_SUPPORT_HPP
#define TAYORI_TESTS_SUPPORT_APNS_TEST_SUPPORT_HPP

#include <string>

#include "plugin_test_support.hpp"

namespace tayori::plugin::testing::apns {

inline constexpr const char* kKeyId = "ABC123DEFG";
inline constexpr const char* kTeamId = "DEF123GHIJ";
inline constexpr const char* kTopic = "jp.example.app";

// Loads push_apns with `settings` (YAML lines under `settings:`) from a config in `dir`.
inline RegistryResult apns_registry(const std::string& settings, const std::string& dir, const Clock& clock,
                                    transport::OutboundTransport* transport) {
  return registry_for(OneChannel{.name = "ios", .plugin = "push_apns", .settings = settings}.yaml(), clock, transport,
                      dir);
}

// The settings of a channel signing with AuthKey.p8 (in the config's folder) for the identifiers above, then `extra`.
inline std::string key_settings(const std::string& extra = "") {
  return std::string("      key_file: AuthKey.p8\n      key_id: ") + kKeyId + "\n      team_id: " + kTeamId +
         "\n      topic: " + kTopic + "\n" + extra;
}

}  // namespace tayori::plugin::testing::apns

#endif  // TAYORI_TESTS_SUPPORT_APNS_TEST_SUPPORT_HPP
