// read_valid_message (intake_reader.hpp): a valid message from text, checked by the predicates parse_message
// uses (message_checks.hpp), its canonical form written as it is read.
#include "core/intake_reader.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <string_view>

#include "common/names.hpp"
#include "common/time.hpp"
#include "core/message_checks.hpp"
#include "policy/timezone.hpp"

namespace tayori::core {

using namespace checks;

namespace {

// The members read, in canonical order (nlohmann keeps an object's members in a std::map: bytewise by key).
enum Member : size_t {
  kCategory,
  kChannels,
  kContent,
  kData,
  kExpiresAt,
  kId,
  kMetadata,
  kPurpose,
  kRecipient,
  kResponses,
  kSendAt,
  kTemplate,
  kTrack,
  kMembers
};
constexpr std::array<std::string_view, kMembers> kMemberNames = {
    "category", "channels",  "content",   "data",    "expires_at", "id",   "metadata",
    "purpose",  "recipient", "responses", "send_at", "template",   "track"};

// Member texts by key: the canonical object (dump_json writes members in this order).
using MemberTexts = std::map<std::string, std::string, std::less<>>;

void append_object(std::string& out, const MemberTexts& members) {
  out += '{';
  for (const auto& [key, text] : members) {
    if (out.back() != '{') out += ',';
    append_json_string(out, key);  // read from the text by JsonCursor: UTF-8 already
    out += ':';
    out += text;
  }
  out += '}';
}

void append_member(std::string& out, std::string_view key, const std::string& text) {
  if (text.empty()) return;  // absent: a member's text is never empty
  if (out.back() != '{') out += ',';
  out += '"';
  out += key;  // one of this file's keys: nothing to escape
  out += "\":";
  out += text;
}

class MessageReader {
 public:
  MessageReader(JsonCursor& in, const ValidationRules& rules, int depth) : in_(in), rules_(rules), depth_(depth) {}

  std::optional<ValidMessage> read() {
    ValidMessage valid;
    Message& m = valid.message;
    std::array<std::string, kMembers> text;  // each member's canonical value; empty while not read
    bool read = in_.members([&](std::string_view key) {
      auto k = static_cast<size_t>(std::find(kMemberNames.begin(), kMemberNames.end(), key) - kMemberNames.begin());
      if (k == kMembers || !text[k].empty()) return false;  // unknown, or twice (the last would win)
      std::string& out = text[k];
      switch (static_cast<Member>(k)) {
        case kCategory: return string(out, m.category, is_category);
        case kChannels: return channels(out, m.channels);
        case kContent: return content(out, m);
        case kData: return json_object(out, m.data);
        case kExpiresAt: return instant(out, m.expires_at_ms);
        case kId: return string(out, m.id, is_id);
        case kMetadata: return json_object(out, m.metadata) && out.size() <= rules_.max_metadata_bytes;
        case kPurpose: {
          std::string purpose;
          if (!string(out, purpose, is_purpose)) return false;
          m.purpose = purpose == "marketing" ? Purpose::marketing : Purpose::transactional;
          return true;
        }
        case kRecipient: return recipient(out, m.recipient, valid.contacts_json);
        case kSendAt: return instant(out, m.send_at_ms);  // a local time: parse_message's (its zone is looked up)
        case kTemplate: return string(out, m.template_name, is_template) && template_known(m.template_name);
        case kResponses: return responses(out, m.responses);
        case kTrack: return track(out, m);
        case kMembers: break;
      }
      return false;
    });
    if (!read || text[kId].empty() || text[kRecipient].empty() || text[kPurpose].empty() || text[kChannels].empty() ||
        (text[kContent].empty() && text[kTemplate].empty()))
      return std::nullopt;
    if (m.send_at_ms && m.expires_at_ms && *m.expires_at_ms <= *m.send_at_ms) return std::nullopt;
    size_t size = 2;  // the payload in one allocation
    for (size_t k = 0; k < kMembers; ++k) size += text[k].size() + kMemberNames[k].size() + 4;
    valid.payload.reserve(size);
    valid.payload = "{";
    for (size_t k = 0; k < kMembers; ++k) append_member(valid.payload, kMemberNames[k], text[k]);
    valid.payload += '}';
    return valid;
  }

