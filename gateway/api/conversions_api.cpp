// POST /v1/conversions: the upstream reports something a recipient did (a purchase), and the gateway
// attributes it to the message that led to it (core/conversion.hpp) and records `converted` on that message.
// 201 with the attribution for a new conversion; 200 with duplicate: true for an id already recorded, which
// changes nothing (a retried report counts once).
#include <map>

#include "api/api.hpp"
#include "api/http_util.hpp"
#include "common/json.hpp"
#include "common/time.hpp"
#include "core/conversion.hpp"
#include "core/inbound.hpp"

namespace tayori::api {

using core::Json;

void Api::record_conversion(const HttpRequest& request, const Responder& respond) {
  auto body = json_body(request, respond);
  if (!body) return;
  const int64_t now = deps_.clock.now_ms();
  core::ParsedConversion parsed = core::parse_conversion(*body, now);
  std::vector<std::pair<std::string, std::string>> errors;
  for (const auto& e : parsed.errors) errors.emplace_back(e.pointer, e.detail);
  if (!parsed.conversion) return respond(problem(400, "Bad Request", "the conversion is invalid", errors));
  const core::Conversion c = *parsed.conversion;

  // The category of each message touched decides its window; a message is read once however often touched.
  std::map<std::string, std::optional<core::Original>> originals;
  auto original_of = [&](const std::string& id) -> const std::optional<core::Original>& {
    auto [it, added] = originals.try_emplace(id);
    if (added)
      if (auto record = deps_.store.find(id)) it->second = core::read_original(*record);
    return it->second;
  };
  std::optional<core::Touch> touch;
  if (!c.message_id.empty()) {
    const auto& named = original_of(c.message_id);
    if (!named || named->message.recipient.id != c.recipient_id)
      return respond(problem(400, "Bad Request", "the conversion is invalid",
                             {{"/message_id", "is not a message to this recipient"}}));
    touch = core::Touch{c.message_id, named->message.category, named->message.template_name,
                        named->record.channel, "reported", c.at_ms};
  } else {
    std::vector<core::Touch> touches;
    for (const auto& e : deps_.store.touches(c.recipient_id, c.at_ms - attribution_.longest_ms(), c.at_ms)) {
      const auto& original = original_of(e.message_id);
      if (!original) continue;  // erased since
      Json detail = parse_json_or_discarded(e.detail_json);
      touches.push_back({e.message_id, original->message.category, original->message.template_name,
                         detail.is_object() ? detail.value("channel", std::string()) : std::string(), e.type, e.at_ms});
    }
    touch = core::attribute(c, touches, attribution_);
  }
  std::vector<store::Store::InboundWrites> writes;
  writes.push_back(core::decide_conversion(c, touch, now));
  deps_.store.apply_inbound(std::move(writes), now, [respond, c, touch](const Result<int>& applied) {
    if (!applied) return respond(store_unavailable("the conversion", applied.error().message));
    if (*applied == 0) return respond(json_response(200, {{"id", c.id}, {"duplicate", true}}));
    Json out{{"id", c.id}, {"recipient", c.recipient_id}, {"event", c.event}, {"duplicate", false}};
    out["message_id"] = touch ? Json(touch->message_id) : Json();
    out["attributed"] = touch ? Json{{"via", touch->kind}, {"channel", touch->channel},
                                     {"at", format_rfc3339_ms(touch->at_ms)}}
                              : Json();
    respond(json_response(201, out));
  });
}

}  // namespace tayori::api
