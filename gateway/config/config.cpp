// The YAML loader (config.hpp): every section read and checked in one pass, each problem collected with its
// FILE:LINE:COL and key path, so `tayori check-config` and a refused start list them all at once.
#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "common/names.hpp"
#include "common/time.hpp"
#include "policy/timezone.hpp"

namespace tayori::config {

namespace {
constexpr Scope kScopes[] = {Scope::send, Scope::read, Scope::read_all, Scope::admin};
}

const char* to_string(Scope scope) {
  switch (scope) {
    case Scope::send: return "send";
    case Scope::read: return "read";
    case Scope::read_all: return "read_all";
    case Scope::admin: return "admin";
  }
  return "?";
}

std::optional<Scope> parse_scope(std::string_view name) {
  for (Scope s : kScopes)
    if (name == to_string(s)) return s;
  return std::nullopt;
}

std::string scope_names() {
  std::string out;
  for (Scope s : kScopes) out += (out.empty() ? "" : ", ") + std::string(to_string(s));
  return out;
}

std::string Diagnostic::to_string() const {
  std::ostringstream out;
  out << file << ':' << at.line << ':' << at.column << ": " << (key_path.empty() ? "" : key_path + ": ") << message;
  return out.str();
}

Environment process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::string check_listen(const std::string& listen, std::string* host_out, uint16_t* port_out) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return "must be HOST:PORT, e.g. 127.0.0.1:8787 or [::1]:8787";
  std::string host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1)
    return "host \"" + host + "\" must be an IP address (0.0.0.0 for every interface), not a name";
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535)
    return "port \"" + port + "\" must be a number from 0 to 65535";
  if (host_out) *host_out = host;
  if (port_out) *port_out = static_cast<uint16_t>(std::stoi(port));
  return {};
}

std::string resolve_path(const std::string& base_dir, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_absolute() || base_dir.empty()) return p.lexically_normal().string();
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

namespace {

Location where(const YAML::Node& n) {
  YAML::Mark m = n.Mark();
  return {m.line + 1, m.column + 1};
}

// Walks the document, collecting every problem instead of stopping at the first one.
class Reader {
 public:
  Reader(std::string file, const Environment& env) : file_(std::move(file)), env_(env) {}
  std::vector<Diagnostic> errors;

  void error(const YAML::Node& at, const std::string& path, const std::string& message) {
    errors.push_back({file_, where(at), path, message});
  }
  void error(Location at, const std::string& path, const std::string& message) {
    errors.push_back({file_, at, path, message});
  }

  // Checks `node` is a map whose keys are all in `known`; reports the others.
  bool expect_map(const YAML::Node& node, const std::string& path, std::initializer_list<const char*> known) {
    if (!node.IsMap()) {
      error(node, path, "must be a mapping");
      return false;
    }
    std::set<std::string> allowed(known.begin(), known.end());
    std::map<std::string, int> seen;  // key -> line, to report repeats (YAML 1.2 §3.2.1.1: keys are unique)
    for (auto it = node.begin(); it != node.end(); ++it) {
      std::string key = it->first.as<std::string>("");
      auto [first, inserted] = seen.emplace(key, where(it->first).line);
      if (!inserted) {
        error(it->first, join(path, key), "duplicate key (first at line " + std::to_string(first->second) + ")");
        continue;
      }
      if (!allowed.count(key)) {
        std::string list;
        for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        error(it->first, join(path, key), "unknown key (expected one of: " + list + ")");
      }
    }
    return true;
  }

  static std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

  std::optional<std::string> string(const YAML::Node& parent, const char* key, const std::string& path, bool required) {
    YAML::Node n = parent[key];
    if (!n) {
      if (required) error(parent, join(path, key), "is required");
      return std::nullopt;
    }
    if (!n.IsScalar()) {
      error(n, join(path, key), "must be a string");
      return std::nullopt;
    }
    return n.Scalar();
  }

  void integer(const YAML::Node& parent, const char* key, const std::string& path, int64_t min, int64_t max,
               auto& out) {
    YAML::Node n = parent[key];
    if (!n) return;
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v)) {
      error(n, join(path, key), "must be an integer");
      return;
    }
    if (v < min || v > max) {
      error(n, join(path, key), "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return;
    }
    out = static_cast<std::remove_reference_t<decltype(out)>>(v);
  }

  void boolean(const YAML::Node& parent, const char* key, const std::string& path, bool& out) {
    auto v = string(parent, key, path, false);
    if (!v) return;
    if (*v != "true" && *v != "false")
      error(parent[key], join(path, key), "must be true or false");
    else
      out = *v == "true";
  }

  void duration(const YAML::Node& parent, const char* key, const std::string& path, int64_t min_ms, int64_t& out) {
    YAML::Node n = parent[key];
    if (!n) return;
    auto ms = n.IsScalar() ? parse_duration_ms(n.Scalar()) : std::nullopt;
    if (!ms) {
      error(n, join(path, key), "must be a duration like 250ms, 10s, 5m, 24h or 7d");
      return;
    }
    if (*ms < min_ms) {
      error(n, join(path, key), "must be at least " + format_duration_ms(min_ms));
      return;
    }
    out = *ms;
  }

