// The process: builds a generation (config, channels, store, dispatcher, API, HTTP server) in that order, swaps
// it on SIGHUP, drains and tears it down in reverse on SIGTERM/SIGINT, and runs `check-config`. main.cpp
// calls run() and check_config(); nothing else in gateway/ includes app/.
#include "app/gateway.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>

#include "api/api.hpp"
#include "api/http_server.hpp"
#include "common/log.hpp"
#include "common/thread_guard.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "core/dispatcher.hpp"
#include "feed/webhooks.hpp"
#include "metrics/metrics.hpp"
#include "plugin/channel.hpp"
#include "render/renderer.hpp"
#include "store/postgres/pg_store.hpp"
#include "store/sqlite_store.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::app {

namespace {

void print(const std::vector<config::Diagnostic>& errors) {
  for (const auto& d : errors) std::cerr << d.to_string() << "\n";
}

// Loads the YAML and the plugins it names; prints every problem. nullopt when anything is wrong.
struct Loaded {
  config::Config config;
  // Declared before the channels: they send through it, so it must outlive them.
  std::unique_ptr<transport::OutboundTransport> transport;
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
  // The host owns outbound I/O for sans-I/O plugins (docs/architecture.md §3); TLS verification stays on.
  transport::TransportOptions outbound;
  outbound.verify_tls = result.config->outbound.verify_tls;
  outbound.ca_file = result.config->outbound.ca_file;
  outbound.connect_timeout_ms = result.config->outbound.connect_timeout_ms;
  outbound.default_timeout_ms = result.config->outbound.timeout_ms;
  auto transport = std::make_unique<transport::OutboundTransport>(outbound);
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

namespace {

// Everything built from one reading of the configuration: the channels with their transport, the policy
// and templates, and the dispatcher and API that use them. SIGHUP builds a new generation beside the
// running one and swaps it in; the old one finishes its deliveries in flight and is then destroyed.
// Members are declared in build order and destroyed in reverse.
struct Generation {
  Loaded loaded;
  std::unique_ptr<core::Clearance> clearance;
  std::unique_ptr<core::Dispatcher> dispatcher;
  // The upstream webhooks send through loaded.transport; their cursors are in the store, so a reload
  // (stop the old, start the new) resends at most the event each had in flight.
  std::unique_ptr<feed::Webhooks> webhooks;
  std::unique_ptr<api::Api> api;

