// The ABI 1.1 host services (plugin.h), driven by a real plugin (tests/fixtures/plugins/
// fixture_host_services.cpp) through the SDK and the real host transport against a local server: a
// token minted once for concurrent deliveries via a synchronous grant exchange, re-minted once after a
// refusal, a transient grant failure retried rather than given up, signatures checked with the host's
// own crypto, and the delivery's signed links.
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "links/links.hpp"
#include "plugin_test_support.hpp"
#include "crypto/crypto.hpp"

namespace tayori::plugin {
namespace {

using testing::ec_key;

// A grant endpoint and a provider: /token issues "tok-N"; /send accepts only the newest token.
class HostServices : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(ec_key().private_pem.find("BEGIN PRIVATE KEY"), std::string::npos) << "OpenSSL could not make a key";
    provider_.route("/token", [this](const api::HttpRequest&) {
      api::HttpResponse r;
      ++grants_;
      if (grant_status_ != 200) {
        r.status = grant_status_;
      } else {
        r.body = "tok-" + std::to_string(grants_);
      }
      return r;
    });
    provider_.rule([this](const api::HttpRequest& request, api::HttpResponse r) {
      std::string used(request.header("authorization").substr(7));
      r.status = used == "tok-" + std::to_string(grants_) && !refuse_next_ ? 200 : 401;
      if (refuse_next_) --refuse_next_;
      r.headers.emplace_back("X-Used-Token", report_used_as_.empty() ? used : report_used_as_);
      return r;
    });
    testing::OneChannel app{.name = "app",
                            .plugin = "fixture_host_services",
                            .settings = "      url: " + provider_.url() + "\n      key_pem_env: KEY\n",
                            .preamble = "server: {public_url: 'https://gw.example.com/t', link_secret_env: LINKS}\n",
                            .plugin_dir = TAYORI_FIXTURE_DIR};
    registry_ = testing::registry_for(app.yaml(), clock_, &transport_, "/tmp",
                                      {{"KEY", ec_key().private_pem}, {"LINKS", "link-secret"}});
    ASSERT_TRUE(registry_.registry) << registry_.errors.at(0).to_string();
    channel_ = registry_.registry->find("app");
  }
  void TearDown() override { provider_.stop(); }

  // What the plugin sent to /send, oldest first.
  std::vector<nlohmann::json> sends() {
    std::vector<nlohmann::json> out;
    for (const api::HttpRequest& r : provider_.requests("/send")) out.push_back(nlohmann::json::parse(r.body));
    return out;
  }
  int grants() {
    auto lock = provider_.lock();
    return grants_;
  }
  // Sets what the provider decides by (under its lock).
  void set(int& field, int value) {
    auto lock = provider_.lock();
    field = value;
  }
  void report_used_as(std::string token) {
    auto lock = provider_.lock();
    report_used_as_ = std::move(token);
  }

  DeliveryOutcome send(bool marketing = false) {
    DeliveryRequest d;
    d.message_id = "m-1";
    d.delivery_id = "d-1";
    d.contact = "+819012345678";
    d.marketing = marketing;
    return channel_->deliver(d);
  }

  SystemClock clock_;
  // What the provider decides by, guarded by provider_.lock().
  int grants_ = 0;
  int grant_status_ = 200;
  int refuse_next_ = 0;
  std::string report_used_as_;  // set: a refusal names this token (a late answer about an older token)
  testing::ScriptedProvider provider_;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult registry_;
  Channel* channel_ = nullptr;
};

TEST_F(HostServices, ConcurrentDeliveriesShareOneMintedToken) {
  std::vector<std::future<DeliveryOutcome>> running;
  for (int i = 0; i < 8; ++i) running.push_back(std::async(std::launch::async, [this] { return send(); }));
  for (auto& f : running) EXPECT_EQ(f.get().kind, OutcomeKind::delivered);
  EXPECT_EQ(grants(), 1);
  EXPECT_EQ(channel_->tokens_minted(), 1u);
  ASSERT_EQ(sends().size(), 8u);
  for (auto& s : sends()) EXPECT_EQ(s["token"], "tok-1");
}

