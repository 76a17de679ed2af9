// tayori-sim — a provider simulator for tests and demos. It speaks FCM HTTP v1 (with Google's OAuth2 token
// endpoint), APNs, the LINE Messaging API and Twilio Programmable Messaging well enough that a channel plugin
// tested against it works against the real provider by changing only its base URL and credentials
// (docs/providers.md lists the wire facts). It records every request, injects faults, and sends signed webhooks;
// sim_core.hpp documents the control API.
//
//   tayori-sim --listen 127.0.0.1:0 --listen-h2 127.0.0.1:0 --tls-cert cert.pem --tls-key key.pem
//              --fcm-public-key sa.pub.pem --apns-public-key apns.pub.pem --apns-key-id KEY --apns-team-id TEAM
//
// On start it prints one line per listener, then serves until SIGINT/SIGTERM:
//   tayori-sim: listening on http://127.0.0.1:PORT
//   tayori-sim: listening on https://127.0.0.1:PORT (h2)
#include <curl/curl.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/http_server.hpp"
#include "sim_core.hpp"
#include "sim_h2.hpp"
#include "sim_providers.hpp"
#include "sim_util.hpp"

namespace {

using namespace tayori::sim;

constexpr const char* kUsage = R"(usage: tayori-sim [options]

Listeners (every provider is served on both; APNs only over HTTP/2):
  --listen HOST:PORT              HTTP/1.1 listener (default 127.0.0.1:0; port 0 picks a free port)
  --listen-h2 HOST:PORT           HTTP/2 over TLS listener (ALPN "h2"); needs --tls-cert and --tls-key
  --tls-cert FILE                 PEM certificate chain for --listen-h2
  --tls-key FILE                  PEM private key for --listen-h2
  --threads N                     HTTP/1.1 server threads (default 2)
  --record-limit N                GET /_sim/requests keeps the latest N requests (default: all; 0: none);
                                  GET /_sim/stats counts every one

LINE (POST /v2/bot/message/push, /v2/bot/message/multicast):
  --line-token TOKEN              accepted channel access token (default sim-line-token)
  --line-channel-secret SECRET    default secret for POST /_sim/webhooks/line
  --line-destination USERID       "destination" of sent webhooks (default U000...0)

FCM HTTP v1 (POST /token, POST /v1/projects/{project}/messages:send):
  --fcm-public-key FILE           PEM public key of the service account (verifies the RS256 assertion)
  --fcm-client-email EMAIL        required assertion iss (default: any)
  --fcm-project ID                the only project accepted (default: any)
  --fcm-token-audience URL        required assertion aud (default: this simulator's own /token URL)
  --fcm-token-ttl SECONDS         access token lifetime (default 3600)

APNs (POST /3/device/{token}, HTTP/2 only):
  --apns-public-key FILE          PEM public key of the .p8 signing key (verifies the ES256 provider token)
  --apns-key-id ID                required JWT header kid
  --apns-team-id ID               required JWT claim iss
  --apns-topic TOPIC              accepted bundle id (repeatable; default: any well-formed topic)
  --apns-max-token-updates N      new provider tokens accepted per 20 minutes (default 3)

Twilio (POST /2010-04-01/Accounts/{AccountSid}/Messages.json):
  --twilio-account-sid SID        (default AC00000000000000000000000000000000)
  --twilio-auth-token TOKEN       (default sim-twilio-token)
  --twilio-from NUMBER            an owned sender (repeatable; default: any valid From)
  --twilio-callback-delay-ms N    delay before the StatusCallback POST (default 100)

Faults (also at run time: POST /_sim/faults, see sim_faults.hpp):
  --seed N                        seed of the PRNG that draws fault shares (default 1)
  --faults JSON                   a fault document, as POST /_sim/faults takes it (repeatable)
  --fault-latency-ms N            added latency, every provider
  --fault-error-share X           share (0..1) of requests answered with a 5xx, every provider
  --fault-error-status N          the status for --fault-error-share (default 503)
  --fault-drop-share X            share (0..1) of requests left unanswered (HTTP/2: stream reset)
  --fault-unregistered CONTACT    a token/user id/phone number that gets the dead-contact answer (repeatable)

  --help                          this text

Control API: GET|DELETE /_sim/requests[?provider=P], GET /_sim/stats, GET|POST|DELETE /_sim/faults,
             POST /_sim/webhooks/line, POST /_sim/webhooks/twilio
)";

int usage_error(const std::string& why) {
  std::fprintf(stderr, "tayori-sim: %s\n%s", why.c_str(), kUsage);
  return 2;
}

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

std::optional<HostPort> parse_host_port(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  auto port = parse_int(s.substr(colon + 1));
  if (!port || *port < 0 || *port > 65535) return std::nullopt;
  std::string host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return HostPort{host, static_cast<uint16_t>(*port)};
}

std::string url_host(const std::string& host) { return host.find(':') != std::string::npos ? "[" + host + "]" : host; }

// The project's Beast server speaks api::HttpRequest; this adapter turns it into the simulator's request and
// back. A dropped answer is status 0, which the server takes as "close the connection without a response"
// (a responder destroyed without being called would get a 500 from the server instead).
class Http1Adapter final : public tayori::api::Handler {
 public:
  explicit Http1Adapter(Simulator& sim) : sim_(sim) {}

