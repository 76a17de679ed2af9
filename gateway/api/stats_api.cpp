// GET /v1/stats, /v1/stats/flow and /v1/stats/queue: what messages led to, from the stats' buckets
// (store/stats_store.hpp), never from the messages; core/stats.hpp shapes the answers. Aggregates only, so
// the read scope is enough: no answer names a recipient or shows another key's message.
#include "api/api.hpp"
#include "api/http_util.hpp"
#include "common/time.hpp"
#include "core/stats.hpp"

namespace tayori::api {

using core::Json;

namespace {

using core::bucket_ceil;
using core::bucket_floor;
constexpr int64_t kDefaultRangeMs = 24 * core::kStatHourMs;
constexpr int64_t kLongestRangeMs = 366 * 24 * core::kStatHourMs;
constexpr int kDefaultFlowMinutes = 60;
constexpr int kLongestFlowMinutes = 1440;  // the minute buckets are kept two days (store::purge_stat_minutes)

std::optional<store::StatDimension> parse_dimension(const std::string& s) {
  for (auto d : {store::StatDimension::category, store::StatDimension::channel, store::StatDimension::template_name})
    if (s == store::to_string(d)) return d;
  return std::nullopt;
}

}  // namespace

HttpResponse Api::stats(const HttpRequest& request, const std::string& route) {
  const int64_t now = deps_.clock.now_ms();
  if (route == "/v1/stats/queue") {
    if (auto bad = read_query(request.query, "none", [](const std::string&, const std::string&, QueryErrors&) {
          return false;
        }))
      return *bad;
    return json_response(200, core::queue_answer(deps_.store.waiting_by_hour(now), now));
  }
  if (route == "/v1/stats/flow") {
    int minutes = kDefaultFlowMinutes;
    auto bad = read_query(request.query, "minutes", [&](const std::string& name, const std::string& value,
                                                        QueryErrors& errors) {
      if (name != "minutes") return false;
      auto n = parse_bounded_int(value, 1, kLongestFlowMinutes);
      if (!n) errors.emplace_back(name, "must be a number from 1 to " + std::to_string(kLongestFlowMinutes));
      minutes = n.value_or(kDefaultFlowMinutes);
      return true;
    });
    if (bad) return *bad;
    // Up to and including the minute now is in, so the last point grows as the minute goes on.
    const int64_t to = bucket_floor(now, core::kStatMinuteMs) + core::kStatMinuteMs;
    const int64_t from = to - minutes * core::kStatMinuteMs;
    return json_response(200, core::flow_answer(deps_.store.stat_series(store::StatPeriod::minute,
                                                                         store::StatDimension::channel, from, to),
                                                 from, minutes));
  }
  std::optional<store::StatDimension> by;
  std::optional<int64_t> from, to;
  auto bad = read_query(request.query, "by, from, to", [&](const std::string& name, const std::string& value,
                                                           QueryErrors& errors) {
    if (name == "by") {
      by = parse_dimension(value);
      if (!by) errors.emplace_back(name, "must be category, channel or template");
    } else if (name == "from" || name == "to") {
      auto at = parse_rfc3339_ms(value);
      if (!at) errors.emplace_back(name, "must be an RFC 3339 time with an offset, like 2026-12-01T00:00:00Z");
      (name == "from" ? from : to) = at;
    } else {
      return false;
    }
    return true;
  });
  if (bad) return *bad;
  QueryErrors errors;
  if (!by) errors.emplace_back("by", "is required: category, channel or template");
  // Counted by whole hours: the range widens to the hours it touches.
  const int64_t until = bucket_ceil(to.value_or(now), core::kStatHourMs);
  const int64_t since = bucket_floor(from.value_or(to.value_or(now) - kDefaultRangeMs), core::kStatHourMs);
  if (since >= until) errors.emplace_back("from", "must be before to");
  else if (until - since > kLongestRangeMs) errors.emplace_back("from", "must be at most 366 days before to");
  if (!errors.empty()) return query_problem(errors);
  return json_response(200, core::stats_answer(*by, deps_.store.stat_totals(*by, since, until), since, until));
}

}  // namespace tayori::api
