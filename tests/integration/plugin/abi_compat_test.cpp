// ABI compatibility (docs/architecture.md §6.2): plugins built in the past, against the frozen copies of the
// 1.0 and 1.1 plugin.h in tests/fixtures/abi, load in today's host and deliver for real: through the
// configuration and build_registry, the real transport to a local HTTP server, and their own on_build and
// on_classify. Each test first checks the plugin is of its minor (its descriptor's abi_minor and struct_size),
// so a fixture built against today's header by mistake fails here instead of passing for the wrong reason.
// (A plugin built for a newer minor is refused: plugin_loader_test.cpp.)
#include <gtest/gtest.h>

#include <cstddef>
#include <string>

#include "crypto/crypto.hpp"
#include "plugin_test_support.hpp"

namespace tayori::plugin {
namespace {

// The struct_size of a 1.1 descriptor: 1.1 ended tayori_plugin with on_build_batch (1.3 appended after it).
constexpr uint32_t kPluginV11Size = offsetof(tayori_plugin, on_build_batch) + sizeof(void*);

// The signing key of fixture_frozen_1_1's channel, and the header its requests carry (fixture_frozen_1_1.c).
constexpr const char* kSigningKey = "frozen-signing-key";
constexpr const char* kSignatureHeader = "x-fixture-signature";

// What that header must say: base64(HMAC-SHA256(key, body)), computed with the host's own crypto.
std::string signature_of(const std::string& body) {
  return crypto::base64_encode(crypto::hmac_sha256(kSigningKey, body).value());
}

class AbiCompat : public ::testing::Test {
 protected:
  void TearDown() override { provider_.stop(); }

  // Configures channel "sms" of fixture `plugin` (settings: url, then `settings`), as the gateway does at start.
  // Call through ASSERT_NO_FATAL_FAILURE.
  void load(const std::string& plugin, const std::string& settings = "", testing::Env env = {}) {
    testing::OneChannel sms{.name = "sms",
                            .plugin = plugin,
                            .settings = "      url: " + provider_.url() + "\n" + settings,
                            .plugin_dir = TAYORI_FIXTURE_DIR};
    registry_ = testing::registry_for(sms.yaml(), clock_, &transport_, "/tmp", std::move(env));
    ASSERT_TRUE(registry_.registry) << registry_.errors.at(0).to_string();
    channel_ = registry_.registry->find("sms");
    ASSERT_NE(channel_, nullptr);
  }

  // The descriptor as the plugin declared it (struct_size, versions) and as the host holds it (zero-extended).
  const tayori_plugin& descriptor() const { return channel_->library().descriptor(); }

  // The fixtures' contract (frozen_fixture.h): 2xx delivered with the answer's body as the provider's id, 5xx
  // retry, 4xx permanent, each from one form POST of the delivery to /send. Returns the requests sent.
  std::vector<api::HttpRequest> expect_delivers_and_classifies() {
    const testing::AnswerCase answers[] = {
        {200, "prov-7", {}, OutcomeKind::delivered, "", false, 0, "prov-7"},
        {503, "", {}, OutcomeKind::retry, "http.503"},
        {400, "", {}, OutcomeKind::permanent, "http.400"},
    };
    testing::expect_outcomes(provider_, *channel_, testing::delivery("+819012345678", {{"text", "こんにちは & more"}}),
                             answers);
    std::vector<api::HttpRequest> sent = provider_.requests("/send");
    EXPECT_EQ(sent.size(), std::size(answers)) << "one request per delivery, none resent";
    for (const api::HttpRequest& r : sent) {
      EXPECT_EQ(r.method, "POST");
      EXPECT_EQ(r.header("content-type"), "application/x-www-form-urlencoded");
      EXPECT_EQ(r.header("idempotency-key"), testing::kDeliveryId);
      EXPECT_EQ(r.body,
                "to=%2B819012345678&message_id=m-1&text=%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF"
                "%20%26%20more");
    }
    return sent;
  }

  SystemClock clock_;
  testing::ScriptedProvider provider_{1};
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult registry_;  // after transport_: its channels send through it
  Channel* channel_ = nullptr;
};

TEST_F(AbiCompat, APluginBuiltAgainstTheFrozen10HeaderLoadsAndDelivers) {
  ASSERT_NO_FATAL_FAILURE(load("fixture_frozen_1_0"));
  EXPECT_EQ(descriptor().abi_major, 1);
  EXPECT_EQ(descriptor().abi_minor, 0);
  EXPECT_EQ(descriptor().struct_size, TAYORI_PLUGIN_V1_0_SIZE);
  // What 1.1 and later appended reads as zero: never batched, no inbound needs.
  EXPECT_EQ(descriptor().batch_max, 0u);
  EXPECT_EQ(descriptor().on_build_batch, nullptr);
  EXPECT_EQ(descriptor().inbound_flags, 0u);
  EXPECT_TRUE(channel_->library().sans_io());

  expect_delivers_and_classifies();
}

// The 1.1 plugin checks host->struct_size as a 1.1 plugin does, then calls host_hmac and host_base64 through
// the 1.1 layout of tayori_host: the provider answers 401 to a request whose signature is not right, so a
// delivered outcome needs today's host to serve those services where 1.1 put them.
TEST_F(AbiCompat, APluginBuiltAgainstTheFrozen11HeaderSignsWithTheHostsHmacAndDelivers) {
  provider_.rule([](const api::HttpRequest& request, api::HttpResponse scripted) {
    if (request.header(kSignatureHeader) != signature_of(request.body)) scripted.status = 401;
    return scripted;
  });
  ASSERT_NO_FATAL_FAILURE(
      load("fixture_frozen_1_1", "      signing_key_env: SIGNING_KEY\n", {{"SIGNING_KEY", kSigningKey}}));
  EXPECT_EQ(descriptor().abi_major, 1);
  EXPECT_EQ(descriptor().abi_minor, 1);
  EXPECT_EQ(descriptor().struct_size, kPluginV11Size);
  EXPECT_EQ(descriptor().inbound_flags, 0u);  // 1.3's field, past the plugin's descriptor: zero
  EXPECT_TRUE(channel_->library().sans_io());

  for (const api::HttpRequest& r : expect_delivers_and_classifies())
    EXPECT_EQ(r.header(kSignatureHeader), signature_of(r.body));
}

}  // namespace
}  // namespace tayori::plugin
