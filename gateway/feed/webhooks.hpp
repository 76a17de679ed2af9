// Webhooks: the feed pushed to the upstream system (the two-way issue, operator guide "The feed: events
// back to the upstream system"). One sender thread per subscription (config `webhooks:`):
//
//  - Ordered: a subscription sends its events one at a time in seq order, one event per POST (the body is
//    the event JSON of feed.hpp); a failing POST blocks later events until it succeeds or is dropped.
//  - At-least-once: the cursor (the last seq delivered or skipped) advances only after a 2xx and is kept in
//    the store (webhook_cursors), so a restart, a crash or a SIGHUP reload resends at most the event in
//    flight. Receivers de-duplicate by the event id (header Tayori-Event-Id, also "id" in the body).
//  - Signed: Tayori-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, fresh at each
//    attempt (the Stripe scheme: the receiver recomputes it over the raw body and refuses an old t).
//  - Retried with full-jitter exponential backoff (base 1 s, cap 5 min; AWS Architecture Blog, "Exponential
//    Backoff And Jitter") until `give_up_after` has passed since the first attempt; then the event is
//    dropped, counted (tayori_webhook_deliveries_total{result="dropped"}) and logged, and the next one goes.
//
// A new subscription starts at the newest event when it first runs (history is in GET /v1/events).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "metrics/metrics.hpp"
#include "common/time.hpp"
#include "config/config.hpp"
#include "store/store.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::feed {

// ---- Pure parts -----------------------------------------------------------------------------------------

// "t=<unix_seconds>,v1=<lower-case hex HMAC-SHA256(secret, "<unix_seconds>.<body>")>".
std::string signature_header(std::string_view secret, int64_t unix_seconds, std::string_view body);

// The wait before attempt `failures` + 1 after `failures` (>= 1) failed ones: full jitter,
// unit_random * min(cap, base * 2^(failures - 1)), with unit_random in [0, 1).
int64_t backoff_ms(int failures, double unit_random, int64_t base_ms = 1'000, int64_t cap_ms = 300'000);

// Whether a subscription takes events of `type` (an empty list takes every type).
bool subscribed(const config::WebhookConfig& webhook, std::string_view type);

// The POST for one event: JSON body, Content-Type, Tayori-Signature, Tayori-Event-Id, pool "webhook:<name>".
transport::Request webhook_request(const config::WebhookConfig& webhook, const store::TimelineEvent& event,
                                   int64_t unix_seconds);

// ---- Senders ---------------------------------------------------------------------------------------------

struct WebhookTiming {
  int64_t poll_ms = 200;  // how often an idle sender looks for new events (wake() cuts it short)
  int64_t backoff_base_ms = 1'000;
  int64_t backoff_cap_ms = 300'000;
};

// The senders of one configuration generation. start() launches a thread per subscription; stop() ends
// them (an attempt in flight is abandoned: its event is sent again by the next generation or start, since
// its cursor did not move). The transport must outlive this object.
class Webhooks {
 public:
  Webhooks(std::vector<config::WebhookConfig> webhooks, store::Store& store, transport::OutboundTransport& transport,
           const Clock& clock, api::Metrics* metrics, WebhookTiming timing = {});
  ~Webhooks();  // stop()
  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  void start();
  void stop();
  // New events were recorded: idle senders look now instead of at their next poll.
  void wake();

 private:
  struct Sender;
  void run(Sender& sender);
  // Sends the subscription's events in order until stopping (returns); throws what it does not handle.
  void send_events(Sender& sender);
  // Where `sender` starts: its stored cursor, or, for a new subscription, the latest event now. Throws
  // what a store read throws.
  int64_t starting_cursor(Sender& sender);
  bool stopping();
  // Sleeps up to `ms`; false when stopping.
  bool pause(int64_t ms, bool wakeable);
  void persist(Sender& sender, int64_t seq);

  std::vector<std::unique_ptr<Sender>> senders_;
  store::Store& store_;
  transport::OutboundTransport& transport_;
  const Clock& clock_;
  api::Metrics* metrics_;
  WebhookTiming timing_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t wakes_ = 0;
  bool started_ = false;
};

}  // namespace tayori::feed
