// A push's deep link (content field "link", the field click tracking rewrites) and its open ref (content field
// "open_ref", added where the channel tracks opens) travel as keys beside APNs' aps, where the app reads them.
// Driven on the public fake host (tayori/testing.hpp), with a signer that stands in for the host's JWT signing.
// (The same for FCM: tests/unit/plugins/push_fcm/fcm_link_test.cpp.)
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace {

using tayori::testing::Delivery;
using tayori::testing::FakeHost;
using tayori::testing::Plugin;
using tayori::testing::Response;

std::string plugin_path(const std::string& name) { return std::string(TAYORI_PLUGIN_DIR) + "/" + name + ".so"; }

struct Files {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tayori-apns-link-" + std::to_string(::getpid()));
  Files() { std::filesystem::create_directories(dir); }
  ~Files() { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream((dir / name).string()) << text;
    return (dir / name).string();
  }
};

void fake_signing(FakeHost& h) {
  h.sign_jwt = [](const std::string& alg, const std::string&, const std::string&, const std::string&) {
    return std::optional<std::string>(alg + ".jwt");
  };
  h.exchange = [](const tayori::testing::Request&) {
    return Response(200, {}, R"({"access_token":"ya29.t","expires_in":3600})");
  };
}

Delivery with_link(const std::string& link) {
  Delivery d;
  d.contact = "0123456789abcdef0123456789abcdef";
  d.content = {{"title", "セール"}, {"body", "今日まで"}};
  if (!link.empty()) d.content.emplace_back("link", link);
  d.content.emplace_back("open_ref", "OPEN.REF");
  return d;
}

TEST(PushLink, ApnsCarriesItBesideAps) {
  Files files;
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
