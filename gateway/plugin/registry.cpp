// The registry of configured channels, and the checks that stand between a YAML channel and a running
// plugin instance. It is built once per configuration generation (start-up, reload), before any message
// flows: each channel's plugin is found and opened (loader.cpp), its settings are checked against the map
// the plugin declares -- plugins declare, the core decides (docs/architecture.md §6.4) -- and the channel's
// YAML limits are set on its transport pool. Every problem becomes a diagnostic with its YAML place, and
// any problem means no registry at all, so a generation never runs with part of its channels.
#include <algorithm>
#include <map>
#include <regex>
#include <set>

#include "plugin/channel.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::plugin {

Channel* Registry::find(const std::string& name) const {
  for (auto& c : channels_)
    if (c->name() == name) return c.get();
  return nullptr;
}

namespace {

// A setting's value as the plugin will read it (a path resolved, a duration in ms), or what is wrong with it.
Result<std::string> valid_value(const config::Config& config, tayori_setting_type type, const std::string& v) {
  auto wrong = [](std::string problem) { return Error{ErrorCode::invalid, std::move(problem)}; };
  switch (type) {
    case TAYORI_SETTING_PATH:
      if (v.empty()) return wrong("must be a file path");
      return config::resolve_path(config.base_dir, v);
    case TAYORI_SETTING_STRING:
    case TAYORI_SETTING_SECRET: return v;
    case TAYORI_SETTING_INT:
      if (!std::regex_match(v, std::regex("^-?[0-9]{1,18}$"))) return wrong("must be an integer");
      return v;
    case TAYORI_SETTING_BOOL:
      if (v != "true" && v != "false") return wrong("must be true or false");
      return v;
    case TAYORI_SETTING_DURATION: {
      auto ms = parse_duration_ms(v);
      if (!ms) return wrong("must be a duration like 250ms, 10s, 5m, 24h or 7d");
      return std::to_string(*ms);
    }
    case TAYORI_SETTING_URL:
      if (!std::regex_match(v, std::regex("^(https?|smtps?)://[^\\s/]+(/\\S*)?$")))
        return wrong("must be an absolute http(s):// or smtp(s):// URL");
      return v;
  }
  return wrong("has a type this host does not know");
}

}  // namespace

std::vector<std::pair<std::string, std::string>> check_settings(const config::Config& config,
                                                                const config::ChannelConfig& ch,
                                                                const tayori_plugin& p,
                                                                std::vector<config::Diagnostic>& errors) {
  std::string base = "channels[" + std::to_string(ch.index) + "].settings";
  std::vector<std::pair<std::string, std::string>> out;
  std::set<std::string> seen;
  auto spec_of = [&](const std::string& key) -> const tayori_setting_spec* {
    for (size_t i = 0; i < p.settings_count; ++i)
      if (p.settings[i].name && key == p.settings[i].name) return &p.settings[i];
    return nullptr;
  };
  for (const auto& sv : ch.settings) {
    std::string written = sv.from_env ? sv.key + "_env" : sv.key;
    const tayori_setting_spec* spec = spec_of(sv.key);
    if (spec == nullptr) {
      std::string known;
      for (size_t i = 0; i < p.settings_count; ++i) known += (known.empty() ? "" : ", ") + std::string(p.settings[i].name);
      errors.push_back({config.file, sv.at, base + "." + written,
                        "unknown setting for plugin " + std::string(p.name) +
                            (known.empty() ? " (it takes none)" : " (it takes: " + known + ")")});
      continue;
    }
    seen.insert(sv.key);  // reported below if wrong, but never also as "missing"
    if (spec->type == TAYORI_SETTING_SECRET && !sv.from_env) {
      errors.push_back({config.file, sv.at, base + "." + written,
                        "is a secret: name an environment variable with " + sv.key + "_env instead of writing it here"});
      continue;
    }
    if (spec->type != TAYORI_SETTING_SECRET && sv.from_env) {
      errors.push_back({config.file, sv.at, base + "." + written, "is not a secret: write " + sv.key + " directly"});
      continue;
    }
    Result<std::string> value = valid_value(config, spec->type, sv.value);
    if (!value) {
      errors.push_back({config.file, sv.at, base + "." + written, value.error().message});
      continue;
    }
    seen.insert(sv.key);
    out.emplace_back(sv.key, std::move(*value));
  }
  for (size_t i = 0; i < p.settings_count; ++i) {
    const tayori_setting_spec& spec = p.settings[i];
    if (seen.count(spec.name)) continue;
    if (spec.default_value != nullptr) {
      Result<std::string> value = valid_value(config, spec.type, spec.default_value);
      if (!value) {
        errors.push_back({config.file, ch.settings_at, base + "." + spec.name,
                          "plugin " + std::string(p.name) + " declares an invalid default \"" + spec.default_value +
                              "\": " + value.error().message});
        continue;
      }
      out.emplace_back(spec.name, std::move(*value));
    } else if (spec.required) {
      std::string key = spec.type == TAYORI_SETTING_SECRET ? std::string(spec.name) + "_env" : spec.name;
      errors.push_back({config.file, ch.settings_at, base + "." + key, "is required by plugin " + std::string(p.name)});
    }
  }
  return out;
}

