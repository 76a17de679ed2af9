// A circuit breaker per channel instance: after `failures` consecutive provider failures (transport
// errors, 5xx) the channel stops sending, so an outage costs one probe per probe_interval instead of every
// queued delivery's attempts, and routing can fall back to another channel meanwhile. Time is passed in:
// the breaker itself is a pure state machine, tested alone.
#pragma once

#include <cstdint>
#include <mutex>
#include <string_view>

#include "config/config.hpp"

namespace tayori::transport {

enum class CircuitState { closed, open, half_open };
std::string_view to_string(CircuitState s);

class CircuitBreaker {
 public:
  explicit CircuitBreaker(config::CircuitBreakerConfig config = {});
  void configure(const config::CircuitBreakerConfig& config);  // before the first delivery

  // May a delivery go to the provider now? Closed: yes. Open: yes for exactly one caller per
  // probe_interval -- that delivery is the probe, and the breaker is half-open until record() hears of it.
  bool admit(int64_t now_ms);
  // Would admit() say yes now? (Routing asks without taking the probe.)
  bool would_admit(int64_t now_ms) const;

  // The provider's answer to an admitted delivery. `provider_failed`: a transport error or a 5xx; any
  // other answer, even a refusal of one recipient, shows the provider is up.
  void record(bool provider_failed, int64_t now_ms);
  // An admitted delivery ended without asking the provider (nothing was sent): a probe slot it held is free.
  void release(int64_t now_ms);

  CircuitState state() const;
  // When the next probe may go (open), or 0 (closed).
  int64_t next_probe_ms() const;
  // How long it has been open (0 when closed): waiting deliveries spread their return over this much.
  int64_t open_for_ms(int64_t now_ms) const;
  uint64_t times_opened() const;

 private:
  config::CircuitBreakerConfig config_;
  mutable std::mutex mutex_;
  CircuitState state_ = CircuitState::closed;
  int consecutive_failures_ = 0;
  int64_t opened_at_ms_ = 0;
  int64_t next_probe_ms_ = 0;
  uint64_t times_opened_ = 0;
};

}  // namespace tayori::transport
