// The upstream feed: every timeline event in one order (GET /v1/events), and how far each webhook
// subscription has delivered it. One aggregate of the Store (store.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "store/message_store.hpp"

namespace tayori::store {

// A read of the feed: events with `after_seq` < seq <= `up_to_seq`, at most `limit`, oldest or newest first.
// The filters (`api_key`, `types`) are found by reading every event of the range, so a filtered reader bounds
// the range (GET /v1/events): a key with few messages, or a rare type, in a busy feed must not make one
// request read the whole feed.
struct FeedQuery {
  int64_t after_seq = 0;
  int64_t up_to_seq = std::numeric_limits<int64_t>::max();
  int limit = 100;
  std::string api_key;             // non-empty: only the events of the messages that key submitted
  std::vector<std::string> types;  // non-empty: only events of these types
  bool newest_first = false;       // from up_to_seq down instead of from after_seq up
};

class FeedStore {
 public:
  virtual ~FeedStore() = default;

  virtual std::vector<TimelineEvent> read_feed(const FeedQuery& query) = 0;
  // The feed in seq order (webhooks): read_feed without a type filter.
  std::vector<TimelineEvent> events_after(int64_t after_seq, int64_t up_to_seq, int limit, const std::string& api_key) {
    return read_feed({after_seq, up_to_seq, limit, api_key, {}, false});
  }
  // The highest event seq (0 when there is none): a webhook's lag is this minus its cursor.
  virtual int64_t last_event_seq() = 0;
  // The seq a webhook subscription has delivered up to; nullopt before its first delivery.
  virtual std::optional<int64_t> webhook_cursor(const std::string& name) = 0;
  // Group-committed. `done` may be empty.
  virtual void set_webhook_cursor(const std::string& name, int64_t seq, std::function<void(Result<void>)> done) = 0;
  // Whether this node delivers subscription `name` now. Where nodes share the store one node at a time holds
  // a subscription, renewing its hold at each call, and another takes it over once the hold has not been
  // renewed for the store's lease (it then reads the cursor again). One node always holds it.
  virtual bool hold_subscription(const std::string& name, int64_t now_ms) {
    (void)name;
    (void)now_ms;
    return true;
  }
};

}  // namespace tayori::store
