// A push's deep link (content field "link", the field click tracking rewrites) and its open ref (content field
// "open_ref", added where the channel tracks opens) travel as keys beside APNs' aps, where the app reads them.
// Driven on the public fake host (tayori/testing.hpp), with a signer that stands in for the host's JWT signing.
// (The same for FCM: tests/unit/plugins/push_fcm/fcm_link_test.cpp.)
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

#include <nlohmann/json.hpp>

#include "push_link_support.hpp"

namespace {

using namespace tayori::test::push_link;  // NOLINT(google-build-using-namespace): the helpers of these tests only
using tayori::testing::Plugin;

TEST(PushLink, ApnsCarriesItBesideAps) {
  Files files("apns-link");
  const std::string key = files.write("apns.p8", "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n");
  Plugin apns = Plugin::load(
      plugin_path("push_apns"),
      {{"key_file", key}, {"key_id", "KEYID12345"}, {"team_id", "TEAMID1234"}, {"topic", "jp.example.app"}},
      fake_signing);
  ASSERT_TRUE(apns.ok()) << apns.error();
  auto built = apns.build(with_link("https://gw.example/c/TOKEN"));
  ASSERT_TRUE(built.ok()) << built.error;
  auto payload = nlohmann::json::parse(built.requests.at(0).body);
  EXPECT_EQ(payload["link"], "https://gw.example/c/TOKEN");
  EXPECT_EQ(payload["open_ref"], "OPEN.REF");
  EXPECT_TRUE(payload["aps"].contains("alert"));
}

}  // namespace
