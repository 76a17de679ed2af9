// The gateway's Prometheus metrics (prometheus-cpp core; /metrics is served by our own HTTP server).
// Metric names are part of the operator interface: tayori_<what>[_unit][_total].
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "store/store.hpp"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace tayori::api {

// The `method` label of a request: the method's name when the API knows it, else "other" ("-" stays, for
// answers the server gives before a method is known).
std::string_view method_label(std::string_view method);

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // `route` is a route template (never a raw path); `method` is bounded here (method_label).
  void count_request(std::string_view route, std::string_view method, int status);
  void count_connection_refused();  // server.max_connections were open
  void count_intake(std::string_view result, int64_t n);  // accepted | duplicate | rejected | conflict
  void count_handed_over(int64_t n);                      // accepted messages handed to the dispatcher by their commit
  void observe_accept_latency(double seconds);

  // Delivery health (issue "Delivery that survives").
  void count_retry(std::string_view channel, std::string_view cause);  // DeliveryOutcome::cause
  void count_dead_letter(std::string_view channel);
  void set_circuit_state(std::string_view channel, int state);  // 0 closed, 1 open, 2 half-open
  void count_circuit_opened(std::string_view channel, uint64_t total);
  void set_oldest_due_age(double seconds);
  void set_unrecorded(int64_t n);
  void set_store_writes(const store::WriteStats& writes);  // cumulative, from Store::write_stats
  void set_decision_reads(const store::DecisionReads& reads);  // cumulative, from Store::decision_reads
  // Upstream webhooks (feed/webhooks.hpp): result delivered | retried | dropped; lag = last seq - cursor.
  void count_webhook(std::string_view webhook, std::string_view result);
  void set_webhook_lag(std::string_view webhook, int64_t events);
  // Runs at the start of every render(), to refresh gauges read from elsewhere (circuits, the due queue).
  void set_refresh(std::function<void(Metrics&)> refresh) { refresh_ = std::move(refresh); }

  // Text exposition format 0.0.4, with the store-derived gauges refreshed first.
  std::string render(const std::map<store::State, int64_t>& by_state, int64_t in_flight);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Counter* connections_refused_;
  prometheus::Family<prometheus::Counter>* intake_;
  prometheus::Counter* handed_over_;
  prometheus::Histogram* accept_latency_;
  prometheus::Family<prometheus::Gauge>* messages_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* in_flight_;
  prometheus::Family<prometheus::Counter>* retries_;
  prometheus::Family<prometheus::Counter>* dead_letters_total_;
  prometheus::Family<prometheus::Gauge>* circuit_state_;
  prometheus::Family<prometheus::Counter>* circuit_opened_;
  prometheus::Gauge* oldest_due_age_;
  prometheus::Gauge* dead_letters_;
  prometheus::Gauge* unrecorded_;
  prometheus::Family<prometheus::Counter>* store_writes_;
  prometheus::Family<prometheus::Counter>* decision_reads_;
  prometheus::Family<prometheus::Counter>* webhook_deliveries_;
  prometheus::Family<prometheus::Gauge>* webhook_lag_;
  prometheus::Family<prometheus::Counter>* thread_errors_;
  std::function<void(Metrics&)> refresh_;
  std::mutex refresh_mutex_;
};

}  // namespace tayori::api
