// tayori-sim as a program: started on port 0 with keys and certificates generated here with `openssl`
// (RSA 2048 for the FCM service account, EC P-256 for APNs, a throw-away CA and a 127.0.0.1 server
// certificate for TLS), and driven over real HTTP with libcurl — HTTP/1.1, and HTTP/2 over TLS for APNs.
// Signed webhooks are received by the project's own api::HttpServer in this process and their signatures
// checked with the host's crypto helpers, so the two sides share no code path in the simulator. The key
// material, the HTTP client and the simulator process come from sim_harness.hpp.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <regex>
#include <set>

#include "api/http_server.hpp"
#include "sim_harness.hpp"
#include "crypto/crypto.hpp"

namespace tayori::testing {
namespace {

constexpr const char* kUserA = kLineUser;
constexpr const char* kUserB = "Ufedcba9876543210fedcba9876543210";
const std::string kDevice(64, 'a');

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string sign(const char* alg, const Json& header, const Json& claims, const std::string& pem) {
  auto jwt = crypto::sign_jwt(alg, header.is_null() ? "" : header.dump(), claims.dump(), pem);
  if (!jwt) throw std::runtime_error(jwt.error().message);
  return jwt.value();
}

std::string apns_jwt(const std::string& key = "apns", int64_t iat = now_s(), const std::string& kid = kApnsKeyId) {
  return sign("ES256", {{"kid", kid}}, {{"iss", kApnsTeam}, {"iat", iat}}, ec_key(key).private_pem);
}

std::string form(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    char* ek = curl_easy_escape(nullptr, k.data(), static_cast<int>(k.size()));
    char* ev = curl_easy_escape(nullptr, v.data(), static_cast<int>(v.size()));
    out += (out.empty() ? "" : "&") + std::string(ek) + "=" + ev;
    curl_free(ek);
    curl_free(ev);
  }
  return out;
}

std::map<std::string, std::string> parse_form(const std::string& body) {
  std::map<std::string, std::string> out;
  std::istringstream in(body);
  for (std::string pair; std::getline(in, pair, '&');) {
    auto eq = pair.find('=');
    auto decode = [](std::string s) {
      for (char& ch : s)
        if (ch == '+') ch = ' ';
      int n = 0;
      char* d = curl_easy_unescape(nullptr, s.data(), static_cast<int>(s.size()), &n);
      std::string r(d, static_cast<size_t>(n));
      curl_free(d);
      return r;
    };
    out[decode(pair.substr(0, eq))] = eq == std::string::npos ? "" : decode(pair.substr(eq + 1));
  }
  return out;
}

// Twilio's documented signature: base64(HMAC-SHA1(token, URL + sorted name+value pairs)).
std::string twilio_signature(const std::string& token, const std::string& url,
                             const std::map<std::string, std::string>& params) {
  std::string data = url;
  for (const auto& [k, v] : params) data += k + v;  // std::map: sorted by name
  return crypto::base64_encode(crypto::hmac_sha1(token, data).value());
}

// ---- A webhook receiver: the project's HTTP server, in process --------------------------------------------

class Receiver final : public api::Handler {
 public:
  Receiver() : server_(*this, api::ServerLimits{}, 1) { port_ = server_.start("127.0.0.1", 0); }
  ~Receiver() override { server_.stop(500); }

  void handle(api::HttpRequest request, api::Responder respond) override {
    {
      std::lock_guard lock(mu_);
      got_.push_back(request);
    }
    cv_.notify_all();
    api::HttpResponse r;
    r.status = status_;
    r.content_type = "text/xml";
    r.body = "<Response></Response>";
    respond(std::move(r));
  }

  // Waits for the n-th request (1-based).
  std::optional<api::HttpRequest> wait_for(size_t n) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(5), [&] { return got_.size() >= n; })) return std::nullopt;
    return got_[n - 1];
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::atomic<int> status_{200};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<api::HttpRequest> got_;
  api::HttpServer server_;
  uint16_t port_ = 0;
};

// ---- FCM -------------------------------------------------------------------------------------------------------

std::string fcm_assertion(const Sim& sim, const std::string& key = "fcm", Json overrides = Json::object()) {
  int64_t now = now_s();
  Json claims = {{"iss", kClientEmail},
                 {"scope", "https://www.googleapis.com/auth/firebase.messaging"},
                 {"aud", sim.url("/token")},
                 {"iat", now},
                 {"exp", now + 3600}};
  for (auto& [k, v] : overrides.items()) claims[k] = v;
  return sign("RS256", nullptr, claims, rsa_key(key).private_pem);
}

Reply token_request(const Sim& sim, const std::string& assertion) {
  return call("POST", sim.url("/token"),
              form({{"grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"}, {"assertion", assertion}}),
              {"Content-Type: application/x-www-form-urlencoded"});
}

std::string access_token(const Sim& sim) {
  return token_request(sim, fcm_assertion(sim)).json().value("access_token", "");
}

Reply fcm_send(const Sim& sim, const std::string& token, const Json& message, bool h2 = false) {
  std::string path = "/v1/projects/tayori-test/messages:send";
  return call("POST", h2 ? sim.h2_url(path) : sim.url(path), Json{{"message", message}}.dump(),
              {"Authorization: Bearer " + token, "Content-Type: application/json"}, h2);
}

