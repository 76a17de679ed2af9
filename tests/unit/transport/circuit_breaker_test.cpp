// The circuit breaker as a state machine over explicit time: when it opens, how often it lets a probe
// through, and what closes it again.
#include "transport/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace tayori::transport {
namespace {

CircuitBreaker breaker(int failures = 3, int64_t probe_interval_ms = 1'000) {
  return CircuitBreaker({failures, probe_interval_ms});
}

TEST(CircuitBreaker, OpensAfterNConsecutiveFailuresOnly) {
  CircuitBreaker b = breaker();
  b.record(true, 10);
  b.record(true, 20);
  b.record(false, 30);  // an answer in between: the count starts again
  b.record(true, 40);
  b.record(true, 50);
  EXPECT_EQ(b.state(), CircuitState::closed);
  EXPECT_TRUE(b.admit(55));
  b.record(true, 60);
  EXPECT_EQ(b.state(), CircuitState::open);
  EXPECT_EQ(b.next_probe_ms(), 1'060);
  EXPECT_EQ(b.times_opened(), 1u);
  EXPECT_FALSE(b.would_admit(1'059));
  EXPECT_FALSE(b.admit(1'059));
  EXPECT_EQ(b.open_for_ms(560), 500);
}

TEST(CircuitBreaker, LetsOneProbePerIntervalAndClosesOnItsSuccess) {
  CircuitBreaker b = breaker();
  for (int i = 0; i < 3; ++i) b.record(true, 0);
  ASSERT_EQ(b.state(), CircuitState::open);
  EXPECT_TRUE(b.would_admit(1'000));
  EXPECT_TRUE(b.admit(1'000));  // the probe
  EXPECT_EQ(b.state(), CircuitState::half_open);
  EXPECT_FALSE(b.would_admit(1'001));
  EXPECT_FALSE(b.admit(1'001));  // one at a time
  b.record(true, 1'200);         // the probe failed
  EXPECT_EQ(b.state(), CircuitState::open);
  EXPECT_FALSE(b.admit(1'999));  // the next probe one interval after the last
  EXPECT_TRUE(b.admit(2'000));
  b.record(false, 2'050);
  EXPECT_EQ(b.state(), CircuitState::closed);
  EXPECT_EQ(b.next_probe_ms(), 0);
  EXPECT_TRUE(b.admit(2'051));
  EXPECT_EQ(b.times_opened(), 1u);
}

TEST(CircuitBreaker, AHungProbeDoesNotStopTheNextOneButTheRateHolds) {
  CircuitBreaker b = breaker();
  for (int i = 0; i < 3; ++i) b.record(true, 0);
  EXPECT_TRUE(b.admit(1'000));
  // No answer yet: half-open refuses until something is recorded...
  EXPECT_FALSE(b.admit(5'000));
  // ...and a probe that ended without reaching the provider frees the slot at once.
  b.release(5'000);
  EXPECT_TRUE(b.admit(5'000));
}

TEST(CircuitBreaker, ZeroFailuresMeansNoBreaker) {
  CircuitBreaker b = breaker(0);
  for (int i = 0; i < 100; ++i) b.record(true, i);
  EXPECT_EQ(b.state(), CircuitState::closed);
  EXPECT_TRUE(b.admit(100));
}

TEST(CircuitBreaker, ConcurrentCallersGetExactlyOneProbe) {
  CircuitBreaker b = breaker(1, 1'000);
  b.record(true, 0);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] {
      for (int j = 0; j < 1'000; ++j)
        if (b.admit(1'500)) ++admitted;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 1);
}

}  // namespace
}  // namespace tayori::transport
