// The public fake host (include/tayori/testing.hpp) that plugin authors test with, checked against the real
// gateway: its HMAC and base64 against the gateway's OpenSSL, its settings check against what build_registry
// refuses, and its calls through real plugins (line, push_fcm, file_sink and the typed-settings fixture),
// loaded from their .so files as an author's test loads theirs.
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "crypto/crypto.hpp"

namespace {

using tayori::testing::Delivery;
using tayori::testing::InboundCall;
using tayori::testing::Plugin;
using tayori::testing::Response;
namespace detail = tayori::testing::detail;

std::string plugin_path(const std::string& name) { return std::string(TAYORI_PLUGIN_DIR) + "/" + name + ".so"; }
std::string fixture_path(const std::string& name) { return std::string(TAYORI_FIXTURE_DIR) + "/" + name + ".so"; }

// Bytes 0..255 repeated, starting at `seed`: keys and messages of every length that matters to SHA's
// padding (55/56/64 bytes) and HMAC's key handling (longer than a block is hashed first).
std::string bytes(size_t n, unsigned seed) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += static_cast<char>((seed + i * 7) & 0xFF);
  return s;
}

TEST(FakeHost, HmacAndBase64AreThoseOfTheGateway) {
  for (size_t key_size : {0, 1, 20, 63, 64, 65, 200}) {
    for (size_t data_size : {0, 1, 55, 56, 63, 64, 65, 119, 1000}) {
      const std::string key = bytes(key_size, 3), data = bytes(data_size, 11);
      SCOPED_TRACE("key " + std::to_string(key_size) + " data " + std::to_string(data_size));
      EXPECT_EQ(detail::hmac(TAYORI_HASH_SHA256, key, data), tayori::crypto::hmac_sha256(key, data).value());
      EXPECT_EQ(detail::hmac(TAYORI_HASH_SHA1, key, data), tayori::crypto::hmac_sha1(key, data).value());
      EXPECT_EQ(detail::base64(data, false), tayori::crypto::base64_encode(data));
      EXPECT_EQ(detail::base64(data, true), tayori::crypto::base64url_encode(data));
    }
  }
  // RFC 4231 §4.3 (test case 2) and RFC 2202 §3 (test case 2), independent of any implementation here.
  EXPECT_EQ(tayori::crypto::hex(detail::hmac(TAYORI_HASH_SHA256, "Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(tayori::crypto::hex(detail::hmac(TAYORI_HASH_SHA1, "Jefe", "what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

TEST(FakeHost, SettingsAreCheckedAsTheGatewayChecksThem) {
  const std::string path = fixture_path("fixture_typed_settings");
  EXPECT_EQ(Plugin::load(path, {}).error(), "label: is required");
  EXPECT_EQ(Plugin::load(path, {{"label", "x"}, {"colour", "red"}}).error(),
            "colour: is not a setting of fixture_typed_settings");
  EXPECT_EQ(Plugin::load(path, {{"label", "x"}, {"count", "three"}}).error(), "count: expected an integer, got \"three\"");
  EXPECT_EQ(Plugin::load(path, {{"label", "x"}, {"enabled", "yes"}}).error(), "enabled: expected true or false, got \"yes\"");
  EXPECT_NE(Plugin::load(path, {{"label", "x"}, {"timeout", "soon"}}).error().find("timeout: expected a duration"),
            std::string::npos);
  EXPECT_EQ(Plugin::load(path, {{"label", "x"}, {"endpoint", "example.com"}}).error(),
            "endpoint: expected an absolute URL, got \"example.com\"");

  Plugin p = Plugin::load(path, {{"label", "x"}, {"timeout", "5m"}});
  ASSERT_TRUE(p.ok()) << p.error();
  // Defaults applied and durations in milliseconds: as on_create gets them, and as the plugin echoes them.
  EXPECT_EQ(p.settings().at("count"), "3");
  EXPECT_EQ(p.settings().at("enabled"), "false");
  EXPECT_EQ(p.settings().at("timeout"), "300000");
  Delivery d;
  d.content = {{"echo", "timeout"}};
  auto o = p.deliver(d);
  EXPECT_TRUE(o.delivered());
  EXPECT_EQ(o.provider_message_id, "300000");
  // A callback the plugin lacks is reported, not called.
  EXPECT_EQ(p.build(d).error, "the plugin has no on_build");
}

TEST(FakeHost, AFileThatIsNoPluginIsRefusedWithDlopensReason) {
  Plugin p = Plugin::load("/nonexistent/acme.so");
  EXPECT_FALSE(p.ok());
  EXPECT_NE(p.error().find("cannot load /nonexistent/acme.so"), std::string::npos) << p.error();
  EXPECT_FALSE(p.classify(Delivery{}, Response{}).delivered());
}

// LINE through the fake host: the request a push becomes, and what answers mean.
TEST(FakeHost, BuildAndClassifyThroughARealPlugin) {
  Plugin line = Plugin::load(plugin_path("line"), {{"channel_access_token", "tok"}, {"base_url", "https://line.test"}});
  ASSERT_TRUE(line.ok()) << line.error();
  Delivery d;
  d.contact = "U4af4980629e3e5ef9d2f0f0e6b7f2b1d";
  d.content = {{"text", "こんにちは"}};
  auto built = line.build(d);
  ASSERT_TRUE(built.ok()) << built.error;
  ASSERT_EQ(built.requests.size(), 1u);
  EXPECT_EQ(built.requests[0].url, "https://line.test/v2/bot/message/push");
  EXPECT_EQ(built.requests[0].header("Authorization"), "Bearer tok");
  EXPECT_EQ(built.requests[0].header("x-line-retry-key"), "01234567-89ab-cdef-0123-456789abcdef");
  EXPECT_EQ(nlohmann::json::parse(built.requests[0].body)["to"], d.contact);

  EXPECT_TRUE(line.classify(d, {200, {}, "{}"}).delivered());
  auto busy = line.classify(d, {503});
  EXPECT_TRUE(busy.retry());
  EXPECT_EQ(busy.reason, "line.503");
  EXPECT_TRUE(line.classify(d, Response::transport_failure("timeout")).retry());
}

// LINE's webhook, signed as LINE signs it (base64 HMAC-SHA256 of the body, computed here with OpenSSL),
// is verified by the plugin through the fake host's HMAC; a wrong signature is refused with nothing applied.
TEST(FakeHost, InboundCallsAreVerifiedWithTheHostsHmac) {
  Plugin line = Plugin::load(plugin_path("line"), {{"channel_access_token", "tok"}, {"channel_secret", "s3cret"}});
  ASSERT_TRUE(line.ok()) << line.error();
  const std::string body = nlohmann::json{
      {"destination", "Uxxx"},
      {"events",
       {{{"type", "postback"},
         {"webhookEventId", "01P"},
         {"timestamp", 1780000000123},
         {"source", {{"type", "user"}, {"userId", "U1"}}},
         {"postback", {{"data", "r.interested-ref"}}},
         {"deliveryContext", {{"isRedelivery", false}}},
         {"mode", "active"}}}}}.dump();
  const std::string signature = tayori::crypto::base64_encode(tayori::crypto::hmac_sha256("s3cret", body).value());

  auto in = line.inbound({{{"X-Line-Signature", signature}, {"Content-Type", "application/json"}}, body});
  ASSERT_EQ(in.status, TAYORI_OK) << in.error;
  EXPECT_EQ(in.http_status, 200);
  ASSERT_EQ(in.events.size(), 1u);
  EXPECT_EQ(in.events[0].type, TAYORI_EVENT_RESPONDED);
  EXPECT_EQ(in.events[0].ref, "r.interested-ref");
  EXPECT_EQ(in.events[0].contact, "U1");
  EXPECT_EQ(in.events[0].provider_event_id, "01P");

  auto forged = line.inbound({{{"X-Line-Signature", signature}}, body + " "});
  EXPECT_EQ(forged.status, TAYORI_INVALID);
  EXPECT_EQ(forged.http_status, 401);
  EXPECT_TRUE(forged.events.empty());
  EXPECT_EQ(forged.emitted, 0u);  // refused before it emitted anything, not emitted and then dropped
}

// FCM's OAuth token through host_token: minted once (a JWT from the test's signer, exchanged at the token
// endpoint the test scripts), reused, and minted again when due on the fake clock.
TEST(FakeHost, TokensAreMintedOnceAndAgainWhenDue) {
  const auto dir = std::filesystem::temp_directory_path() / ("tayori-fake-host-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string key_file = (dir / "sa.json").string();
  std::ofstream(key_file) << nlohmann::json{{"type", "service_account"},
                                            {"project_id", "demo"},
                                            {"private_key", "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"},
                                            {"client_email", "tayori@demo.iam.gserviceaccount.com"},
                                            {"token_uri", "https://oauth.test/token"}}
                                 .dump();
  // The plugin signs a grant with its key as it is created: without a signer the fake host says what is missing.
  Plugin unsigned_fcm = Plugin::load(plugin_path("push_fcm"), {{"service_account", key_file}});
  EXPECT_FALSE(unsigned_fcm.ok());
  EXPECT_NE(unsigned_fcm.error().find("FakeHost::sign_jwt"), std::string::npos) << unsigned_fcm.error();

  std::string claims;
  int grants = 0;
  Plugin fcm = Plugin::load(plugin_path("push_fcm"), {{"service_account", key_file}}, [&](tayori::testing::FakeHost& h) {
    h.sign_jwt = [&](const std::string& alg, const std::string&, const std::string& c, const std::string&) {
      claims = c;
      return std::optional<std::string>(alg + ".jwt");
    };
    h.exchange = [&](const tayori::testing::Request& r) {
      EXPECT_EQ(r.url, "https://oauth.test/token");
      return Response(200, {}, R"({"access_token":"ya29.)" + std::to_string(++grants) + R"(","expires_in":3600})");
    };
  });
  ASSERT_TRUE(fcm.ok()) << fcm.error();
  Delivery d;
  d.contact = "device-token";
  d.content = {{"title", "t"}, {"body", "b"}};
  auto first = fcm.build(d);
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_EQ(first.requests.at(0).header("authorization"), "Bearer ya29.1");
  EXPECT_NE(fcm.host().exchanged.at(fcm.host().exchanged.size() - 1).body.find("RS256.jwt"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(claims)["iss"], "tayori@demo.iam.gserviceaccount.com");
  const int mints = fcm.host().mints;
  EXPECT_EQ(fcm.build(d).requests.at(0).header("authorization"), "Bearer ya29.1");
  EXPECT_EQ(fcm.host().mints, mints);

  fcm.host().now_ms += 3600 * 1000;
  EXPECT_EQ(fcm.build(d).requests.at(0).header("authorization"), "Bearer ya29.2");
  EXPECT_EQ(fcm.host().mints, mints + 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