std::string fcm_error_code(const Json& body) {
  for (const auto& d : body["error"].value("details", Json::array()))
    if (d.value("@type", "") == "type.googleapis.com/google.firebase.fcm.v1.FcmError") return d.value("errorCode", "");
  return "";
}

TEST(SimulatorTest, StartsBothListenersOnPort0AndStopsCleanly) {
  Sim sim(all_providers(), /*h2=*/true);
  EXPECT_NE(sim.url(""), sim.h2_url(""));
  EXPECT_EQ(sim.h2_url("").rfind("https://127.0.0.1:", 0), 0u);
  EXPECT_EQ(sim.stop(), 0);
}

TEST(SimulatorTest, HelpListsTheFlagsAndUnknownFlagsExit2) {
  FILE* p = ::popen(TAYORI_SIM_BINARY " --help", "r");
  std::string help;
  char buf[512];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) help.append(buf, n);
  EXPECT_EQ(WEXITSTATUS(::pclose(p)), 0);
  for (const char* flag :
       {"--listen ", "--listen-h2", "--tls-cert", "--tls-key", "--fcm-public-key", "--fcm-token-ttl",
        "--apns-public-key", "--apns-key-id", "--apns-team-id", "--apns-topic", "--apns-max-token-updates",
        "--twilio-account-sid", "--twilio-auth-token", "--line-token", "--seed", "--faults"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  EXPECT_EQ(WEXITSTATUS(std::system(TAYORI_SIM_BINARY " --no-such-flag x >/dev/null 2>&1")), 2);
  EXPECT_EQ(WEXITSTATUS(std::system(TAYORI_SIM_BINARY " --listen-h2 127.0.0.1:0 >/dev/null 2>&1")), 2);
}

TEST(SimulatorTest, FcmTokenEndpointVerifiesTheAssertionLikeGoogle) {
  Sim sim(with_fcm(), false);
  Reply ok = token_request(sim, fcm_assertion(sim));
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json()["token_type"], "Bearer");
  EXPECT_EQ(ok.json()["expires_in"], 3600);
  EXPECT_FALSE(ok.json().value("access_token", "").empty());

  // Claims swapped under a valid signature (another service account's iss): the signature no longer matches.
  std::string good = fcm_assertion(sim);
  std::string forged_claims = crypto::base64url_encode(Json{
      {"iss", "intruder@x.iam.gserviceaccount.com"},
      {"scope", "https://www.googleapis.com/auth/firebase.messaging"},
      {"aud", sim.url("/token")},
      {"iat", now_s()},
      {"exp", now_s() + 3600}}.dump());
  size_t d1 = good.find('.'), d2 = good.rfind('.');
  Reply forged = token_request(sim, good.substr(0, d1 + 1) + forged_claims + good.substr(d2));
  EXPECT_EQ(forged.status, 400);
  EXPECT_EQ(forged.json(), (Json{{"error", "invalid_grant"}, {"error_description", "Invalid JWT Signature."}}));
  // An ES256 assertion (wrong algorithm and key type for a service account) is refused the same way.
  Reply es256 = token_request(sim, sign("ES256", nullptr, {{"iss", kClientEmail}}, ec_key("apns").private_pem));
  EXPECT_EQ(es256.json()["error"], "invalid_grant");

  Reply wrong_aud = token_request(sim, fcm_assertion(sim, "fcm", {{"aud", "https://oauth2.googleapis.com/token"}}));
  EXPECT_EQ(wrong_aud.status, 400);
  EXPECT_EQ(wrong_aud.json()["error"], "invalid_grant");
  EXPECT_NE(wrong_aud.json()["error_description"].get<std::string>().find("Failed audience check"), std::string::npos);

  Reply too_long = token_request(sim, fcm_assertion(sim, "fcm", {{"exp", now_s() + 7200}}));
  EXPECT_EQ(too_long.json()["error"], "invalid_grant");
  Reply stale = token_request(sim, fcm_assertion(sim, "fcm", {{"iat", now_s() - 7200}, {"exp", now_s() - 3600}}));
  EXPECT_EQ(stale.json()["error"], "invalid_grant");
  Reply wrong_iss = token_request(sim, fcm_assertion(sim, "fcm", {{"iss", "someone@else.iam.gserviceaccount.com"}}));
  EXPECT_EQ(wrong_iss.json()["error"], "invalid_grant");
  Reply no_scope = token_request(sim, fcm_assertion(sim, "fcm", {{"scope", ""}}));
  EXPECT_EQ(no_scope.json()["error"], "invalid_scope");
  Reply bad_grant = call("POST", sim.url("/token"), "grant_type=password&assertion=x");
  EXPECT_EQ(bad_grant.json()["error"], "unsupported_grant_type");
}

