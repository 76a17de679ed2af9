// The gateway's Prometheus metrics: the counters, gauges and histograms every part records into (the API,
// the dispatcher, the transport, webhooks), and the text exposition that GET /metrics serves
// (api/api.cpp). Its own folder, below feed/ and api/, so that what records a metric need not include
// the API.
#include "metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "common/thread_guard.hpp"

namespace tayori::api {

namespace {
// The family `name` in `registry`; each series of it is one set of label values (Add).
prometheus::Family<prometheus::Counter>& counters(prometheus::Registry& registry, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}
prometheus::Family<prometheus::Gauge>& gauges(prometheus::Registry& registry, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}
prometheus::Family<prometheus::Histogram>& histograms(prometheus::Registry& registry, const char* name,
                                                      const char* help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}
}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &counters(*registry_, "tayori_http_requests_total",
                        "HTTP requests answered, by route template, method and status");
  connections_refused_ =
      &counters(*registry_, "tayori_http_connections_refused_total",
                "Connections refused at once (a 503, closed) because server.max_connections were open")
           .Add({});
  intake_ = &counters(*registry_, "tayori_intake_messages_total",
                      "Messages submitted, by result: accepted, duplicate, rejected, conflict");
  // The intake's fast path (Dispatcher::reserve): a message due now stored already claimed and handed to the
  // dispatcher by its commit. The others of those accepted wait in the store for a claim of the loop.
  handed_over_ = &counters(*registry_, "tayori_intake_handed_over_total",
                           "Accepted messages handed to the dispatcher by their commit instead of claimed from the "
                           "store later")
                      .Add({});
  // From the request's first byte to the 202 (which waits for the group commit's fsync).
  accept_latency_ =
      &histograms(*registry_, "tayori_accept_latency_seconds", "Time to accept a POST /v1/messages request durably")
           .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5, 1, 2.5});
  messages_ = &gauges(*registry_, "tayori_messages", "Messages in the store, by state");
  queue_depth_ =
      &gauges(*registry_, "tayori_queue_depth", "Messages scheduled and not yet dispatched (due now or later)").Add({});
  in_flight_ =
      &gauges(*registry_, "tayori_dispatch_in_flight", "Deliveries claimed by the dispatcher and not yet recorded")
           .Add({});
  retries_ = &counters(*registry_, "tayori_retries_total",
                       "Deliveries scheduled again after a transient failure, by channel and cause: transport_error, "
                       "server_error, throttled, refused, prerequisite, plugin");
  dead_letters_total_ =
      &counters(*registry_, "tayori_dead_letters_total",
                "Messages that became dead letters (retries exhausted on their last channel), by that channel");
  dead_letters_ = &gauges(*registry_, "tayori_dead_letters",
                          "Dead letters in the store, waiting for a replay (POST /v1/messages:retry)")
                       .Add({});
  circuit_state_ = &gauges(*registry_, "tayori_circuit_state",
                           "Each channel's circuit breaker: 0 closed, 1 open, 2 half-open (a probe in flight)");
  circuit_opened_ = &counters(*registry_, "tayori_circuit_opened_total", "Times each channel's circuit breaker opened");
  oldest_due_age_ = &gauges(*registry_, "tayori_oldest_due_age_seconds",
                            "How long the longest-waiting due message has been due (0 when none is late)")
                         .Add({});
  unrecorded_ = &gauges(*registry_, "tayori_unrecorded_outcomes",
                        "Delivery outcomes the store refused (full disk, I/O error), held to be recorded again")
                     .Add({});
  store_writes_ = &counters(*registry_, "tayori_store_writes_total",
                            "What the store's writes cost, by unit: commits (one fsync each), statements, pages "
                            "(database pages written to the WAL)");
  decision_reads_ = &counters(*registry_, "tayori_store_decision_reads_total",
                              "Policy decisions by where their recipient's state came from: database (read from the "
                              "tables) or memory (the store knew there was nothing to read)");
  webhook_deliveries_ = &counters(*registry_, "tayori_webhook_deliveries_total",
                                  "Event POSTs to upstream webhooks, by webhook and result: delivered (2xx), retried "
                                  "(a failed attempt, tried again after a backoff), dropped (give_up_after passed)");
  webhook_lag_ = &gauges(*registry_, "tayori_webhook_lag_events",
                         "Events recorded but not yet delivered (or skipped) by each webhook: last seq - its cursor");
  thread_errors_ = &counters(
      *registry_, "tayori_thread_errors_total",
      "Failures caught at the top of a background thread's loop (a store that could not be read, data a round could "
      "not use), by thread: dispatcher, webhooks, metrics, housekeeping. The thread logged it, paused and went on");
}