  ~Generation() {
    if (webhooks) webhooks->stop();
    if (dispatcher) dispatcher->stop();
  }
};

// The handler the HTTP server calls: the current generation's API. A request keeps the generation it
// started in alive until it is answered (it may wait for a group commit across a reload).
class CurrentApi final : public api::Handler {
 public:
  void set(std::shared_ptr<Generation> g) {
    std::lock_guard lock(mutex_);
    current_ = std::move(g);
  }
  std::shared_ptr<Generation> get() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  void handle(api::HttpRequest request, api::Responder respond) override {
    std::shared_ptr<Generation> g = get();
    g->api->handle(std::move(request), [g, respond = std::move(respond)](api::HttpResponse r) { respond(std::move(r)); });
  }
  std::optional<api::HttpResponse> screen(const api::HttpRequest& head) override { return get()->api->screen(head); }
  // Also called after the last generation is gone (a request the store answers while it stops): then uncounted.
  void observe_rejected(int status) override {
    if (auto g = get()) g->api->observe_rejected(status);
  }
  void observe_connection_refused() override {
    if (auto g = get()) g->api->observe_connection_refused();
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<Generation> current_;
};

// What a reload cannot change in a running process (it would need a restart): kept as they were, with a
// warning naming them.
void keep_fixed_settings(const config::Config& running, config::Config& next) {
  std::vector<std::string> changed;
  if (next.server.listen != running.server.listen) changed.push_back("server.listen");
  if (next.store.data_dir != running.store.data_dir) changed.push_back("store.data_dir");
  if (next.store.max_bytes != running.store.max_bytes) changed.push_back("store.max_size");
  if (next.store.backend != running.store.backend) changed.push_back("store.backend");
  if (next.store.url != running.store.url) changed.push_back("store.url_env");
  if (next.store.pool_size != running.store.pool_size) changed.push_back("store.pool_size");
  if (next.store.statement_timeout_ms != running.store.statement_timeout_ms) changed.push_back("store.statement_timeout");
  if (next.store.lease_ms != running.store.lease_ms) changed.push_back("store.lease");
  if (next.store.node_id != running.store.node_id) changed.push_back("store.node_id");
  if (next.server.threads != running.server.threads) changed.push_back("server.threads");
  if (next.server.max_body_bytes != running.server.max_body_bytes) changed.push_back("server.max_body_bytes");
  if (next.server.header_timeout_ms != running.server.header_timeout_ms) changed.push_back("server.header_timeout");
  if (next.server.body_timeout_ms != running.server.body_timeout_ms) changed.push_back("server.body_timeout");
  if (next.server.idle_timeout_ms != running.server.idle_timeout_ms) changed.push_back("server.idle_timeout");
  if (next.server.max_connections != running.server.max_connections) changed.push_back("server.max_connections");
  next.server.listen = running.server.listen;
  next.store = running.store;
  next.server.threads = running.server.threads;
  next.server.max_body_bytes = running.server.max_body_bytes;
  next.server.header_timeout_ms = running.server.header_timeout_ms;
  next.server.body_timeout_ms = running.server.body_timeout_ms;
  next.server.idle_timeout_ms = running.server.idle_timeout_ms;
  next.server.max_connections = running.server.max_connections;
  for (const auto& key : changed)
    log::warn("gateway", "SIGHUP: " + key + " changed in the file; it takes effect at the next restart");
}

// This host's name: a node's id in claims when store.node_id is not set.
std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "tayori";
  return name;
}

// The store the configuration names; nullptr (said on stderr) when it cannot be opened.
std::unique_ptr<store::Store> open_store(const config::StoreConfig& c) {
  try {
    if (c.backend == config::StoreBackend::postgres) {
      store::PostgresOptions options;
      options.uri = c.url;
      options.pool_size = c.pool_size;
      options.statement_timeout_ms = c.statement_timeout_ms;
      options.lease_ms = c.lease_ms;
      options.node_id = c.node_id.empty() ? host_name() : c.node_id;
      auto store = store::open_postgres(options);
      log::info("store", "PostgreSQL, node " + options.node_id);
      return store;
    }
    std::error_code ec;
    std::filesystem::create_directories(c.data_dir, ec);
    if (ec) {
      std::cerr << "store.data_dir: cannot create \"" << c.data_dir << "\": " << ec.message() << "\n";
      return nullptr;
    }
    store::SqliteOptions options;
    options.path = (std::filesystem::path(c.data_dir) / "tayori.db").string();
    options.max_bytes = c.max_bytes;
    return store::open_sqlite(options);
  } catch (const std::exception& e) {
    std::cerr << "store: " << e.what() << "\n";
    return nullptr;
  }
}

}  // namespace

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
  auto first = load(options.config_path, clock);
  if (!first) return 2;
  config::Config& config = first->config;
  if (options.listen) config.server.listen = *options.listen;
  if (options.data_dir) config.store.data_dir = *options.data_dir;
  std::string host;
  uint16_t port = 0;
  if (std::string problem = config::check_listen(config.server.listen, &host, &port); !problem.empty()) {
    std::cerr << "--listen: " << problem << "\n";
    return 2;
  }

  std::unique_ptr<store::Store> store = open_store(config.store);
  if (!store) return 1;
  if (Result<int> requeued = store->requeue_in_flight(clock.now_ms()); !requeued)
    log::error("dispatcher", "the deliveries in flight at the last stop could not be queued again (" +
                                 requeued.error().message + "): they stay dispatched until the next start");
  else if (*requeued > 0)
    log::info("dispatcher",
              std::to_string(*requeued) + " deliveries that were in flight at the last stop are queued again");