  void handle(tayori::api::HttpRequest request, tayori::api::Responder respond) override {
    SimRequest r;
    r.method = std::move(request.method);
    r.path = std::move(request.path);
    r.query = std::move(request.query);
    r.headers = std::move(request.headers);
    r.body = std::move(request.body);
    r.http_version = "1.1";
    r.scheme = "http";
    r.authority = std::string(r.header("host"));
    sim_.dispatch(std::move(r), [respond = std::move(respond)](std::optional<SimResponse> answer) mutable {
      tayori::api::Responder responder = std::move(respond);
      tayori::api::HttpResponse out;
      if (!answer) {
        out.status = 0;  // no response: the connection closes
        return responder(std::move(out));
      }
      out.status = answer->status;
      out.content_type = answer->content_type;
      out.headers = std::move(answer->headers);
      out.body = std::move(answer->body);
      out.close = answer->status == 505;  // the APNs refusal: this client is on the wrong protocol
      responder(std::move(out));
    });
  }

 private:
  Simulator& sim_;
};

std::string read_key_file(const std::string& flag, const std::string& path) {
  auto text = read_text_file(path);
  if (!text) throw std::runtime_error(flag + ": cannot read " + path);
  if (text->find("-----BEGIN PUBLIC KEY-----") == std::string::npos &&
      text->find("-----BEGIN RSA PUBLIC KEY-----") == std::string::npos)
    throw std::runtime_error(flag + ": " + path + " is not a PEM public key (\"-----BEGIN PUBLIC KEY-----\")");
  return *text;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0", listen_h2, tls_cert, tls_key;
  int threads = 2;
  int64_t record_limit = Simulator::kRecordAll;
  uint64_t seed = 1;
  LineConfig line;
  FcmConfig fcm;
  ApnsConfig apns;
  TwilioConfig twilio;
  std::vector<nlohmann::json> fault_docs;
  nlohmann::json start_faults = nlohmann::json::object();

  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      }
      if (a.rfind("--", 0) != 0) return usage_error("unexpected argument " + a);
      if (i + 1 >= argc) return usage_error(a + " needs a value");
      std::string v = argv[++i];
      auto number = [&](int64_t lo, int64_t hi) {
        auto n = parse_int(v);
        if (!n || *n < lo || *n > hi)
          throw std::invalid_argument(a + " needs an integer between " + std::to_string(lo) + " and " +
                                      std::to_string(hi));
        return *n;
      };
      auto share = [&] {
        char* end = nullptr;
        double d = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !(d >= 0.0 && d <= 1.0))
          throw std::invalid_argument(a + " needs a number between 0 and 1");
        return d;
      };
      if (a == "--listen")
        listen = v;
      else if (a == "--listen-h2")
        listen_h2 = v;
      else if (a == "--tls-cert")
        tls_cert = v;
      else if (a == "--tls-key")
        tls_key = v;
      else if (a == "--threads")
        threads = static_cast<int>(number(1, 64));
      else if (a == "--record-limit")
        record_limit = number(0, INT64_MAX);
      else if (a == "--seed")
        seed = static_cast<uint64_t>(number(0, INT64_MAX));
      else if (a == "--line-token")
        line.channel_token = v;
      else if (a == "--line-channel-secret")
        line.channel_secret = v;
      else if (a == "--line-destination")
        line.destination = v;
      else if (a == "--fcm-public-key")
        fcm.public_key_pem = read_key_file(a, v);
      else if (a == "--fcm-client-email")
        fcm.client_email = v;
      else if (a == "--fcm-project")
        fcm.project = v;
      else if (a == "--fcm-token-audience")
        fcm.token_audience = v;
      else if (a == "--fcm-token-ttl")
        fcm.token_ttl_s = number(1, 86'400);
      else if (a == "--apns-public-key")
        apns.public_key_pem = read_key_file(a, v);
      else if (a == "--apns-key-id")
        apns.key_id = v;
      else if (a == "--apns-team-id")
        apns.team_id = v;
      else if (a == "--apns-topic")
        apns.topics.push_back(v);
      else if (a == "--apns-max-token-updates")
        apns.max_token_updates = static_cast<int>(number(1, 1'000'000));
      else if (a == "--twilio-account-sid")
        twilio.account_sid = v;
      else if (a == "--twilio-auth-token")
        twilio.auth_token = v;
      else if (a == "--twilio-from")
        twilio.from_numbers.push_back(v);
      else if (a == "--twilio-callback-delay-ms")
        twilio.callback_delay_ms = number(0, 600'000);
      else if (a == "--faults") {
        auto doc = nlohmann::json::parse(v, nullptr, false);
        if (doc.is_discarded()) return usage_error("--faults needs a JSON document");
        fault_docs.push_back(doc);
      } else if (a == "--fault-latency-ms")
        start_faults["latency_ms"] = number(0, 600'000);
      else if (a == "--fault-error-share")
        start_faults["error_share"] = share();
      else if (a == "--fault-error-status")
        start_faults["error_status"] = number(500, 599);
      else if (a == "--fault-drop-share")
        start_faults["drop_share"] = share();
      else if (a == "--fault-unregistered")
        start_faults["unregistered"].push_back(v);
      else
        return usage_error("unknown option " + a);
    }
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }

  auto http = parse_host_port(listen);
  if (!http) return usage_error("--listen needs HOST:PORT");
  std::optional<HostPort> h2;
  if (!listen_h2.empty()) {
    h2 = parse_host_port(listen_h2);
    if (!h2) return usage_error("--listen-h2 needs HOST:PORT");
    if (tls_cert.empty() || tls_key.empty()) return usage_error("--listen-h2 needs --tls-cert and --tls-key");
  }
  if (!apns.public_key_pem.empty() && (apns.key_id.empty() || apns.team_id.empty()))
    return usage_error("--apns-public-key needs --apns-key-id and --apns-team-id");

  // Block the stop signals before any thread starts, so that only sigwait below receives them. SIGPIPE is
  // ignored: a peer that vanishes mid-write must cost a connection, not the process (TLS writes cannot pass
  // MSG_NOSIGNAL).
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  std::vector<std::unique_ptr<Provider>> providers;
  providers.push_back(make_line(line));
  for (auto& p : make_fcm(fcm)) providers.push_back(std::move(p));
  providers.push_back(make_apns(apns));
  providers.push_back(make_twilio(twilio));

  // Destruction order matters: the scheduler's pending tasks hold listener connections, so it stops first.
  int status = 0;
  {
    Scheduler scheduler(8);
    Simulator sim(std::move(providers), seed, scheduler, record_limit);
    if (!start_faults.empty()) fault_docs.insert(fault_docs.begin(), start_faults);
    for (const auto& doc : fault_docs)
      if (std::string err = sim.apply_faults(doc); !err.empty()) return usage_error("fault: " + err);

    Http1Adapter adapter(sim);
    tayori::api::HttpServer server(adapter, tayori::api::ServerLimits{}, threads);
    std::unique_ptr<H2Listener> h2_listener;
    try {
      uint16_t port = server.start(http->host, http->port);
      std::printf("tayori-sim: listening on http://%s:%u\n", url_host(http->host).c_str(), port);
      if (h2) {
        h2_listener = std::make_unique<H2Listener>(
            [&sim](SimRequest r, Completion done) { sim.dispatch(std::move(r), std::move(done)); }, tls_cert, tls_key);
        uint16_t p2 = h2_listener->start(h2->host, h2->port);
        std::printf("tayori-sim: listening on https://%s:%u (h2)\n", url_host(h2->host).c_str(), p2);
      }
      std::fflush(stdout);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tayori-sim: cannot start: %s\n", e.what());
      status = 1;
    }
    if (status == 0) {
      int sig = 0;
      sigwait(&stop, &sig);
    }
    scheduler.stop();
    if (h2_listener) h2_listener->stop();
    server.stop(200);  // idle keep-alive connections count as active: do not wait long for them
  }
  curl_global_cleanup();
  return status;
}
