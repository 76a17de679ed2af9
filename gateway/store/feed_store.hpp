// The upstream feed: every timeline event in one order (GET /v1/events), and how far each webhook
// subscription has delivered it. One aggregate of the Store (store.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "store/message_store.hpp"

namespace tayori::store {

class FeedStore {
 public:
  virtual ~FeedStore() = default;

  // Events with `after_seq` < seq <= `up_to_seq`, in seq order, at most `limit`.
  // `api_key` non-empty: only the events of the messages that key submitted. Those are found by reading every
  // event of the range, so a key's reader bounds the range (GET /v1/events): a key with few messages in a
  // busy feed must not make one request read the whole feed.
  virtual std::vector<EventRecord> events_after(int64_t after_seq, int64_t up_to_seq, int limit,
                                                const std::string& api_key) = 0;
  // The highest event seq (0 when there is none): a webhook's lag is this minus its cursor.
  virtual int64_t last_event_seq() = 0;
  // The seq a webhook subscription has delivered up to; nullopt before its first delivery.
  virtual std::optional<int64_t> webhook_cursor(const std::string& name) = 0;
  // Group-committed. `done` may be empty.
  virtual void set_webhook_cursor(const std::string& name, int64_t seq, std::function<void(bool ok)> done) = 0;
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
