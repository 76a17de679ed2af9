// A message read straight from the text of a POST /v1/messages body: no JSON tree, no second pass to validate,
// none to write the canonical form. Building the tree, walking it in parse_message and dumping it again were
// most of an HTTP thread's time per message (docs/performance.md, a thirteenth session). Internal to core/:
// read_intake (intake.hpp) is its caller.
#pragma once

#include <optional>
#include <string>

#include "common/json.hpp"
#include "core/message.hpp"

namespace tayori::core {

struct ValidMessage {
  Message message;            // what parse_message gives for the same object
  std::string payload;        // canonical_json of the object
  std::string contacts_json;  // canonical_json of recipient.contacts; "" when the recipient has none
};

// One message object at the cursor, which is inside `depth` arrays and objects of the body (0 for a body that
// is the message). It reads a message that parse_message accepts, with no null member, no member twice, and a
// send_at that is an instant (a local one asks the stored profile for a zone). Anything else gives nullopt, with the
// cursor left somewhere inside: the caller then reads the whole body with parse_json and parse_message, which explain
// what is wrong. tests/unit/core/intake_test.cpp and the message fuzz target hold the two paths to the same Intake.
std::optional<ValidMessage> read_valid_message(JsonCursor& in, const ValidationRules& rules, int depth);

}  // namespace tayori::core
