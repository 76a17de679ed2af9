// The stats (issue "What each message led to"): which counts each thing that happens to a message makes,
// and what GET /v1/stats, /v1/stats/flow and /v1/stats/queue answer from the counted buckets. Pure: the
// counts travel with the write that makes them true (store/stats_store.hpp), and the answers are built
// from rows the API read.
//
// Every count is made three times, once per dimension (the message's category, its channel, its template),
// in its hour; the flow counters of a channel (accepted, delivered, failed, dead, deferred, suppressed) are
// also made in their minute, for the console's last hour.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/message.hpp"
#include "store/message_store.hpp"
#include "store/stats_store.hpp"

namespace tayori::core {

// The buckets' widths, and the start of the bucket `ms` falls in (floor) or of the first bucket at or after it
// (ceil): a count and a question about a range round alike.
inline constexpr int64_t kStatMinuteMs = 60'000;
inline constexpr int64_t kStatHourMs = 3'600'000;
int64_t bucket_floor(int64_t ms, int64_t width);
int64_t bucket_ceil(int64_t ms, int64_t width);

// Whom a count is about.
struct StatSubject {
  std::string category;
  std::string template_name;
  std::string channel;
};
StatSubject stat_subject(const Message& message, std::string channel);

// Adds the counts of one `counter` at `at_ms` to `out` (one per dimension, and the channel's minute for a
// flow counter). `detail`: the reason, option or latency bucket.
void add_counts(std::vector<store::StatCount>& out, const StatSubject& subject, store::StatCounter counter,
                int64_t at_ms, const std::string& detail = "", int64_t sum_milli = 0);

// The counts of a dispatcher's verdict, from its events: dispatched -> sent; delivered -> delivered and its
// latency (`latency_ms`: from when the message was due to the provider's answer); failed, dead; deferred and
// suppressed by the reason (last_reason). Events that change nothing a stat shows (retry_scheduled,
// attempt_failed, requeued) count nothing.
std::vector<store::StatCount> transition_counts(const StatSubject& subject, const store::Transition& t, int64_t now_ms,
                                                int64_t latency_ms);

// Latency buckets: a quarter of a power of two wide (each bound 19% above the one before), so that a
// percentile read from them is within 19% of the true one, from 1 ms to days, in 80-odd buckets.
int latency_bucket(int64_t ms);
int64_t latency_bucket_upper_ms(int bucket);

// GET /v1/stats: the totals of each key of `by` over [from_ms, to_ms), every counter present.
Json stats_answer(store::StatDimension by, const std::vector<store::StatRow>& totals, int64_t from_ms, int64_t to_ms);

// GET /v1/stats/flow: per channel, per minute of [from_ms, from_ms + minutes), the flow counters (dead counts as
// failed: both are messages that did not get through).
Json flow_answer(const std::vector<store::StatRow>& series, int64_t from_ms, int minutes);

// GET /v1/stats/queue: the scheduled messages waiting, per hour they fall due in.
Json queue_answer(const std::vector<store::StatRow>& hours, int64_t now_ms);

}  // namespace tayori::core