TEST(SimulatorTest, FcmSendAnswersTheRealShapes) {
  Sim sim(with_fcm(), true);
  std::string token = access_token(sim);
  ASSERT_FALSE(token.empty());
  Json message = {{"token", "fcm-device-token-1"},
                  {"notification", {{"title", "ご注文"}, {"body", "発送しました"}}},
                  {"data", {{"order", "42"}}},
                  {"android", {{"ttl", "3600s"}}}};
  Reply ok = fcm_send(sim, token, message);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_TRUE(std::regex_match(ok.json()["name"].get<std::string>(), std::regex("projects/tayori-test/messages/.+")));
  EXPECT_EQ(fcm_send(sim, token, message, /*h2=*/true).status, 200);  // every provider on both listeners

  Reply bad_bearer = fcm_send(sim, "ya29.not-issued-here", message);
  EXPECT_EQ(bad_bearer.status, 401);
  EXPECT_EQ(bad_bearer.json()["error"]["status"], "UNAUTHENTICATED");

  Json numeric_data = message;
  numeric_data["data"]["order"] = 42;
  Reply not_string = fcm_send(sim, token, numeric_data);
  EXPECT_EQ(not_string.status, 400);
  EXPECT_EQ(not_string.json()["error"]["status"], "INVALID_ARGUMENT");
  EXPECT_NE(not_string.json()["error"]["message"].get<std::string>().find("message.data[0].value"), std::string::npos);

  Json two_targets = message;
  two_targets["topic"] = "news";
  EXPECT_EQ(fcm_send(sim, token, two_targets).status, 400);
  Json no_target = message;
  no_target.erase("token");
  EXPECT_EQ(fcm_error_code(fcm_send(sim, token, no_target).json()), "INVALID_ARGUMENT");
  Json too_big = message;
  too_big["data"]["blob"] = std::string(4100, 'x');
  EXPECT_EQ(fcm_error_code(fcm_send(sim, token, too_big).json()), "INVALID_ARGUMENT");

  ASSERT_EQ(sim.faults({{"provider", "fcm"},
                        {"unregistered", {"fcm-dead-token"}},
                        {"contact_errors", {{"fcm-other-project", "SENDER_ID_MISMATCH"}}}})
                .status,
            200);
  Json dead = message;
  dead["token"] = "fcm-dead-token";
  Reply unregistered = fcm_send(sim, token, dead);
  EXPECT_EQ(unregistered.status, 404);
  EXPECT_EQ(unregistered.json()["error"]["status"], "NOT_FOUND");
  EXPECT_EQ(fcm_error_code(unregistered.json()), "UNREGISTERED");
  dead["token"] = "fcm-other-project";
  Reply mismatch = fcm_send(sim, token, dead);
  EXPECT_EQ(mismatch.status, 403);
  EXPECT_EQ(fcm_error_code(mismatch.json()), "SENDER_ID_MISMATCH");
}

TEST(SimulatorTest, FcmAccessTokensExpireAfterTheConfiguredLifetime) {
  Sim sim(with_fcm({"--fcm-token-ttl", "1"}), false);
  Reply issued = token_request(sim, fcm_assertion(sim));
  EXPECT_EQ(issued.json()["expires_in"], 1);
  std::string token = issued.json()["access_token"];
  EXPECT_EQ(fcm_send(sim, token, {{"token", "t1"}}).status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Reply expired = fcm_send(sim, token, {{"token", "t1"}});
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(expired.json()["error"]["details"][0]["reason"], "ACCESS_TOKEN_EXPIRED");
}

// ---- APNs -------------------------------------------------------------------------------------------------------

Reply apns_send(const Sim& sim, const std::string& device, const std::string& jwt,
                std::vector<std::string> headers = {}, const std::string& payload = R"({"aps":{"alert":"hi"}})",
                bool h2 = true) {
  headers.push_back("authorization: bearer " + jwt);
  bool has_topic = false;
  for (const auto& h : headers) has_topic = has_topic || h.rfind("apns-topic", 0) == 0;
  if (!has_topic) headers.push_back(std::string("apns-topic: ") + kTopic);
  std::string path = "/3/device/" + device;
  return call("POST", h2 ? sim.h2_url(path) : sim.url(path), payload, headers, h2);
}

TEST(SimulatorTest, ApnsAcceptsAValidPushOverHttp2) {
  Sim sim(all_providers(), true);
  const std::string id = "5d5a4c1e-0f6b-4e1a-9d2c-3b4a5c6d7e8f";
  Reply ok = apns_send(sim, kDevice, apns_jwt(), {"apns-id: " + id, "apns-push-type: alert", "apns-priority: 10"});
  ASSERT_EQ(ok.rc, CURLE_OK) << curl_easy_strerror(ok.rc) << "\n" << sim.stderr_text();
  EXPECT_EQ(ok.version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.body, "");
  EXPECT_EQ(ok.headers["apns-id"], id);
  EXPECT_EQ(ok.headers["apns-unique-id"].size(), 36u);
  Reply generated = apns_send(sim, kDevice, apns_jwt());
  EXPECT_EQ(generated.status, 200);
  EXPECT_EQ(generated.headers["apns-id"].size(), 36u);
}

// The simulator checks provider tokens with its own OpenSSL calls (tools/simulator/sim_jwt.cpp), not the
// gateway's verify_jwt, so a token the gateway encoded wrongly is refused as Apple would refuse it: here the
// ES256 signature as DER, OpenSSL's native form, instead of JWS's R || S (RFC 7518 §3.4); and `alg: none`.
TEST(SimulatorTest, ApnsRefusesADerSignatureAndAnUnsignedToken) {
  Sim sim(all_providers(), true);
  const std::string jwt = apns_jwt();
  ASSERT_EQ(apns_send(sim, kDevice, jwt).status, 200);

  const size_t dot = jwt.rfind('.');
  auto raw = crypto::base64url_decode(jwt.substr(dot + 1));
  ASSERT_TRUE(raw) << raw.error().message;
  ASSERT_EQ(raw.value().size(), 64u);
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.value().data()), 32, nullptr),
                 BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.value().data()) + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  ASSERT_GT(n, 0);
  const std::string as_der = jwt.substr(0, dot + 1) + crypto::base64url_encode(std::string(reinterpret_cast<char*>(der), n));
  OPENSSL_free(der);
  Reply refused = apns_send(sim, kDevice, as_der);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.json().value("reason", ""), "InvalidProviderToken");

  const std::string unsigned_token = crypto::base64url_encode(R"({"alg":"none","kid":")" + std::string(kApnsKeyId) + "\"}") +
                                     "." + jwt.substr(jwt.find('.') + 1, dot - jwt.find('.') - 1) + ".";
  EXPECT_EQ(apns_send(sim, kDevice, unsigned_token).json().value("reason", ""), "InvalidProviderToken");
}

