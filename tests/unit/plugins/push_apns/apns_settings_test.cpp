// The `push_apns` channel plugin's settings (plugins/push_apns), loaded by the real host: what it refuses, naming
// the setting, and the limits it accepts. The .p8 key is made at test time in-process by OpenSSL. (Deliveries
// against a scripted APNs: tests/integration/plugins/push_apns/apns_plugin_test.cpp.)
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "apns_test_support.hpp"
#include "plugin_test_support.hpp"
#include "test_support.hpp"

namespace tayori::plugin {
namespace {

using namespace testing::apns;
using testing::ec_key;

TEST(ApnsSettings, BadSettingsAreRefusedNamingTheSetting) {
  ASSERT_NE(ec_key().private_pem.find("BEGIN PRIVATE KEY"), std::string::npos);
  test::TempDir dir("apns_settings_test_");
  std::ofstream(dir.file("AuthKey.p8")) << ec_key().private_pem;
  testing::ManualClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  auto refusal = [&](const std::string& settings) {
    RegistryResult reg = apns_registry(settings, dir.path(), clock, &transport);
    return reg.errors.empty() ? std::string("(accepted)") : reg.errors[0].to_string();
  };
  auto refused_with = [&](const std::string& settings, const std::string& expected) {
    std::string why = refusal(settings);
    EXPECT_NE(why.find(expected), std::string::npos) << why;
  };
  refused_with(std::string("      key_file: nowhere.p8\n      key_id: ") + kKeyId + "\n      team_id: " + kTeamId +
                   "\n      topic: " + kTopic + "\n",
               "key_file: cannot read " + dir.file("nowhere.p8"));
  refused_with(key_settings("      token_refresh: 10m\n"), "token_refresh: must be between 20m and 60m");
  refused_with(key_settings("      token_refresh: 61m\n"), "token_refresh: must be between 20m and 60m");
  EXPECT_EQ(refusal(key_settings("      token_refresh: 20m\n")), "(accepted)");
  EXPECT_EQ(refusal(key_settings("      token_refresh: 60m\n")), "(accepted)");
  refused_with(key_settings("      push_type: voip\n"), "push_type: \"voip\" is not supported");
  refused_with(std::string("      key_file: AuthKey.p8\n      key_id: short\n      team_id: ") + kTeamId +
                   "\n      topic: " + kTopic + "\n",
               "key_id: \"short\" is not a 10-character Apple identifier");
  std::ofstream(dir.file("AuthKey.p8")) << "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  refused_with(key_settings(), "key_file: jwt: ");
  EXPECT_NE(refusal("      key_id: ABC\n").find("key_file"), std::string::npos);  // required
}

}  // namespace
}  // namespace tayori::plugin
