// Token-bucket rate limiting for outbound traffic. The clock is injected (milliseconds on any monotonic
// scale the caller chooses), so the arithmetic is testable with a pinned clock; OutboundTransport drives the
// buckets it is given with std::chrono::steady_clock milliseconds.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace tayori::transport {

// `rate_per_sec` tokens are added per second, up to `burst` tokens; the bucket starts full. The first
// call anchors the clock; a clock that goes backwards adds nothing. Thread-safe.
class TokenBucket {
 public:
  // Throws std::invalid_argument unless rate_per_sec > 0 and burst >= 1.
  TokenBucket(double rate_per_sec, double burst);

  // Takes one token if one is available at `now_ms`.
  bool try_acquire(int64_t now_ms);
  // The earliest time >= now_ms at which try_acquire would succeed (now_ms if a token is there now).
  // Does not take a token.
  int64_t next_available(int64_t now_ms);

  double rate_per_sec() const { return rate_; }
  double burst() const { return burst_; }

 private:
  void refill_locked(int64_t now_ms);

  const double rate_;
  const double burst_;
  std::mutex mu_;
  double tokens_;
  int64_t last_ms_ = 0;
  bool anchored_ = false;
};

// One TokenBucket per key (e.g. per provider account or pool key), all with the same rate and burst,
// made on first use. Thread-safe.
class RateLimiter {
 public:
  RateLimiter(double rate_per_sec, double burst);

  bool try_acquire(const std::string& key, int64_t now_ms);
  int64_t next_available(const std::string& key, int64_t now_ms);
  // The bucket for `key` (shared, so it can be handed to OutboundTransport::configure_pool).
  std::shared_ptr<TokenBucket> bucket(const std::string& key);

 private:
  const double rate_;
  const double burst_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<TokenBucket>> buckets_;
};

}  // namespace tayori::transport
