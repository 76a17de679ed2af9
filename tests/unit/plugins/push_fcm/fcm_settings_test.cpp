// The `push_fcm` channel plugin's settings (plugins/push_fcm), loaded by the real host: what it refuses, naming the
// setting, and the limits it accepts. The key file's RSA key is made at test time in-process by OpenSSL. (Deliveries
// against a scripted Google: tests/integration/plugins/push_fcm/fcm_plugin_test.cpp.)
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fcm_test_support.hpp"
#include "plugin_test_support.hpp"
#include "test_support.hpp"

namespace tayori::plugin {
namespace {

using nlohmann::json;
using namespace testing::fcm;

TEST(FcmSettings, BadSettingsAreRefusedNamingTheSetting) {
  test::TempDir dir("fcm_settings_test_");
  testing::ManualClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  auto refusal = [&](const std::string& settings) {
    RegistryResult reg = fcm_registry(settings, dir.path(), clock, &transport);
    return reg.errors.empty() ? std::string("(accepted)") : reg.errors[0].to_string();
  };
  EXPECT_NE(
      refusal("      service_account: missing.json\n").find("service_account: cannot read " + dir.file("missing.json")),
      std::string::npos);
  for (const char* field : {"type", "project_id", "client_email", "private_key", "token_uri"}) {
    json sa = service_account();
    sa.erase(field);
    write_json(dir.file("sa.json"), sa);
    std::string why = refusal("      service_account: sa.json\n");
    EXPECT_NE(why.find("service_account: " + dir.file("sa.json") + " has no \"" + field + "\""), std::string::npos)
        << why;
  }
  json user = service_account();
  user["type"] = "authorized_user";
  write_json(dir.file("sa.json"), user);
  EXPECT_NE(refusal("      service_account: sa.json\n").find("expected \"service_account\""), std::string::npos);
  std::ofstream(dir.file("sa.json")) << "not json";
  EXPECT_NE(refusal("      service_account: sa.json\n").find("is not a JSON object"), std::string::npos);
  json bad_key = service_account();
  bad_key["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  write_json(dir.file("sa.json"), bad_key);
  EXPECT_NE(refusal("      service_account: sa.json\n").find("service_account: private_key: "), std::string::npos);
  write_json(dir.file("sa.json"), service_account());
  EXPECT_NE(refusal("      service_account: sa.json\n      ttl: 29d\n").find("ttl: must be between 0s and 28d"),
            std::string::npos);
  EXPECT_EQ(refusal("      service_account: sa.json\n      ttl: 28d\n"), "(accepted)");
}

}  // namespace
}  // namespace tayori::plugin
