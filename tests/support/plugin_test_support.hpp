// What the channel plugin tests share (fcm, apns, twilio, line, line_multicast, email, host_services,
// channel_batch): key material made at test time in-process by OpenSSL (never committed), a clock moved by
// hand, a one-channel config loaded through the real host, a scripted local provider on api::HttpServer,
// and deliveries handed to a channel from many threads at once. The scripted provider is for the
// integration tier only (check_no_servers.sh keeps it out of tests/unit).
#ifndef TAYORI_TESTS_SUPPORT_PLUGIN_TEST_SUPPORT_HPP
#define TAYORI_TESTS_SUPPORT_PLUGIN_TEST_SUPPORT_HPP

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/http_server.hpp"
#include "config/config.hpp"
#include "plugin/channel.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::plugin::testing {

// ---- Key material and time ---------------------------------------------------------------------------------

struct KeyPair {
  std::string private_pem, public_pem;  // PKCS#8 and SubjectPublicKeyInfo PEM; empty if OpenSSL failed
};

// `key`'s two halves as PEM text, written by OpenSSL to memory; takes `key` over (null gives an empty pair).
inline KeyPair pem_key_pair(EVP_PKEY* key) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> owned(key, &EVP_PKEY_free);
  auto pem = [&](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    if (owned == nullptr || bio == nullptr || write(bio.get(), owned.get()) != 1) return std::string();
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
  };
  KeyPair k;
  k.private_pem = pem([](BIO* b, EVP_PKEY* p) {
    return PEM_write_bio_PrivateKey(b, p, nullptr, nullptr, 0, nullptr, nullptr);  // PKCS#8
  });
  k.public_pem = pem([](BIO* b, EVP_PKEY* p) { return PEM_write_bio_PUBKEY(b, p); });
  return k;
}

// An RSA 2048 key, as Google issues service-account keys; made in-process once per test binary.
inline const KeyPair& rsa_key() {
  static const KeyPair key = pem_key_pair(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  return key;
}

// An EC P-256 key, as Apple's .p8 token-signing keys are; made in-process once per test binary.
inline const KeyPair& ec_key() {
  static const KeyPair key = pem_key_pair(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  return key;
}

// An IMF-fixdate (RFC 9110 §5.6.7), as a Retry-After header carries it.
inline std::string http_date(int64_t unix_ms) {
  std::time_t t = unix_ms / 1000;
  std::tm g{};
  ::gmtime_r(&t, &g);
  char text[64];
  std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &g);
  return text;
}

// A clock the test moves by hand.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'780'000'000'000) : now(start_ms) {}
  int64_t now_ms() const override { return now.load(); }
  std::atomic<int64_t> now;
};

// ---- A one-channel config through the real host ------------------------------------------------------------

// The YAML of a config with one channel: plugin `plugin` as channel `name`, found in `plugin_dir`.
// `settings` are the lines under settings: (indented six), `channel_extra` lines of the channel itself
// (indented four: batch_window), `preamble` top-level lines before api_keys (a server: block).
// (Every member has an initializer, so designated initializers may leave any out without a warning.)
struct OneChannel {
  std::string name = "";
  std::string plugin = "";
  std::string settings = "";
  std::string channel_extra = "";
  std::string preamble = "";
  std::string plugin_dir = TAYORI_PLUGIN_DIR;

  std::string yaml() const {
    return preamble + "api_keys: [{name: t, key_env: K}]\nplugin_dirs: [" + plugin_dir +
           "]\n"
           "channels:\n  - name: " +
           name + "\n    plugin: " + plugin + "\n" + channel_extra + "    settings:\n" + settings;
  }
};

// The variables a test config's *_env settings name; any other one reads "k" (the API key's).
using Env = std::map<std::string, std::string>;

// Loads `yaml` as t.yaml in `dir` (relative paths in it resolve there); a config that does not load fails
// the test.
inline config::LoadResult load_config(const std::string& yaml, const std::string& dir = "/tmp", Env env = {}) {
  auto loaded = config::load_string(yaml, "t.yaml", dir, [env = std::move(env)](const std::string& name) {
    auto it = env.find(name);
    return it == env.end() ? std::string("k") : it->second;
  });
  EXPECT_TRUE(loaded.config) << (loaded.errors.empty() ? "" : loaded.errors[0].to_string());
  return loaded;
}

