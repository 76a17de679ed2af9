// The stats' pure part (gateway/core/stats.hpp): which counts each verdict and reaction makes, the latency
// buckets and percentiles, and the answers of GET /v1/stats, /v1/stats/flow and /v1/stats/queue.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/dispatcher.hpp"
#include "core/stats.hpp"

namespace tayori::core {
namespace {

using store::StatCounter;
using store::StatDimension;
using store::StatPeriod;

constexpr int64_t kHour = 3'600'000;
// 2026-12-05T10:17:42.5Z: inside an hour and a minute, so bucketing is seen.
constexpr int64_t kNow = 1796465862500;

const StatSubject kSubject{"sale", "spring", "sms"};

std::vector<store::StatCount> of(const std::vector<store::StatCount>& counts, StatPeriod period, StatDimension d) {
  std::vector<store::StatCount> out;
  std::copy_if(counts.begin(), counts.end(), std::back_inserter(out),
               [&](const auto& c) { return c.period == period && c.dimension == d; });
  return out;
}

TEST(StatCounts, OneCountPerDimensionInItsHourAndTheChannelsMinuteForTheFlow) {
  std::vector<store::StatCount> out;
  add_counts(out, kSubject, StatCounter::suppressed, kNow, "no_consent");
  ASSERT_EQ(out.size(), 4u);
  for (StatDimension d : {StatDimension::category, StatDimension::channel, StatDimension::template_name}) {
    auto hour = of(out, StatPeriod::hour, d);
    ASSERT_EQ(hour.size(), 1u);
    EXPECT_EQ(hour[0].bucket_ms, kNow - kNow % kHour);
    EXPECT_EQ(hour[0].detail, "no_consent");
    EXPECT_EQ(hour[0].n, 1);
  }
  EXPECT_EQ(of(out, StatPeriod::hour, StatDimension::category)[0].key, "sale");
  EXPECT_EQ(of(out, StatPeriod::hour, StatDimension::template_name)[0].key, "spring");
  auto minute = of(out, StatPeriod::minute, StatDimension::channel);
  ASSERT_EQ(minute.size(), 1u);
  EXPECT_EQ(minute[0].key, "sms");
  EXPECT_EQ(minute[0].bucket_ms, kNow - kNow % 60'000);
  EXPECT_EQ(minute[0].detail, "") << "the minute says how many; the hour says why";

  // Not a flow counter: no minute. Latency: the channel's alone.
  out.clear();
  add_counts(out, kSubject, StatCounter::clicked, kNow);
  EXPECT_EQ(out.size(), 3u);
  out.clear();
  add_counts(out, kSubject, StatCounter::latency, kNow, "40");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dimension, StatDimension::channel);
}

TEST(StatCounts, BucketsRoundDownAndUpAlikeBeforeAndAfter1970) {
  EXPECT_EQ(bucket_floor(kNow, kStatHourMs), kNow - kNow % kHour);
  EXPECT_EQ(bucket_ceil(kNow, kStatHourMs), kNow - kNow % kHour + kHour);
  EXPECT_EQ(bucket_ceil(kNow - kNow % kHour, kStatHourMs), kNow - kNow % kHour) << "a bucket's start is its own";
  EXPECT_EQ(bucket_floor(-1, kStatMinuteMs), -60'000) << "1969-12-31T23:59:59.999Z is in that day's last minute";
  EXPECT_EQ(bucket_ceil(-1, kStatMinuteMs), 0);
}

TEST(StatCounts, AVerdictCountsWhatItsEventsSay) {
  auto counters = [](const store::Transition& t) {
    std::vector<std::string> names;
    for (const auto& c : transition_counts(kSubject, t, kNow, 120))
      if (c.period == StatPeriod::hour && c.dimension == StatDimension::channel)
        names.push_back(std::string(store::to_string(c.counter)) + (c.detail.empty() ? "" : ":" + c.detail));
    return names;
  };
  store::Transition delivered;
  delivered.to = store::State::delivered;
  delivered.events = {{"dispatched", "{}"}, {"delivered", "{}"}};
  EXPECT_THAT(counters(delivered),
              ::testing::ElementsAre("sent", "delivered", "latency:" + std::to_string(latency_bucket(120))));

  store::Transition deferred;
  deferred.to = store::State::scheduled;
  deferred.last_reason = "quiet_hours";
  deferred.events = {{"deferred", "{}"}};
  EXPECT_THAT(counters(deferred), ::testing::ElementsAre("deferred:quiet_hours"));

  // A retry changes nothing the stats show; a fallback neither, until the message ends somewhere.
  store::Transition retry;
  retry.events = {{"dispatched", "{}"}, {"retry_scheduled", "{}"}};
  EXPECT_THAT(counters(retry), ::testing::ElementsAre("sent"));
  store::Transition dead;
  dead.events = {{"dispatched", "{}"}, {"dead", "{}"}};
  EXPECT_THAT(counters(dead), ::testing::ElementsAre("sent", "dead"));
  store::Transition failed;
  failed.events = {{"dispatched", "{}"}, {"attempt_failed", "{}"}};
  EXPECT_THAT(counters(failed), ::testing::ElementsAre("sent"));
}

TEST(StatCounts, LatencyBucketsAreAQuarterOfAPowerOfTwoWide) {
  EXPECT_EQ(latency_bucket(0), 0);
  EXPECT_EQ(latency_bucket_upper_ms(0), 1);
  for (int64_t ms : {1, 2, 7, 100, 999, 1000, 86'400'000}) {
    int b = latency_bucket(ms);
    EXPECT_GE(latency_bucket_upper_ms(b), ms) << ms;
    // Bucket b holds [2^((b-1)/4), 2^(b/4)) ms.
    EXPECT_LE(std::exp2((b - 1) / 4.0), static_cast<double>(ms)) << ms;
    EXPECT_LT(static_cast<double>(ms), std::exp2(b / 4.0)) << ms;
    EXPECT_LE(latency_bucket_upper_ms(b), ms * 1.19 + 1) << ms;
  }
}

store::StatRow row(const std::string& key, StatCounter c, int64_t n, const std::string& detail = "", int64_t sum = 0) {
  store::StatRow r;
  r.key = key;
  r.counter = c;
  r.detail = detail;
  r.n = n;
  r.sum_milli = sum;
  return r;
}

TEST(StatsAnswer, EveryCounterOfEveryGroupWithBreakdownsAndPercentiles) {
  std::vector<store::StatRow> rows = {
      row("sms", StatCounter::accepted, 10),
      row("sms", StatCounter::delivered, 8),
      row("sms", StatCounter::suppressed, 1, "no_consent"),
      row("sms", StatCounter::suppressed, 2, "frequency_cap"),
      row("sms", StatCounter::responded, 3, "later"),
      row("sms", StatCounter::converted, 2, "", 4'980'500),
      row("sms", StatCounter::receipt_delivered, 7),
      // 90 fast deliveries and 10 slow: p50 and p90 are fast, p99 slow.
      row("sms", StatCounter::latency, 90, std::to_string(latency_bucket(20))),
      row("sms", StatCounter::latency, 10, std::to_string(latency_bucket(5000))),
      row("email", StatCounter::failed, 1),
  };
  Json a = stats_answer(StatDimension::channel, rows, kNow - kNow % kHour - kHour, kNow - kNow % kHour + kHour);
  EXPECT_EQ(a["by"], "channel");
  EXPECT_EQ(a["from"], "2026-12-05T09:00:00.000Z");
  EXPECT_EQ(a["to"], "2026-12-05T11:00:00.000Z");
  ASSERT_EQ(a["groups"].size(), 2u);
  const Json& email = a["groups"][0];
  EXPECT_EQ(email["key"], "email");
  EXPECT_EQ(email["failed"], 1);
  EXPECT_EQ(email["delivered"], 0) << "every counter is present";
  EXPECT_EQ(email["suppressed"]["total"], 0);
  EXPECT_FALSE(email.contains("latency_ms")) << "no delivery, no latency";
  const Json& sms = a["groups"][1];
  EXPECT_EQ(sms["accepted"], 10);
  EXPECT_EQ(sms["suppressed"], Json::parse(R"({"total":3,"by_reason":{"no_consent":1,"frequency_cap":2}})"));
  EXPECT_EQ(sms["responded"], Json::parse(R"({"total":3,"by_option":{"later":3}})"));
  EXPECT_EQ(sms["converted"], 2);
  EXPECT_DOUBLE_EQ(sms["conversion_value"].get<double>(), 4980.5);
  EXPECT_EQ(sms["receipts"]["delivered"], 7);
  EXPECT_EQ(sms["latency_ms"]["count"], 100);
  EXPECT_EQ(sms["latency_ms"]["p50"], latency_bucket_upper_ms(latency_bucket(20)));
  EXPECT_EQ(sms["latency_ms"]["p90"], latency_bucket_upper_ms(latency_bucket(20)));
  EXPECT_EQ(sms["latency_ms"]["p99"], latency_bucket_upper_ms(latency_bucket(5000)));

  // By category, latency is not shown (it belongs to channels).
  Json by_category = stats_answer(StatDimension::category, rows, 0, kHour);
  EXPECT_FALSE(by_category["groups"][1].contains("latency_ms"));
}

TEST(StatsAnswer, FlowHasOnePointPerMinuteAndCountsDeadAsFailed) {
  const int64_t from = kNow - kNow % 60'000 - 2 * 60'000;
  std::vector<store::StatRow> series;
  auto at = [&](int minute, StatCounter c, int64_t n) {
    store::StatRow r = row("line", c, n);
    r.bucket_ms = from + minute * 60'000;
    series.push_back(r);
  };
  at(0, StatCounter::accepted, 4);
  at(2, StatCounter::delivered, 3);
  at(2, StatCounter::failed, 1);
  at(2, StatCounter::dead, 1);
  at(5, StatCounter::accepted, 9);  // outside the range asked for: left out
  Json f = flow_answer(series, from, 3);
  ASSERT_EQ(f["minutes"].size(), 3u);
  EXPECT_EQ(f["minutes"][0], "2026-12-05T10:15:00.000Z");
  EXPECT_EQ(f["channels"]["line"]["accepted"], Json::parse("[4,0,0]"));
  EXPECT_EQ(f["channels"]["line"]["delivered"], Json::parse("[0,0,3]"));
  EXPECT_EQ(f["channels"]["line"]["failed"], Json::parse("[0,0,2]"));
  EXPECT_EQ(f["channels"]["line"]["suppressed"], Json::parse("[0,0,0]"));
}

TEST(StatsAnswer, QueueListsEachHourAndTheTotal) {
  store::StatRow a, b;
  a.bucket_ms = kNow - kNow % kHour + kHour;
  a.n = 3;
  b.bucket_ms = a.bucket_ms + 10 * kHour;
  b.n = 2;
  Json q = queue_answer({a, b}, kNow);
  EXPECT_EQ(q["total"], 5);
  EXPECT_EQ(q["hours"], Json::parse(R"([{"at":"2026-12-05T11:00:00.000Z","messages":3},
                                         {"at":"2026-12-05T21:00:00.000Z","messages":2}])"));
}

}  // namespace
}  // namespace tayori::core