  api::Metrics metrics;
  CurrentApi current;
  // One generation from a loaded configuration. Its dispatcher is not started yet.
  auto build = [&](Loaded loaded) {
    auto g = std::make_shared<Generation>();
    g->loaded = std::move(loaded);
    const config::Config& c = g->loaded.config;
    g->clearance = std::make_unique<core::Clearance>(*store, c.policy, *g->loaded.channels);
    g->dispatcher =
        std::make_unique<core::Dispatcher>(*store, *g->loaded.channels, clock, c.dispatcher, *g->clearance,
                                           g->loaded.templates.get(), c.templates.missing_variable_is_error);
    // Response options carry refs signed like the unsubscribe links (and point at public_url /r/).
    if (!c.server.public_url.empty())
      g->dispatcher->set_links(links::LinkSigner(c.server.public_url, c.server.link_keys), c.server.link_ttl_ms);
    g->dispatcher->set_outcome_listener([&metrics](const std::string& channel, const plugin::DeliveryOutcome& outcome,
                                                   const store::Transition& t) {
      if (t.to == store::State::dead) metrics.count_dead_letter(channel);
      else if (outcome.kind == plugin::OutcomeKind::retry && !outcome.circuit_open && !t.next_channel &&
               t.to == store::State::scheduled)
        metrics.count_retry(channel, outcome.cause);
    });
    core::Dispatcher* dispatcher = g->dispatcher.get();
    g->webhooks = std::make_unique<feed::Webhooks>(c.webhooks, *store, *g->loaded.transport, clock, &metrics);
    feed::Webhooks* webhooks = g->webhooks.get();
    // Accepted messages are new events too: the senders look at once instead of at their next poll.
    g->api = std::make_unique<api::Api>(
        c, api::ApiDependencies{*store, *g->loaded.channels, clock, metrics, *g->clearance, g->loaded.templates.get(),
                                c.templates.missing_variable_is_error,
                                [dispatcher, webhooks] {
                                  dispatcher->wake();
                                  webhooks->wake();
                                },
                                [webhooks] { webhooks->wake(); }, [dispatcher] { return dispatcher->in_flight(); },
                                [dispatcher](int wanted) { return dispatcher->reserve(wanted); },
                                [dispatcher](std::vector<core::Claim> claims, int reserved) {
                                  dispatcher->hand_over(std::move(claims), reserved);
                                }});
    return g;
  };
  std::shared_ptr<Generation> generation;
  try {
    generation = build(std::move(*first));
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  current.set(generation);
  metrics.set_refresh([&current, &store, &clock](api::Metrics& m) {
    std::shared_ptr<Generation> g = current.get();
    for (const auto& c : g->loaded.channels->channels()) {
      m.set_circuit_state(c->name(), static_cast<int>(c->circuit().state()));
      m.count_circuit_opened(c->name(), c->circuit().times_opened());
    }
    // A store that cannot be read leaves the gauge as it was: the scrape still answers, with the rest (and
    // tayori_thread_errors_total saying why), when an operator needs it most.
    run_guarded("metrics", "reading the due queue", [&] {
      int64_t now = clock.now_ms();
      std::optional<int64_t> due = store->next_due_ms();
      m.set_oldest_due_age(due && *due < now ? static_cast<double>(now - *due) / 1000.0 : 0.0);
    });
    m.set_unrecorded(g->dispatcher->unrecorded());
    m.set_store_writes(store->write_stats());
    m.set_decision_reads(store->decision_reads());
  });

  const config::ServerConfig server_config = generation->loaded.config.server;
  int threads = server_config.threads > 0 ? server_config.threads : static_cast<int>(std::thread::hardware_concurrency());
  api::HttpServer server(current,
                         {server_config.max_body_bytes, 16 * 1024, server_config.header_timeout_ms,
                          server_config.body_timeout_ms, server_config.idle_timeout_ms, server_config.max_connections},
                         threads);
  generation->dispatcher->start();
  generation->webhooks->start();
  uint16_t bound = 0;
  try {
    bound = server.start(host, port);
  } catch (const std::exception& e) {
    std::cerr << "server.listen: cannot listen on " << server_config.listen << ": " << e.what() << "\n";
    generation->webhooks->stop();
    generation->dispatcher->stop();
    return 1;
  }
  // Tests and scripts read this line to learn the port when listening on port 0.
  std::cout << "tayori: listening on http://" << host << ":" << bound << std::endl;
  // `config` was moved into the generation: read its store from there.
  const config::StoreConfig& store_config = generation->loaded.config.store;
  log::info("gateway", "serving " + std::to_string(generation->loaded.channels->channels().size()) +
                           " channels, data in " +
                           (store_config.backend == config::StoreBackend::postgres ? std::string("PostgreSQL")
                                                                                    : store_config.data_dir));

  // Housekeeping between signals: finished messages (and their idempotency keys) older than retention go.
  timespec tick{60, 0};
  for (;;) {
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGHUP) {
      // Reload: the new configuration is built and checked beside the running one; only when all of it
      // is good does it replace the old. The old dispatcher puts back what it claimed but did not start
      // and finishes its deliveries in flight on the old channels before the new one starts: one
      // dispatcher clears at a time, so frequency caps stay exact, and no message is held by both.
      log::info("gateway", "SIGHUP: reloading " + options.config_path);
      std::shared_ptr<Generation> old = current.get();
      auto next = load(options.config_path, clock);
      if (!next) {
        log::error("gateway", "SIGHUP: the new configuration was refused (errors above); the running one stays");
        continue;
      }
      keep_fixed_settings(old->loaded.config, next->config);
      std::shared_ptr<Generation> fresh;
      try {
        fresh = build(std::move(*next));
      } catch (const std::exception& e) {
        log::error("gateway", std::string("SIGHUP: the new configuration was refused: ") + e.what() +
                                  "; the running one stays");
        continue;
      }
      current.set(fresh);
      old->webhooks->stop();
      old->dispatcher->stop();
      fresh->dispatcher->start();
      fresh->webhooks->start();
      log::info("gateway", "SIGHUP: reloaded, " + std::to_string(fresh->loaded.channels->channels().size()) +
                               " channels");
      continue;
    }
    if (sig == SIGINT || sig == SIGTERM) {
      log::info("gateway", std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
      break;
    }
    // The main thread's top: a store that fails now is tried again at the next tick.
    run_guarded("housekeeping", "purging the store", [&] {
      // A purge that fails removed nothing and is tried again at the next tick.
      auto report = [](const Result<int64_t>& purged, const char* what) {
        if (!purged) log::error("store", std::string("purging ") + what + ": " + purged.error().message);
      };
      Result<int64_t> finished =
          store->purge_finished(clock.now_ms() - current.get()->loaded.config.store.retention_ms);
      report(finished, "finished messages past retention");
      if (finished && *finished > 0)
        log::info("store", "purged " + std::to_string(*finished) + " finished messages past retention");
      // Cap slots older than the longest window can no longer count.
      report(store->purge_slots(
                 clock.now_ms() -
                 std::max<int64_t>(current.get()->loaded.config.policy.longest_cap_window_ms(), 86'400'000)),
             "cap slots past every window");
      // Minute buckets serve the console's recent flow (at most a day, GET /v1/stats/flow); hours stay.
      report(store->purge_stat_minutes(clock.now_ms() - 2 * 86'400'000), "minute stats past two days");
    });
  }
  // Graceful stop: new work is refused with 503 at once (a load balancer moves on), deliveries in flight
  // get the grace period to finish and be recorded, and what is left after it is recovered at the next start.
  generation = current.get();
  generation->api->set_draining(true);
  int64_t grace = generation->loaded.config.server.shutdown_grace_ms;
  generation->webhooks->stop();  // an event in flight is sent again at the next start (at-least-once)
  bool finished = generation->dispatcher->stop(grace);
  server.stop(finished ? 1000 : 0);
  if (!finished) {
    log::warn("gateway", "shutdown_grace (" + format_duration_ms(grace) +
                             ") ended with deliveries in flight; they are delivered again after the next start");
    std::_Exit(0);  // the threads still delivering must not outlive what they use; SQLite recovers
  }
  generation.reset();
  current.set(nullptr);
  store.reset();
  log::info("gateway", "stopped");
  return 0;
}

}  // namespace tayori::app
