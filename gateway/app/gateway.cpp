#include "app/gateway.hpp"

#include <signal.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "api/api.hpp"
#include "api/http_server.hpp"
#include "api/metrics.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "core/dispatcher.hpp"
#include "render/renderer.hpp"
#include "plugin/channel.hpp"
#include "store/sqlite_store.hpp"
#include "transport/http_transport.hpp"

namespace tayori::app {

namespace {

void print(const std::vector<config::Diagnostic>& errors) {
  for (const auto& d : errors) std::cerr << d.to_string() << "\n";
}

// Loads the YAML and the plugins it names; prints every problem. nullopt when anything is wrong.
struct Loaded {
  config::Config config;
  // Declared before the channels: they send through it, so it must outlive them.
  std::unique_ptr<transport::HttpTransport> transport;
  std::unique_ptr<plugin::Registry> channels;
  std::unique_ptr<render::TemplateStore> templates;  // null: no templates configured
};

std::unique_ptr<render::TemplateStore> load_templates(const config::Config& config) {
  std::vector<std::string> errors;
  auto templates = render::TemplateStore::load(config.templates.dir, errors);
  if (!errors.empty()) {
    for (const auto& e : errors) std::cerr << config.file << ": templates.dir: " << e << "\n";
    return nullptr;
  }
  return templates;
}

std::optional<Loaded> load(const std::string& path, const Clock& clock) {
  auto result = config::load_file(path, config::process_environment());
  if (!result.config) {
    print(result.errors);
    return std::nullopt;
  }
  // Templates are checked with the rest, so a broken one is refused before the gateway starts.
  std::unique_ptr<render::TemplateStore> templates;
  if (!result.config->templates.dir.empty() && !(templates = load_templates(*result.config))) return std::nullopt;
  // The host owns outbound I/O for sans-I/O plugins (ARCHITECTURE.md §3); TLS verification stays on.
  transport::TransportOptions outbound;
  outbound.verify_tls = result.config->outbound.verify_tls;
  outbound.ca_file = result.config->outbound.ca_file;
  outbound.connect_timeout_ms = result.config->outbound.connect_timeout_ms;
  outbound.default_timeout_ms = result.config->outbound.timeout_ms;
  auto transport = std::make_unique<transport::HttpTransport>(outbound);
  auto registry = plugin::build_registry(*result.config, clock, transport.get());
  if (!registry.registry) {
    print(registry.errors);
    return std::nullopt;
  }
  return Loaded{std::move(*result.config), std::move(transport), std::move(registry.registry), std::move(templates)};
}

}  // namespace

int check_config(const std::string& path) {
  SystemClock clock;
  auto loaded = load(path, clock);
  if (!loaded) return 2;
  std::cout << path << ": OK (" << loaded->channels->channels().size() << " channels)\n";
  return 0;
}

int list_plugins(const std::string& path) {
  SystemClock clock;
  auto loaded = load(path, clock);
  if (!loaded) return 2;
  for (const auto& c : loaded->channels->channels()) {
    const tayori_plugin& p = c->library().descriptor();
    std::cout << "channel " << c->name() << ": plugin " << p.name << " " << p.version << " (ABI " << p.abi_major
              << "." << p.abi_minor << ", " << (c->library().sans_io() ? "sans-I/O" : "direct delivery")
              << ", contact " << c->contact() << ")\n  file: " << c->library().path() << "\n";
    if (p.description) std::cout << "  " << p.description << "\n";
    if (c->library().batches())
      std::cout << "  batching: up to " << p.batch_max << " deliveries of identical content per request, "
                << (c->batch_window_ms() > 0 ? "batch_window " + format_duration_ms(c->batch_window_ms())
                                             : std::string("off (set batch_window on the channel)"))
                << "\n";
    for (size_t i = 0; i < p.settings_count; ++i) {
      const tayori_setting_spec& s = p.settings[i];
      static const char* kTypes[] = {"string", "int", "bool", "duration", "secret", "url", "path"};
      std::cout << "  setting " << s.name << (s.type == TAYORI_SETTING_SECRET ? "_env" : "") << " ("
                << (s.type >= 0 && s.type <= TAYORI_SETTING_PATH ? kTypes[s.type] : "?")
                << (s.required ? ", required" : "") << (s.default_value ? std::string(", default ") + s.default_value : "")
                << "): " << (s.description ? s.description : "") << "\n";
    }
  }
  return 0;
}

int serve(const ServeOptions& options) {
  // Signals are taken synchronously by this thread (sigwait); every thread started below inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  SystemClock clock;
  auto loaded = load(options.config_path, clock);
  if (!loaded) return 2;
  config::Config& config = loaded->config;
  if (options.listen) config.server.listen = *options.listen;
  if (options.data_dir) config.store.data_dir = *options.data_dir;
  std::string host;
  uint16_t port = 0;
  if (std::string problem = config::check_listen(config.server.listen, &host, &port); !problem.empty()) {
    std::cerr << "--listen: " << problem << "\n";
    return 2;
  }

  std::error_code ec;
  std::filesystem::create_directories(config.store.data_dir, ec);
  if (ec) {
    std::cerr << "store.data_dir: cannot create \"" << config.store.data_dir << "\": " << ec.message() << "\n";
    return 1;
  }
  std::unique_ptr<store::Store> store;
  try {
    store = store::open_sqlite({(std::filesystem::path(config.store.data_dir) / "tayori.db").string()});
  } catch (const std::exception& e) {
    std::cerr << "store: " << e.what() << "\n";
    return 1;
  }
  if (int n = store->requeue_in_flight(clock.now_ms()); n > 0)
    log::info("dispatcher", std::to_string(n) + " deliveries that were in flight at the last stop are queued again");

  const render::TemplateStore* templates = loaded->templates.get();
  core::Clearance clearance(*store, config.policy, *loaded->channels);
  core::Dispatcher dispatcher(*store, *loaded->channels, clock, config.dispatcher, clearance, templates,
                              config.templates.missing_variable_is_error);
  api::Metrics metrics;
  api::Api api(config, {*store, *loaded->channels, clock, metrics, clearance, templates,
                        config.templates.missing_variable_is_error, [&] { dispatcher.wake(); },
                        [&] { return dispatcher.in_flight(); }});
  int threads = config.server.threads > 0 ? config.server.threads : static_cast<int>(std::thread::hardware_concurrency());
  api::HttpServer server(api,
                         {config.server.max_body_bytes, 16 * 1024, config.server.header_timeout_ms,
                          config.server.body_timeout_ms, config.server.idle_timeout_ms},
                         threads);
  dispatcher.start();
  uint16_t bound = 0;
  try {
    bound = server.start(host, port);
  } catch (const std::exception& e) {
    std::cerr << "server.listen: cannot listen on " << config.server.listen << ": " << e.what() << "\n";
    dispatcher.stop();
    return 1;
  }
  // Tests and scripts read this line to learn the port when listening on port 0.
  std::cout << "tayori: listening on http://" << host << ":" << bound << std::endl;
  log::info("gateway", "serving " + std::to_string(loaded->channels->channels().size()) + " channels, data in " +
                           config.store.data_dir);

  // Housekeeping between signals: finished messages (and their idempotency keys) older than retention go.
  timespec tick{60, 0};
  for (;;) {
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGHUP) {
      // Its default action would kill the process: an operator's reload must never cost the gateway.
      log::warn("gateway", "SIGHUP: configuration reload is not supported yet; restart to apply changes");
      continue;
    }
    if (sig == SIGINT || sig == SIGTERM) {
      log::info("gateway", std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
      break;
    }
    int64_t purged = store->purge_finished(clock.now_ms() - config.store.retention_ms);
    // Cap slots older than the longest window can no longer count.
    store->purge_slots(clock.now_ms() - std::max<int64_t>(config.policy.longest_cap_window_ms(), 86'400'000));
    if (purged > 0) log::info("store", "purged " + std::to_string(purged) + " finished messages past retention");
  }
  api.set_draining(true);
  server.stop(2000);
  dispatcher.stop();
  store.reset();
  log::info("gateway", "stopped");
  return 0;
}

}  // namespace tayori::app
