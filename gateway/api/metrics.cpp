#include "api/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace tayori::api {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("tayori_http_requests_total")
                   .Help("HTTP requests answered, by route template, method and status")
                   .Register(*registry_);
  intake_ = &prometheus::BuildCounter()
                 .Name("tayori_intake_messages_total")
                 .Help("Messages submitted, by result: accepted, duplicate, rejected, conflict")
                 .Register(*registry_);
  // From the request's first byte to the 202 (which waits for the group commit's fsync).
  accept_latency_ = &prometheus::BuildHistogram()
                         .Name("tayori_accept_latency_seconds")
                         .Help("Time to accept a POST /v1/messages request durably")
                         .Register(*registry_)
                         .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                           0.05, 0.1, 0.25, 0.5, 1, 2.5});
  messages_ = &prometheus::BuildGauge()
                   .Name("tayori_messages")
                   .Help("Messages in the store, by state")
                   .Register(*registry_);
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("tayori_queue_depth")
                      .Help("Messages scheduled and not yet dispatched (due now or later)")
                      .Register(*registry_)
                      .Add({});
  in_flight_ = &prometheus::BuildGauge()
                    .Name("tayori_dispatch_in_flight")
                    .Help("Deliveries claimed by the dispatcher and not yet recorded")
                    .Register(*registry_)
                    .Add({});
}

Metrics::~Metrics() = default;

void Metrics::count_request(std::string_view route, std::string_view method, int status) {
  requests_->Add({{"route", std::string(route)}, {"method", std::string(method)}, {"status", std::to_string(status)}})
      .Increment();
}

void Metrics::count_intake(std::string_view result, int64_t n) {
  if (n > 0) intake_->Add({{"result", std::string(result)}}).Increment(static_cast<double>(n));
}

void Metrics::observe_accept_latency(double seconds) { accept_latency_->Observe(seconds); }

std::string Metrics::render(const std::map<store::State, int64_t>& by_state, int64_t in_flight) {
  for (auto [state, n] : by_state) {
    messages_->Add({{"state", std::string(store::to_string(state))}}).Set(static_cast<double>(n));
    if (state == store::State::scheduled) queue_depth_->Set(static_cast<double>(n));
  }
  in_flight_->Set(static_cast<double>(in_flight));
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace tayori::api
