// The checks a message's fields are held to, as pure functions of their text: parse_message (message.cpp), which
// explains every failure, and read_intake (intake_reader.cpp), which reads a valid message straight from the
// body's text and leaves any other to parse_message, both answer from these, so the two cannot disagree on what
// is valid. Internal to core/ (docs/architecture.md §2 places it below the message model).
#pragma once

#include <tayori/text.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tayori::core {

// A message's response options: 1 to kMaxResponses (LINE allows 13 quick reply items; ten keep a numbered SMS
// reply to one digit... and a push notification's action list short).
constexpr size_t kMaxResponses = 10;
constexpr size_t kMaxLabelChars = 20;  // LINE quick reply action label limit
constexpr int64_t kMaxFollowUpMs = 366LL * 86'400'000;

// A recipient id, in a message and in /v1/recipients/{id}: bytes of UTF-8.
constexpr size_t kMaxRecipientIdBytes = 256;

namespace checks {

// Character-class checks written out: std::regex was a third of validation's time (tools/bench).
inline bool all_of(std::string_view s, bool (*ok)(char)) {
  for (char c : s)
    if (!ok(c)) return false;
  return true;
}
inline bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
inline bool alnum(char c) { return lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
inline bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool digit(char c) { return c >= '0' && c <= '9'; }
inline bool space_or_at(char c) {
  return c == '@' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

inline bool is_kind(std::string_view s) {
  return !s.empty() && s.size() <= 32 && s[0] >= 'a' && s[0] <= 'z' &&
         all_of(s, [](char c) { return lower_alnum(c) || c == '_'; });
}
// IANA names ("Asia/Tokyo", "America/Argentina/Buenos_Aires", "Etc/GMT-9", "UTC"); no dots, so a name can
// never walk out of the tzdata folder. Existence is checked against tzdata afterwards.
inline bool is_timezone(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '/' || s.back() == '/' || s.find("//") != std::string_view::npos)
    return false;
  return all_of(s, [](char c) { return alnum(c) || c == '_' || c == '/' || c == '+' || c == '-'; });
}
// BCP 47, the common subset: language (2-3 letters) and up to three subtags of 2-8 letters or digits.
inline bool is_locale(std::string_view s) {
  size_t dash = s.find('-');
  std::string_view lang = s.substr(0, dash);
  if (lang.size() < 2 || lang.size() > 3 || !all_of(lang, alpha)) return false;
  int subtags = 0;
  while (dash != std::string_view::npos) {
    s = s.substr(dash + 1);
    dash = s.find('-');
    std::string_view tag = s.substr(0, dash);
    if (++subtags > 3 || tag.size() < 2 || tag.size() > 8 || !all_of(tag, alnum)) return false;
  }
  return true;
}
// E.164: '+', country code, at most 15 digits in all (ITU-T E.164 §6).
inline bool is_e164(std::string_view s) {
  return s.size() >= 8 && s.size() <= 16 && s[0] == '+' && s[1] >= '1' && s[1] <= '9' && all_of(s.substr(1), digit);
}
// Deliberately loose (RFC 5321 local parts are wild): one '@', no spaces, a dot inside the domain.
inline bool is_email(std::string_view s) {
  size_t at = s.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64) return false;
  std::string_view local = s.substr(0, at), domain = s.substr(at + 1);
  auto clean = [](std::string_view p) { return all_of(p, [](char c) { return !space_or_at(c); }); };
  size_t dot = domain.find('.', 1);
  return clean(local) && clean(domain) && dot != std::string_view::npos && dot + 1 < domain.size();
}
inline bool is_template(std::string_view s) {
  return !s.empty() && s.size() <= 128 && lower_alnum(s[0]) &&
         all_of(s, [](char c) { return lower_alnum(c) || c == '_' || c == '.' || c == '/' || c == '-'; });
}
inline bool is_platform(std::string_view s) { return s == "fcm" || s == "apns"; }
inline bool is_purpose(std::string_view s) { return s == "marketing" || s == "transactional"; }

inline bool is_recipient_id(std::string_view s) { return !s.empty() && s.size() <= kMaxRecipientIdBytes; }

// A push token: 1 to 4096 characters (an APNs device token is 64 hex digits, an FCM registration token ~160).
inline bool is_push_token(std::string_view s) { return !s.empty() && s.size() <= 4096; }

// A response option's label: 1 to kMaxLabelChars characters.
inline bool is_label(std::string_view s) {
  size_t chars = text::utf8_code_points(s);
  return chars > 0 && chars <= kMaxLabelChars;
}

// A follow-up's delay, as parse_delay_ms read it: more than nothing, at most kMaxFollowUpMs.
inline bool is_follow_up_delay(std::optional<int64_t> ms) { return ms && *ms > 0 && *ms <= kMaxFollowUpMs; }

// What is wrong with a contact point of `kind` (a string value of `contacts`), or nullptr: 1 to 512 characters,
// and for the kinds the core knows, their form.
inline const char* contact_problem(std::string_view kind, std::string_view value) {
  if (value.empty() || value.size() > 512) return "must be 1 to 512 characters";
  if (kind == "phone" && !is_e164(value)) return "must be an E.164 number such as +819012345678";
  if (kind == "email" && (value.size() > 254 || !is_email(value)))
    return "must be an email address such as hanako@example.jp";
  return nullptr;
}

// The first byte of `text` that is no text a channel can carry, or nullopt: a C0 control character other than
// tab, LF and CR, or DEL. RFC 5322 §2.3 allows none in mail; SMS gateways and push services refuse or cut at
// them.
inline std::optional<size_t> control_character_at(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    auto ch = static_cast<unsigned char>(text[i]);
    if ((ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || ch == 0x7f) return i;
  }
  return std::nullopt;
}

}  // namespace checks
}  // namespace tayori::core