TEST(SimulatorTest, ApnsRejectsWithApplesReasons) {
  Sim sim(all_providers(), true);
  std::string jwt = apns_jwt();
  auto reason = [](const Reply& r) {
    return r.json().value("reason", "(" + std::to_string(r.status) + " " + r.body + ")");
  };

  Reply bad_token = apns_send(sim, "not-hex", jwt);
  EXPECT_EQ(bad_token.status, 400);
  EXPECT_EQ(reason(bad_token), "BadDeviceToken");
  EXPECT_EQ(reason(apns_send(sim, std::string(63, 'a'), jwt)), "BadDeviceToken");

  Reply old = apns_send(sim, kDevice, apns_jwt("apns", now_s() - 2 * 3600));
  EXPECT_EQ(old.status, 403);
  EXPECT_EQ(reason(old), "ExpiredProviderToken");
  Reply foreign = apns_send(sim, kDevice, apns_jwt("apns-other"));
  EXPECT_EQ(foreign.status, 403);
  EXPECT_EQ(reason(foreign), "InvalidProviderToken");
  EXPECT_EQ(reason(apns_send(sim, kDevice, apns_jwt("apns", now_s(), "OTHERKEYID"))), "InvalidProviderToken");

  EXPECT_EQ(reason(apns_send(sim, kDevice, jwt, {"apns-topic: com.other.app"})), "DeviceTokenNotForTopic");
  EXPECT_EQ(reason(apns_send(sim, kDevice, jwt, {"apns-priority: 7"})), "BadPriority");
  EXPECT_EQ(reason(apns_send(sim, kDevice, jwt, {"apns-push-type: shout"})), "InvalidPushType");
  EXPECT_EQ(reason(apns_send(sim, kDevice, jwt, {"apns-expiration: soon"})), "BadExpirationDate");
  EXPECT_EQ(reason(apns_send(sim, kDevice, jwt, {"apns-collapse-id: " + std::string(65, 'c')})), "BadCollapseId");
  Reply big = apns_send(sim, kDevice, jwt, {}, R"({"aps":{"alert":")" + std::string(4100, 'x') + "\"}}");
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(reason(big), "PayloadTooLarge");

  ASSERT_EQ(sim.faults({{"provider", "apns"}, {"unregistered", {std::string(64, 'd')}}}).status, 200);
  Reply gone = apns_send(sim, std::string(64, 'd'), jwt);
  EXPECT_EQ(gone.status, 410);
  EXPECT_EQ(reason(gone), "Unregistered");
  EXPECT_GT(gone.json().value("timestamp", int64_t{0}), (now_s() - 60) * 1000);  // milliseconds
}

TEST(SimulatorTest, ApnsRefusesHttp11AndTooManyTokenUpdates) {
  Sim sim(all_providers({"--apns-max-token-updates", "2"}), true);
  Reply h1 = apns_send(sim, kDevice, apns_jwt(), {}, R"({"aps":{}})", /*h2=*/false);
  EXPECT_EQ(h1.status, 505);
  EXPECT_NE(h1.body.find("HTTP/2"), std::string::npos);

  int64_t t = now_s();
  EXPECT_EQ(apns_send(sim, kDevice, apns_jwt("apns", t - 10)).status, 200);
  EXPECT_EQ(apns_send(sim, kDevice, apns_jwt("apns", t - 5)).status, 200);
  Reply third = apns_send(sim, kDevice, apns_jwt("apns", t));
  EXPECT_EQ(third.status, 429);
  EXPECT_EQ(third.json()["reason"], "TooManyProviderTokenUpdates");
}

// ---- Twilio -----------------------------------------------------------------------------------------------------

Reply twilio_send(const Sim& sim, const std::vector<std::pair<std::string, std::string>>& fields,
                  const std::string& token = kTwilioToken) {
  std::string auth = crypto::base64_encode(std::string(kTwilioSid) + ":" + token);
  return call("POST", sim.url(std::string("/2010-04-01/Accounts/") + kTwilioSid + "/Messages.json"), form(fields),
              {"Authorization: Basic " + auth, "Content-Type: application/x-www-form-urlencoded"});
}

