// GET /v1/events?after=<seq>&limit=<n>: the upstream feed. Every event the gateway records, in seq order,
// in the shape webhooks send (events/feed.hpp). Keyset paging by seq: `next` is the last seq of a full
// page, or where a key's bounded read stopped (pass it as `after`), and null at the end of the feed. A
// consumer that polls stores the last seq it processed, exactly like a webhook subscription's cursor.
#include <limits>

#include "api/api.hpp"
#include "api/http_util.hpp"
#include "events/feed.hpp"

namespace tayori::api {

using core::Json;

namespace {

constexpr int kDefaultEventPage = 100;
constexpr int kMaxEventPage = 1000;
// How many of the feed's events (by seq) one request of a key without read_all reads at most.
constexpr int64_t kScopedEventScan = 10'000;

// A seq: decimal digits only, at most 18 (fits int64_t).
std::optional<int64_t> parse_seq(std::string_view text) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  return std::stoll(std::string(text));
}

}  // namespace

HttpResponse Api::list_events(const HttpRequest& request, const Key& key) {
  int64_t after = 0;
  int limit = kDefaultEventPage;
  auto bad = read_query(request.query, "after, limit", [&](const std::string& name, const std::string& value,
                                                             QueryErrors& errors) {
    if (name == "after") {
      auto seq = parse_seq(value);
      if (!seq) errors.emplace_back(name, "must be an event seq (a non-negative integer; 0 = from the start)");
      after = seq.value_or(0);
    } else if (name == "limit") {
      auto n = parse_bounded_int(value, 1, kMaxEventPage);
      if (!n) errors.emplace_back(name, "must be a number from 1 to " + std::to_string(kMaxEventPage));
      limit = n.value_or(kDefaultEventPage);
    } else {
      return false;
    }
    return true;
  });
  if (bad) return *bad;
  std::string api_key = key.allows(config::Scope::read_all) ? std::string() : key.name;
  // A key without read_all sees its own messages' events, found among all of them: one request reads at most
  // kScopedEventScan of the feed's events, and says where it stopped.
  const int64_t up_to = api_key.empty() || after > std::numeric_limits<int64_t>::max() - kScopedEventScan
                            ? std::numeric_limits<int64_t>::max()
                            : after + kScopedEventScan;
  std::vector<store::EventRecord> page = deps_.store.events_after(after, up_to, limit, api_key);
  Json items = Json::array();
  for (const auto& e : page) items.push_back(events::event_json(e));
  // A full page may have a successor. A short one is the last (poll again later with the same `after`),
  // unless its read stopped at the bound with more of the feed beyond: then `next` is where it stopped.
  Json next;
  if (static_cast<int>(page.size()) == limit) next = page.back().seq;
  else if (up_to != std::numeric_limits<int64_t>::max() && deps_.store.last_event_seq() > up_to) next = up_to;
  return json_response(200, {{"events", items}, {"next", next}});
}

}  // namespace tayori::api
