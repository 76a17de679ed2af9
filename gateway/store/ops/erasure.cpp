// The right to erasure as SQL, once for SQLite and PostgreSQL (ops/erasure.hpp): finding every contact point
// the store holds for a recipient, scrubbing what is kept of them, and keeping a suppression as its key.
#include "store/ops/erasure.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>

#include "common/json.hpp"
#include "store/ops/rows.hpp"
#include "store/ops/suppressions.hpp"

namespace tayori::store::ops {

namespace {

char lower(char ch) { return static_cast<char>(std::tolower(static_cast<unsigned char>(ch))); }
bool is_alnum(char ch) { return std::isalnum(static_cast<unsigned char>(ch)) != 0; }
bool is_digit(char ch) { return std::isdigit(static_cast<unsigned char>(ch)) != 0; }

// Whether `word` starts at `at` in `text`, ASCII letters in any case.
bool matches_at(std::string_view text, size_t at, std::string_view word) {
  if (word.empty() || text.size() - at < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (lower(text[at + i]) != lower(word[i])) return false;
  return true;
}

// Characters of an address's local part and domain (RFC 5321 §4.1.2's dot-string and domain, loosely).
bool local_part_char(char ch) { return is_alnum(ch) || std::string_view("._%+-").find(ch) != std::string_view::npos; }
bool domain_char(char ch) { return is_alnum(ch) || ch == '.' || ch == '-'; }

// The length of an e-mail address, or an E.164 number ('+' and 8 to 15 digits: ITU-T E.164 allows at most 15), starting
// at `at`; 0 when none does.
size_t address_at(std::string_view text, size_t at) {
  if (text[at] == '+') {
    size_t end = at + 1;
    while (end < text.size() && is_digit(text[end])) ++end;
    return end - at - 1 >= 8 && end - at - 1 <= 15 ? end - at : 0;
  }
  size_t at_sign = at;
  while (at_sign < text.size() && local_part_char(text[at_sign])) ++at_sign;
  if (at_sign == at || at_sign >= text.size() || text[at_sign] != '@') return 0;
  size_t end = at_sign + 1;
  while (end < text.size() && domain_char(text[end])) ++end;
  while (end > at_sign + 1 && !is_alnum(text[end - 1])) --end;  // a sentence's full stop is not the domain's
  std::string_view domain = text.substr(at_sign + 1, end - at_sign - 1);
  return domain.find('.') != std::string_view::npos ? end - at : 0;
}

// Every string in `value`, scrubbed in place.
void scrub_strings(nlohmann::json& value, const std::vector<std::string>& contacts) {
  if (value.is_string()) {
    value = scrub_text(value.get<std::string>(), contacts);
  } else if (value.is_structured()) {
    for (auto& member : value) scrub_strings(member, contacts);
  }
}

}  // namespace

std::vector<std::string> contact_points_in(const nlohmann::json& contacts) {
  std::vector<std::string> out;
  if (!contacts.is_object()) return out;
  for (const auto& [kind, value] : contacts.items()) {
    if (value.is_string() && !value.get<std::string>().empty()) out.push_back(value.get<std::string>());
    if (!value.is_array()) continue;
    for (const auto& token : value)
      if (token.is_object() && token.contains("token") && token["token"].is_string())
        out.push_back(token["token"].get<std::string>());
  }
  return out;
}

std::string scrub_text(std::string_view text, const std::vector<std::string>& contacts) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    auto known = std::find_if(contacts.begin(), contacts.end(),
                              [&](const std::string& contact) { return matches_at(text, i, contact); });
    // An address is replaced from its first character on: one that starts mid-word is its own tail.
    bool starts_word = i == 0 || !local_part_char(text[i - 1]);
    size_t length = known != contacts.end() ? known->size() : starts_word ? address_at(text, i) : 0;
    if (length == 0) {
      out += text[i++];
      continue;
    }
    out += kErasedText;
    i += length;
  }
  return out;
}

std::string redact_detail(const std::string& detail_json, const std::vector<std::string>& contacts) {
  nlohmann::json detail = parse_json_or_discarded(detail_json);
  if (!detail.is_object()) return scrub_text(detail_json, contacts);
  detail.erase("text");
  detail.erase("contact");
  scrub_strings(detail, contacts);
  return detail.dump();
}