Metrics::~Metrics() = default;

std::string_view method_label(std::string_view method) {
  // The method is whatever an unauthenticated client sent (HTTP allows any token, RFC 9110 §9.1): as a label
  // as it is, every new word would be a new series kept for the process's life. The methods the API uses
  // keep their names; the rest share one.
  static constexpr std::string_view kKnown[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  for (std::string_view known : kKnown)
    if (method == known) return known;
  return method == "-" ? method : "other";
}

void Metrics::count_request(std::string_view route, std::string_view method, int status) {
  requests_
      ->Add({{"route", std::string(route)}, {"method", std::string(method_label(method))},
             {"status", std::to_string(status)}})
      .Increment();
}

void Metrics::count_connection_refused() { connections_refused_->Increment(); }

void Metrics::count_intake(std::string_view result, int64_t n) {
  if (n > 0) intake_->Add({{"result", std::string(result)}}).Increment(static_cast<double>(n));
}

void Metrics::count_handed_over(int64_t n) {
  if (n > 0) handed_over_->Increment(static_cast<double>(n));
}

void Metrics::observe_accept_latency(double seconds) { accept_latency_->Observe(seconds); }

void Metrics::count_retry(std::string_view channel, std::string_view cause) {
  retries_->Add({{"channel", std::string(channel)}, {"cause", std::string(cause.empty() ? "unknown" : cause)}})
      .Increment();
}

void Metrics::count_dead_letter(std::string_view channel) {
  dead_letters_total_->Add({{"channel", std::string(channel)}}).Increment();
}

void Metrics::set_circuit_state(std::string_view channel, int state) {
  circuit_state_->Add({{"channel", std::string(channel)}}).Set(state);
}

namespace {
// A count kept elsewhere (the breaker, the store): the counter catches up with it.
void catch_up(prometheus::Counter& c, double total) {
  if (total > c.Value()) c.Increment(total - c.Value());
}
}  // namespace

void Metrics::count_circuit_opened(std::string_view channel, uint64_t total) {
  catch_up(circuit_opened_->Add({{"channel", std::string(channel)}}), static_cast<double>(total));
}

void Metrics::set_store_writes(const store::WriteStats& w) {
  catch_up(store_writes_->Add({{"unit", "commits"}}), static_cast<double>(w.commits));
  catch_up(store_writes_->Add({{"unit", "statements"}}), static_cast<double>(w.statements));
  catch_up(store_writes_->Add({{"unit", "pages"}}), static_cast<double>(w.pages_written));
}

void Metrics::set_decision_reads(const store::DecisionReads& r) {
  catch_up(decision_reads_->Add({{"from", "database"}}), static_cast<double>(r.from_database));
  catch_up(decision_reads_->Add({{"from", "memory"}}), static_cast<double>(r.from_memory));
}

void Metrics::set_oldest_due_age(double seconds) { oldest_due_age_->Set(seconds); }

void Metrics::set_unrecorded(int64_t n) { unrecorded_->Set(static_cast<double>(n)); }

std::string Metrics::render(const std::map<store::State, int64_t>& by_state, int64_t in_flight) {
  {
    // One scrape at a time catches the counters kept elsewhere up (two at once would both add the gap).
    std::lock_guard lock(refresh_mutex_);
    if (refresh_) refresh_(*this);
    for (const auto& [thread, n] : thread_errors())
      catch_up(thread_errors_->Add({{"thread", thread}}), static_cast<double>(n));
  }
  for (auto [state, n] : by_state) {
    messages_->Add({{"state", std::string(store::to_string(state))}}).Set(static_cast<double>(n));
    if (state == store::State::scheduled) queue_depth_->Set(static_cast<double>(n));
    if (state == store::State::dead) dead_letters_->Set(static_cast<double>(n));
  }
  in_flight_->Set(static_cast<double>(in_flight));
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void Metrics::count_webhook(std::string_view webhook, std::string_view result) {
  webhook_deliveries_->Add({{"webhook", std::string(webhook)}, {"result", std::string(result)}}).Increment();
}

void Metrics::set_webhook_lag(std::string_view webhook, int64_t events) {
  webhook_lag_->Add({{"webhook", std::string(webhook)}}).Set(static_cast<double>(events));
}

}  // namespace tayori::api