 private:
  // A string that `valid` accepts, into `value`, its canonical text into `out`.
  bool string(std::string& out, std::string& value, bool (*valid)(std::string_view)) {
    std::string read;
    if (!in_.string(read) || !valid(read) || !append_json_string(out, read)) return false;
    value = std::move(read);
    return true;
  }

  bool instant(std::string& out, std::optional<int64_t>& ms) {
    std::string read;
    return in_.string(read) && (ms = parse_rfc3339_ms(read)).has_value() && append_json_string(out, read);
  }

  bool template_known(const std::string& name) const {
    return rules_.templates_available && (rules_.templates == nullptr || rules_.templates->count(name) > 0);
  }

  bool configured_channel(const std::string& name) const {
    return rules_.channels == nullptr || rules_.channels->count(name) > 0;
  }

  // 1 to 16 configured channels, none twice.
  bool channels(std::string& out, std::vector<std::string>& list) {
    out += '[';
    bool read = in_.items([&] {
      std::string name;
      if (list.size() == 16 || !in_.string(name) || std::find(list.begin(), list.end(), name) != list.end() ||
          !configured_channel(name))
        return false;
      if (out.size() > 1) out += ',';
      if (!append_json_string(out, name)) return false;
      list.push_back(std::move(name));
      return true;
    });
    out += ']';
    return read && !list.empty();
  }

  // Text a channel can carry, into `value`, its canonical text into `out`; its bytes counted against the limit.
  bool text(std::string& out, std::string& value) {
    std::string read;
    if (!in_.string(read) || control_character_at(read) || !append_json_string(out, read)) return false;
    content_bytes_ += read.size();
    value = std::move(read);
    return true;
  }

  // Fields of text shared by every channel, and objects of one channel's own ({"sms": {"text": "..."}}).
  bool content(std::string& out, Message& m) {
    MemberTexts fields;
    bool read = in_.members([&](std::string_view key) {
      auto inserted = fields.try_emplace(std::string(key));
      auto field = inserted.first;  // not a structured binding: clang 14 lets no lambda capture one
      if (!inserted.second || !is_kind(key)) return false;
      if (!in_.next_is('{')) return text(field->second, m.content[field->first]);
      if (!configured_channel(field->first)) return false;
      MemberTexts variant;
      return in_.members([&](std::string_view name) {
        auto [slot, fresh_name] = variant.try_emplace(std::string(name));
        return fresh_name && is_kind(name) && text(slot->second, m.content_variants[field->first][slot->first]);
      }) && (append_object(field->second, variant), true);
    });
    if (!read || fields.empty() || content_bytes_ > rules_.max_content_bytes) return false;
    append_object(out, fields);
    return true;
  }

  // An object of any JSON (data, metadata), as parse_json reads it; its canonical text is its dump.
  bool json_object(std::string& out, Json& value) {
    if (!in_.next_is('{') || !in_.value(value, depth_ + 1)) return false;
    out = dump_json(value);
    return true;
  }

  bool recipient(std::string& out, Recipient& r, std::string& contacts_out) {
    std::string id, locale, timezone;  // canonical texts
    bool read = in_.members([&](std::string_view key) {
      if (key == "id") return id.empty() && string(id, r.id, is_recipient_id);
      if (key == "locale") return locale.empty() && string(locale, r.locale, is_locale);
      if (key == "timezone")
        return timezone.empty() && string(timezone, r.timezone, is_timezone) && policy::TimeZone::load(r.timezone);
      if (key == "contacts") return contacts_out.empty() && contacts(contacts_out, r);
      return false;
    });
    if (!read || id.empty()) return false;
    out = "{";
    append_member(out, "contacts", contacts_out);
    append_member(out, "id", id);
    append_member(out, "locale", locale);
    append_member(out, "timezone", timezone);
    out += '}';
    return true;
  }

