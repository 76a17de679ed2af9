// The gateway's YAML configuration: its model, and a loader that reports every problem at once as
// "FILE:LINE:COL: key.path: message". Secrets never live in the YAML: it names environment variables.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "links/links.hpp"
#include "policy/policy.hpp"

namespace tayori::config {

// A place in the YAML file (1-based, as editors show it).
struct Location {
  int line = 0;
  int column = 0;
};

struct Diagnostic {
  std::string file;
  Location at;
  std::string key_path;  // "channels[1].settings.path"
  std::string message;
  std::string to_string() const;  // FILE:LINE:COL: key.path: message
};

struct ServerConfig {
  std::string listen = "127.0.0.1:8080";
  int threads = 0;  // 0: one per core
  int64_t max_body_bytes = 4 * 1024 * 1024;
  int max_batch = 1000;
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 30'000;
  int64_t idle_timeout_ms = 60'000;
  int max_connections = 1024;  // open at once; more are refused with a 503 (api/http_server.hpp)
  // The gateway as recipients and providers reach it (https://gw.example.com), for signed unsubscribe and
  // response links and provider callbacks. Empty: no such links are made.
  std::string public_url;
  // HMAC keys of signed links, the one that signs first: link_secrets in order, then link_secret_env (id "").
  std::vector<links::LinkKey> link_keys;
  int64_t link_ttl_ms = 60LL * 86'400'000;     // how long a signed link stays valid
  // SIGTERM: how long deliveries in flight may take to finish before the process exits anyway (what is
  // still unfinished then is recovered at the next start).
  int64_t shutdown_grace_ms = 10'000;
};

// Outbound connections to providers (the host transport).
struct OutboundConfig {
  bool verify_tls = true;
  std::string ca_file;  // an extra CA bundle (PEM), e.g. a test CA; empty: the system store
  int64_t connect_timeout_ms = 10'000;
  int64_t timeout_ms = 30'000;
};

enum class StoreBackend { sqlite, postgres };

struct StoreConfig {
  // sqlite: one file in data_dir, one node. postgres: several nodes share one PostgreSQL database.
  StoreBackend backend = StoreBackend::sqlite;
  std::string data_dir = "data";     // resolved against the config file's folder (sqlite)
  int64_t retention_ms = 7 * 86'400'000LL;  // how long finished messages (and their idempotency keys) live
  int64_t max_bytes = 0;                    // store.max_size: the database's size limit; 0: the disk's (sqlite)
  // ---- postgres ----
  std::string url_env;  // store.url_env: the environment variable holding the libpq connection URI
  std::string url;      // its value (a secret: the password may be in it)
  int pool_size = 8;    // connections per node: one for the writer, the rest for reads and claims
  int64_t statement_timeout_ms = 5'000;
  // How long a claim holds a message for its node without being renewed: a node that dies leaves its claims
  // to the others once this has passed (docs/operator-guide.md, "Several nodes").
  int64_t lease_ms = 30'000;
  std::string node_id;  // store.node_id: this node's name in claims; empty: the host name
};

// How long a channel keeps trying one delivery that fails transiently (retry, 5xx, timeout). The waits are
// full-jitter exponential: random(0, min(cap, base * 2^n)); a provider's Retry-After replaces the draw.
struct RetryPolicy {
  int64_t base_ms = 5000;
  int64_t cap_ms = 3'600'000;
  int max_attempts = 5;                // attempts on the channel; then the next channel, or dead
  int64_t max_age_ms = 86'400'000;     // since the first attempt on the channel; then as above
};

// Per channel: consecutive transport failures or 5xx answers that open the circuit; while open, one
// delivery per probe_interval tries the provider (half-open) and the rest wait without using attempts.
struct CircuitBreakerConfig {
  int failures = 5;  // 0: no circuit breaker
  int64_t probe_interval_ms = 10'000;
};

struct DispatcherConfig {
  // false: this process only accepts (and answers the API); messages wait in the store for a process that
  // delivers. The intake-only benchmark measures the door alone this way.
  bool enabled = true;
  // Threads for the stages up to the plugin's request; a request on the wire holds none (core/dispatcher.hpp).
  int workers = 4;
  // Due messages claimed in one transaction, and (with workers x 2) how many the dispatcher holds at once.
  // A claim waits for a whole group commit, so the backlog drains at about this many per commit cycle: the
  // throughput bench measured 1024 at 1.3x the batched rate of 128 (and ~0.6x the WAL pages per message).
  int claim_batch = 1024;
  // The most messages the dispatcher holds at once, claimed or handed over and not yet recorded; 0 (not set):
  // the larger of kDefaultMaxInFlight and claim_batch (in_flight_bound). Deliveries waiting in a
  // channel's batch window count: with room for only 1,024 the LINE multicast bench found the dispatcher full
  // and every new message went to the store for a claim; 4,096 let nearly all go by hand-over, the writer
  // 22.5 -> 19.7 us per recipient (docs/performance.md, a twelfth session).
  int max_in_flight = 0;
  static constexpr int kDefaultMaxInFlight = 4096;
  int64_t poll_interval_ms = 1000;
  RetryPolicy retry;  // every channel's default (dispatcher.max_attempts, retry_base, retry_cap, retry_max_age)
};

// How many messages the dispatcher may hold at once (DispatcherConfig::max_in_flight, or its default).
int in_flight_bound(const DispatcherConfig& d);

// What an API key may do (api_keys[].scopes); docs/operator-guide.md "API keys" maps every route to one.
enum class Scope : unsigned {
  send = 1,      // submit and simulate messages; cancel and retry its own
  read = 2,      // read its own messages and their events
  read_all = 4,  // read every key's messages and events, recipients and suppressions (includes read)
  admin = 8,     // write recipients (profile, consent, erasure) and suppressions; cancel and retry any message
};
constexpr unsigned kAllScopes = 1 | 2 | 4 | 8;
std::optional<Scope> parse_scope(std::string_view name);
const char* to_string(Scope scope);
std::string scope_names();  // "send, read, read_all, admin"

struct ApiKey {
  std::string name;
  std::string secret;  // the value of key_env, resolved at load time
  // Scope bits. A key that lists no scopes has them all, as every key did before scopes existed.
  unsigned scopes = kAllScopes;
  bool allows(Scope scope) const { return (scopes & static_cast<unsigned>(scope)) != 0; }
};

// One setting of a channel as written in YAML, kept as text with its place for the plugin's checks.
struct SettingValue {
  std::string key;  // for secrets, the key without "_env"
  std::string value;
  bool from_env = false;  // value came from the environment variable named by "<key>_env"
  std::string env_name;
  Location at;
};

struct ChannelConfig {
  std::string name;
  std::string plugin;   // a plugin name looked up in plugin_dirs, or a path to a .so
  std::string contact;  // which recipient contact it uses; empty: the plugin's default
  std::vector<SettingValue> settings;
  int concurrency = 0;          // requests in flight to the provider at once; 0: the transport default
  double rate_per_second = 0;   // token-bucket rate limit; 0: none
  double burst = 0;             // bucket size; 0: one second's worth (at least 1)
  // How long a delivery waits for concurrent deliveries of identical content to share one request
  // (plugins with on_build_batch, e.g. LINE multicast); 0: never batch.
  int64_t batch_window_ms = 0;
  Location batch_window_at;
  // Whether its provider calls back (POST /inbound/<plugin>/<channel>); false: that route answers 404, and
  // a plugin that signs over the URL it is called at needs no server.public_url (outbound-only use).
  bool inbound = true;
  // `track: {clicks: true, opens: true}`: the links of its messages are rewritten to tracked /c/ links, and
  // their html carries an open pixel (/o/); a message's own `track` overrides each. Needs server.public_url.
  bool track_clicks = false;
  bool track_opens = false;
  Location track_at;
  RetryPolicy retry;  // the dispatcher's, with this channel's `retry:` overrides
  CircuitBreakerConfig circuit_breaker;
  Location at;
  Location settings_at;
  int index = 0;
};

// How a conversion (POST /v1/conversions) finds the message that led to it (YAML `attribution:`): the
// recipient's last message delivered or clicked within `window_ms` before it, or within the window of that
// message's category when `categories` names one (a flash sale's day, a newsletter's week).
struct AttributionConfig {
  int64_t window_ms = 7LL * 86'400'000;
  std::map<std::string, int64_t> category_window_ms;
  int64_t window_of(const std::string& category) const {
    auto it = category_window_ms.find(category);
    return it == category_window_ms.end() ? window_ms : it->second;
  }
  int64_t longest_ms() const {
    int64_t longest = window_ms;
    for (const auto& [category, ms] : category_window_ms) longest = std::max(longest, ms);
    return longest;
  }
};

// The event types of the feed (docs/architecture.md §1), which a subscription's `events` and the feed's `types`
// filter (GET /v1/events) may name.
const std::set<std::string>& event_types();

// An upstream system's subscription to Tayori's events (two-way issue): each event is POSTed to `url`,
// signed with `secret` (Tayori-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">), retried with backoff
// for up to `give_up_after`.
struct WebhookConfig {
  std::string name;
  std::string url;
  std::string secret;               // the value of secret_env
  std::vector<std::string> events;  // event types; empty: all
  int64_t timeout_ms = 10'000;
  int64_t give_up_after_ms = 86'400'000;
  Location at;
};

// What an answer to a message's response options does beyond being recorded (YAML `responses:`, keyed by
// option id): `opt_out: category` opts the recipient out of the message's category (marketing);
// `opt_out: purpose` out of marketing on the channel it came from.
struct ResponseRule {
  std::string option;
  std::string opt_out;  // "", "category" or "purpose"
};

// Inbound traffic that is not a provider's: apps reporting push action taps (POST /v1/inbound/app).
struct InboundConfig {
  std::vector<ApiKey> app_keys;  // name + secret (from key_env), like api_keys
};

struct TemplatesConfig {
  std::string dir;                     // empty: no templates (inline content only)
  bool missing_variable_is_error = true;  // false: a missing variable renders empty
};

struct Config {
  std::string file;      // the YAML file it came from
  std::string base_dir;  // its folder: relative paths resolve against it
  ServerConfig server;
  OutboundConfig outbound;
  StoreConfig store;
  DispatcherConfig dispatcher;
  std::vector<ApiKey> api_keys;
  std::vector<std::string> plugin_dirs;
  std::vector<ChannelConfig> channels;
  policy::PolicyConfig policy;
  TemplatesConfig templates;
  std::vector<WebhookConfig> webhooks;
  std::vector<ResponseRule> responses;
  InboundConfig inbound;
  AttributionConfig attribution;
};

using Environment = std::function<std::optional<std::string>(const std::string& name)>;
Environment process_environment();

struct LoadResult {
  std::optional<Config> config;  // set only when there is no error
  std::vector<Diagnostic> errors;
};

LoadResult load_file(const std::string& path, const Environment& env);
LoadResult load_string(const std::string& yaml, const std::string& file_name, const std::string& base_dir,
                       const Environment& env);

// Empty when `listen` is HOST:PORT with an IP literal host (then `host` and `port`, when given, receive
// its parts, brackets removed); otherwise what is wrong with it.
std::string check_listen(const std::string& listen, std::string* host = nullptr, uint16_t* port = nullptr);

// Resolves `path` against `base_dir` unless it is absolute.
std::string resolve_path(const std::string& base_dir, const std::string& path);

}  // namespace tayori::config
