// The upstream feed: every timeline event in seq order, read by polling GET /v1/events (api/feed_api.cpp) or
// pushed by the webhooks (webhooks.hpp). One JSON shape for an event serves both, so a consumer can switch
// between polling and push without a second parser.
//
//   {"id":"evt_<seq>","seq":N,"type":T,"at":RFC3339 ms,"message_id":M|null,"recipient_id":R|null,"detail":{...}}
//
// `seq` orders events (the store's events.seq, strictly increasing); `id` is stable across redeliveries, so
// a receiver de-duplicates by it (webhooks are at-least-once).
#pragma once

#include <cstdint>
#include <string>

#include "core/message.hpp"
#include "store/store.hpp"

namespace tayori::feed {

// "evt_<seq>".
std::string event_id(int64_t seq);

core::Json event_json(const store::TimelineEvent& e);

}  // namespace tayori::feed