  // Contact points by kind; "push" is a list of tokens.
  bool contacts(std::string& out, Recipient& r) {
    MemberTexts kinds;
    bool read = in_.members([&](std::string_view kind) {
      auto [slot, fresh] = kinds.try_emplace(std::string(kind));
      if (!fresh) return false;
      if (kind == "push") return push_tokens(slot->second, r.push);
      std::string point;
      if (!is_kind(kind) || !in_.string(point) || contact_problem(kind, point) != nullptr ||
          !append_json_string(slot->second, point))
        return false;
      r.contacts[slot->first] = std::move(point);
      return true;
    });
    if (!read) return false;
    append_object(out, kinds);
    return true;
  }

  bool push_tokens(std::string& out, std::vector<PushToken>& tokens) {
    out += '[';
    bool read = in_.items([&] {
      PushToken t;
      std::string platform, token;
      bool whole = in_.members([&](std::string_view key) {
        if (key == "platform") return platform.empty() && string(platform, t.platform, is_platform);
        if (key == "token") return token.empty() && string(token, t.token, is_push_token);
        return false;
      });
      if (!whole || platform.empty() || token.empty()) return false;
      if (out.size() > 1) out += ',';
      out += R"({"platform":)" + platform + R"(,"token":)" + token + '}';
      tokens.push_back(std::move(t));
      return true;
    });
    out += ']';
    return read;
  }

  // 1 to kMaxResponses options {id, label, follow_up?}, no id twice.
  bool responses(std::string& out, std::vector<ResponseSpec>& list) {
    out += '[';
    bool read = in_.items([&] {
      ResponseSpec r;
      std::string id, label, follow_up;  // canonical texts
      bool whole = in_.members([&](std::string_view key) {
        if (key == "id") return id.empty() && string(id, r.id, is_kind);
        if (key == "label") return label.empty() && string(label, r.label, is_label);
        if (key == "follow_up") return follow_up.empty() && this->follow_up(follow_up, r);
        return false;
      });
      if (!whole || id.empty() || label.empty() || list.size() == kMaxResponses ||
          std::any_of(list.begin(), list.end(), [&](const ResponseSpec& o) { return o.id == r.id; }))
        return false;
      if (out.size() > 1) out += ',';
      out += '{';
      append_member(out, "follow_up", follow_up);
      append_member(out, "id", id);
      append_member(out, "label", label);
      out += '}';
      list.push_back(std::move(r));
      return true;
    });
    out += ']';
    return read && !list.empty();
  }

  // {after, template?}: a re-delivery after a delay, of the message or of a template.
  bool follow_up(std::string& out, ResponseSpec& r) {
    std::string after, template_name;  // canonical texts
    bool read = in_.members([&](std::string_view key) {
      if (key == "after") {
        std::string delay;
        if (!after.empty() || !in_.string(delay)) return false;
        r.follow_up_after_ms = parse_delay_ms(delay);
        return is_follow_up_delay(r.follow_up_after_ms) && append_json_string(after, delay);
      }
      if (key == "template")
        return template_name.empty() && string(template_name, r.follow_up_template, is_template) &&
               template_known(r.follow_up_template);
      return false;
    });
    if (!read || after.empty()) return false;
    out = "{";
    append_member(out, "after", after);
    append_member(out, "template", template_name);
    out += '}';
    return true;
  }

  // {clicks?, opens?}: true needs links the gateway can sign (server.public_url).
  bool track(std::string& out, Message& m) {
    std::string clicks, opens;  // canonical texts
    bool read = in_.members([&](std::string_view key) {
      if (key != "clicks" && key != "opens") return false;
      std::string& text = key == "clicks" ? clicks : opens;
      bool on = false;
      if (!text.empty() || !in_.boolean(on) || (on && !rules_.links_available)) return false;
      text = on ? "true" : "false";
      (key == "clicks" ? m.track_clicks : m.track_opens) = on;
      return true;
    });
    if (!read) return false;
    out = "{";
    append_member(out, "clicks", clicks);
    append_member(out, "opens", opens);
    out += '}';
    return true;
  }

  JsonCursor& in_;
  const ValidationRules& rules_;
  int depth_;  // of the message object
  size_t content_bytes_ = 0;
};

}  // namespace

std::optional<ValidMessage> read_valid_message(JsonCursor& in, const ValidationRules& rules, int depth) {
  return MessageReader(in, rules, depth).read();
}

}  // namespace tayori::core