TEST(SimulatorTest, TwilioCreatesMessagesAndAnswersMagicNumbers) {
  Sim sim(all_providers(), false);
  Reply ok = twilio_send(sim, {{"To", "+819012345678"}, {"From", "+15005550006"}, {"Body", "こんにちは"}});
  ASSERT_EQ(ok.status, 201) << ok.body;
  Json m = ok.json();
  EXPECT_TRUE(std::regex_match(m["sid"].get<std::string>(), std::regex("SM[0-9a-f]{32}")));
  EXPECT_EQ(m["status"], "queued");
  EXPECT_EQ(m["to"], "+819012345678");
  EXPECT_EQ(m["from"], "+15005550006");
  EXPECT_EQ(m["body"], "こんにちは");
  EXPECT_EQ(m["account_sid"], kTwilioSid);
  // The whole Message resource, as Twilio's API reference lists it for a queued message.
  const std::string uri =
      std::string("/2010-04-01/Accounts/") + kTwilioSid + "/Messages/" + m["sid"].get<std::string>();
  EXPECT_EQ(m["uri"], uri + ".json");
  EXPECT_EQ(m["subresource_uris"], (Json{{"media", uri + "/Media.json"}}));
  EXPECT_EQ(m["date_created"], m["date_updated"]);
  EXPECT_TRUE(std::regex_match(m["date_created"].get<std::string>(),
                               std::regex(R"([A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000)")))
      << m["date_created"];
  for (const char* null_member : {"date_sent", "error_code", "error_message", "price", "messaging_service_sid"})
    EXPECT_TRUE(m[null_member].is_null()) << null_member;
  EXPECT_EQ(m["api_version"], "2010-04-01");
  EXPECT_EQ(m["direction"], "outbound-api");
  EXPECT_EQ(m["num_media"], "0");
  EXPECT_EQ(m["num_segments"], "1");
  EXPECT_EQ(m["price_unit"], "USD");
  EXPECT_EQ(m.size(), 20u) << m;
  // Written as json_response would write it: keys sorted, no spaces.
  EXPECT_EQ(ok.body, m.dump());

  // From a Messaging Service, with no From: the sender is chosen later. A body that needs escaping, and one
  // that is not UTF-8 (a form can carry any bytes): each bad byte reads as U+FFFD.
  const std::string service = "MG" + std::string(32, 'a');
  Reply pooled = twilio_send(sim, {{"To", "+819012345678"}, {"MessagingServiceSid", service}, {"Body", "a\"b\n\x01"}});
  ASSERT_EQ(pooled.status, 201) << pooled.body;
  EXPECT_EQ(pooled.json()["status"], "accepted");
  EXPECT_TRUE(pooled.json()["from"].is_null());
  EXPECT_EQ(pooled.json()["messaging_service_sid"], service);
  EXPECT_EQ(pooled.json()["body"], "a\"b\n\x01");
  EXPECT_EQ(pooled.body, pooled.json().dump());
  Reply bytes = twilio_send(sim, {{"To", "+819012345678"}, {"From", "+15005550006"}, {"Body", "ok\xff\xfe!"}});
  ASSERT_EQ(bytes.status, 201) << bytes.body;
  EXPECT_EQ(bytes.json()["body"], "ok\xef\xbf\xbd\xef\xbf\xbd!");

  auto code = [](const Reply& r) { return r.json().value("code", 0); };
  Reply invalid = twilio_send(sim, {{"To", "+15005550001"}, {"From", "+15005550006"}, {"Body", "x"}});
  EXPECT_EQ(invalid.status, 400);
  EXPECT_EQ(code(invalid), 21211);
  EXPECT_EQ(invalid.json()["more_info"], "https://www.twilio.com/docs/errors/21211");
  EXPECT_EQ(code(twilio_send(sim, {{"To", "090-1234-5678"}, {"From", "+15005550006"}, {"Body", "x"}})), 21211);
  EXPECT_EQ(code(twilio_send(sim, {{"To", "+15005550009"}, {"From", "+15005550006"}, {"Body", "x"}})), 21614);
  EXPECT_EQ(code(twilio_send(sim, {{"To", "+15005550004"}, {"From", "+15005550006"}, {"Body", "x"}})), 21610);
  EXPECT_EQ(code(twilio_send(sim, {{"To", "+15551230000"}, {"From", "+15005550001"}, {"Body", "x"}})), 21212);
  Reply auth = twilio_send(sim, {{"To", "+15551230000"}, {"From", "+15005550006"}, {"Body", "x"}}, "wrong-token");
  EXPECT_EQ(auth.status, 401);
  EXPECT_EQ(code(auth), 20003);
}

