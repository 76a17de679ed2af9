// The HTTP request head, and what the gateway does with it: the input is the bytes of one request as a
// connection receives them. It is read by the server's own parser with the server's limits (Beast's, via
// api::parse_request), and the request it gives goes to the real API (routing, percent-decoding, query
// parameters, authentication, every route's handler) in front of a real SQLite store and a file_sink
// channel. Every request must be answered exactly once with a status the server can send; the API key is
// "k", the app key "app", so seeds reach the authenticated routes.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <string>

#include "api/api.hpp"
#include "api/http_server.hpp"
#include "core/clearance.hpp"
#include "fuzz_support.hpp"
#include "store/sqlite_store.hpp"

namespace {

using namespace tayori;

struct Gateway {
  SystemClock clock;
  config::Config config = fuzz::load_config(
      "server: {public_url: 'https://gw.example', link_secret_env: LINK_SECRET}\n"
      "api_keys: [{name: t, key_env: K}]\n"
      "inbound: {app_keys: [{name: app, key_env: APP}]}\n"
      "plugin_dirs: [" TAYORI_PLUGIN_DIR "]\n"
      "channels:\n  - name: files\n    plugin: file_sink\n    settings: {path: deliveries.jsonl}\n",
      {{"K", "k"}, {"APP", "app"}, {"LINK_SECRET", "link-secret"}});
  std::unique_ptr<plugin::Registry> channels = fuzz::load_channels(config, clock);
  std::unique_ptr<store::Store> store =
      store::open_sqlite({.path = fuzz::scratch_dir() + "/tayori.db", .synchronous_full = false});
  api::Metrics metrics;
  core::Clearance clearance{*store, config.policy, *channels};
  api::Api api{config, api::ApiDependencies{*store, *channels, clock, metrics, clearance, nullptr,
                                            config.templates.missing_variable_is_error, [] {}, [] {},
                                            [] { return int64_t{0}; }, {}, {}}};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Gateway* gateway = (fuzz::quiet(), new Gateway);  // lives until exit: the store's threads use it
  api::ParsedRequest parsed = api::parse_request(fuzz::text(data, size), api::ServerLimits{});
  if (!parsed.request) {
    // Incomplete (the server would wait for more) or refused by the parser with one of its three answers.
    if (parsed.status != 0 && parsed.status != 400 && parsed.status != 413 && parsed.status != 431) __builtin_trap();
    return 0;
  }
  parsed.request->remote = "127.0.0.1:1";
  parsed.request->received_at_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  auto answer = std::make_shared<std::promise<api::HttpResponse>>();
  auto answers = std::make_shared<std::atomic<int>>(0);
  gateway->api.handle(std::move(*parsed.request), [answer, answers](api::HttpResponse r) {
    if (answers->fetch_add(1) == 0) answer->set_value(std::move(r));
    else __builtin_trap();  // answered twice
  });
  std::future<api::HttpResponse> response = answer->get_future();
  if (response.wait_for(std::chrono::seconds(30)) != std::future_status::ready) __builtin_trap();  // never answered
  int status = response.get().status;
  if (status < 200 || status > 599) __builtin_trap();
  return 0;
}
