// Token buckets (rate_limiter.hpp): the arithmetic of a channel's rate limit, with the clock passed in.
// OutboundTransport holds a request until its bucket has a token.
#include "transport/rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tayori::transport {

namespace {
// Tolerance for floating-point refill arithmetic, so that next_available() and try_acquire() agree:
// at the time next_available() names, try_acquire() succeeds.
constexpr double kEpsilon = 1e-9;
}  // namespace

TokenBucket::TokenBucket(double rate_per_sec, double burst)
    : rate_(rate_per_sec), burst_(burst), tokens_(burst) {
  if (!(rate_per_sec > 0) || !std::isfinite(rate_per_sec))
    throw std::invalid_argument("token bucket rate must be > 0 per second");
  if (!(burst >= 1) || !std::isfinite(burst)) throw std::invalid_argument("token bucket burst must be >= 1");
}

void TokenBucket::refill_locked(int64_t now_ms) {
  if (!anchored_) {
    anchored_ = true;
    last_ms_ = now_ms;
    return;
  }
  if (now_ms <= last_ms_) return;
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(now_ms - last_ms_) * rate_ / 1000.0);
  last_ms_ = now_ms;
}

bool TokenBucket::try_acquire(int64_t now_ms) {
  std::lock_guard lock(mu_);
  refill_locked(now_ms);
  if (tokens_ + kEpsilon < 1.0) return false;
  tokens_ = std::max(0.0, tokens_ - 1.0);
  return true;
}

int64_t TokenBucket::next_available(int64_t now_ms) {
  std::lock_guard lock(mu_);
  refill_locked(now_ms);
  if (tokens_ + kEpsilon >= 1.0) return now_ms;
  const double wait_ms = (1.0 - tokens_) * 1000.0 / rate_;
  // The time is measured from last_ms_ (== now_ms unless the clock went backwards).
  return std::max(now_ms, last_ms_ + static_cast<int64_t>(std::ceil(wait_ms - kEpsilon * 1000.0)));
}

RateLimiter::RateLimiter(double rate_per_sec, double burst) : rate_(rate_per_sec), burst_(burst) {
  TokenBucket check(rate_per_sec, burst);  // validates the parameters now rather than on first use
}

std::shared_ptr<TokenBucket> RateLimiter::bucket(const std::string& key) {
  std::lock_guard lock(mu_);
  auto& b = buckets_[key];
  if (!b) b = std::make_shared<TokenBucket>(rate_, burst_);
  return b;
}

bool RateLimiter::try_acquire(const std::string& key, int64_t now_ms) { return bucket(key)->try_acquire(now_ms); }

int64_t RateLimiter::next_available(const std::string& key, int64_t now_ms) {
  return bucket(key)->next_available(now_ms);
}

}  // namespace tayori::transport
