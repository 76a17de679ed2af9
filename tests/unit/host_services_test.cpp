// The ABI 1.1 host services (plugin.h), driven by a real plugin (tests/fixtures/plugins/
// fixture_host_services.cpp) through the SDK and the real host transport against a local server: a
// token minted once for concurrent deliveries via a synchronous grant exchange, re-minted once after a
// refusal, a transient grant failure retried rather than given up, signatures checked with the host's
// own crypto, and the delivery's signed links.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>

#include "api/http_server.hpp"
#include "config/config.hpp"
#include "links/links.hpp"
#include "plugin/channel.hpp"
#include "transport/crypto.hpp"
#include "transport/http_transport.hpp"

namespace tayori::plugin {
namespace {

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// A grant endpoint and a provider: /token issues "tok-N"; /send accepts only the newest token.
class Provider final : public api::Handler {
 public:
  void handle(api::HttpRequest request, api::Responder respond) override {
    api::HttpResponse r;
    std::lock_guard lock(mutex);
    if (request.path == "/token") {
      ++grants;
      if (grant_status != 200) {
        r.status = grant_status;
      } else {
        r.body = "tok-" + std::to_string(grants);
      }
    } else {
      sends.push_back(nlohmann::json::parse(request.body));
      std::string used(request.header("authorization").substr(7));
      r.status = used == "tok-" + std::to_string(grants) && !refuse_next ? 200 : 401;
      if (refuse_next) --refuse_next;
      r.headers.emplace_back("X-Used-Token", report_used_as.empty() ? used : report_used_as);
    }
    respond(r);
  }
  std::mutex mutex;
  int grants = 0;
  int grant_status = 200;
  int refuse_next = 0;
  std::string report_used_as;  // set: a refusal names this token (a late answer about an older token)
  std::vector<nlohmann::json> sends;
};

class HostServices : public ::testing::Test {
 protected:
  void SetUp() override {
    key_pem_ = run("openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt");
    ASSERT_NE(key_pem_.find("BEGIN PRIVATE KEY"), std::string::npos) << "openssl could not make a key";
    std::string tmp = ::testing::TempDir() + "host_services_key.pem";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fputs(key_pem_.c_str(), f);
      std::fclose(f);
    }
    public_pem_ = run("openssl ec -pubout -in " + tmp + " 2>/dev/null");
    server_ = std::make_unique<api::HttpServer>(provider_, api::ServerLimits{}, 2);
    uint16_t port = server_->start("127.0.0.1", 0);
    std::string yaml = "server: {public_url: 'https://gw.example.com/t', link_secret_env: LINKS}\n"
                       "api_keys: [{name: t, key_env: K}]\nplugin_dirs: [" TAYORI_FIXTURE_DIR "]\n"
                       "channels:\n  - name: app\n    plugin: fixture_host_services\n    settings:\n"
                       "      url: http://127.0.0.1:" + std::to_string(port) + "\n      key_pem_env: KEY\n";
    auto loaded = config::load_string(yaml, "t.yaml", "/tmp", [this](const std::string& name) {
      return name == "KEY" ? key_pem_ : name == "LINKS" ? std::string("link-secret") : std::string("k");
    });
    ASSERT_TRUE(loaded.config) << loaded.errors.at(0).to_string();
    registry_ = build_registry(*loaded.config, clock_, &transport_);
    ASSERT_TRUE(registry_.registry) << registry_.errors.at(0).to_string();
    channel_ = registry_.registry->find("app");
  }
  void TearDown() override { server_->stop(0); }

  DeliveryOutcome send(bool marketing = false) {
    DeliveryRequest d;
    d.message_id = "m-1";
    d.delivery_id = "d-1";
    d.contact = "+819012345678";
    d.marketing = marketing;
    return channel_->deliver(d);
  }

