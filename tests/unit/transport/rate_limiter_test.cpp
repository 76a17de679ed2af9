// TokenBucket / RateLimiter with a pinned clock: burst, then the steady rate, and next_available exact.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "transport/rate_limiter.hpp"

namespace tayori::transport {
namespace {

enum class Op { Acquire, NextAvailable };

struct Step {
  Op op;
  int64_t now_ms;
  int64_t expect;  // Acquire: 1 granted / 0 refused; NextAvailable: the exact time
};

struct Case {
  std::string name;
  double rate;
  double burst;
  std::vector<Step> steps;
};

TEST(TokenBucket, TableDriven) {
  const std::vector<Case> cases = {
      {"burst then 10 per second", 10, 3,
       {{Op::Acquire, 0, 1}, {Op::Acquire, 0, 1}, {Op::Acquire, 0, 1}, {Op::Acquire, 0, 0},
        {Op::NextAvailable, 0, 100}, {Op::Acquire, 99, 0}, {Op::NextAvailable, 99, 100},
        {Op::Acquire, 100, 1}, {Op::Acquire, 100, 0}, {Op::NextAvailable, 100, 200},
        {Op::Acquire, 200, 1}, {Op::Acquire, 250, 0}, {Op::NextAvailable, 250, 300}}},
      {"idle refills only up to the burst", 10, 3,
       {{Op::Acquire, 0, 1}, {Op::Acquire, 0, 1}, {Op::Acquire, 0, 1}, {Op::Acquire, 10'000, 1},
        {Op::Acquire, 10'000, 1}, {Op::Acquire, 10'000, 1}, {Op::Acquire, 10'000, 0},
        {Op::NextAvailable, 10'000, 10'100}}},
      {"full bucket is available now", 1, 1, {{Op::NextAvailable, 5, 5}, {Op::Acquire, 5, 1}}},
      {"non-integral interval rounds up", 3, 1,
       {{Op::Acquire, 0, 1}, {Op::NextAvailable, 0, 334}, {Op::Acquire, 333, 0}, {Op::Acquire, 334, 1},
        // burst 1 caps the refill at 1.0: the 0.002 over is lost, so the next interval is a full 334
        {Op::NextAvailable, 334, 668}, {Op::Acquire, 667, 0}, {Op::Acquire, 668, 1}}},
      {"slower than one per second", 0.5, 2,
       {{Op::Acquire, 0, 1}, {Op::Acquire, 0, 1}, {Op::Acquire, 0, 0}, {Op::NextAvailable, 0, 2000},
        {Op::Acquire, 1999, 0}, {Op::Acquire, 2000, 1}, {Op::NextAvailable, 2000, 4000}}},
      {"clock going backwards adds nothing", 1, 1,
       {{Op::Acquire, 1000, 1}, {Op::Acquire, 500, 0}, {Op::NextAvailable, 500, 2000},
        {Op::Acquire, 1999, 0}, {Op::Acquire, 2000, 1}}},
      {"first call anchors an arbitrary clock", 100, 1,
       {{Op::Acquire, -5'000'000, 1}, {Op::NextAvailable, -5'000'000, -4'999'990},
        {Op::Acquire, -4'999'991, 0}, {Op::Acquire, -4'999'990, 1}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TokenBucket bucket(c.rate, c.burst);
    for (size_t i = 0; i < c.steps.size(); ++i) {
      const Step& s = c.steps[i];
      SCOPED_TRACE("step " + std::to_string(i) + " at " + std::to_string(s.now_ms));
      if (s.op == Op::Acquire)
        EXPECT_EQ(bucket.try_acquire(s.now_ms) ? 1 : 0, s.expect);
      else
        EXPECT_EQ(bucket.next_available(s.now_ms), s.expect);
    }
  }
}

TEST(TokenBucket, NextAvailableAlwaysGrants) {
  // Steady state at an awkward rate: each time next_available names is a time try_acquire succeeds,
  // and one millisecond earlier it does not.
  TokenBucket bucket(7, 1);
  int64_t now = 0;
  ASSERT_TRUE(bucket.try_acquire(now));
  for (int i = 0; i < 200; ++i) {
    const int64_t next = bucket.next_available(now);
    ASSERT_GT(next, now);
    ASSERT_FALSE(bucket.try_acquire(next - 1)) << i;
    ASSERT_TRUE(bucket.try_acquire(next)) << i;
    now = next;
  }
  // 200 tokens at 7/s after the first: a little over 200/7 s.
  EXPECT_GE(now, 200 * 1000 / 7);
  EXPECT_LE(now, 200 * 1000 / 7 + 200);
}

TEST(TokenBucket, RejectsBadParameters) {
  EXPECT_THROW(TokenBucket(0, 1), std::invalid_argument);
  EXPECT_THROW(TokenBucket(-1, 1), std::invalid_argument);
  EXPECT_THROW(TokenBucket(1, 0.5), std::invalid_argument);
  EXPECT_THROW(RateLimiter(0, 1), std::invalid_argument);
}

TEST(TokenBucket, ThreadSafeUnderContention) {
  TokenBucket bucket(1, 100);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (bucket.try_acquire(42)) granted.fetch_add(1);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(granted.load(), 100);
}

TEST(RateLimiter, KeysAreIndependent) {
  RateLimiter limiter(2, 1);
  EXPECT_TRUE(limiter.try_acquire("line", 0));
  EXPECT_FALSE(limiter.try_acquire("line", 0));
  EXPECT_TRUE(limiter.try_acquire("apns", 0));
  EXPECT_EQ(limiter.next_available("line", 0), 500);
  EXPECT_EQ(limiter.next_available("fcm", 0), 0);
  EXPECT_EQ(limiter.bucket("line"), limiter.bucket("line"));
  EXPECT_TRUE(limiter.try_acquire("line", 500));
}

}  // namespace
}  // namespace tayori::transport
