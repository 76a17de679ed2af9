// ThrottleFault: the provider pushes back. A 429 with Retry-After is obeyed for that delivery (the next
// request for it never arrives sooner, RFC 9110 §10.2.3), and a channel's rate_limit/burst holds under a
// retry storm: in no window of t seconds does the provider see more than burst + rate * t requests.
//
// Both use Twilio SMS: the simulator sends Retry-After on Twilio's 429 (LINE never does, docs/providers.md). The
// circuit breaker is off on these channels so that only the behaviour under test paces the requests.
#include <gtest/gtest.h>

#include "fault_harness.hpp"

namespace tayori::testing::fault {
namespace {

TEST(ThrottleFault, RetryAfterIsHonouredForEveryDelivery) {
  const int messages = env_int("TAYORI_FAULT_THROTTLE_MESSAGES", 20);
  constexpr int kRetryAfterS = 2;
  set_channel_secrets();
  Sim sim(all_providers({"--seed", std::to_string(seed("ThrottleFault.RetryAfter"))}), false);
  // The first 2 * messages requests get 429 + Retry-After: most messages are throttled once, some twice.
  ASSERT_EQ(
      sim.faults({{"provider", "twilio"}, {"rate_limit_count", 2 * messages}, {"retry_after", kRetryAfterS}}).status,
      200);
  TempDir dir;
  Gateway gw(dir, "channels:\n" + sms_channel(sim, "sms", "    circuit_breaker: {failures: 0}\n") + kConsent, "",
             "retry_base: 10ms\nmax_attempts: 10");
  gw.start();
  HttpClient http;
  std::set<std::string> ids;
  for (int i = 0; i < messages; ++i) {
    std::string id = "t-" + std::to_string(i);
    ASSERT_EQ(gw.post_json(http, "/v1/messages", fault_message(id, "sms")).status, 202);
    ids.insert(id);
  }
  auto late = undelivered(gw, ids, std::chrono::seconds(30 + 3 * kRetryAfterS));
  ASSERT_TRUE(late.empty()) << describe(gw, late);

  // The simulator decides and records under one lock, so the first 2 * messages requests (by its id) are
  // exactly the ones answered 429.
  Json all = sim.requests("twilio");
  ASSERT_GE(all.size(), static_cast<size_t>(2 * messages + messages));
  const int64_t last_throttled = all[2 * messages - 1]["id"].get<int64_t>();
  int throttled = 0, shortest_gap_ms = INT32_MAX;
  for (const auto& [id, sends] : sends_by_message(sim, "twilio")) {
    for (size_t i = 0; i + 1 < sends.size(); ++i) {
      if (sends[i].seq > last_throttled) continue;
      ++throttled;
      // The 429 left the simulator after it recorded the request, so the gap between arrivals is at least
      // the Retry-After when the gateway waits from the answer; 1 ms covers the millisecond timestamps.
      int gap = static_cast<int>(sends[i + 1].time_ms - sends[i].time_ms);
      shortest_gap_ms = std::min(shortest_gap_ms, gap);
      EXPECT_GE(gap, kRetryAfterS * 1000 - 1)
          << id << ": request " << i + 1 << " came " << gap << " ms after a 429 with Retry-After: " << kRetryAfterS;
    }
  }
  EXPECT_EQ(throttled, 2 * messages);
  std::cout << "[ThrottleFault.RetryAfter] " << messages << " messages, " << throttled << " answered 429 (Retry-After "
            << kRetryAfterS << " s), shortest gap to the next request " << shortest_gap_ms << " ms; all delivered\n";
}

TEST(ThrottleFault, RateLimitHoldsUnderARetryStorm) {
  const int messages = env_int("TAYORI_FAULT_STORM_MESSAGES", 60);
  constexpr double kRate = 20;  // per second
  constexpr int kBurst = 5;
  set_channel_secrets();
  Sim sim(all_providers({"--seed", std::to_string(seed("ThrottleFault.RateLimit"))}), false);
  ASSERT_EQ(sim.faults({{"provider", "twilio"}, {"error_share", 0.5}, {"error_status", 503}}).status, 200);
  TempDir dir;
  Gateway gw(dir,
             "channels:\n" +
                 sms_channel(sim, "sms",
                             "    rate_limit: 20/s\n    burst: 5\n    circuit_breaker: {failures: 0}\n"
                             "    retry: {base: 10ms, cap: 50ms, max_attempts: 60}\n") +
                 kConsent,
             "", "retry_base: 10ms\nmax_attempts: 60\nworkers: 8");
  gw.start();
  HttpClient http;
  std::set<std::string> ids;
  for (int i = 0; i < messages; ++i) {
    std::string id = "s-" + std::to_string(i);
    ASSERT_EQ(gw.post_json(http, "/v1/messages", fault_message(id, "sms")).status, 202);
    ids.insert(id);
  }
  // About two requests per message at 20/s, plus slack for the scheduler.
  auto late = undelivered(gw, ids, std::chrono::seconds(30 + static_cast<int>(4 * messages / kRate)));
  ASSERT_TRUE(late.empty()) << describe(gw, late);

  std::vector<int64_t> at;
  for (const Json& r : sim.requests("twilio")) at.push_back(r["time_ms"].get<int64_t>());
  std::sort(at.begin(), at.end());
  ASSERT_GT(at.size(), static_cast<size_t>(messages) * 5 / 4) << "the 503 share should have caused retries";
  // Every window [at[i], at[j]]: j - i + 1 requests in (at[j] - at[i]) ms. One request of slack for transit
  // jitter between the gateway's send and the simulator's clock (it shifts a window's ends, not its rate).
  double worst = 0;
  std::string worst_window;
  for (size_t i = 0; i < at.size(); ++i)
    for (size_t j = i; j < at.size(); ++j) {
      double allowed = kBurst + kRate * static_cast<double>(at[j] - at[i]) / 1000.0 + 1;
      double seen = static_cast<double>(j - i + 1);
      if (seen / allowed > worst) {
        worst = seen / allowed;
        worst_window = std::to_string(j - i + 1) + " requests in " + std::to_string(at[j] - at[i]) + " ms";
      }
    }
  EXPECT_LE(worst, 1.0) << "the rate limit was exceeded: " << worst_window << " (rate 20/s, burst 5)";
  double seconds = static_cast<double>(at.back() - at.front()) / 1000.0;
  std::cout << "[ThrottleFault.RateLimit] " << messages << " messages, " << at.size() << " requests in " << seconds
            << " s (" << at.size() / std::max(seconds, 0.001) << "/s, limit 20/s burst 5); fullest window "
            << worst_window << " = " << worst << " of the allowance; all delivered\n";
}

}  // namespace
}  // namespace tayori::testing::fault