// The channels of `yaml` as the gateway builds them at start (build_registry); when the config itself does
// not load, no registry and the config's errors.
inline RegistryResult registry_for(const std::string& yaml, const Clock& clock, transport::OutboundTransport* transport,
                                   const std::string& dir = "/tmp", Env env = {}) {
  auto loaded = load_config(yaml, dir, std::move(env));
  if (!loaded.config) return {{}, loaded.errors};
  return build_registry(*loaded.config, clock, transport);
}

// ---- A scripted provider -----------------------------------------------------------------------------------

// A provider on a local api::HttpServer (127.0.0.1, port 0) that records every request and answers it from
// a table: the answer scripted for its path, else the default one (200, empty). A rule, when set, sees
// each request with its scripted answer and returns the real one (check a token, echo an id, keep retry
// keys). With hold(n), answers wait until n requests are in, so that many are in flight together. A routed
// path (a token endpoint) is answered at once by its own function, and neither recorded nor held.
// Rules and routes run under the provider's lock; a test changes what they read while holding lock().
class ScriptedProvider final : public api::Handler {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  using Rule = std::function<api::HttpResponse(const api::HttpRequest&, api::HttpResponse scripted)>;
  using Route = std::function<api::HttpResponse(const api::HttpRequest&)>;

  explicit ScriptedProvider(int threads = 2) : server_(*this, api::ServerLimits{}, threads) {
    port_ = server_.start("127.0.0.1", 0);
  }
  ~ScriptedProvider() override { stop(); }
  ScriptedProvider(const ScriptedProvider&) = delete;
  ScriptedProvider& operator=(const ScriptedProvider&) = delete;

  void handle(api::HttpRequest request, api::Responder respond) override {
    std::lock_guard lock(mutex_);
    if (auto route = routes_.find(request.path); route != routes_.end()) {
      respond(route->second(request));
      return;
    }
    requests_.push_back(request);
    arrived_.notify_all();
    held_.emplace_back(std::move(request), std::move(respond));
    if (static_cast<int>(held_.size()) < hold_) return;
    for (auto& [held, respond_to] : held_) respond_to(answer(held));
    held_.clear();
  }

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void stop() { server_.stop(0); }

  // The default answer.
  void script(int status, std::string body, Headers headers = {}) {
    std::lock_guard lock(mutex_);
    default_ = response(status, std::move(body), std::move(headers));
  }
  // The answer to requests for `path`.
  void script(const std::string& path, int status, std::string body, Headers headers = {}) {
    std::lock_guard lock(mutex_);
    by_path_[path] = response(status, std::move(body), std::move(headers));
  }
  void rule(Rule rule) {
    std::lock_guard lock(mutex_);
    rule_ = std::move(rule);
  }
  void route(const std::string& path, Route route) {
    std::lock_guard lock(mutex_);
    routes_[path] = std::move(route);
  }
  void hold(int n) {
    std::lock_guard lock(mutex_);
    hold_ = n;
  }
  std::unique_lock<std::mutex> lock() { return std::unique_lock(mutex_); }

  // The requests so far (those for `path` only, when given), oldest first.
  std::vector<api::HttpRequest> requests(const std::string& path = "") {
    std::lock_guard lock(mutex_);
    std::vector<api::HttpRequest> out;
    for (const auto& r : requests_)
      if (path.empty() || r.path == path) out.push_back(r);
    return out;
  }
  // The requests so far, once there are at least `n` of them; what there is after five seconds otherwise.
  std::vector<api::HttpRequest> wait_for_requests(size_t n) {
    std::unique_lock lock(mutex_);
    arrived_.wait_for(lock, std::chrono::seconds(5), [&] { return requests_.size() >= n; });
    return requests_;
  }
  // The requests so far, forgotten now.
  std::vector<api::HttpRequest> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(requests_, {});
  }

 private:
  static api::HttpResponse response(int status, std::string body, Headers headers) {
    api::HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return r;
  }
  api::HttpResponse answer(const api::HttpRequest& request) const {
    auto scripted = by_path_.find(request.path);
    api::HttpResponse r = scripted != by_path_.end() ? scripted->second : default_;
    return rule_ ? rule_(request, std::move(r)) : r;
  }

  std::mutex mutex_;
  std::condition_variable arrived_;  // a request was recorded
  api::HttpResponse default_;
  std::map<std::string, api::HttpResponse> by_path_;
  std::map<std::string, Route> routes_;
  Rule rule_;
  int hold_ = 0;
  std::vector<std::pair<api::HttpRequest, api::Responder>> held_;
  std::vector<api::HttpRequest> requests_;
  uint16_t port_ = 0;
  api::HttpServer server_;  // last: stopped and destroyed before what handle() uses
};

