// The feed's one JSON shape for an event (feed.hpp), written once for GET /v1/events and the webhooks.
// The last step of the flow towards upstream: api/feed_api.cpp and feed/webhooks.cpp turn the timeline
// events read from the store (store/ops/feed.cpp) into this shape.
#include "feed/feed.hpp"

#include "common/json.hpp"
#include "common/time.hpp"

namespace tayori::feed {

using core::Json;

std::string event_id(int64_t seq) { return "evt_" + std::to_string(seq); }

Json event_json(const store::TimelineEvent& e) {
  // Details are written by the gateway as JSON objects; anything else (a row from an older version) is
  // shown as an empty object rather than failing the whole page.
  Json detail = parse_json_or_discarded(e.detail_json);
  if (detail.is_discarded() || !detail.is_object()) detail = Json::object();
  // Events without a message (an opt-out by SMS keyword, a LINE unfollow) are stored with message_id ''.
  return {{"id", event_id(e.seq)},
          {"seq", e.seq},
          {"type", e.type},
          {"at", format_rfc3339_ms(e.at_ms)},
          {"message_id", e.message_id.empty() ? Json() : Json(e.message_id)},
          {"recipient_id", e.recipient_id.empty() ? Json() : Json(e.recipient_id)},
          {"detail", detail}};
}

}  // namespace tayori::feed