TEST_F(HostServices, ARefusedTokenIsReMintedOnceForABurst) {
  ASSERT_EQ(send().kind, OutcomeKind::delivered);
  // Three requests in flight with tok-1 are all refused; each invalidates "only if still tok-1".
  set(refuse_next_, 3);
  report_used_as("tok-1");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(send().kind, OutcomeKind::retry);
  report_used_as("");
  // The first refusal dropped tok-1 and the next build minted tok-2; the later refusals named tok-1, which
  // was no longer cached, so they changed nothing: one re-mint for the whole burst.
  EXPECT_EQ(send().kind, OutcomeKind::delivered);
  EXPECT_EQ(grants(), 2);
  EXPECT_EQ(sends().back()["token"], "tok-2");
}

TEST_F(HostServices, ARefusalAboutAnOlderTokenKeepsTheCurrentOne) {
  ASSERT_EQ(send().kind, OutcomeKind::delivered);  // tok-1 is cached
  set(refuse_next_, 1);
  report_used_as("tok-0");  // a late refusal of a token no longer cached
  EXPECT_EQ(send().kind, OutcomeKind::retry);
  report_used_as("");
  EXPECT_EQ(send().kind, OutcomeKind::delivered);
  EXPECT_EQ(grants(), 1);  // tok-1 survived: invalidation was "only if still tok-0"
}

TEST_F(HostServices, ATransientGrantFailureIsARetryNotAPermanentFailure) {
  set(grant_status_, 503);
  DeliveryOutcome o = send();
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_NE(o.reason.find("grant: unavailable"), std::string::npos) << o.reason;
  set(grant_status_, 400);
  o = send();
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("grant: refused with 400"), std::string::npos) << o.reason;
  set(grant_status_, 200);
  EXPECT_EQ(send().kind, OutcomeKind::delivered);
}

TEST_F(HostServices, SignaturesMatchTheHostsCrypto) {
  ASSERT_EQ(send().kind, OutcomeKind::delivered);
  const nlohmann::json s = sends().at(0);
  auto verified = crypto::verify_jwt(s["jwt"].get<std::string>(), ec_key().public_pem);
  ASSERT_TRUE(verified) << verified.error().message;
  EXPECT_EQ(verified.value().alg, "ES256");
  EXPECT_EQ(verified.value().header["kid"], "k1");
  EXPECT_EQ(verified.value().claims["iss"], "team");
  EXPECT_EQ(s["hmac256"], crypto::base64_encode(crypto::hmac_sha256("key", "m-1").value()));
  EXPECT_EQ(s["hmac1"], crypto::base64url_encode(crypto::hmac_sha1("key", "m-1").value()));
  EXPECT_EQ(s["equal"], true);
}

TEST_F(HostServices, MarketingDeliveriesCarryASignedUnsubscribeLinkAndEveryOneACallbackUrl) {
  ASSERT_EQ(send(false).kind, OutcomeKind::delivered);
  ASSERT_EQ(send(true).kind, OutcomeKind::delivered);
  const nlohmann::json transactional = sends().at(0);
  const nlohmann::json marketing = sends().at(1);
  EXPECT_EQ(transactional["unsubscribe_url"], "");
  EXPECT_EQ(transactional["callback_url"], "https://gw.example.com/t/inbound/fixture_host_services/app");
  std::string url = marketing["unsubscribe_url"];
  const std::string prefix = "https://gw.example.com/t/u/";
  ASSERT_EQ(url.rfind(prefix, 0), 0u) << url;
  links::Verified v = links::LinkSigner("https://gw.example.com/t", "link-secret")
                          .verify(url.substr(prefix.size()), clock_.now_ms() / 1000);
  ASSERT_TRUE(v.ok()) << links::to_string(v.error);
  EXPECT_EQ(v.claims.kind, links::LinkKind::unsubscribe);
  EXPECT_EQ(v.claims.message_id, "m-1");
  EXPECT_EQ(v.claims.channel, "app");
  // The default lifetime is 60 days.
  const int64_t now_s = clock_.now_ms() / 1000;  // whole seconds, as the claims hold them
  EXPECT_NEAR(static_cast<double>(v.claims.expires_at_s - now_s), 60.0 * 86400, 5);
}

}  // namespace
}  // namespace tayori::plugin
