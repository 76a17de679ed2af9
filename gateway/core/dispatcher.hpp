// The dispatcher: takes due messages from the store, chooses a channel, hands the delivery to the
// channel's plugin and records what happened. The decisions (which channel, what an outcome means for
// the message) are pure functions below, tested alone; the Dispatcher class only does the I/O around them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/time.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "core/message.hpp"
#include "plugin/channel.hpp"
#include "store/store.hpp"

namespace tayori::core {

// ---- Pure decisions ------------------------------------------------------------------------------

// The channel the policy chose for this attempt (policy::Decision), as the attempt records it.
struct Route {
  int channel_index = 0;
  std::string channel;
  std::string contact;
  Json skipped = Json::array();  // channels passed over on the way, with why
};
Route route_of(const policy::Decision& decision);

// What one attempt's outcome means for the message: the transition to record (state, events, next due).
// `jitter` in [0,1) spreads retries (full jitter); tests pass a fixed value.
store::Transition decide_after_attempt(const store::MessageRecord& record, const Message& message, const Route& route,
                                       const plugin::DeliveryOutcome& outcome, const config::DispatcherConfig& config,
                                       int64_t dispatched_at_ms, int64_t now_ms, double jitter);

// A message that cannot be attempted at all (unreadable): fail it, saying why.
store::Transition fail_before_attempt(const store::MessageRecord& record, const std::string& reason,
                                      const std::string& detail_json);

// What a policy verdict other than "send" means for the message: deferred (scheduled again, with the
// rule and the local time it reopens) or suppressed (final, with the reason and the rule).
store::Transition decide_without_attempt(const store::MessageRecord& record, const policy::Decision& decision);

// The delivery handed to a plugin, built from the message and the chosen route.
plugin::DeliveryRequest make_delivery(const store::MessageRecord& record, const Message& message, const Route& route);

// ---- The loop ------------------------------------------------------------------------------------

class Dispatcher {
 public:
  Dispatcher(store::Store& store, const plugin::Registry& channels, const Clock& clock,
             config::DispatcherConfig config, Clearance& clearance, const render::TemplateStore* templates,
             bool missing_variable_is_error);
  ~Dispatcher();

  void start();
  void stop();   // finishes deliveries in flight, then returns
  void wake();   // something became due: look now instead of at the next poll

  int64_t in_flight() const { return in_flight_; }

 private:
  void run();
  void work();
  void process(const store::MessageRecord& record);

  store::Store& store_;
  const plugin::Registry& channels_;
  const Clock& clock_;
  config::DispatcherConfig config_;
  Clearance& clearance_;
  const render::TemplateStore* templates_;
  bool missing_variable_is_error_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable work_ready_;
  std::deque<store::MessageRecord> work_;
  bool stopping_ = false;
  bool woken_ = false;
  std::atomic<int64_t> in_flight_{0};
  std::thread loop_;
  std::vector<std::thread> workers_;
};

}  // namespace tayori::core
