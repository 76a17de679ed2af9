// The circuit breaker's state machine (circuit_breaker.hpp): closed, open, half-open, with time passed in.
// The transport asks it before each request and reports each answer.
#include "transport/circuit_breaker.hpp"

#include <algorithm>

namespace tayori::transport {

std::string_view to_string(CircuitState s) {
  switch (s) {
    case CircuitState::closed: return "closed";
    case CircuitState::open: return "open";
    case CircuitState::half_open: return "half_open";
  }
  return "unknown";
}

CircuitBreaker::CircuitBreaker(config::CircuitBreakerConfig config) : config_(config) {}

void CircuitBreaker::configure(const config::CircuitBreakerConfig& config) {
  std::lock_guard lock(mutex_);
  config_ = config;
}

bool CircuitBreaker::admit(int64_t now_ms) {
  std::lock_guard lock(mutex_);
  if (state_ == CircuitState::closed) return true;
  if (state_ == CircuitState::half_open || now_ms < next_probe_ms_) return false;
  // This caller is the probe. The next one may go one interval later even if this one never answers
  // (a hung request), so the probe rate holds whatever the provider does.
  state_ = CircuitState::half_open;
  next_probe_ms_ = now_ms + config_.probe_interval_ms;
  return true;
}

bool CircuitBreaker::would_admit(int64_t now_ms) const {
  std::lock_guard lock(mutex_);
  return state_ == CircuitState::closed || (state_ == CircuitState::open && now_ms >= next_probe_ms_);
}

void CircuitBreaker::record(bool provider_failed, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  if (!provider_failed) {
    state_ = CircuitState::closed;
    consecutive_failures_ = 0;
    return;
  }
  ++consecutive_failures_;
  if (state_ == CircuitState::half_open) {
    state_ = CircuitState::open;  // the probe failed: wait for the next one (already timed by admit)
    return;
  }
  if (state_ == CircuitState::closed && config_.failures > 0 && consecutive_failures_ >= config_.failures) {
    state_ = CircuitState::open;
    opened_at_ms_ = now_ms;
    next_probe_ms_ = now_ms + config_.probe_interval_ms;
    ++times_opened_;
  }
}

void CircuitBreaker::release(int64_t now_ms) {
  std::lock_guard lock(mutex_);
  if (state_ != CircuitState::half_open) return;
  state_ = CircuitState::open;
  next_probe_ms_ = std::min(next_probe_ms_, now_ms);  // nothing was learnt: the next caller probes
}

CircuitState CircuitBreaker::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

int64_t CircuitBreaker::next_probe_ms() const {
  std::lock_guard lock(mutex_);
  return state_ == CircuitState::closed ? 0 : next_probe_ms_;
}

int64_t CircuitBreaker::open_for_ms(int64_t now_ms) const {
  std::lock_guard lock(mutex_);
  return state_ == CircuitState::closed ? 0 : std::max<int64_t>(0, now_ms - opened_at_ms_);
}

uint64_t CircuitBreaker::times_opened() const {
  std::lock_guard lock(mutex_);
  return times_opened_;
}

}  // namespace tayori::transport
