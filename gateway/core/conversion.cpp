// Conversions (conversion.hpp): validating a report, last-touch attribution, and what a conversion writes.
// Beside the message flow, after delivery: api/conversions_api.cpp parses POST /v1/conversions here, reads
// the recipient's touches from the store, and hands the InboundWrites decided here to the group commit.
#include "core/conversion.hpp"

#include <cmath>

#include "common/time.hpp"
#include "core/message_checks.hpp"
#include "core/stats.hpp"

namespace tayori::core {

namespace {

constexpr int64_t kFutureSkewMs = 5 * 60'000;

bool is_event_name(std::string_view s) { return is_category(s); }

}  // namespace

ParsedConversion parse_conversion(const Json& j, int64_t now_ms) {
  ParsedConversion out;
  auto fail = [&](std::string pointer, std::string detail) { out.errors.push_back({std::move(pointer), std::move(detail)}); };
  if (!j.is_object()) {
    fail("", "must be an object {id, recipient, event, value?, at?, message_id?}");
    return out;
  }
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "id" && it.key() != "recipient" && it.key() != "event" && it.key() != "value" && it.key() != "at" &&
        it.key() != "message_id")
      fail("/" + it.key(), "is not a known field (id, recipient, event, value, at, message_id)");
  Conversion c;
  c.at_ms = now_ms;
  auto text = [&](const char* key, bool required, bool (*valid)(std::string_view), const char* what) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) fail(std::string("/") + key, std::string("is required: ") + what);
      return std::string();
    }
    if (!it->is_string() || !valid(it->get<std::string>())) {
      fail(std::string("/") + key, std::string("must be ") + what);
      return std::string();
    }
    return it->get<std::string>();
  };
  c.id = text("id", true, is_id, "1 to 128 characters of A-Z a-z 0-9 . _ ~ : -");
  c.recipient_id = text("recipient", true, checks::is_recipient_id, "the recipient's id, 1 to 256 bytes");
  c.event = text("event", true, is_event_name, "a name of 1 to 64 of a-z 0-9 _ . -, like \"purchase\"");
  c.message_id = text("message_id", false, is_id, "a message id");
  if (auto v = j.find("value"); v != j.end() && !v->is_null()) {
    // Non-finite numbers cannot reach here (the JSON reader refuses them); a value is money or a count.
    if (!v->is_number())
      fail("/value", "must be a number");
    else
      c.value = v->get<double>();
  }
  if (auto at = j.find("at"); at != j.end() && !at->is_null()) {
    auto ms = at->is_string() ? parse_rfc3339_ms(at->get<std::string>()) : std::nullopt;
    if (!ms)
      fail("/at", "must be an RFC 3339 date-time with an offset");
    else if (*ms > now_ms + kFutureSkewMs)
      fail("/at", "is in the future");
    else
      c.at_ms = *ms;
  }
  if (out.errors.empty()) out.conversion = std::move(c);
  return out;
}

std::optional<Touch> attribute(const Conversion& conversion, const std::vector<Touch>& touches,
                               const config::AttributionConfig& attribution) {
  std::optional<Touch> best;
  for (const Touch& t : touches) {
    if (t.at_ms > conversion.at_ms || conversion.at_ms - t.at_ms > attribution.window_of(t.category)) continue;
    // The latest touch wins; at the same instant a click is the later act (it follows its delivery).
    if (!best || t.at_ms > best->at_ms || (t.at_ms == best->at_ms && t.kind == "clicked" && best->kind != "clicked"))
      best = t;
  }
  return best;
}

store::Store::InboundWrites decide_conversion(const Conversion& c, const std::optional<Touch>& touch, int64_t now_ms) {
  store::Store::InboundWrites w;
  w.seen_source = "conversion";
  w.seen_report_id = c.id;
  Json detail{{"conversion_id", c.id}, {"event", c.event}, {"at", format_rfc3339_ms(c.at_ms)}};
  detail["value"] = c.value ? Json(*c.value) : Json();
  detail["attributed"] = touch ? Json{{"via", touch->kind}, {"channel", touch->channel},
                                      {"at", format_rfc3339_ms(touch->at_ms)}}
                               : Json();
  w.events.push_back({touch ? touch->message_id : std::string(), c.recipient_id, {"converted", detail.dump(), now_ms}});
  // Counted for the message it is attributed to: a conversion no message led to belongs to no category.
  if (touch)
    add_counts(w.counts, {touch->category, touch->template_name, touch->channel}, store::StatCounter::converted, now_ms,
               "", c.value ? static_cast<int64_t>(std::llround(*c.value * 1000.0)) : 0);
  return w;
}

}  // namespace tayori::core