TEST(SimulatorTest, TwilioPostsASignedStatusCallback) {
  Receiver receiver;
  Sim sim(all_providers(), false);
  ASSERT_EQ(sim.faults({{"provider", "twilio"}, {"contact_errors", {{"+15551110003", "30003"}}}}).status, 200);
  std::string callback = receiver.url("/twilio/status?tenant=a");
  Reply ok =
      twilio_send(sim, {{"To", "+15551110001"}, {"From", "+15005550006"}, {"Body", "x"}, {"StatusCallback", callback}});
  ASSERT_EQ(ok.status, 201) << ok.body;
  Reply later =
      twilio_send(sim, {{"To", "+15551110003"}, {"From", "+15005550006"}, {"Body", "x"}, {"StatusCallback", callback}});
  ASSERT_EQ(later.status, 201) << later.body;  // the failure arrives by callback, not at send time

  std::map<std::string, std::map<std::string, std::string>> by_sid;
  for (size_t n = 1; n <= 2; ++n) {
    auto got = receiver.wait_for(n);
    ASSERT_TRUE(got) << "no status callback";
    auto params = parse_form(got->body);
    EXPECT_EQ(std::string(got->header("x-twilio-signature")), twilio_signature(kTwilioToken, callback, params));
    by_sid[params["MessageSid"]] = params;
  }
  auto delivered = by_sid[ok.json()["sid"]];
  EXPECT_EQ(delivered["MessageStatus"], "delivered");
  EXPECT_EQ(delivered["To"], "+15551110001");
  EXPECT_EQ(delivered["AccountSid"], kTwilioSid);
  auto undelivered = by_sid[later.json()["sid"]];
  EXPECT_EQ(undelivered["MessageStatus"], "undelivered");
  EXPECT_EQ(undelivered["ErrorCode"], "30003");
}

// ---- LINE -------------------------------------------------------------------------------------------------------

Reply line_post(const Sim& sim, const std::string& path, const Json& body, std::vector<std::string> headers = {},
                bool h2 = false) {
  headers.push_back(std::string("Authorization: Bearer ") + kLineToken);
  headers.push_back("Content-Type: application/json");
  return call("POST", h2 ? sim.h2_url(path) : sim.url(path), body.dump(), headers, h2);
}

Json text(const std::string& t) { return {{"type", "text"}, {"text", t}}; }

TEST(SimulatorTest, LineMulticastWithRetryKeyAndValidation) {
  Sim sim(all_providers(), true);
  const std::string key = "X-Line-Retry-Key: 123e4567-e89b-42d3-a456-426614174000";
  Json body = {{"to", {kUserA, kUserB}}, {"messages", {text("お知らせ")}}};
  Reply ok = line_post(sim, "/v2/bot/message/multicast", body, {key});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json(), Json::object());
  Reply again = line_post(sim, "/v2/bot/message/multicast", body, {key});
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.headers["x-line-accepted-request-id"], ok.headers["x-line-request-id"]);
  EXPECT_EQ(line_post(sim, "/v2/bot/message/push", {{"to", kUserA}, {"messages", {text("h2")}}}, {}, true).status, 200);

  auto details = [](const Reply& r) {
    std::set<std::string> props;
    for (const auto& d : r.json().value("details", Json::array())) props.insert(d["property"].get<std::string>());
    return props;
  };
  Reply empty_to = line_post(sim, "/v2/bot/message/multicast", {{"to", Json::array()}, {"messages", {text("x")}}});
  EXPECT_EQ(empty_to.status, 400);
  EXPECT_EQ(details(empty_to), std::set<std::string>{"to"});
  Json many = Json::array();
  for (int i = 0; i < 501; ++i) many.push_back(kUserA);
  EXPECT_EQ(details(line_post(sim, "/v2/bot/message/multicast", {{"to", many}, {"messages", {text("x")}}})),
            std::set<std::string>{"to"});

  Json quick = text("choose");
  Json items = Json::array();
  for (int i = 0; i < 14; ++i)
    items.push_back({{"type", "action"}, {"action", {{"type", "postback"}, {"label", "ok"}, {"data", "a=1"}}}});
  quick["quickReply"] = {{"items", items}};
  Json long_data = text("choose");
  long_data["quickReply"] = {
      {"items",
       {{{"type", "action"}, {"action", {{"type", "postback"}, {"label", "ok"}, {"data", std::string(301, 'd')}}}}}}};
  Reply invalid = line_post(sim, "/v2/bot/message/push",
                            {{"to", kUserA}, {"messages", {text(std::string(5001, 'x')), quick, long_data}}});
  EXPECT_EQ(invalid.status, 400);
  EXPECT_EQ(invalid.json()["message"], "The request body has 3 error(s)");
  EXPECT_EQ(details(invalid), (std::set<std::string>{"messages[0].text", "messages[1].quickReply.items",
                                                     "messages[2].quickReply.items[0].action.data"}));
  Json six = Json::array();
  for (int i = 0; i < 6; ++i) six.push_back(text("x"));
  EXPECT_EQ(details(line_post(sim, "/v2/bot/message/push", {{"to", kUserA}, {"messages", six}})),
            std::set<std::string>{"messages"});
  EXPECT_EQ(
      line_post(sim, "/v2/bot/message/push", {{"to", kUserA}, {"messages", {text(std::string(5000, 'x'))}}}).status,
      200);
}

// ---- Faults -----------------------------------------------------------------------------------------------------

