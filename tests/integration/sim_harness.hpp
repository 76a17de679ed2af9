// Shared by the integration tests that run the provider simulator (tools/simulator, tayori-sim): key
// material generated at test time with `openssl` (never committed), an HTTP/1.1 + HTTP/2-over-TLS client,
// the simulator process, and a real SMTP server (Debian's python3-aiosmtpd, tests/support/smtp_server.hpp).
#pragma once

#include <sys/wait.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <regex>
#include <string>
#include <vector>

#include "harness.hpp"

#include "sim_process.hpp"
#include "smtp_server.hpp"

namespace tayori::testing {

// ---- Key material, generated once per process and only when a test needs it ---------------------------------

inline const TempDir& key_dir() {
  static TempDir dir;
  return dir;
}

inline void openssl(const std::string& args) {
  std::string cmd = "cd '" + key_dir().path().string() + "' && openssl " + args + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl failed: " + cmd);
}

struct KeyPair {
  std::string private_pem, public_path;
};

// The key `file` in key_dir(), made by `openssl genpkey <genpkey_args>` on first use, with its public half
// beside it (`stem`.pub).
inline const KeyPair& key_pair(const std::string& stem, const std::string& file, const std::string& genpkey_args) {
  static std::mutex mu;
  static std::map<std::string, KeyPair> keys;
  std::lock_guard lock(mu);
  if (!keys.count(file)) {
    openssl("genpkey " + genpkey_args + " -out " + file);
    openssl("pkey -in " + file + " -pubout -out " + stem + ".pub");
    keys[file] = {read_file(key_dir().file(file)), key_dir().file(stem + ".pub")};
  }
  return keys[file];
}

// RSA 2048 service-account keys: `name` signs, its public half is what the simulator trusts.
inline const KeyPair& rsa_key(const std::string& name) {
  return key_pair(name, name + ".key", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
}

// EC P-256 keys in PKCS#8, like an Apple .p8.
inline const KeyPair& ec_key(const std::string& name) {
  return key_pair(name, name + ".p8", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
}

// A CA and a server certificate for IP 127.0.0.1 that it signed. Returns the CA file for libcurl.
inline const std::string& tls_files() {
  static std::once_flag once;
  static std::string ca;
  std::call_once(once, [] {
    openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 "
            "-subj '/CN=tayori-sim test CA'");
    openssl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr "
            "-subj '/CN=127.0.0.1'");
    write_file(key_dir().file("san.cnf"), "subjectAltName=IP:127.0.0.1\n");
    openssl("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
            "-extfile san.cnf");
    ca = key_dir().file("ca.pem");
  });
  return ca;
}

// ---- The provider accounts the simulator is started with --------------------------------------------------------

// Credentials and ids of the test accounts: the simulator is told them by flag, the gateway's channels by config.
inline constexpr const char* kLineToken = "line-channel-token";
inline constexpr const char* kLineUser = "U0123456789abcdef0123456789abcdef";
inline constexpr const char* kTwilioSid = "AC0123456789abcdef0123456789abcdef";
inline constexpr const char* kTwilioToken = "twilio-auth-token";
inline constexpr const char* kApnsKeyId = "ABC123DEFG";
inline constexpr const char* kApnsTeam = "TEAM123456";
inline constexpr const char* kTopic = "jp.example.tayori";
inline constexpr const char* kClientEmail = "sender@tayori-test.iam.gserviceaccount.com";  // the FCM service account

// The simulator's flags for all four providers with the accounts above, then `extra`. The RSA key takes about a
// second to generate, so only tests that talk to FCM ask for it (`fcm`); ctest runs each test in its own process.
inline std::vector<std::string> all_providers(std::vector<std::string> extra = {}, bool fcm = false) {
  std::vector<std::string> args = {"--line-token",
                                   kLineToken,
                                   "--apns-public-key",
                                   ec_key("apns").public_path,
                                   "--apns-key-id",
                                   kApnsKeyId,
                                   "--apns-team-id",
                                   kApnsTeam,
                                   "--apns-topic",
                                   kTopic,
                                   "--twilio-account-sid",
                                   kTwilioSid,
                                   "--twilio-auth-token",
                                   kTwilioToken,
                                   "--twilio-callback-delay-ms",
                                   "0"};
  if (fcm)
    args.insert(args.end(), {"--fcm-public-key", rsa_key("fcm").public_path, "--fcm-client-email", kClientEmail});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

inline std::vector<std::string> with_fcm(std::vector<std::string> extra = {}) {
  return all_providers(std::move(extra), true);
}

// ---- HTTP over libcurl: HTTP/1.1, or HTTP/2 over TLS trusting the test CA ---------------------------------

struct Reply {
  CURLcode rc = CURLE_OK;
  long status = 0;
  long version = 0;  // CURL_HTTP_VERSION_1_1 / CURL_HTTP_VERSION_2_0
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  double seconds = 0;
  Json json() const { return Json::parse(body, nullptr, false); }
};

inline Reply call(const std::string& method, const std::string& url, const std::string& body = "",
           const std::vector<std::string>& headers = {}, bool h2 = false) {
  Reply r;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  if (h2) {
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(c, CURLOPT_CAINFO, tls_files().c_str());
  } else {
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  }
  curl_slist* list = curl_slist_append(nullptr, "Expect:");
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  collect_response(c, r.body, r.headers);
  r.rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &r.version);
  curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r.seconds);
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

// ---- The simulator process --------------------------------------------------------------------------------------

// tests/support/sim_process.hpp's SimProcess with all providers' accounts, the test CA's server certificate for
// its HTTP/2 listener, and calls to its control endpoints.
class Sim : public test::SimProcess {
 public:
  // Starts tayori-sim with `args`, an HTTP/2-over-TLS listener too when `h2`. Throws when it does not start.
  Sim(const std::vector<std::string>& args, bool h2) : test::SimProcess(args, options(h2)) {}

  std::string http_base() const { return url(); }

  Reply faults(const Json& doc) { return call("POST", url("/_sim/faults"), doc.dump()); }
  Json requests(const std::string& provider = "") {
    return call("GET", url("/_sim/requests" + (provider.empty() ? "" : "?provider=" + provider))).json();
  }

 private:
  static Options options(bool h2) {
    Options o;
    if (h2) {
      tls_files();
      o.tls_cert = key_dir().file("server.pem");
      o.tls_key = key_dir().file("server.key");
    }
    o.stderr_path = key_dir().file("sim-" + std::to_string(::getpid()) + "-" + std::to_string(++count_) + ".err");
    return o;
  }

  static inline int count_ = 0;
};

// ---- A real SMTP server ---------------------------------------------------------------------------------------

// tests/support/smtp_server.hpp's server, offering STARTTLS with the test CA's server certificate.
inline test::SmtpServer::Options smtp_with_starttls(const std::string& maildir) {
  tls_files();
  return {maildir, {"--starttls", key_dir().file("server.pem"), key_dir().file("server.key")}};
}

}  // namespace tayori::testing
