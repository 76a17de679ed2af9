// The gateway's Prometheus metrics (prometheus-cpp core; /metrics is served by our own HTTP server).
// Metric names are part of the operator interface: tayori_<what>[_unit][_total].
#pragma once

#include <cstdint>
#include <map>
#include <memory>
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

class Metrics {
 public:
  Metrics();
  ~Metrics();

  void count_request(std::string_view route, std::string_view method, int status);
  void count_intake(std::string_view result, int64_t n);  // accepted | duplicate | rejected | conflict
  void observe_accept_latency(double seconds);

  // Text exposition format 0.0.4, with the store-derived gauges refreshed first.
  std::string render(const std::map<store::State, int64_t>& by_state, int64_t in_flight);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* intake_;
  prometheus::Histogram* accept_latency_;
  prometheus::Family<prometheus::Gauge>* messages_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* in_flight_;
};

}  // namespace tayori::api