TEST(SimulatorTest, FaultLatencyAndDroppedConnections) {
  Sim sim(all_providers(), true);
  Json push = {{"to", kUserA}, {"messages", {text("x")}}};
  ASSERT_EQ(sim.faults({{"provider", "line"}, {"latency_ms", 300}}).status, 200);
  Reply slow = line_post(sim, "/v2/bot/message/push", push);
  EXPECT_EQ(slow.status, 200);
  EXPECT_GE(slow.seconds, 0.29);
  EXPECT_GE(line_post(sim, "/v2/bot/message/push", push, {}, true).seconds, 0.29);
  ASSERT_EQ(call("DELETE", sim.url("/_sim/faults")).status, 200);

  ASSERT_EQ(sim.faults({{"provider", "line"}, {"drop_count", 2}}).status, 200);
  Reply dropped = line_post(sim, "/v2/bot/message/push", push);
  EXPECT_EQ(dropped.rc, CURLE_GOT_NOTHING) << curl_easy_strerror(dropped.rc);
  Reply dropped_h2 = line_post(sim, "/v2/bot/message/push", push, {}, true);
  EXPECT_NE(dropped_h2.rc, CURLE_OK);
  EXPECT_EQ(dropped_h2.status, 0);
  EXPECT_EQ(line_post(sim, "/v2/bot/message/push", push).status, 200);  // the count is used up
  EXPECT_EQ(sim.requests("line").size(), 5u);                           // dropped requests were received, and recorded
}

TEST(SimulatorTest, FaultRateLimitsCarryRetryAfterWhereTheProviderSendsIt) {
  Sim sim(with_fcm(), false);
  std::string token = access_token(sim);
  ASSERT_EQ(sim.faults(Json::array({{{"provider", "fcm"}, {"rate_limit_count", 2}, {"retry_after", 7}},
                                    {{"provider", "line"}, {"rate_limit_count", 1}, {"retry_after", 7}}}))
                .status,
            200);
  for (int i = 0; i < 2; ++i) {
    Reply limited = fcm_send(sim, token, {{"token", "t1"}});
    EXPECT_EQ(limited.status, 429);
    EXPECT_EQ(limited.headers["retry-after"], "7");
    EXPECT_EQ(fcm_error_code(limited.json()), "QUOTA_EXCEEDED");
  }
  EXPECT_EQ(fcm_send(sim, token, {{"token", "t1"}}).status, 200);
  Reply line = line_post(sim, "/v2/bot/message/push", {{"to", kUserA}, {"messages", {text("x")}}});
  EXPECT_EQ(line.status, 429);
  EXPECT_EQ(line.headers.count("retry-after"), 0u);  // LINE never sends Retry-After (docs/providers.md)
  EXPECT_TRUE(line.json().contains("message"));
}

std::vector<long> statuses_with_share(uint64_t seed) {
  Sim sim(all_providers({"--seed", std::to_string(seed)}), false);
  EXPECT_EQ(sim.faults({{"provider", "line"}, {"error_share", 0.5}, {"error_status", 503}}).status, 200);
  std::vector<long> out;
  for (int i = 0; i < 40; ++i)
    out.push_back(line_post(sim, "/v2/bot/message/push", {{"to", kUserA}, {"messages", {text("x")}}}).status);
  return out;
}

TEST(SimulatorTest, FaultErrorShareIsSeededAndUsesTheProvidersBody) {
  std::vector<long> first = statuses_with_share(42);
  size_t errors = std::count(first.begin(), first.end(), 503);
  EXPECT_GE(errors, 8u);
  EXPECT_LE(errors, 32u);
  EXPECT_EQ(errors + std::count(first.begin(), first.end(), 200), first.size());
  EXPECT_EQ(statuses_with_share(42), first);  // same seed, same run

  Sim sim(with_fcm(), false);
  std::string token = access_token(sim);
  ASSERT_EQ(sim.faults({{"provider", "fcm"}, {"error_share", 1.0}, {"error_status", 500}}).status, 200);
  Reply internal = fcm_send(sim, token, {{"token", "t1"}});
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(fcm_error_code(internal.json()), "INTERNAL");
  ASSERT_EQ(call("DELETE", sim.url("/_sim/faults")).status, 200);
  // The original control form still works: the next N provider requests get the status.
  ASSERT_EQ(sim.faults({{"status", 503}, {"count", 1}}).status, 200);
  Reply legacy = twilio_send(sim, {{"To", "+15551230000"}, {"From", "+15005550006"}, {"Body", "x"}});
  EXPECT_EQ(legacy.status, 503);
  EXPECT_EQ(legacy.json()["code"], 20503);
  EXPECT_EQ(twilio_send(sim, {{"To", "+15551230000"}, {"From", "+15005550006"}, {"Body", "x"}}).status, 201);
  EXPECT_EQ(sim.faults({{"provider", "smtp"}}).status, 400);
  EXPECT_EQ(sim.faults({{"latency", 5}}).status, 400);
}

// ---- Recording ----------------------------------------------------------------------------------------------------

TEST(SimulatorTest, RecordsEveryProviderRequestExactly) {
  Sim sim(all_providers(), true);
  std::string body = R"({"to":")" + std::string(kUserA) + R"(","messages":[{"type":"text","text":"こんにちは 🌸"}]})";
  ASSERT_EQ(call("POST", sim.url("/v2/bot/message/push?trace=1"), body,
                 {std::string("Authorization: Bearer ") + kLineToken, "X-Custom-Header: Value"})
                .status,
            200);
  ASSERT_EQ(apns_send(sim, kDevice, apns_jwt()).status, 200);

  Json all = sim.requests();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]["provider"], "line");
  EXPECT_EQ(all[0]["method"], "POST");
  EXPECT_EQ(all[0]["path"], "/v2/bot/message/push");
  EXPECT_EQ(all[0]["query"], "trace=1");
  EXPECT_EQ(all[0]["headers"]["x-custom-header"], "Value");
  EXPECT_EQ(all[0]["body"], body);
  EXPECT_EQ(all[0]["http_version"], "1.1");
  EXPECT_GT(all[0]["time_ms"].get<int64_t>(), (now_s() - 60) * 1000);
  EXPECT_EQ(all[1]["provider"], "apns");
  EXPECT_EQ(all[1]["http_version"], "2");
  EXPECT_EQ(all[1]["headers"]["apns-topic"], kTopic);

  Json apns_only = sim.requests("apns");
  ASSERT_EQ(apns_only.size(), 1u);
  EXPECT_EQ(apns_only[0]["path"], "/3/device/" + kDevice);
  ASSERT_EQ(call("DELETE", sim.url("/_sim/requests")).status, 200);
  EXPECT_EQ(sim.requests().size(), 0u);
}