// ---- Deliveries and answer tables -------------------------------------------------------------------------------

// A dispatcher-style delivery id (32 hex digits): plugins use it as it is where they derive ids from it.
inline constexpr const char* kDeliveryId = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

// Message "m-1" to `contact` with `content`.
inline DeliveryRequest delivery(std::string contact, std::vector<std::pair<std::string, std::string>> content,
                                std::string delivery_id = kDeliveryId) {
  DeliveryRequest d;
  d.message_id = "m-1";
  d.delivery_id = std::move(delivery_id);
  d.contact = std::move(contact);
  d.content = std::move(content);
  return d;
}

// A delivery of `text` to `contact`, its ids "m-CONTACT" and "d-CONTACT": deliveries to different contacts
// are different messages, as when a host batches them.
inline DeliveryRequest delivery_to(const std::string& contact, const std::string& text) {
  DeliveryRequest d = delivery(contact, {{"text", text}}, "d-" + contact);
  d.message_id = "m-" + contact;
  return d;
}

// A notification for the push device `token`, with the title and body the push plugins' tests find again in
// what the plugin sent.
inline DeliveryRequest push_delivery(std::string token, std::string delivery_id = kDeliveryId) {
  return delivery(std::move(token), {{"title", "ご注文の発送"}, {"body", "荷物を発送しました"}},
                  std::move(delivery_id));
}

// One row of a plugin's provider answer -> outcome table (the classification tests every plugin has).
struct AnswerCase {
  int status;
  std::string body;
  ScriptedProvider::Headers headers;
  OutcomeKind kind;
  std::string reason;
  bool deactivate = false;
  int64_t retry_after_ms = 0;
  std::string provider_id = "";
};

// For each row: `provider` answers as the row says, `channel` delivers `d`, and the outcome is the row's.
inline void expect_outcomes(ScriptedProvider& provider, Channel& channel, const DeliveryRequest& d,
                            std::span<const AnswerCase> cases) {
  for (const AnswerCase& c : cases) {
    provider.script(c.status, c.body, c.headers);
    DeliveryOutcome o = channel.deliver(d);
    SCOPED_TRACE(std::to_string(c.status) + " " + c.body);
    EXPECT_EQ(o.kind, c.kind) << o.reason;
    EXPECT_EQ(o.reason, c.reason);
    EXPECT_EQ(o.deactivate_contact, c.deactivate);
    EXPECT_EQ(o.retry_after_ms, c.retry_after_ms);
    EXPECT_EQ(o.provider_message_id, c.provider_id);
  }
}

// ---- Two-way: response options and inbound calls -------------------------------------------------------------

// The three options of twoway.md's example, with refs and urls as the host mints them (opaque to plugins).
inline std::vector<ResponseOption> sample_responses() {
  return {{"interested", "気になる", "r.interested-ref", "https://gw.example/r/r.interested-ref"},
          {"later", "あとで", "r.later-ref", "https://gw.example/r/r.later-ref"},
          {"not_interested", "興味なし", "r.not-interested-ref", "https://gw.example/r/r.not-interested-ref"}};
}

