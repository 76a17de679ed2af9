// What the `push_fcm` plugin's tests share (tests/unit/plugins/push_fcm, tests/integration/plugins/push_fcm): a
// Google service-account key file made around the test's RSA key, and the plugin loaded by the real host.
#ifndef TAYORI_TESTS_SUPPORT_FCM_TEST_SUPPORT_HPP
#define TAYORI_TESTS_SUPPORT_FCM_TEST_SUPPORT_HPP

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "plugin_test_support.hpp"

namespace tayori::plugin::testing::fcm {

inline constexpr const char* kClientEmail = "tayori@tayori-test.iam.gserviceaccount.com";

// A service-account key file's JSON, as Google's console downloads it, with the test's RSA key.
inline nlohmann::json service_account(const std::string& token_uri = "https://oauth2.googleapis.com/token") {
  return {{"type", "service_account"},
          {"project_id", "tayori-test"},
          {"private_key_id", "key-1"},
          {"private_key", rsa_key().private_pem},
          {"client_email", kClientEmail},
          {"client_id", "1234567890"},
          {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
          {"token_uri", token_uri}};
}

inline void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

// Loads push_fcm with `settings` (YAML lines under `settings:`) from a config in `dir`.
inline RegistryResult fcm_registry(const std::string& settings, const std::string& dir, const Clock& clock,
                                   transport::OutboundTransport* transport) {
  return registry_for(OneChannel{.name = "fcm", .plugin = "push_fcm", .settings = settings}.yaml(), clock, transport,
                      dir);
}

}  // namespace tayori::plugin::testing::fcm

#endif  // TAYORI_TESTS_SUPPORT_FCM_TEST_SUPPORT_HPP
