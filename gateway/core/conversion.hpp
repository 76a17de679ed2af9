// Conversions (POST /v1/conversions): something a recipient did that a message may have led to (a purchase,
// a sign-up), reported by the upstream system, attributed to the message that led to it and recorded as a
// `converted` event on it.
//
// Attribution is last-touch: the recipient's message last delivered or clicked within the attribution window
// before the conversion (config `attribution:`, per category), a click counting as the later touch of its
// message. A conversion that names its message (message_id) is attributed to that one instead, if it is the
// recipient's ("via": "reported").
// The decisions are pure; the API looks the touches up and writes what is decided in one transaction, which
// also makes a conversion id sent twice count once (inbound_seen, source "conversion").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/message.hpp"
#include "store/store.hpp"

namespace tayori::core {

struct Conversion {
  std::string id;            // the upstream's id of the conversion: the idempotency key
  std::string recipient_id;
  std::string event;         // what happened: "purchase", "signup"
  std::optional<double> value;
  int64_t at_ms = 0;         // when it happened (default: when it was reported)
  std::string message_id;    // the message it came from, when the upstream knows it
};

struct ParsedConversion {
  std::optional<Conversion> conversion;  // set only when errors is empty
  std::vector<FieldError> errors;
};

// Validates {id, recipient, event, value?, at?, message_id?}; `now_ms` is the default `at`, and an `at`
// more than five minutes after it is refused (clocks differ; a conversion cannot precede its report by more).
ParsedConversion parse_conversion(const Json& body, int64_t now_ms);

// One of the recipient's messages delivered or clicked: a touch that may have led to a conversion.
struct Touch {
  std::string message_id;
  std::string category;
  std::string template_name;
  std::string channel;
  std::string kind;  // "delivered" or "clicked"; "reported" for the message a conversion named
  int64_t at_ms = 0;
};

// The touch a conversion is attributed to: the latest one at or before the conversion within its message's
// category window; nullopt when none is.
std::optional<Touch> attribute(const Conversion& conversion, const std::vector<Touch>& touches,
                               const config::AttributionConfig& attribution);

// The writes of a conversion attributed to `touch` (or to no message): a `converted` event
// {conversion_id, event, value, at, attributed: {via, channel, at}} on the message, or on the recipient alone,
// de-duplicated by the conversion's id.
store::Store::InboundWrites decide_conversion(const Conversion& conversion, const std::optional<Touch>& touch,
                                              int64_t now_ms);

}  // namespace tayori::core
