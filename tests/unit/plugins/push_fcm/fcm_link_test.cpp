// A push's deep link (content field "link", the field click tracking rewrites) and its open ref (content field
// "open_ref", added where the channel tracks opens) travel in FCM's data, where the app reads them. Driven on
// the public fake host (tayori/testing.hpp), with a signer that stands in for the host's JWT signing. (The same
// for APNs: tests/unit/plugins/push_apns/apns_link_test.cpp.)
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

#include <nlohmann/json.hpp>

#include "push_link_support.hpp"

namespace {

using namespace tayori::test::push_link;  // NOLINT(google-build-using-namespace): the helpers of these tests only
using tayori::testing::Plugin;

TEST(PushLink, FcmCarriesItAsData) {
  Files files("fcm-link");
  const std::string key = files.write(
      "sa.json", nlohmann::json{{"type", "service_account"},
                                {"project_id", "demo"},
                                {"private_key", "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"},
                                {"client_email", "t@demo.iam.gserviceaccount.com"},
                                {"token_uri", "https://oauth.test/token"}}
                     .dump());
  Plugin fcm = Plugin::load(plugin_path("push_fcm"), {{"service_account", key}}, fake_signing);
  ASSERT_TRUE(fcm.ok()) << fcm.error();
  auto built = fcm.build(with_link("https://gw.example/c/TOKEN"));
  ASSERT_TRUE(built.ok()) << built.error;
  auto data = nlohmann::json::parse(built.requests.at(0).body)["message"]["data"];
  EXPECT_EQ(data["link"], "https://gw.example/c/TOKEN");
  EXPECT_EQ(data["open_ref"], "OPEN.REF");
  auto without = fcm.build(with_link(""));
  EXPECT_FALSE(nlohmann::json::parse(without.requests.at(0).body)["message"]["data"].contains("link"));
}

}  // namespace
