// The stats' counts in the store (store/stats_store.hpp), on SQLite here and on PostgreSQL in pg_store_tests
// (the same file): a count is added with the write that makes it true and only when that write takes
// effect, summed per bucket, and read back by range; the queue is read by the hour it falls due in.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/stats.hpp"
#include "crypto/crypto.hpp"
#include "test_support.hpp"

namespace tayori::store {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kT0 = 1796464800000;  // 2026-12-05T10:00:00Z

const core::StatSubject kSale{"sale", "spring", "sms"};

NewMessage counted_message(const std::string& id, int64_t due_at_ms, int64_t now_ms) {
  NewMessage m;
  m.id = id;
  m.api_key = "upstream";
  m.payload = R"({"id":")" + id + R"("})";
  m.payload_hash = crypto::sha256_hex(m.payload);
  m.due_at_ms = due_at_ms;
  m.events = {{"accepted", "{}"}};
  core::add_counts(m.counts, kSale, StatCounter::accepted, now_ms);
  return m;
}

// The totals of `dimension` as "key counter[:detail]=n".
std::vector<std::string> totals(Store& store, StatDimension dimension, int64_t from, int64_t to) {
  std::vector<std::string> out;
  for (const StatRow& r : store.stat_totals(dimension, from, to))
    out.push_back(r.key + " " + to_string(r.counter) + (r.detail.empty() ? "" : ":" + r.detail) + "=" +
                  std::to_string(r.n));
  return out;
}

class StoreStatsTest : public test::StoreFixture, public ::testing::WithParamInterface<test::StoreBackend> {
 protected:
  StoreStatsTest() : StoreFixture("tayori_store_stats_test_") {}
  test::StoreBackend backend() const override { return GetParam(); }
  int apply_inbound(InboundStore::InboundWrites writes, int64_t now_ms) {
    return await<int>([&](auto done) { store_->apply_inbound({std::move(writes)}, now_ms, std::move(done)); });
  }
};
TAYORI_STORE_ENGINE_SUITE(StoreStatsTest);

TEST_P(StoreStatsTest, AnAcceptCountsOnceAndADuplicateCountsNothing) {
  accept({counted_message("m1", kT0, kT0 + 5), counted_message("m2", kT0, kT0 + 5)}, kT0 + 5);
  accept({counted_message("m1", kT0, kT0 + 9)}, kT0 + 9);  // an upstream retry
  EXPECT_THAT(totals(*store_, StatDimension::category, kT0, kT0 + kHour), ::testing::ElementsAre("sale accepted=2"));
  EXPECT_THAT(totals(*store_, StatDimension::template_name, kT0, kT0 + kHour),
              ::testing::ElementsAre("spring accepted=2"));
  // Outside the range asked for: nothing.
  EXPECT_THAT(totals(*store_, StatDimension::category, kT0 + kHour, kT0 + 2 * kHour), ::testing::IsEmpty());
  // The channel's minute, for the flow.
  auto minutes = store_->stat_series(StatPeriod::minute, StatDimension::channel, kT0, kT0 + kHour);
  ASSERT_EQ(minutes.size(), 1u);
  EXPECT_EQ(minutes[0].bucket_ms, kT0);
  EXPECT_EQ(minutes[0].key, "sms");
  EXPECT_EQ(minutes[0].n, 2);
}

TEST_P(StoreStatsTest, AVerdictCountsOnlyWhenItIsRecordedAndNotWhenItIsStale) {
  accept({counted_message("m1", kT0, kT0)}, kT0);
  auto claimed = store_->claim_due(kT0, 1).value();
  ASSERT_EQ(claimed.size(), 1u);
  Transition t;
  t.message_id = "m1";
  t.attempt = claimed[0].attempts;
  t.to = State::delivered;
  t.channel = "sms";
  t.events = {{"dispatched", "{}"}, {"delivered", "{}"}};
  t.counts = core::transition_counts(kSale, t, kT0 + 10, 10);
  apply(t, kT0 + 10);
  apply(t, kT0 + 20);  // the same verdict again: the message is no longer dispatched by that claim
  EXPECT_THAT(totals(*store_, StatDimension::category, kT0, kT0 + kHour),
              ::testing::ElementsAre("sale accepted=1", "sale delivered=1", "sale sent=1"));
  EXPECT_THAT(totals(*store_, StatDimension::channel, kT0, kT0 + kHour),
              ::testing::ElementsAre("sms accepted=1", "sms delivered=1",
                                     "sms latency:" + std::to_string(core::latency_bucket(10)) + "=1", "sms sent=1"));
}

TEST_P(StoreStatsTest, AnInboundEventSeenBeforeCountsNothingAndValuesAddUp) {
  accept({counted_message("m1", kT0, kT0)}, kT0);
  InboundStore::InboundWrites conversion;
  conversion.seen_source = "conversion";
  conversion.seen_report_id = "order-1";
  conversion.events.push_back({"m1", "", {"converted", "{}"}});
  core::add_counts(conversion.counts, kSale, StatCounter::converted, kT0 + kHour, "", 1'500);
  EXPECT_EQ(apply_inbound(conversion, kT0 + kHour), 1);
  EXPECT_EQ(apply_inbound(conversion, kT0 + kHour), 0);
  conversion.seen_report_id = "order-2";
  conversion.counts.clear();
  core::add_counts(conversion.counts, kSale, StatCounter::converted, kT0 + kHour + 1, "", 2'250);
  EXPECT_EQ(apply_inbound(conversion, kT0 + kHour + 1), 1);
  auto rows = store_->stat_totals(StatDimension::category, kT0 + kHour, kT0 + 2 * kHour);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].counter, StatCounter::converted);
  EXPECT_EQ(rows[0].n, 2);
  EXPECT_EQ(rows[0].sum_milli, 3'750);
  // Both hours at once.
  EXPECT_THAT(totals(*store_, StatDimension::category, kT0, kT0 + 2 * kHour),
              ::testing::ElementsAre("sale accepted=1", "sale converted=2"));
}

TEST_P(StoreStatsTest, CountsSurviveAReopen) {
  accept({counted_message("m1", kT0, kT0)}, kT0);
  reopen();
  EXPECT_THAT(totals(*store_, StatDimension::category, kT0, kT0 + kHour), ::testing::ElementsAre("sale accepted=1"));
}

TEST_P(StoreStatsTest, TheQueueIsCountedByTheHourItFallsDueIn) {
  accept({counted_message("soon", kT0 + 2 * kHour + 5, kT0), counted_message("soon2", kT0 + 2 * kHour + 9, kT0),
          counted_message("later", kT0 + 9 * kHour, kT0), counted_message("now", kT0, kT0)},
         kT0);
  auto hours = store_->waiting_by_hour(kT0 + 1);
  ASSERT_EQ(hours.size(), 2u);
  EXPECT_EQ(hours[0].bucket_ms, kT0 + 2 * kHour);
  EXPECT_EQ(hours[0].n, 2);
  EXPECT_EQ(hours[1].bucket_ms, kT0 + 9 * kHour);
  EXPECT_EQ(hours[1].n, 1);
}

TEST_P(StoreStatsTest, PurgingMinutesKeepsTheHours) {
  accept({counted_message("m1", kT0, kT0)}, kT0);
  EXPECT_EQ(store_->purge_stat_minutes(kT0 + 1).value(), 1);
  EXPECT_THAT(store_->stat_series(StatPeriod::minute, StatDimension::channel, kT0, kT0 + kHour), ::testing::IsEmpty());
  EXPECT_THAT(totals(*store_, StatDimension::channel, kT0, kT0 + kHour), ::testing::ElementsAre("sms accepted=1"));
}

}  // namespace
}  // namespace tayori::store