RegistryResult build_registry(const config::Config& config, const Clock& clock,
                              transport::OutboundTransport* transport) {
  RegistryResult result;
  auto registry = std::make_unique<Registry>();
  std::map<std::string, std::shared_ptr<Library>> libraries;
  ChannelHost host{clock, transport, {}, config.server.link_ttl_ms};
  host.links = links::LinkSigner(config.server.public_url, config.server.link_keys);
  for (const auto& ch : config.channels) {
    std::string path_key = "channels[" + std::to_string(ch.index) + "]";
    std::string searched;
    std::string path = find_plugin(ch.plugin, config.plugin_dirs, config.base_dir, searched);
    if (path.empty()) {
      result.errors.push_back({config.file, ch.at, path_key + ".plugin",
                               "plugin \"" + ch.plugin + "\" not found (looked in: " + searched + ")"});
      continue;
    }
    std::shared_ptr<Library>& lib = libraries[path];
    if (!lib) {
      Result<std::shared_ptr<Library>> opened = Library::open(path);
      if (!opened) {
        result.errors.push_back({config.file, ch.at, path_key + ".plugin", opened.error().message});
        libraries.erase(path);
        continue;
      }
      lib = std::move(opened).value();
    }
    const tayori_plugin& p = lib->descriptor();
    if (lib->sans_io() && p.on_deliver == nullptr && transport == nullptr) {
      result.errors.push_back({config.file, ch.at, path_key + ".plugin",
                               "plugin " + std::string(p.name) +
                                   " is sans-I/O (on_build/on_classify) and no outbound transport was given"});
      continue;
    }
    size_t errors_before = result.errors.size();
    auto settings = check_settings(config, ch, p, result.errors);
    if (result.errors.size() != errors_before) continue;
    std::string contact = !ch.contact.empty() ? ch.contact : (p.default_contact ? p.default_contact : "");
    if (contact.empty()) {
      result.errors.push_back({config.file, ch.at, path_key + ".contact",
                               "plugin " + std::string(p.name) + " has no default contact: say which recipient contact it uses"});
      continue;
    }
    if (ch.batch_window_ms > 0 && !lib->batches()) {
      result.errors.push_back({config.file, ch.batch_window_at, path_key + ".batch_window",
                               "plugin " + std::string(p.name) +
                                   " does not batch deliveries (it has no on_build_batch): remove batch_window"});
      continue;
    }
    // The plugin verifies a signature over the URL its provider called, and only public_url says what that
    // URL is (behind a TLS terminator the Host header and scheme are not): without it every call would be
    // refused with a 401 nobody sees. Refused here, where the plugin's declaration is known.
    if (ch.inbound && p.on_inbound != nullptr && (p.inbound_flags & TAYORI_INBOUND_SIGNS_URL) != 0 &&
        config.server.public_url.empty()) {
      result.errors.push_back({config.file, ch.at, "server.public_url",
                               "is required by channel " + ch.name + ": plugin " + std::string(p.name) +
                                   " verifies its provider's signature over the URL it calls, which only "
                                   "public_url gives (or set inbound: false on the channel if its provider "
                                   "never calls back)"});
      continue;
    }
    auto channel = std::make_unique<Channel>(ch.name, contact, lib, host);
    channel->set_batch_window_ms(ch.batch_window_ms);
    channel->set_inbound(ch.inbound);
    channel->set_retry_policy(ch.retry);
    channel->set_circuit_breaker(ch.circuit_breaker);
    channel->set_track_clicks(ch.track_clicks);
    channel->set_track_opens(ch.track_opens);
    if (transport != nullptr && (ch.concurrency > 0 || ch.rate_per_second > 0)) {
      transport::PoolOptions pool;
      pool.max_concurrent = ch.concurrency;
      if (ch.rate_per_second > 0)
        pool.rate_limiter = std::make_shared<transport::TokenBucket>(
            ch.rate_per_second, ch.burst > 0 ? ch.burst : std::max(1.0, ch.rate_per_second));
      transport->configure_pool(channel->pool_key(), pool);
    }
    if (Result<void> created = channel->create(settings); !created) {
      result.errors.push_back({config.file, ch.settings_at, path_key + ".settings", created.error().message});
      continue;
    }
    registry->add(std::move(channel));
  }
  if (result.errors.empty()) result.registry = std::move(registry);
  return result;
}

}  // namespace tayori::plugin
