// The stats: counters of what happened to messages, per hour (and per minute for each channel's flow), by
// category, channel and template. One aggregate of the Store (store.hpp).
//
// A count rides on the write that makes it true (NewMessage, Transition, InboundWrites carry theirs) and is
// added in that write's transaction, only when the write takes effect: a duplicate, a stale verdict or an
// provider report seen before counts nothing, and a crash loses no count that the timeline kept. The writer
// adds up one group's counts per bucket before committing, so the table grows by buckets, not by messages,
// and a question over a month reads hundreds of rows, never the messages (core/stats.hpp decides the counts).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tayori::store {

enum class StatPeriod { minute, hour };
// What a count is grouped by (GET /v1/stats?by=...).
enum class StatDimension { category, channel, template_name };
// What happened. `latency` counts deliveries per latency bucket (its detail); `converted` also sums a value.
enum class StatCounter {
  accepted,
  sent,
  delivered,
  failed,
  dead,
  suppressed,
  deferred,
  responded,
  opened,
  clicked,
  converted,
  receipt_delivered,
  receipt_failed,
  latency,
};
inline constexpr StatCounter kAllStatCounters[] = {
    StatCounter::accepted,   StatCounter::sent,      StatCounter::delivered,         StatCounter::failed,
    StatCounter::dead,       StatCounter::suppressed, StatCounter::deferred,         StatCounter::responded,
    StatCounter::opened,     StatCounter::clicked,   StatCounter::converted,         StatCounter::receipt_delivered,
    StatCounter::receipt_failed, StatCounter::latency};

const char* to_string(StatPeriod p);
const char* to_string(StatDimension d);
const char* to_string(StatCounter c);

struct StatCount {
  StatPeriod period = StatPeriod::hour;
  int64_t bucket_ms = 0;  // the start of its hour or minute (UTC)
  StatDimension dimension = StatDimension::category;
  std::string key;     // the category, channel or template; "" for a message without one
  StatCounter counter = StatCounter::accepted;
  std::string detail;  // the reason (suppressed, deferred), option (responded), bucket (latency); or ""
  int64_t n = 1;
  // converted: the conversions' value in thousandths (integers add up exactly on both engines).
  int64_t sum_milli = 0;
  friend bool operator==(const StatCount&, const StatCount&) = default;
};

// Counts added up over a range of buckets (or, for a series, per bucket).
struct StatRow {
  int64_t bucket_ms = 0;  // series only
  std::string key;
  StatCounter counter = StatCounter::accepted;
  std::string detail;
  int64_t n = 0;
  int64_t sum_milli = 0;
};

class StatsStore {
 public:
  virtual ~StatsStore() = default;

  // The hour buckets of `dimension` in [from_ms, to_ms), added up per key, counter and detail.
  virtual std::vector<StatRow> stat_totals(StatDimension dimension, int64_t from_ms, int64_t to_ms) = 0;
  // The buckets of `period` and `dimension` in [from_ms, to_ms), one row per bucket, key, counter and detail.
  virtual std::vector<StatRow> stat_series(StatPeriod period, StatDimension dimension, int64_t from_ms,
                                           int64_t to_ms) = 0;
  // Scheduled messages due after `after_ms`, per hour they fall due in (bucket_ms, n): what waits for quiet
  // hours, a cap, a retry or a send_at. Read from the due index (state, due_at), not from the counters.
  virtual std::vector<StatRow> waiting_by_hour(int64_t after_ms) = 0;
  // Deletes minute buckets older than `before_ms` (they serve the last hours' flow only); hour buckets stay.
  virtual Result<int64_t> purge_stat_minutes(int64_t before_ms) = 0;
};

}  // namespace tayori::store
