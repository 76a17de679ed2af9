// The upstream feed and webhook cursors (store/feed_store.hpp) as SQL, written once for every engine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/message_store.hpp"
#include "store/sql.hpp"

namespace tayori::store::ops {

std::vector<EventRecord> events_after(sql::Connection& c, int64_t after_seq, int64_t up_to_seq, int limit,
                                      const std::string& api_key);
int64_t last_event_seq(sql::Connection& c);
std::optional<int64_t> webhook_cursor(sql::Connection& c, const std::string& name);
void set_webhook_cursor(sql::Connection& c, const std::string& name, int64_t seq);

}  // namespace tayori::store::ops
