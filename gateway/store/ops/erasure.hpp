// The right to erasure (GDPR Art. 17, APPI Art. 35) as SQL, once for SQLite and PostgreSQL: what
// DELETE /v1/recipients/{id} removes besides the profile and the payloads (ops/recipients.cpp,
// erase_recipient), and what keeps a write that arrives after it (a delivery in flight, its suppression,
// its open question) from bringing the recipient's contact points back. docs/operator-guide.md §8 lists
// what is removed and what is kept.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/message_store.hpp"
#include "store/sql.hpp"

namespace tayori::store::ops {

// What an erased message's payload becomes; its id, state and timeline stay.
inline constexpr const char* kErasedPayload = R"({"erased":true})";
// What a contact point, an e-mail address or a phone number in a kept text becomes.
inline constexpr std::string_view kErasedText = "[erased]";

// The contact points a `contacts` object names: every string member (email, phone, a LINE user id, a
// plugin's own kind) and every push token.
std::vector<std::string> contact_points_in(const nlohmann::json& contacts);
// `text` with every occurrence of `contacts` (in any letter case), every e-mail address and every
// E.164-looking number replaced by kErasedText: a provider's answer (an SMTP "550 5.1.1 <a@b.example>", a
// carrier's "+819012345678 is not reachable") may name them in its own spelling.
std::string scrub_text(std::string_view text, const std::vector<std::string>& contacts);
// An event's detail without what the recipient said or was reached at (`text`, `contact`), every other
// string scrubbed (scrub_text). A detail that is not a JSON object is scrubbed as text.
std::string redact_detail(const std::string& detail_json, const std::vector<std::string>& contacts);
// The transition with its last_reason and event details scrubbed of its contact point.
Transition scrubbed(Transition t);

// Every contact point the store holds for the recipient: its profile (whose contacts its contact_points rows
// are), the recipient objects of its messages' payloads, and the contacts of its messages' open questions.
std::vector<std::string> contact_points_of(sql::Connection& c, const std::string& recipient_id);
// Removes, from what erasure keeps, what the recipient wrote or was reached at: event details of its
// messages and its message-less events (replies, opt-outs), its messages' last_reason, their open questions,
// and the suppressions of `contacts`, kept as their key (pseudonymise_suppression).
void forget(sql::Connection& c, const std::string& recipient_id, const std::vector<std::string>& contacts);
// The contact point's suppression, if any, is stored under suppression_key instead (its reason scrubbed):
// it still blocks the contact point and no longer names it.
void pseudonymise_suppression(sql::Connection& c, const std::string& contact);
// Whether the message's recipient was erased (its payload is kErasedPayload).
bool is_erased_message(sql::Connection& c, const std::string& message_id);

}  // namespace tayori::store::ops
