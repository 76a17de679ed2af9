// GET /v1/events?after=<seq>&limit=<n>: the upstream feed. Every event the gateway records, in seq order,
// in the shape webhooks send (feed/feed.hpp). Keyset paging by seq: `next` is the last seq of a full
// page, or where a bounded read stopped (pass it as `after`), and null at the end of the feed. A
// consumer that polls stores the last seq it processed, exactly like a webhook subscription's cursor.
//
// Two additions for a reader that wants the latest of something (the operator console's consent changes)
// leave that default as it was: `types=a,b` keeps only those event types, and `order=desc` reads newest
// first, from `before` (exclusive; absent: the newest event) down, with `next` to pass as `before`.
#include <algorithm>
#include <limits>
#include <set>

#include "api/api.hpp"
#include "api/http_util.hpp"
#include "feed/feed.hpp"

namespace tayori::api {

using core::Json;

namespace {

constexpr int kDefaultEventPage = 100;
constexpr int kMaxEventPage = 1000;
// How many of the feed's events (by seq) one filtered request (a key without read_all, or `types`) reads at
// most: the filter is applied to every event of the range.
constexpr int64_t kFilteredEventScan = 10'000;
constexpr int64_t kNoSeq = std::numeric_limits<int64_t>::max();

// A seq: decimal digits only, at most 18 (fits int64_t).
std::optional<int64_t> parse_seq(std::string_view text) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  return std::stoll(std::string(text));
}

}  // namespace

HttpResponse Api::read_feed(const HttpRequest& request, const Key& key) {
  store::FeedQuery query;
  query.limit = kDefaultEventPage;
  std::optional<int64_t> before;
  auto bad = read_query(request.query, "after, before, limit, types, order",
                        [&](const std::string& name, const std::string& value, QueryErrors& errors) {
    if (name == "after" || name == "before") {
      auto seq = parse_seq(value);
      if (!seq) errors.emplace_back(name, "must be an event seq (a non-negative integer; after=0 = from the start)");
      if (name == "after") query.after_seq = seq.value_or(0);
      else before = seq;
    } else if (name == "limit") {
      auto n = parse_bounded_int(value, 1, kMaxEventPage);
      if (!n) errors.emplace_back(name, "must be a number from 1 to " + std::to_string(kMaxEventPage));
      query.limit = n.value_or(kDefaultEventPage);
    } else if (name == "types") {
      std::set<std::string> types;
      for (std::string_view rest = value; !rest.empty() || types.empty();) {
        std::string_view type = rest.substr(0, rest.find(','));
        rest.remove_prefix(std::min(rest.size(), type.size() + 1));
        if (!config::event_types().count(std::string(type))) {
          errors.emplace_back(name, "names \"" + std::string(type) + "\", which is not an event type");
          break;
        }
        types.insert(std::string(type));
      }
      query.types.assign(types.begin(), types.end());
    } else if (name == "order") {
      if (value != "asc" && value != "desc") errors.emplace_back(name, "must be asc or desc");
      query.newest_first = value == "desc";
    } else {
      return false;
    }
    return true;
  });
  if (bad) return *bad;
  if (!key.allows(config::Scope::read_all)) query.api_key = key.name;
  // The range asked for is (after, before). A filtered read takes at most kFilteredEventScan events of it,
  // from the end it starts at, and then says where it stopped.
  const bool filtered = !query.api_key.empty() || !query.types.empty();
  const int64_t floor = query.after_seq;
  const int64_t ceiling = before ? *before - 1 : kNoSeq;
  query.up_to_seq = ceiling;
  if (filtered && query.newest_first) {
    if (ceiling == kNoSeq) query.up_to_seq = deps_.store.last_event_seq();
    query.after_seq = std::max(floor, query.up_to_seq - kFilteredEventScan);
  } else if (filtered && floor < ceiling - kFilteredEventScan) {
    query.up_to_seq = floor + kFilteredEventScan;
  }
  std::vector<store::TimelineEvent> page = deps_.store.read_feed(query);
  Json items = Json::array();
  for (const auto& e : page) items.push_back(feed::event_json(e));
  // A full page may have a successor: its last seq. A short one is the last (oldest first: poll again later
  // with the same `after`), unless its read stopped at its bound with more of the range beyond: then `next`
  // is where it stopped, as `after` (oldest first) or `before` (newest first).
  Json next;
  if (static_cast<int>(page.size()) == query.limit)
    next = page.back().seq;
  else if (query.newest_first && query.after_seq > floor)
    next = query.after_seq + 1;
  else if (!query.newest_first && query.up_to_seq < ceiling && deps_.store.last_event_seq() > query.up_to_seq)
    next = query.up_to_seq;
  return json_response(200, {{"events", items}, {"next", next}});
}

}  // namespace tayori::api
