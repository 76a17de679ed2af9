// The upstream feed and webhook cursors (store/feed_store.hpp) as SQL, written once for every engine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/feed_store.hpp"
#include "store/message_store.hpp"
#include "store/sql.hpp"

namespace tayori::store::ops {

std::vector<TimelineEvent> read_feed(sql::Connection& c, const FeedQuery& query);
int64_t last_event_seq(sql::Connection& c);
std::optional<int64_t> webhook_cursor(sql::Connection& c, const std::string& name);
void set_webhook_cursor(sql::Connection& c, const std::string& name, int64_t seq);

}  // namespace tayori::store::ops