// A soak sends millions of requests: --record-limit keeps the latest N for GET /_sim/requests, and GET /_sim/stats
// still counts every request by provider, so a bench can check that each delivered message reached the provider.
TEST(SimulatorTest, ARecordLimitKeepsTheLatestRequestsAndTheStatsCountEveryOne) {
  Sim sim(all_providers({"--record-limit", "2"}), false);
  for (const char* body : {"one", "two", "three"})
    ASSERT_EQ(twilio_send(sim, {{"To", "+819012345678"}, {"From", "+15005550006"}, {"Body", body}}).status, 201);
  ASSERT_EQ(call("GET", sim.url("/nowhere")).status, 404);

  Json kept = sim.requests();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_NE(kept[0]["body"].get<std::string>().find("Body=three"), std::string::npos) << kept[0];
  EXPECT_EQ(kept[1]["path"], "/nowhere");
  Reply stats = call("GET", sim.url("/_sim/stats"));
  ASSERT_EQ(stats.status, 200) << stats.body;
  EXPECT_EQ(stats.json(), (Json{{"received", {{"twilio", 3}, {"none", 1}}}, {"recorded", 2}}));

  ASSERT_EQ(call("DELETE", sim.url("/_sim/requests")).status, 200);
  EXPECT_EQ(call("GET", sim.url("/_sim/stats")).json(), (Json{{"received", Json::object()}, {"recorded", 0}}));
  EXPECT_EQ(call("POST", sim.url("/_sim/stats")).status, 405);
}

// ---- Signed webhooks ----------------------------------------------------------------------------------------------

TEST(SimulatorTest, SendsSignedLineAndTwilioWebhooks) {
  Receiver receiver;
  Sim sim(all_providers(), false);
  Json line_event = {{"type", "message"},
                     {"source", {{"type", "user"}, {"userId", kUserA}}},
                     {"message", {{"type", "text"}, {"id", "1"}, {"text", "ストップ"}}}};
  Reply sent =
      call("POST", sim.url("/_sim/webhooks/line"),
           Json{{"url", receiver.url("/webhooks/line")}, {"channel_secret", "line-secret"}, {"events", {line_event}}}
               .dump());
  ASSERT_EQ(sent.status, 200) << sent.body;
  EXPECT_EQ(sent.json()["status"], 200);
  EXPECT_EQ(sent.json()["body"], "<Response></Response>");
  auto got = receiver.wait_for(1);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->path, "/webhooks/line");
  std::string expected = crypto::base64_encode(crypto::hmac_sha256("line-secret", got->body).value());
  EXPECT_TRUE(crypto::constant_time_equal(got->header("x-line-signature"), expected));
  Json delivered = Json::parse(got->body);
  EXPECT_TRUE(delivered.contains("destination"));
  EXPECT_EQ(delivered["events"][0]["message"]["text"], "ストップ");
  EXPECT_FALSE(delivered["events"][0].value("webhookEventId", "").empty());
  EXPECT_EQ(sent.json()["sent"]["body"], got->body);

  receiver.status_ = 403;  // the receiver's answer is reported as it was
  std::string url = receiver.url("/webhooks/twilio?channel=sms");
  Json params = {
      {"From", "+819012345678"}, {"To", "+15005550006"}, {"Body", "STOP"}, {"MessageSid", "SM" + std::string(32, '1')}};
  Reply twilio = call("POST", sim.url("/_sim/webhooks/twilio"),
                      Json{{"url", url}, {"auth_token", "inbound-token"}, {"params", params}}.dump());
  ASSERT_EQ(twilio.status, 200) << twilio.body;
  EXPECT_EQ(twilio.json()["status"], 403);
  auto form_post = receiver.wait_for(2);
  ASSERT_TRUE(form_post);
  EXPECT_EQ(std::string(form_post->header("content-type")), "application/x-www-form-urlencoded");
  auto fields = parse_form(form_post->body);
  EXPECT_EQ(fields["Body"], "STOP");
  EXPECT_EQ(std::string(form_post->header("x-twilio-signature")), twilio_signature("inbound-token", url, fields));

  // A receiver that is not there: 502 with the reason.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);  // bound, never listened: connections are refused
  Reply nobody = call("POST", sim.url("/_sim/webhooks/line"),
                      Json{{"url", "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/"},
                           {"channel_secret", "s"},
                           {"events", Json::array()}}
                          .dump());
  EXPECT_EQ(nobody.status, 502);
}

}  // namespace
}  // namespace tayori::testing