  SystemClock clock_;
  std::string key_pem_, public_pem_;
  Provider provider_;
  std::unique_ptr<api::HttpServer> server_;
  transport::HttpTransport transport_{transport::TransportOptions{}};
  RegistryResult registry_;
  Channel* channel_ = nullptr;
};

TEST_F(HostServices, ConcurrentDeliveriesShareOneMintedToken) {
  std::vector<std::future<DeliveryOutcome>> running;
  for (int i = 0; i < 8; ++i) running.push_back(std::async(std::launch::async, [this] { return send(); }));
  for (auto& f : running) EXPECT_EQ(f.get().kind, OutcomeKind::delivered);
  EXPECT_EQ(provider_.grants, 1);
  EXPECT_EQ(channel_->tokens_minted(), 1u);
  ASSERT_EQ(provider_.sends.size(), 8u);
  for (auto& s : provider_.sends) EXPECT_EQ(s["token"], "tok-1");
}

TEST_F(HostServices, ARefusedTokenIsReMintedOnceForABurst) {
  ASSERT_EQ(send().kind, OutcomeKind::delivered);
  // Three requests in flight with tok-1 are all refused; each invalidates "only if still tok-1".
  provider_.refuse_next = 3;
  provider_.report_used_as = "tok-1";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(send().kind, OutcomeKind::retry);
  provider_.report_used_as.clear();
  // The first refusal dropped tok-1 and the next build minted tok-2; the later refusals named tok-1, which
  // was no longer cached, so they changed nothing: one re-mint for the whole burst.
  EXPECT_EQ(send().kind, OutcomeKind::delivered);
  EXPECT_EQ(provider_.grants, 2);
  EXPECT_EQ(provider_.sends.back()["token"], "tok-2");
}

TEST_F(HostServices, ARefusalAboutAnOlderTokenKeepsTheCurrentOne) {
  ASSERT_EQ(send().kind, OutcomeKind::delivered);  // tok-1 is cached
  provider_.refuse_next = 1;
  provider_.report_used_as = "tok-0";  // a late refusal of a token no longer cached
  EXPECT_EQ(send().kind, OutcomeKind::retry);
  provider_.report_used_as.clear();
  EXPECT_EQ(send().kind, OutcomeKind::delivered);
  EXPECT_EQ(provider_.grants, 1);  // tok-1 survived: invalidation was "only if still tok-0"
}

TEST_F(HostServices, ATransientGrantFailureIsARetryNotAPermanentFailure) {
  provider_.grant_status = 503;
  DeliveryOutcome o = send();
  EXPECT_EQ(o.kind, OutcomeKind::retry);
  EXPECT_NE(o.reason.find("grant: unavailable"), std::string::npos) << o.reason;
  provider_.grant_status = 400;
  o = send();
  EXPECT_EQ(o.kind, OutcomeKind::permanent);
  EXPECT_NE(o.reason.find("grant: refused with 400"), std::string::npos) << o.reason;
  provider_.grant_status = 200;
  EXPECT_EQ(send().kind, OutcomeKind::delivered);
}

TEST_F(HostServices, SignaturesMatchTheHostsCrypto) {
  ASSERT_EQ(send().kind, OutcomeKind::delivered);
  const nlohmann::json& s = provider_.sends.at(0);
  auto verified = transport::verify_jwt(s["jwt"].get<std::string>(), public_pem_);
  ASSERT_TRUE(verified) << verified.error;
  EXPECT_EQ(verified.value.alg, "ES256");
  EXPECT_EQ(verified.value.header["kid"], "k1");
  EXPECT_EQ(verified.value.claims["iss"], "team");
  EXPECT_EQ(s["hmac256"], transport::base64_encode(transport::hmac_sha256("key", "m-1").value));
  EXPECT_EQ(s["hmac1"], transport::base64url_encode(transport::hmac_sha1("key", "m-1").value));
  EXPECT_EQ(s["equal"], true);
}

TEST_F(HostServices, MarketingDeliveriesCarryASignedUnsubscribeLinkAndEveryOneACallbackUrl) {
  ASSERT_EQ(send(false).kind, OutcomeKind::delivered);
  ASSERT_EQ(send(true).kind, OutcomeKind::delivered);
  const nlohmann::json& transactional = provider_.sends.at(0);
  const nlohmann::json& marketing = provider_.sends.at(1);
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
  EXPECT_NEAR(static_cast<double>(v.claims.expires_at_s - clock_.now_ms() / 1000), 60.0 * 86400, 5);
}

}  // namespace
}  // namespace tayori::plugin