  std::optional<std::string> secret(const YAML::Node& at, const std::string& env_name, const std::string& path) {
    auto v = env_(env_name);
    if (!v) {
      error(at, path, "environment variable " + env_name + " is not set");
      return std::nullopt;
    }
    if (v->empty()) {
      error(at, path, "environment variable " + env_name + " is empty");
      return std::nullopt;
    }
    return v;
  }

 private:
  std::string file_;
  const Environment& env_;
};

const std::regex kName("^[a-z][a-z0-9_]{0,62}$");
// A contact kind a channel can use: one of the recipient's contacts, or a push platform.
const std::regex kContactKind("^([a-z][a-z0-9_]{0,31}|push\\.(fcm|apns))$");
const std::regex kEnvName("^[A-Z_][A-Z0-9_]*$");
constexpr int64_t kMaxBatchWindowMs = 10'000;

// A non-empty list of {<name_key>, <env_key>[, <extra_key>]} at `list_path` whose names are unique: api_keys
// ({name, key_env, scopes}), inbound.app_keys ({name, key_env}), server.link_secrets ({id, secret_env}).
// `name_problem` says what is wrong with a name ("" when nothing); `add` takes each entry that is whole,
// with the secret its variable holds, and reads `extra_key` itself.
struct SecretEntry {
  std::string name;
  std::string secret;
  YAML::Node node;
  std::string path;
};
void read_secret_list(Reader& r, const YAML::Node& n, const std::string& list_path, const char* name_key,
                      const char* env_key, const char* extra_key,
                      const std::function<std::string(const std::string&)>& name_problem,
                      const std::function<void(const SecretEntry&)>& add) {
  if (!n.IsSequence() || n.size() == 0) {
    r.error(n, list_path, std::string("must be a non-empty list of {") + name_key + ", " + env_key + "}");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string path = list_path + "[" + std::to_string(i) + "]";
    YAML::Node k = n[i];
    if (!(extra_key ? r.expect_map(k, path, {name_key, env_key, extra_key}) : r.expect_map(k, path, {name_key, env_key})))
      continue;
    auto name = r.string(k, name_key, path, true);
    auto env = r.string(k, env_key, path, true);
    std::string name_path = path + "." + name_key, env_path = path + "." + env_key;
    if (name) {
      if (std::string problem = name_problem(*name); !problem.empty()) {
        r.error(k[name_key], name_path, problem);
        continue;
      }
      if (!names.insert(*name).second) r.error(k[name_key], name_path, "duplicate " + std::string(name_key) + " \"" + *name + "\"");
    }
    if (env && !std::regex_match(*env, kEnvName)) {
      r.error(k[env_key], env_path, "must name an environment variable (A-Z, 0-9, _), not hold a key");
      continue;
    }
    if (!name || !env) continue;
    if (auto secret = r.secret(k[env_key], *env, env_path)) add({*name, *secret, k, path});
  }
}

