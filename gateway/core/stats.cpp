// The stats' counts and answers (stats.hpp): which StatCounts an intake, a transition, a report or a
// conversion makes, and the JSON of GET /v1/stats, /v1/stats/flow and /v1/stats/queue. Pure: intake,
// the dispatcher and core/inbound.cpp attach the counts to their writes, the store adds them in the group
// commit, and api/stats_api.cpp builds its answers here from the buckets it read.
#include "core/stats.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "common/time.hpp"

namespace tayori::core {

using store::StatCounter;
using store::StatDimension;
using store::StatPeriod;

namespace {

constexpr int kLastLatencyBucket = 160;  // 2^40 ms: beyond any message's life

// The counters the console draws per channel per minute.
bool in_flow(StatCounter c) {
  return c == StatCounter::accepted || c == StatCounter::delivered || c == StatCounter::failed ||
         c == StatCounter::dead || c == StatCounter::deferred || c == StatCounter::suppressed;
}

// Nearest-rank percentile over latency buckets (bucket -> deliveries), as the bucket's upper bound: the
// answer errs towards slower, never faster.
int64_t percentile_ms(const std::map<int, int64_t>& buckets, int64_t count, double p) {
  auto rank = static_cast<int64_t>(std::ceil(p * static_cast<double>(count)));
  int64_t seen = 0;
  for (const auto& [bucket, n] : buckets) {
    seen += n;
    if (seen >= rank) return latency_bucket_upper_ms(bucket);
  }
  return buckets.empty() ? 0 : latency_bucket_upper_ms(buckets.rbegin()->first);
}

Json group_template(const std::string& key) {
  return Json{{"key", key},
              {"accepted", 0},
              {"sent", 0},
              {"delivered", 0},
              {"failed", 0},
              {"dead", 0},
              {"suppressed", {{"total", 0}, {"by_reason", Json::object()}}},
              {"deferred", {{"total", 0}, {"by_reason", Json::object()}}},
              {"responded", {{"total", 0}, {"by_option", Json::object()}}},
              {"opened", 0},
              {"clicked", 0},
              {"converted", 0},
              {"conversion_value", 0},
              {"receipts", {{"delivered", 0}, {"failed", 0}}}};
}

// A counter with a breakdown: {total, <by>: {detail: n}}.
void add_broken_down(Json& counter, const char* by, const std::string& detail, int64_t n) {
  counter["total"] = counter["total"].get<int64_t>() + n;
  Json& of = counter[by][detail.empty() ? "unknown" : detail];
  of = (of.is_null() ? 0 : of.get<int64_t>()) + n;
}

void add_to(Json& field, int64_t n) { field = field.get<int64_t>() + n; }

}  // namespace

int64_t bucket_floor(int64_t ms, int64_t width) { return ms - (((ms % width) + width) % width); }

int64_t bucket_ceil(int64_t ms, int64_t width) {
  const int64_t floor = bucket_floor(ms, width);
  return floor == ms ? ms : floor + width;
}

StatSubject stat_subject(const Message& message, std::string channel) {
  return {message.category, message.template_name, std::move(channel)};
}

void add_counts(std::vector<store::StatCount>& out, const StatSubject& subject, StatCounter counter, int64_t at_ms,
                const std::string& detail, int64_t sum_milli) {
  const int64_t hour = bucket_floor(at_ms, kStatHourMs);
  auto add = [&](StatPeriod period, int64_t bucket, StatDimension dimension, const std::string& key,
                 const std::string& with_detail) {
    store::StatCount c;
    c.period = period;
    c.bucket_ms = bucket;
    c.dimension = dimension;
    c.key = key;
    c.counter = counter;
    c.detail = with_detail;
    c.sum_milli = sum_milli;
    out.push_back(std::move(c));
  };
  // Latency is a property of the channel (its provider, its queue), not of what the message was about.
  if (counter != StatCounter::latency) {
    add(StatPeriod::hour, hour, StatDimension::category, subject.category, detail);
    add(StatPeriod::hour, hour, StatDimension::template_name, subject.template_name, detail);
  }
  add(StatPeriod::hour, hour, StatDimension::channel, subject.channel, detail);
  // The minute buckets carry no detail: the flow shows how many, and the hour says why.
  if (in_flow(counter)) add(StatPeriod::minute, bucket_floor(at_ms, kStatMinuteMs), StatDimension::channel, subject.channel, "");
}

std::vector<store::StatCount> transition_counts(const StatSubject& subject, const store::Transition& t, int64_t now_ms,
                                                int64_t latency_ms) {
  std::vector<store::StatCount> out;
  out.reserve(5 * t.events.size());  // up to five counts an event: four, and a delivery's latency
  for (const store::NewTimelineEvent& e : t.events) {
    if (e.type == "dispatched") {
      add_counts(out, subject, StatCounter::sent, now_ms);
    } else if (e.type == "delivered") {
      add_counts(out, subject, StatCounter::delivered, now_ms);
      add_counts(out, subject, StatCounter::latency, now_ms, std::to_string(latency_bucket(latency_ms)));
    } else if (e.type == "failed") {
      add_counts(out, subject, StatCounter::failed, now_ms);
    } else if (e.type == "dead") {
      add_counts(out, subject, StatCounter::dead, now_ms);
    } else if (e.type == "suppressed") {
      add_counts(out, subject, StatCounter::suppressed, now_ms, t.last_reason);
    } else if (e.type == "deferred") {
      add_counts(out, subject, StatCounter::deferred, now_ms, t.last_reason);
    }
  }
  return out;
}

int latency_bucket(int64_t ms) {
  if (ms < 1) return 0;
  int b = 1 + static_cast<int>(std::floor(4.0 * std::log2(static_cast<double>(ms))));
  return std::min(b, kLastLatencyBucket);
}

int64_t latency_bucket_upper_ms(int bucket) {
  if (bucket <= 0) return 1;
  return static_cast<int64_t>(std::ceil(std::exp2(static_cast<double>(std::min(bucket, kLastLatencyBucket)) / 4.0)));
}

Json stats_answer(StatDimension by, const std::vector<store::StatRow>& totals, int64_t from_ms, int64_t to_ms) {
  std::map<std::string, Json> groups;
  std::map<std::string, std::map<int, int64_t>> latency;  // key -> bucket -> deliveries
  for (const store::StatRow& r : totals) {
    auto [it, fresh] = groups.try_emplace(r.key);
    if (fresh) it->second = group_template(r.key);
    Json& g = it->second;
    switch (r.counter) {
      case StatCounter::suppressed:
      case StatCounter::deferred:
        add_broken_down(g[store::to_string(r.counter)], "by_reason", r.detail, r.n);
        break;
      case StatCounter::responded:
        add_broken_down(g["responded"], "by_option", r.detail, r.n);
        break;
      case StatCounter::receipt_delivered:
        add_to(g["receipts"]["delivered"], r.n);
        break;
      case StatCounter::receipt_failed:
        add_to(g["receipts"]["failed"], r.n);
        break;
      case StatCounter::converted:
        add_to(g["converted"], r.n);
        g["conversion_value"] = g["conversion_value"].get<double>() + static_cast<double>(r.sum_milli) / 1000.0;
        break;
      case StatCounter::latency:
        latency[r.key][std::atoi(r.detail.c_str())] += r.n;
        break;
      default:
        add_to(g[store::to_string(r.counter)], r.n);
    }
  }
  Json answer = {{"by", store::to_string(by)},
                 {"from", format_rfc3339_ms(from_ms)},
                 {"to", format_rfc3339_ms(to_ms)},
                 {"groups", Json::array()}};
  for (auto& [key, g] : groups) {
    if (auto l = latency.find(key); l != latency.end() && by == StatDimension::channel) {
      int64_t count = 0;
      for (const auto& [bucket, n] : l->second) count += n;
      if (count > 0)
        g["latency_ms"] = {{"count", count},
                           {"p50", percentile_ms(l->second, count, 0.50)},
                           {"p90", percentile_ms(l->second, count, 0.90)},
                           {"p99", percentile_ms(l->second, count, 0.99)}};
    }
    answer["groups"].push_back(std::move(g));
  }
  return answer;
}

Json flow_answer(const std::vector<store::StatRow>& series, int64_t from_ms, int minutes) {
  static const char* const kFlow[] = {"accepted", "delivered", "failed", "deferred", "suppressed"};
  Json answer = {{"from", format_rfc3339_ms(from_ms)},
                 {"to", format_rfc3339_ms(from_ms + minutes * kStatMinuteMs)},
                 {"minutes", Json::array()},
                 {"channels", Json::object()}};
  for (int i = 0; i < minutes; ++i) answer["minutes"].push_back(format_rfc3339_ms(from_ms + i * kStatMinuteMs));
  for (const store::StatRow& r : series) {
    if (r.key.empty() || !in_flow(r.counter)) continue;
    int64_t index = (r.bucket_ms - from_ms) / kStatMinuteMs;
    if (index < 0 || index >= minutes) continue;
    Json& channel = answer["channels"][r.key];
    if (channel.is_null())
      for (const char* c : kFlow) channel[c] = Json(std::vector<int64_t>(static_cast<size_t>(minutes), 0));
    const char* as = r.counter == StatCounter::dead ? "failed" : store::to_string(r.counter);
    add_to(channel[as][static_cast<size_t>(index)], r.n);
  }
  return answer;
}

Json queue_answer(const std::vector<store::StatRow>& hours, int64_t now_ms) {
  Json answer = {{"now", format_rfc3339_ms(now_ms)}, {"total", 0}, {"hours", Json::array()}};
  int64_t total = 0;
  for (const store::StatRow& r : hours) {
    total += r.n;
    answer["hours"].push_back({{"at", format_rfc3339_ms(r.bucket_ms)}, {"messages", r.n}});
  }
  answer["total"] = total;
  return answer;
}

}  // namespace tayori::core