// A provider's webhook call as the gateway hands it to Channel::inbound (header names lower-cased).
inline InboundRequest inbound_request(std::string url, std::vector<std::pair<std::string, std::string>> headers,
                                      std::string body) {
  InboundRequest r;
  r.method = "POST";
  r.url = std::move(url);
  if (size_t q = r.url.find('?'); q != std::string::npos) r.query = r.url.substr(q + 1);
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

// A call a provider simulator made to a ScriptedProvider at `base_url`, as the gateway would hand it on: the
// URL it called (what Twilio signs), its headers and raw body.
inline InboundRequest as_inbound(const api::HttpRequest& r, const std::string& base_url) {
  InboundRequest in = inbound_request(base_url + r.target, r.headers, r.body);
  in.method = r.method;
  return in;
}

// The reports `channel` makes of `call`, a webhook a simulator sent the ScriptedProvider at `base_url`;
// the inbound call itself must succeed.
inline std::vector<ProviderReport> inbound_reports(Channel& channel, const api::HttpRequest& call,
                                                   const std::string& base_url) {
  std::vector<ProviderReport> events;
  InboundAnswer answer;
  EXPECT_TRUE(channel.inbound(as_inbound(call, base_url), events, answer)) << answer.status << " " << answer.body;
  return events;
}

// The requests `provider` has received, once there are `n` (a simulator's webhook may arrive after its
// control call answered); what there is after five seconds otherwise.
inline std::vector<api::HttpRequest> await_requests(ScriptedProvider& provider, size_t n) {
  return provider.wait_for_requests(n);
}

// One provider report on one line, naming only what is set, so a table row says exactly what it expects:
// "opt_out id=e-1 contact=U… deactivate".
inline std::string describe(const ProviderReport& e) {
  static const char* kinds[] = {"response", "reply", "opt_in", "opt_out", "delivered", "failed"};
  std::string out = kinds[static_cast<int>(e.kind)];
  auto add = [&out](const char* name, const std::string& v) {
    if (!v.empty()) out += std::string(" ") + name + "=" + v;
  };
  add("id", e.report_id);
  add("contact", e.contact);
  add("ref", e.ref);
  add("option", e.option);
  add("text", e.text);
  add("message", e.provider_message_id);
  add("reason", e.reason);
  if (e.deactivate_contact) out += " deactivate";
  if (e.reactivate_contact) out += " reactivate";
  if (e.at_ms != 0) out += " at=" + std::to_string(e.at_ms);
  return out;
}

// One row of an inbound table: a call, the answer it gets and the events it becomes (describe()).
struct InboundCase {
  std::string name;
  InboundRequest request;
  int status;
  std::vector<std::string> events;
  std::string content_type = "";  // checked when set
  std::string body = "";          // checked when set
};

inline void expect_inbound(Channel& channel, std::span<const InboundCase> cases) {
  for (const InboundCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<ProviderReport> events;
    InboundAnswer answer;
    bool accepted = channel.inbound(c.request, events, answer);
    EXPECT_EQ(answer.status, c.status) << answer.body;
    EXPECT_EQ(accepted, c.status < 400);
    std::vector<std::string> got;
    for (const ProviderReport& e : events) got.push_back(describe(e));
    EXPECT_EQ(got, c.events);
    if (!c.content_type.empty()) {
      EXPECT_EQ(answer.content_type, c.content_type);
    }
    if (!c.body.empty()) {
      EXPECT_EQ(answer.body, c.body);
    }
  }
}

// ---- Deliveries from many threads -----------------------------------------------------------------------------

// Calls channel.deliver for every request, each from its own thread, as the dispatcher's workers do; the
// threads are all started before any of them delivers (a latch), so they meet within any batch window.
// Outcomes in request order.
inline std::vector<DeliveryOutcome> deliver_concurrently(Channel& channel,
                                                         const std::vector<DeliveryRequest>& requests) {
  std::latch start(static_cast<std::ptrdiff_t>(requests.size()));
  std::vector<std::future<DeliveryOutcome>> pending;
  for (const DeliveryRequest& r : requests)
    pending.push_back(std::async(std::launch::async, [&channel, &start, &r] {
      start.arrive_and_wait();
      return channel.deliver(r);
    }));
  std::vector<DeliveryOutcome> outcomes;
  for (auto& p : pending) outcomes.push_back(p.get());
  return outcomes;
}

// `prefix` and 32 lower-case hex digits made of `salt` and `n`: with "U" a LINE user id, with "" a
// dispatcher-style delivery id.
inline std::string hex_id(const std::string& prefix, unsigned n, unsigned salt = 0) {
  char digits[33];
  std::snprintf(digits, sizeof digits, "%08x%08x%016x", salt, 0xba7c4u, n);
  return prefix + digits;
}

}  // namespace tayori::plugin::testing

#endif  // TAYORI_TESTS_SUPPORT_PLUGIN_TEST_SUPPORT_HPP