void read_server(Reader& r, const YAML::Node& n, ServerConfig& s) {
  if (!n || !r.expect_map(n, "server", {"listen", "threads", "max_body_bytes", "max_batch", "header_timeout",
                                        "body_timeout", "idle_timeout", "max_connections", "public_url", "link_secret_env",
                                        "link_secrets", "link_ttl", "shutdown_grace"}))
    return;
  if (auto v = r.string(n, "listen", "server", false)) {
    std::string problem = check_listen(*v);
    if (!problem.empty())
      r.error(n["listen"], "server.listen", problem);
    else
      s.listen = *v;
  }
  r.integer(n, "threads", "server", 0, 256, s.threads);
  r.integer(n, "max_body_bytes", "server", 1024, 1LL << 30, s.max_body_bytes);
  r.integer(n, "max_batch", "server", 1, 100'000, s.max_batch);
  r.integer(n, "max_connections", "server", 1, 1'000'000, s.max_connections);
  r.duration(n, "header_timeout", "server", 100, s.header_timeout_ms);
  r.duration(n, "body_timeout", "server", 100, s.body_timeout_ms);
  r.duration(n, "idle_timeout", "server", 100, s.idle_timeout_ms);
  r.duration(n, "link_ttl", "server", 60'000, s.link_ttl_ms);
  r.duration(n, "shutdown_grace", "server", 0, s.shutdown_grace_ms);
  if (auto v = r.string(n, "public_url", "server", false)) {
    if (!std::regex_match(*v, std::regex("^https?://[^/?#\\s]+(/[^?#\\s]*)?$")))
      r.error(n["public_url"], "server.public_url", "must be an absolute http(s) URL without query, like https://gw.example.com");
    else
      s.public_url = *v;
  }
  // server.link_secrets: the first one signs (links/links.hpp says how keys rotate).
  if (YAML::Node keys = n["link_secrets"])
    read_secret_list(
        r, keys, "server.link_secrets", "id", "secret_env", nullptr,
        [](const std::string& id) {
          return links::valid_key_id(id) ? std::string()
                                         : "must be 1 to 16 of A-Z, a-z, 0-9, _ and - (it travels inside every link)";
        },
        [&](const SecretEntry& e) { s.link_keys.push_back({e.name, e.secret}); });
  if (auto v = r.string(n, "link_secret_env", "server", false)) {
    if (!std::regex_match(*v, kEnvName))
      r.error(n["link_secret_env"], "server.link_secret_env", "must name an environment variable (A-Z, 0-9, _)");
    else if (auto secret = r.secret(n["link_secret_env"], *v, "server.link_secret_env"))
      s.link_keys.push_back({"", *secret});  // after link_secrets: it signs only when it is the only key
  } else if (!s.public_url.empty() && !n["link_secrets"]) {
    r.error(n["public_url"], "server.link_secrets",
            "is required with public_url (or server.link_secret_env): signed links need a key");
  }
}

void read_outbound(Reader& r, const YAML::Node& n, const std::string& base_dir, OutboundConfig& o) {
  if (!n || !r.expect_map(n, "outbound", {"verify_tls", "ca_file", "connect_timeout", "timeout"})) return;
  r.boolean(n, "verify_tls", "outbound", o.verify_tls);
  if (auto v = r.string(n, "ca_file", "outbound", false)) {
    o.ca_file = resolve_path(base_dir, *v);
    if (!std::filesystem::exists(o.ca_file)) r.error(n["ca_file"], "outbound.ca_file", "no such file: " + o.ca_file);
  }
  r.duration(n, "connect_timeout", "outbound", 10, o.connect_timeout_ms);
  r.duration(n, "timeout", "outbound", 10, o.timeout_ms);
}

// "100/s", "6000/m", "1/s": a rate for a channel's token bucket, in requests per second.
std::optional<double> parse_rate(const std::string& text) {
  std::smatch m;
  if (!std::regex_match(text, m, std::regex("^([0-9]+(\\.[0-9]+)?)\\s*/\\s*(s|m|h)$"))) return std::nullopt;
  double n = std::stod(m[1].str());
  double per = m[3] == "s" ? 1 : m[3] == "m" ? 60 : 3600;
  if (n <= 0) return std::nullopt;
  return n / per;
}

// "512MiB", "2GiB", "65536": a size in bytes (binary units, as df -h shows them).
std::optional<int64_t> parse_size(const std::string& text) {
  std::smatch m;
  if (!std::regex_match(text, m, std::regex("^([0-9]{1,12})\\s*(B|KiB|MiB|GiB|TiB)?$"))) return std::nullopt;
  int shift = !m[2].matched || m[2] == "B" ? 0 : m[2] == "KiB" ? 10 : m[2] == "MiB" ? 20 : m[2] == "GiB" ? 30 : 40;
  const int64_t n = std::stoll(m[1].str());
  if (n > (std::numeric_limits<int64_t>::max() >> shift)) return std::nullopt;  // no byte count holds it
  return n << shift;
}

// `retry:` of a channel, or the dispatcher's defaults (whose keys carry a retry_ prefix, `max_attempts` none).
void read_retry(Reader& r, const YAML::Node& n, const std::string& path, const std::string& prefix, RetryPolicy& p) {
  r.integer(n, "max_attempts", path, 1, 1000, p.max_attempts);
  r.duration(n, (prefix + "base").c_str(), path, 1, p.base_ms);
  r.duration(n, (prefix + "cap").c_str(), path, 1, p.cap_ms);
  r.duration(n, (prefix + "max_age").c_str(), path, 1, p.max_age_ms);
  if (p.cap_ms < p.base_ms) r.error(n, path + "." + prefix + "cap", "must be at least " + prefix + "base");
}

void read_store(Reader& r, const YAML::Node& n, StoreConfig& s) {
  if (!n || !r.expect_map(n, "store", {"backend", "data_dir", "retention", "max_size", "url_env", "pool_size",
                                       "statement_timeout", "lease", "node_id"}))
    return;
  if (auto v = r.string(n, "backend", "store", false)) {
    if (*v == "sqlite")
      s.backend = StoreBackend::sqlite;
    else if (*v == "postgres")
      s.backend = StoreBackend::postgres;
    else
      r.error(n["backend"], "store.backend", "must be sqlite or postgres");
  }
  bool postgres = s.backend == StoreBackend::postgres;
  // Settings of the other backend are refused, not ignored: an operator who sets max_size on PostgreSQL
  // believes the gateway limits a size it does not.
  auto only_for = [&](const char* key, bool allowed, const char* backend) {
    if (n[key] && !allowed)
      r.error(n[key], std::string("store.") + key, std::string("applies to store.backend: ") + backend + " only");
  };
  only_for("max_size", !postgres, "sqlite");
  for (const char* key : {"url_env", "pool_size", "statement_timeout", "lease", "node_id"}) only_for(key, postgres, "postgres");
  if (auto v = r.string(n, "data_dir", "store", false)) s.data_dir = *v;
  if (auto v = r.string(n, "max_size", "store", false); v && !postgres) {
    auto bytes = parse_size(*v);
    if (!bytes || *bytes < 64 * 1024)
      r.error(n["max_size"], "store.max_size", "must be a size of at least 64KiB, like 512MiB or 2GiB");
    else
      s.max_bytes = *bytes;
  }
  // Idempotency keys live as long as the message record, and upstream retries arrive within a day.
  r.duration(n, "retention", "store", 86'400'000, s.retention_ms);
  if (!postgres) return;
  if (auto v = r.string(n, "url_env", "store", true)) {
    if (!std::regex_match(*v, kEnvName))
      r.error(n["url_env"], "store.url_env", "must name an environment variable (A-Z, 0-9, _), not hold the URI");
    else if (auto url = r.secret(n["url_env"], *v, "store.url_env")) {
      s.url_env = *v;
      s.url = *url;
    }
  }
  r.integer(n, "pool_size", "store", 2, 256, s.pool_size);
  r.duration(n, "statement_timeout", "store", 100, s.statement_timeout_ms);
  r.duration(n, "lease", "store", 1000, s.lease_ms);
  if (auto v = r.string(n, "node_id", "store", false)) {
    if (!std::regex_match(*v, std::regex("^[A-Za-z0-9._:-]{1,64}$")))
      r.error(n["node_id"], "store.node_id", "must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', ':', '-'");
    else
      s.node_id = *v;
  }
}

void read_dispatcher(Reader& r, const YAML::Node& n, DispatcherConfig& d) {
  if (!n || !r.expect_map(n, "dispatcher",
                          {"enabled", "workers", "claim_batch", "max_in_flight", "poll_interval", "max_attempts",
                           "retry_base", "retry_cap", "retry_max_age"}))
    return;
  r.boolean(n, "enabled", "dispatcher", d.enabled);
  r.integer(n, "workers", "dispatcher", 1, 256, d.workers);
  r.integer(n, "claim_batch", "dispatcher", 1, 10'000, d.claim_batch);
  r.integer(n, "max_in_flight", "dispatcher", 1, 1'000'000, d.max_in_flight);
  // A claim of claim_batch messages must fit, and every worker have a message at hand and one waiting.
  if (d.max_in_flight > 0 && d.max_in_flight < std::max(d.claim_batch, d.workers * 2))
    r.error(n["max_in_flight"], "dispatcher.max_in_flight",
            "must be at least claim_batch (" + std::to_string(d.claim_batch) + ") and workers x 2 (" +
                std::to_string(d.workers * 2) + ")");
  r.duration(n, "poll_interval", "dispatcher", 10, d.poll_interval_ms);
  read_retry(r, n, "dispatcher", "retry_", d.retry);
}

}  // namespace

int in_flight_bound(const DispatcherConfig& d) {
  if (d.max_in_flight > 0) return d.max_in_flight;
  return std::max(DispatcherConfig::kDefaultMaxInFlight, d.claim_batch);  // workers x 2 is 512 at most
}

namespace {

// api_keys[].scopes: a non-empty list of scope names; read_all includes read.
std::optional<unsigned> read_scopes(Reader& r, const YAML::Node& n, const std::string& path) {
  if (!n.IsSequence() || n.size() == 0) {
    r.error(n, path, "must be a non-empty list of " + scope_names());
    return std::nullopt;
  }
  unsigned scopes = 0;
  bool ok = true;
  for (size_t i = 0; i < n.size(); ++i) {
    auto scope = n[i].IsScalar() ? parse_scope(n[i].Scalar()) : std::nullopt;
    if (!scope) {
      r.error(n[i], path + "[" + std::to_string(i) + "]", "must be one of " + scope_names());
      ok = false;
      continue;
    }
    scopes |= static_cast<unsigned>(*scope);
  }
  if (scopes & static_cast<unsigned>(Scope::read_all)) scopes |= static_cast<unsigned>(Scope::read);
  return ok ? std::optional(scopes) : std::nullopt;
}

// A list of {name, key_env} at `key_path`: api_keys (with scopes) or inbound.app_keys (without).
void read_keys(Reader& r, const YAML::Node& n, const std::string& key_path, bool with_scopes, std::vector<ApiKey>& keys) {
  read_secret_list(
      r, n, key_path, "name", "key_env", with_scopes ? "scopes" : nullptr,
      [](const std::string&) { return std::string(); },
      [&](const SecretEntry& e) {
        ApiKey key{e.name, e.secret};
        if (YAML::Node scopes = e.node["scopes"]; with_scopes && scopes) {
          auto read = read_scopes(r, scopes, e.path + ".scopes");
          if (!read) return;
          key.scopes = *read;
        }
        keys.push_back(std::move(key));
      });
}

void read_api_keys(Reader& r, const YAML::Node& n, std::vector<ApiKey>& keys) {
  if (!n) {
    r.error(Location{1, 1}, "api_keys", "is required (a list of {name, key_env, scopes?})");
    return;
  }
  read_keys(r, n, "api_keys", true, keys);
}

const std::set<std::string> kEventTypes = {
    "accepted", "scheduled", "deferred", "suppressed", "dispatched", "delivered", "failed", "dead",
    "cancelled", "requeued", "retry_scheduled", "attempt_failed", "replayed", "contact_deactivated", "opened",
    "clicked", "converted", "responded", "replied", "opted_in", "opted_out", "follow_up_scheduled",
    "follow_up_cancelled"};

// attribution: {window: 7d, categories: {flash_sale: 1d}}
void read_attribution(Reader& r, const YAML::Node& n, AttributionConfig& a) {
  if (!n || !r.expect_map(n, "attribution", {"window", "categories"})) return;
  r.duration(n, "window", "attribution", 1, a.window_ms);
  YAML::Node categories = n["categories"];
  if (!categories) return;
  if (!categories.IsMap()) {
    r.error(categories, "attribution.categories", "must map a category to its window, like {flash_sale: 1d}");
    return;
  }
  for (auto it = categories.begin(); it != categories.end(); ++it) {
    const std::string category = it->first.Scalar();
    if (!is_category(category))
      r.error(it->first, "attribution.categories." + category,
              "is not a category a message can have (lower-case letters, digits, _ . -; at most 64)");
    int64_t ms = a.window_ms;
    r.duration(categories, category.c_str(), "attribution.categories", 1, ms);
    a.category_window_ms[category] = ms;
  }
}

void read_webhooks(Reader& r, const YAML::Node& n, std::vector<WebhookConfig>& out) {
  if (!n) return;
  if (!n.IsSequence()) {
    r.error(n, "webhooks", "must be a list of {name, url, secret_env, events?}");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string path = "webhooks[" + std::to_string(i) + "]";
    YAML::Node w = n[i];
    if (!r.expect_map(w, path, {"name", "url", "secret_env", "events", "timeout", "give_up_after"})) continue;
    WebhookConfig c;
    c.at = where(w);
    if (auto v = r.string(w, "name", path, true)) {
      if (!std::regex_match(*v, kName))
        r.error(w["name"], path + ".name", "must match [a-z][a-z0-9_]* (it appears in metrics)");
      else if (!names.insert(*v).second)
        r.error(w["name"], path + ".name", "duplicate webhook name \"" + *v + "\"");
      c.name = *v;
    }
    if (auto v = r.string(w, "url", path, true)) {
      if (!std::regex_match(*v, std::regex("^https?://[^/?#\\s]+(/[^#\\s]*)?$")))
        r.error(w["url"], path + ".url", "must be an absolute http(s) URL");
      c.url = *v;
    }
    if (auto v = r.string(w, "secret_env", path, true)) {
      if (!std::regex_match(*v, kEnvName))
        r.error(w["secret_env"], path + ".secret_env", "must name an environment variable (A-Z, 0-9, _)");
      else if (auto secret = r.secret(w["secret_env"], *v, path + ".secret_env"))
        c.secret = *secret;
    }
    if (YAML::Node e = w["events"]) {
      if (!e.IsSequence()) {
        r.error(e, path + ".events", "must be a list of event types");
      } else {
        for (size_t j = 0; j < e.size(); ++j) {
          std::string type = e[j].as<std::string>("");
          if (!kEventTypes.count(type)) {
            std::string known;
            for (const auto& t : kEventTypes) known += (known.empty() ? "" : ", ") + t;
            r.error(e[j], path + ".events[" + std::to_string(j) + "]",
                    "unknown event type \"" + type + "\" (one of: " + known + ")");
          } else {
            c.events.push_back(type);
          }
        }
      }
    }
    r.duration(w, "timeout", path, 100, c.timeout_ms);
    r.duration(w, "give_up_after", path, 1000, c.give_up_after_ms);
    out.push_back(std::move(c));
  }
}

void read_responses(Reader& r, const YAML::Node& n, std::vector<ResponseRule>& out) {
  if (!n) return;
  if (!n.IsMap()) {
    r.error(n, "responses", "must map response option ids to what they do, e.g. not_interested: {opt_out: category}");
    return;
  }
  for (auto it = n.begin(); it != n.end(); ++it) {
    std::string option = it->first.as<std::string>("");
    std::string path = "responses." + option;
    if (!std::regex_match(option, kName)) {
      r.error(it->first, path, "must be a response option id matching [a-z][a-z0-9_]*");
      continue;
    }
    if (!r.expect_map(it->second, path, {"opt_out"})) continue;
    ResponseRule rule{option, ""};
    if (auto v = r.string(it->second, "opt_out", path, false)) {
      if (*v != "category" && *v != "purpose")
        r.error(it->second["opt_out"], path + ".opt_out", "must be category or purpose");
      else
        rule.opt_out = *v;
    }
    out.push_back(std::move(rule));
  }
}

void read_inbound(Reader& r, const YAML::Node& n, InboundConfig& out) {
  if (!n || !r.expect_map(n, "inbound", {"app_keys"})) return;
  if (YAML::Node k = n["app_keys"]) read_keys(r, k, "inbound.app_keys", false, out.app_keys);
}

void read_channels(Reader& r, const YAML::Node& n, const RetryPolicy& default_retry,
                   std::vector<ChannelConfig>& channels) {
  if (!n) {
    r.error(Location{1, 1}, "channels", "is required (a list of {name, plugin, settings})");
    return;
  }
  if (!n.IsSequence() || n.size() == 0) {
    r.error(n, "channels", "must be a non-empty list of {name, plugin, contact?, settings?}");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string path = "channels[" + std::to_string(i) + "]";
    YAML::Node c = n[i];
    if (!r.expect_map(c, path,
                      {"name", "plugin", "contact", "settings", "concurrency", "rate_limit", "burst", "batch_window",
                       "retry", "circuit_breaker", "inbound", "track"}))
      continue;
    ChannelConfig ch;
    ch.retry = default_retry;
    if (YAML::Node retry = c["retry"]; retry && r.expect_map(retry, path + ".retry", {"base", "cap", "max_attempts", "max_age"}))
      read_retry(r, retry, path + ".retry", "", ch.retry);
    if (YAML::Node cb = c["circuit_breaker"];
        cb && r.expect_map(cb, path + ".circuit_breaker", {"failures", "probe_interval"})) {
      r.integer(cb, "failures", path + ".circuit_breaker", 0, 1'000'000, ch.circuit_breaker.failures);
      r.duration(cb, "probe_interval", path + ".circuit_breaker", 10, ch.circuit_breaker.probe_interval_ms);
    }
    ch.index = static_cast<int>(i);
    ch.at = where(c);
    ch.settings_at = ch.at;
    if (auto v = r.string(c, "name", path, true)) {
      if (!std::regex_match(*v, kName))
        r.error(c["name"], path + ".name", "must match [a-z][a-z0-9_]* (it appears in messages and metrics)");
      else if (!names.insert(*v).second)
        r.error(c["name"], path + ".name", "duplicate channel name \"" + *v + "\"");
      ch.name = *v;
    }
    if (auto v = r.string(c, "plugin", path, true)) ch.plugin = *v;
    r.integer(c, "concurrency", path, 1, 10'000, ch.concurrency);
    if (auto v = r.string(c, "rate_limit", path, false)) {
      if (auto rate = parse_rate(*v))
        ch.rate_per_second = *rate;
      else
        r.error(c["rate_limit"], path + ".rate_limit", "must be a rate like 100/s, 600/m or 3600/h");
    }
    r.integer(c, "burst", path, 1, 1'000'000, ch.burst);
    r.boolean(c, "inbound", path, ch.inbound);
    if (YAML::Node t = c["track"]; t && r.expect_map(t, path + ".track", {"clicks", "opens"})) {
      ch.track_at = where(t);
      r.boolean(t, "clicks", path + ".track", ch.track_clicks);
      r.boolean(t, "opens", path + ".track", ch.track_opens);
    }
    if (YAML::Node w = c["batch_window"]) {
      ch.batch_window_at = where(w);
      r.duration(c, "batch_window", path, 0, ch.batch_window_ms);
      // Every delivery of the channel may wait this long in a dispatcher worker: keep it short.
      if (ch.batch_window_ms > kMaxBatchWindowMs) {
        r.error(w, path + ".batch_window", "must be at most " + format_duration_ms(kMaxBatchWindowMs));
        ch.batch_window_ms = 0;
      }
    }
    if (auto v = r.string(c, "contact", path, false)) {
      // A bare "push" names the list of tokens, never one contact point: say which platform.
      if (!std::regex_match(*v, kContactKind) || *v == "push")
        r.error(c["contact"], path + ".contact",
                "must name a recipient contact kind (email, phone, line, ...) or push.fcm / push.apns");
      else
        ch.contact = *v;
    }
    if (YAML::Node s = c["settings"]) {
      ch.settings_at = where(s);
      if (!s.IsMap()) {
        r.error(s, path + ".settings", "must be a mapping");
      } else {
        for (auto it = s.begin(); it != s.end(); ++it) {
          std::string key = it->first.as<std::string>("");
          std::string spath = path + ".settings." + key;
          if (!it->second.IsScalar()) {
            r.error(it->second, spath, "must be a scalar (string, number, boolean or duration)");
            continue;
          }
          SettingValue sv{key, it->second.Scalar(), false, {}, where(it->first)};
          // "<key>_env: VAR" supplies secret <key> from the environment (secrets never live in YAML).
          if (key.size() > 4 && key.compare(key.size() - 4, 4, "_env") == 0) {
            sv.key = key.substr(0, key.size() - 4);
            sv.from_env = true;
            sv.env_name = it->second.Scalar();
            if (!std::regex_match(sv.env_name, kEnvName)) {
              r.error(it->second, spath, "must name an environment variable (A-Z, 0-9, _)");
              continue;
            }
            auto secret = r.secret(it->second, sv.env_name, spath);
            if (!secret) continue;
            sv.value = *secret;
          }
          ch.settings.push_back(std::move(sv));
        }
      }
    }
    channels.push_back(std::move(ch));
  }
}

// Channel names a policy rule lists must be configured channels: a typo would make the rule silently
// match nothing.
void check_channel_list(Reader& r, const YAML::Node& n, const std::string& path, const std::set<std::string>& known,
                        std::vector<std::string>& out) {
  if (!n) return;
  if (!n.IsSequence()) {
    r.error(n, path, "must be a list of channel names");
    return;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    std::string name = n[i].as<std::string>("");
    if (!known.count(name))
      r.error(n[i], path + "[" + std::to_string(i) + "]", "is not a configured channel \"" + name + "\"");
    else
      out.push_back(name);
  }
}

std::optional<policy::Purpose> read_purpose(Reader& r, const YAML::Node& parent, const std::string& path) {
  auto v = r.string(parent, "purpose", path, false);
  if (!v) return std::nullopt;
  if (*v == "marketing") return policy::Purpose::marketing;
  if (*v == "transactional") return policy::Purpose::transactional;
  r.error(parent["purpose"], path + ".purpose", "must be marketing or transactional");
  return std::nullopt;
}

std::optional<policy::ConsentState> read_consent_state(Reader& r, const YAML::Node& n, const std::string& path) {
  auto s = n.IsScalar() ? policy::parse_consent_state(n.Scalar()) : std::nullopt;
  if (!s) r.error(n, path, "must be opted_in or opted_out");
  return s;
}

void read_policy(Reader& r, const YAML::Node& n, const std::set<std::string>& channels, policy::PolicyConfig& p) {
  if (!n || !r.expect_map(n, "policy", {"default_timezone", "consent", "quiet_hours", "caps"})) return;
  if (auto tz = r.string(n, "default_timezone", "policy", false)) {
    if (!policy::TimeZone::load(*tz))
      r.error(n["default_timezone"], "policy.default_timezone", "is not an IANA time zone this system knows: " + *tz);
    else
      p.default_timezone = *tz;
  }
  if (YAML::Node consent = n["consent"]; consent && r.expect_map(consent, "policy.consent", {"defaults", "channels"})) {
    if (YAML::Node d = consent["defaults"]; d && r.expect_map(d, "policy.consent.defaults", {"transactional", "marketing"})) {
      if (d["transactional"])
        if (auto s = read_consent_state(r, d["transactional"], "policy.consent.defaults.transactional"))
          p.consent.transactional = *s;
      if (d["marketing"])
        if (auto s = read_consent_state(r, d["marketing"], "policy.consent.defaults.marketing")) p.consent.marketing = *s;
    }
    if (YAML::Node per = consent["channels"]; per) {
      if (!per.IsMap()) {
        r.error(per, "policy.consent.channels", "must map channel names to {transactional, marketing}");
      } else {
        for (auto it = per.begin(); it != per.end(); ++it) {
          std::string ch = it->first.as<std::string>("");
          std::string path = "policy.consent.channels." + ch;
          if (!channels.count(ch)) {
            r.error(it->first, path, "is not a configured channel");
            continue;
          }
          if (!r.expect_map(it->second, path, {"transactional", "marketing"})) continue;
          for (auto [key, purpose] : {std::pair{"transactional", policy::Purpose::transactional},
                                      std::pair{"marketing", policy::Purpose::marketing}})
            if (it->second[key])
              if (auto s = read_consent_state(r, it->second[key], path + "." + key)) p.consent.per_channel[ch][purpose] = *s;
        }
      }
    }
  }
  std::set<std::string> names;
  if (YAML::Node q = n["quiet_hours"]; q) {
    if (!q.IsSequence()) r.error(q, "policy.quiet_hours", "must be a list of windows");
    for (size_t i = 0; q.IsSequence() && i < q.size(); ++i) {
      std::string path = "policy.quiet_hours[" + std::to_string(i) + "]";
      YAML::Node w = q[i];
      if (!r.expect_map(w, path, {"name", "channels", "purpose", "from", "to", "action", "spread"})) continue;
      policy::QuietHoursRule rule;
      if (auto v = r.string(w, "name", path, true)) {
        if (!std::regex_match(*v, kName) || !names.insert("q." + *v).second)
          r.error(w["name"], path + ".name", "must be a unique name matching [a-z][a-z0-9_]*");
        rule.name = *v;
      }
      check_channel_list(r, w["channels"], path + ".channels", channels, rule.channels);
      rule.purpose = read_purpose(r, w, path);
      for (auto [key, target] : {std::pair{"from", &rule.from_minute}, std::pair{"to", &rule.to_minute}}) {
        if (auto v = r.string(w, key, path, true)) {
          if (auto m = policy::parse_clock(*v))
            *target = *m % (24 * 60);
          else
            r.error(w[key], path + "." + key, "must be a local time HH:MM, e.g. \"21:00\"");
        }
      }
      if (auto v = r.string(w, "action", path, false)) {
        if (*v == "drop")
          rule.action = policy::QuietHoursRule::Action::drop;
        else if (*v != "defer")
          r.error(w["action"], path + ".action", "must be defer or drop");
      }
      r.duration(w, "spread", path, 0, rule.spread_ms);
      p.quiet_hours.push_back(rule);
    }
  }
  if (YAML::Node caps = n["caps"]; caps) {
    if (!caps.IsSequence()) r.error(caps, "policy.caps", "must be a list of cap rules");
    for (size_t i = 0; caps.IsSequence() && i < caps.size(); ++i) {
      std::string path = "policy.caps[" + std::to_string(i) + "]";
      YAML::Node w = caps[i];
      if (!r.expect_map(w, path, {"name", "scope", "channels", "purpose", "category", "limit", "window", "on_exceed"}))
        continue;
      policy::CapRule rule;
      if (auto v = r.string(w, "name", path, true)) {
        if (!std::regex_match(*v, kName) || !names.insert("c." + *v).second)
          r.error(w["name"], path + ".name", "must be a unique name matching [a-z][a-z0-9_]*");
        rule.name = *v;
      }
      if (auto v = r.string(w, "scope", path, false)) {
        if (*v == "channel")
          rule.scope = policy::CapRule::Scope::channel;
        else if (*v != "all")
          r.error(w["scope"], path + ".scope", "must be channel or all");
      }
      check_channel_list(r, w["channels"], path + ".channels", channels, rule.channels);
      rule.purpose = read_purpose(r, w, path);
      if (auto v = r.string(w, "category", path, false)) {
        if (!is_category(*v))
          r.error(w["category"], path + ".category",
                  "is not a category a message can have (lower-case letters, digits, _ . -; at most 64)");
        rule.category = *v;
      }
      if (!w["limit"]) r.error(w, path + ".limit", "is required");
      r.integer(w, "limit", path, 1, 1'000'000, rule.limit);
      if (!w["window"]) r.error(w, path + ".window", "is required");
      r.duration(w, "window", path, 1000, rule.window_ms);
      if (auto v = r.string(w, "on_exceed", path, false)) {
        if (*v == "defer")
          rule.on_exceed = policy::CapRule::OnExceed::defer;
        else if (*v != "drop")
          r.error(w["on_exceed"], path + ".on_exceed", "must be drop or defer");
      }
      p.caps.push_back(rule);
    }
  }
}

void read_templates(Reader& r, const YAML::Node& n, const std::string& base_dir, TemplatesConfig& t) {
  if (!n || !r.expect_map(n, "templates", {"dir", "missing_variable"})) return;
  if (auto v = r.string(n, "dir", "templates", true)) t.dir = resolve_path(base_dir, *v);
  if (auto v = r.string(n, "missing_variable", "templates", false)) {
    if (*v == "empty")
      t.missing_variable_is_error = false;
    else if (*v != "error")
      r.error(n["missing_variable"], "templates.missing_variable", "must be error or empty");
  }
}

LoadResult read_document(const YAML::Node& root, const std::string& file, const std::string& base_dir,
                         const Environment& env) {
  Reader r(file, env);
  Config c;
  c.file = file;
  c.base_dir = base_dir;
  if (!root || root.IsNull()) {
    r.error(Location{1, 1}, "", "the file is empty");
    return {std::nullopt, r.errors};
  }
  if (r.expect_map(root, "", {"server", "outbound", "store", "dispatcher", "api_keys", "plugin_dirs", "channels",
                              "policy", "templates", "webhooks", "responses", "inbound", "attribution"})) {
    read_server(r, root["server"], c.server);
    read_outbound(r, root["outbound"], base_dir, c.outbound);
    read_store(r, root["store"], c.store);
    read_dispatcher(r, root["dispatcher"], c.dispatcher);
    read_api_keys(r, root["api_keys"], c.api_keys);
    read_webhooks(r, root["webhooks"], c.webhooks);
    read_responses(r, root["responses"], c.responses);
    read_inbound(r, root["inbound"], c.inbound);
    read_attribution(r, root["attribution"], c.attribution);
    if (YAML::Node d = root["plugin_dirs"]) {
      if (!d.IsSequence()) {
        r.error(d, "plugin_dirs", "must be a list of folders");
      } else {
        for (size_t i = 0; i < d.size(); ++i) {
          if (!d[i].IsScalar())
            r.error(d[i], "plugin_dirs[" + std::to_string(i) + "]", "must be a folder path");
          else
            c.plugin_dirs.push_back(resolve_path(base_dir, d[i].Scalar()));
        }
      }
    }
    read_channels(r, root["channels"], c.dispatcher.retry, c.channels);
    for (const auto& ch : c.channels)
      if ((ch.track_clicks || ch.track_opens) && c.server.public_url.empty())
        r.error(ch.track_at, "channels[" + std::to_string(ch.index) + "].track." + (ch.track_clicks ? "clicks" : "opens"),
                "needs server.public_url: a tracked link points at the gateway, which must be reachable from outside");
    std::set<std::string> channel_names;
    for (const auto& ch : c.channels) channel_names.insert(ch.name);
    read_policy(r, root["policy"], channel_names, c.policy);
    read_templates(r, root["templates"], base_dir, c.templates);
  }
  c.store.data_dir = resolve_path(base_dir, c.store.data_dir);
  if (!r.errors.empty()) return {std::nullopt, r.errors};
  return {std::move(c), {}};
}

}  // namespace

LoadResult load_string(const std::string& yaml, const std::string& file, const std::string& base_dir,
                       const Environment& env) {
  try {
    return read_document(YAML::Load(yaml), file, base_dir, env);
  } catch (const YAML::Exception& e) {
    // Syntax errors: yaml-cpp knows where, and says what.
    return {std::nullopt, {{file, {e.mark.line + 1, e.mark.column + 1}, "", e.msg}}};
  }
}

const std::set<std::string>& event_types() { return kEventTypes; }

LoadResult load_file(const std::string& path, const Environment& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {std::nullopt, {{path, {0, 0}, "", "cannot read the file"}}};
  std::stringstream buf;
  buf << in.rdbuf();
  std::string base = std::filesystem::absolute(path).parent_path().string();
  return load_string(buf.str(), path, base, env);
}

}  // namespace tayori::config
