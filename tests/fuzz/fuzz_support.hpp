// What the libFuzzer targets share: a scratch folder of the process, and channels loaded through the real
// host (config -> build_registry -> the plugin's C ABI), as the gateway builds them at start.
#ifndef TAYORI_TESTS_FUZZ_FUZZ_SUPPORT_HPP
#define TAYORI_TESTS_FUZZ_FUZZ_SUPPORT_HPP

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.hpp"
#include "common/time.hpp"
#include "config/config.hpp"
#include "plugin/channel.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::fuzz {

// A fuzz target's input as text.
inline std::string_view text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A folder of this process, removed at exit; in /dev/shm when there is one (the store's fsyncs cost nothing).
// The name lives on the heap, never destroyed: the exit handler that removes the folder runs after the
// destructors of statics made before it was registered.
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    auto* path = new std::string(base + "/tayori-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(*path);
    std::atexit([] { std::filesystem::remove_all(scratch_dir()); });
    return path;
  }();
  return *dir;
}

// The gateway's log says what a refused input was; a fuzzer runs millions of them.
inline void quiet() { log::set_min_level(log::Level::error); }

// Loads `yaml` (a gateway config) with its *_env settings read from `env`; a config that does not load ends
// the process, since a target without its channels would fuzz nothing.
inline config::Config load_config(const std::string& yaml, std::map<std::string, std::string> env) {
  auto loaded = config::load_string(yaml, "fuzz.yaml", scratch_dir(), [env = std::move(env)](const std::string& name) {
    auto it = env.find(name);
    return it == env.end() ? std::string() : it->second;
  });
  if (!loaded.config) {
    std::fprintf(stderr, "fuzz config refused: %s\n", loaded.errors.empty() ? "" : loaded.errors[0].to_string().c_str());
    std::abort();
  }
  return std::move(*loaded.config);
}

// The channels of `config`, through the real host; a refusal ends the process as above. Sans-I/O plugins
// need a transport to be loaded; inbound calls never use it.
inline std::unique_ptr<plugin::Registry> load_channels(const config::Config& config, const Clock& clock) {
  static transport::OutboundTransport transport{transport::TransportOptions{}};
  plugin::RegistryResult reg = plugin::build_registry(config, clock, &transport);
  if (!reg.registry) {
    std::fprintf(stderr, "fuzz channels refused: %s\n", reg.errors.empty() ? "" : reg.errors[0].to_string().c_str());
    std::abort();
  }
  return std::move(reg.registry);
}

// A gateway whose one channel `name` is plugin `plugin` with `settings` (YAML lines under settings:,
// indented six), loaded once through the real host and kept until exit (reachable from a static, so no leak
// is reported); its API key is "k" (variable K), its public URL https://gw.example. The log is quietened.
inline plugin::Channel& one_channel(const std::string& name, const std::string& plugin, const std::string& settings,
                                    std::map<std::string, std::string> env) {
  struct Loaded {
    config::Config config;
    std::unique_ptr<plugin::Registry> channels;
  };
  static SystemClock clock;
  static auto* kept = new std::vector<std::unique_ptr<Loaded>>;
  quiet();
  env.emplace("K", "k");
  env.emplace("LINK_SECRET", "link-secret");
  auto loaded = std::make_unique<Loaded>();
  // A public URL: a channel whose provider signs the URL it called (Twilio) needs one to take webhooks.
  loaded->config = load_config("server: {public_url: 'https://gw.example', link_secret_env: LINK_SECRET}\n"
                               "api_keys: [{name: t, key_env: K}]\nplugin_dirs: [" TAYORI_PLUGIN_DIR "]\nchannels:\n"
                               "  - name: " + name + "\n    plugin: " + plugin + "\n    settings:\n" + settings,
                               std::move(env));
  loaded->channels = load_channels(loaded->config, clock);
  kept->push_back(std::move(loaded));
  return *kept->back()->channels->find(name);
}

// Hands a provider's call, signed in the target, to `channel`: whatever it says, it is refused only as
// unacceptable (400), never as unsigned (401), so the fuzzer's inputs reach the plugin's parsing.
inline void signed_call(plugin::Channel& channel, plugin::InboundRequest request) {
  std::vector<plugin::ProviderReport> events;
  plugin::InboundAnswer answer;
  if (!channel.inbound(request, events, answer) && answer.status != 400) __builtin_trap();
}

}  // namespace tayori::fuzz

#endif  // TAYORI_TESTS_FUZZ_FUZZ_SUPPORT_HPP
