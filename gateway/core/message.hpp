// The message model of the public API and its validation: a pure function from JSON to either a
// Message or every problem found, each named by its JSON pointer (RFC 6901) so a 400 can list them all.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.hpp"
#include "common/names.hpp"
#include "core/message_checks.hpp"  // kMaxRecipientIdBytes
#include "policy/purpose.hpp"

namespace tayori::core {

using Json = nlohmann::json;

using policy::Purpose;
using policy::to_string;

struct PushToken {
  std::string platform;  // "fcm" | "apns"
  std::string token;
  friend bool operator==(const PushToken&, const PushToken&) = default;
};

struct Recipient {
  std::string id;
  std::string timezone;  // IANA name, may be empty
  std::string locale;    // BCP 47, may be empty
  std::map<std::string, std::string> contacts;  // kind -> contact point: "email", "phone", ...
  std::vector<PushToken> push;

  // The contact point a channel uses: "email", "phone", any plugin-defined kind, or "push.fcm"/"push.apns".
  std::optional<std::string> contact(const std::string& kind) const;
  friend bool operator==(const Recipient&, const Recipient&) = default;
};

// One answer a message offers (two-way): rendered natively by each channel (LINE quick reply, numbered
// SMS choices, e-mail links, push actions). `follow_up`: answering it schedules a re-delivery after
// `follow_up_after_ms` (the original content, or the template `follow_up_template`).
struct ResponseSpec {
  std::string id;     // [a-z][a-z0-9_]*, unique within the message
  std::string label;  // at most 20 characters (LINE quick reply labels)
  std::optional<int64_t> follow_up_after_ms;
  std::string follow_up_template;
  friend bool operator==(const ResponseSpec&, const ResponseSpec&) = default;
};

struct Message {
  std::string id;  // the upstream id: the idempotency key
  Recipient recipient;
  Purpose purpose = Purpose::transactional;
  std::string category;
  std::vector<std::string> channels;  // preference order
  std::map<std::string, std::string> content;  // field -> text (Mustache), for every channel
  std::map<std::string, std::map<std::string, std::string>> content_variants;  // channel -> field -> text
  std::string template_name;
  Json data = Json::object();
  std::optional<int64_t> send_at_ms;
  bool send_at_local = false;  // send_at was a wall-clock time in the recipient's zone
  std::optional<int64_t> expires_at_ms;
  Json metadata = Json::object();
  std::vector<ResponseSpec> responses;  // empty: the message asks nothing
  // `track: {clicks: bool, opens: bool}`: this message's links rewritten to tracked ones, and its html given
  // an open pixel (true), or not (false), whatever its channel's `track:` says; unset: the channel decides.
  std::optional<bool> track_clicks;
  std::optional<bool> track_opens;
  friend bool operator==(const Message&, const Message&) = default;
};

// An id that travels in URLs: a message's (GET /v1/messages/{id}) or a conversion's.
bool is_id(std::string_view s);

struct FieldError {
  std::string pointer;  // RFC 6901, e.g. "/recipient/contacts/phone"
  std::string detail;
  friend bool operator==(const FieldError&, const FieldError&) = default;
};

struct ValidationRules {
  // The configured channel names; nullptr skips the check (re-reading stored messages).
  const std::set<std::string>* channels = nullptr;
  bool templates_available = false;
  // Signed links can be made (server.public_url): a message may ask for `track: {clicks: true}`.
  bool links_available = true;
  // The known template names; nullptr with templates_available accepts any name (stored messages).
  const std::set<std::string>* templates = nullptr;
  // The zone a local send_at ("2026-11-24T10:00:00", no offset) is read in when the recipient has none.
  std::string default_timezone = "UTC";
  // The stored profile's zone of a recipient ("" when none), asked only for a local send_at of a message
  // that names no zone itself.
  std::function<std::string(const std::string& recipient_id)> stored_timezone;
  size_t max_metadata_bytes = 16 * 1024;
  size_t max_content_bytes = 256 * 1024;
};

struct ParsedMessage {
  std::optional<Message> message;  // set only when errors is empty
  std::vector<FieldError> errors;
};

// Validates one message object. `pointer_prefix` prefixes every error's pointer ("/messages/3").
ParsedMessage parse_message(const Json& json, const ValidationRules& rules, const std::string& pointer_prefix = "");

// The rules a stored message is held to when it is read again: as it was accepted, except that its channels may
// have been reconfigured since (not checked) and any template name is taken.
ValidationRules stored_message_rules();

// A message this gateway stored, from its payload (the canonical JSON of a message that passed parse_message at
// intake), as the dispatcher and the inbound path need it again: read_stored_message first, and when that
// gives up, parse_message with stored_message_rules(). nullopt: the payload is no message (erased, or corrupted).
std::optional<Message> stored_message(std::string_view payload);

// The same Message parse_message gives for a stored payload, read straight from its text: no JSON tree is
// built and nothing is validated again (intake did that). It reads only the shape canonical_json writes for a
// valid message (members in key order, each once) and gives up (nullopt) on anything else: a member that is
// null, a local send_at (its zone is looked up when it is parsed), any member or value it does not expect.
// stored_message falls back to parse_message then. tests/unit/core/message_test.cpp and the message fuzz
// target hold the two to the same result.
std::optional<Message> read_stored_message(std::string_view payload);

// Validates a recipient object (PUT /v1/recipients/{id} and a message's `recipient`). `id_required`:
// a message names its recipient inside; the recipients API takes the id from the URL.
void parse_recipient(const Json& json, const std::string& pointer, bool id_required, Recipient& out,
                     std::vector<FieldError>& errors);

// A delay: ISO 8601 (P2D, PT12H, P1DT2H30M, PT1S; weeks P1W) or Tayori's (250ms, 10s, 5m, 24h, 7d).
std::optional<int64_t> parse_delay_ms(std::string_view text);

// The canonical form stored and hashed for idempotency (crypto::sha256_hex): keys sorted, no
// insignificant white space.
std::string canonical_json(const Json& json);

}  // namespace tayori::core
