// A push's deep link (content field "link", the field click tracking rewrites) and its open ref (content field
// "open_ref", added where the channel tracks opens) travel in FCM's data, where the app reads them. Driven on
// the public fake host (tayori/testing.hpp), with a signer that stands in for the host's JWT signing. (The same
// for APNs: tests/unit/plugins/push_apns/apns_link_test.cpp.)
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
      std::filesystem::temp_directory_path() / ("tayori-fcm-link-" + std::to_string(::getpid()));
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

TEST(PushLink, FcmCarriesItAsData) {
  Files files;
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