Transition scrubbed(Transition t) {
  std::vector<std::string> contacts;
  if (!t.contact.empty()) contacts.push_back(t.contact);
  t.last_reason = scrub_text(t.last_reason, contacts);
  for (NewTimelineEvent& e : t.events) e.detail_json = redact_detail(e.detail_json, contacts);
  return t;
}

std::vector<std::string> contact_points_of(sql::Connection& c, const std::string& recipient_id) {
  std::set<std::string> found;
  auto add_all = [&found](const std::vector<std::string>& more) { found.insert(more.begin(), more.end()); };
  for (const auto& contacts :
       all_rows(c.prepare("SELECT contacts FROM recipients WHERE id = ?1").bind(1, recipient_id), first_text))
    add_all(contact_points_in(parse_json_or_discarded(contacts)));
  // A message's recipient object may name contact points the profile no longer has (replaced since).
  for (const auto& payload :
       all_rows(c.prepare("SELECT payload FROM messages WHERE recipient_id = ?1").bind(1, recipient_id), first_text)) {
    nlohmann::json message = parse_json_or_discarded(payload);
    if (message.is_object() && message.contains("recipient") && message["recipient"].is_object() &&
        message["recipient"].contains("contacts"))
      add_all(contact_points_in(message["recipient"]["contacts"]));
  }
  add_all(all_rows(c.prepare("SELECT contact FROM questions WHERE message_id IN "
                             "(SELECT id FROM messages WHERE recipient_id = ?1)")
                       .bind(1, recipient_id),
                   first_text));
  found.erase("");
  return {found.begin(), found.end()};
}

void forget(sql::Connection& c, const std::string& recipient_id, const std::vector<std::string>& contacts) {
  // Events of its messages, and its events that belong to no message (a reply or an opt-out from one of its
  // contact points; an event whose message is gone is stored so too, ops/inbound.cpp).
  auto events =
      all_rows(c.prepare("SELECT seq, detail FROM events WHERE message_seq IN "
                         "(SELECT seq FROM messages WHERE recipient_id = ?1) "
                         "UNION ALL SELECT seq, detail FROM events WHERE message_id = '' AND recipient_id = ?1")
                   .bind(1, recipient_id),
               [](const sql::Statement& s) { return std::pair(s.int64(0), s.text(1)); });
  for (const auto& [seq, detail] : events) {
    std::string kept = redact_detail(detail, contacts);
    if (kept != detail) c.prepare("UPDATE events SET detail = ?2 WHERE seq = ?1").bind(1, seq).bind(2, kept).exec();
  }
  auto reasons =
      all_rows(c.prepare("SELECT id, last_reason FROM messages WHERE recipient_id = ?1 AND last_reason != ''")
                   .bind(1, recipient_id),
               [](const sql::Statement& s) { return std::pair(s.text(0), s.text(1)); });
  for (const auto& [id, reason] : reasons) {
    std::string kept = scrub_text(reason, contacts);
    if (kept != reason)
      c.prepare("UPDATE messages SET last_reason = ?2 WHERE id = ?1").bind(1, id).bind(2, kept).exec();
  }
  c.prepare("DELETE FROM questions WHERE message_id IN (SELECT id FROM messages WHERE recipient_id = ?1)")
      .bind(1, recipient_id)
      .exec();
  for (const auto& contact : contacts) pseudonymise_suppression(c, contact);
}

void pseudonymise_suppression(sql::Connection& c, const std::string& contact) {
  if (contact.empty()) return;
  auto found = first_row(c.prepare("SELECT reason, source, at FROM suppressions WHERE contact = ?1").bind(1, contact),
                         [](const sql::Statement& s) {
                           return policy::Suppression{"", s.text(0), s.text(1), s.int64(2)};
                         });
  if (!found) return;
  c.prepare("DELETE FROM suppressions WHERE contact = ?1").bind(1, contact).exec();
  found->contact = suppression_key(contact);
  found->reason = scrub_text(found->reason, {contact});
  put_suppression(c, *found, found->at_ms);
}

bool is_erased_message(sql::Connection& c, const std::string& message_id) {
  return any_row(
      c.prepare("SELECT 1 FROM messages WHERE id = ?1 AND payload = ?2").bind(1, message_id).bind(2, kErasedPayload));
}

}  // namespace tayori::store::ops
