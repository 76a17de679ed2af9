// The message model's validation (message.hpp): JSON to a Message or every problem by JSON pointer, the limits
// on sizes and depth, local send times, response options, and the canonical JSON that intake stores and hashes.
#include "core/message.hpp"

#include <tayori/text.hpp>

#include <algorithm>
#include <cstdio>

#include "common/time.hpp"
#include "core/message_checks.hpp"
#include "policy/timezone.hpp"

namespace tayori::core {

using namespace checks;

std::optional<std::string> Recipient::contact(const std::string& kind) const {
  if (kind.rfind("push.", 0) == 0) {
    std::string platform = kind.substr(5);
    for (const auto& t : push)
      if (t.platform == platform) return t.token;
    return std::nullopt;
  }
  auto it = contacts.find(kind);
  if (it == contacts.end()) return std::nullopt;
  return it->second;
}

namespace {

using Pattern = bool (*)(std::string_view);

class Checker {
 public:
  Checker(std::string prefix, std::vector<FieldError>& errors) : prefix_(std::move(prefix)), errors_(errors) {}

  void fail(const std::string& pointer, std::string detail) { errors_.push_back({prefix_ + pointer, std::move(detail)}); }
  // The member `key` of the value at `pointer`: the pointer to it is written only when it fails, since a valid
  // message (the usual one) needs none.
  void fail(const std::string& pointer, std::string_view key, std::string detail) {
    fail(pointer + "/" + escape(key), std::move(detail));
  }

  // Reports members of `obj` not in `known`.
  void only(const Json& obj, const std::string& pointer, std::initializer_list<std::string_view> known) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool ok = false;
      for (std::string_view k : known) ok = ok || it.key() == k;
      if (!ok) fail(pointer, it.key(), "is not a known field");
    }
  }

  // A string member: required or optional, matched against `pattern`.
  std::optional<std::string> string(const Json& obj, const std::string& pointer, const char* key, bool required,
                                    Pattern pattern, const char* pattern_text) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      if (required) fail(pointer, key, "is required");
      return std::nullopt;
    }
    if (!it->is_string()) {
      fail(pointer, key, "must be a string");
      return std::nullopt;
    }
    const std::string& v = it->get_ref<const std::string&>();
    if (pattern != nullptr && !pattern(v)) {
      fail(pointer, key, std::string("must be ") + pattern_text);
      return std::nullopt;
    }
    return v;
  }

  std::optional<int64_t> instant(const Json& obj, const std::string& pointer, const char* key) {
    auto v = string(obj, pointer, key, false, nullptr, nullptr);
    if (!v) return std::nullopt;
    auto ms = parse_rfc3339_ms(*v);
    if (!ms) fail(pointer + "/" + key, "must be an RFC 3339 date-time with an offset, e.g. 2026-11-24T08:00:00+09:00");
    return ms;
  }

  static std::string escape(std::string_view key) {
    std::string out;  // RFC 6901 §3: '~' -> "~0", '/' -> "~1"
    for (char c : key) {
      if (c == '~') out += "~0";
      else if (c == '/') out += "~1";
      else out += c;
    }
    return out;
  }

 private:
  std::string prefix_;
  std::vector<FieldError>& errors_;
};

// "responses": [{id, label, follow_up?: {after, template?}}] (checks::kMaxResponses).
void parse_responses(Checker& c, const Json& j, const ValidationRules& rules, std::vector<ResponseSpec>& out) {
  auto responses = j.find("responses");
  if (responses == j.end() || responses->is_null()) return;
  if (!responses->is_array() || responses->empty() || responses->size() > kMaxResponses) {
    c.fail("/responses", "must be an array of 1 to " + std::to_string(kMaxResponses) + " response options {id, label}");
    return;
  }
  std::set<std::string> ids;
  for (size_t i = 0; i < responses->size(); ++i) {
    const Json& r = (*responses)[i];
    std::string p = "/responses/" + std::to_string(i);
    if (!r.is_object()) {
      c.fail(p, "must be an object {id, label, follow_up?}");
      continue;
    }
    c.only(r, p, {"id", "label", "follow_up"});
    ResponseSpec spec;
    if (auto v = c.string(r, p, "id", true, is_kind, "an option id: a-z, then a-z 0-9 _ (at most 32)")) {
      if (!ids.insert(*v).second) c.fail(p + "/id", "repeats option \"" + *v + "\"");
      spec.id = *v;
    }
    if (auto v = c.string(r, p, "label", true, nullptr, nullptr)) {
      if (!is_label(*v))
        c.fail(p + "/label", "must be 1 to " + std::to_string(kMaxLabelChars) + " characters (LINE quick reply labels)");
      spec.label = *v;
    }
    auto follow_up = r.find("follow_up");
    if (follow_up != r.end() && !follow_up->is_null()) {
      std::string fp = p + "/follow_up";
      if (!follow_up->is_object()) {
        c.fail(fp, "must be an object {after, template?}");
      } else {
        c.only(*follow_up, fp, {"after", "template"});
        if (auto v = c.string(*follow_up, fp, "after", true, nullptr, nullptr)) {
          auto ms = parse_delay_ms(*v);
          if (!is_follow_up_delay(ms))
            c.fail(fp + "/after", "must be a delay up to 366 days: ISO 8601 (P2D, PT12H, PT1S) or 2d, 12h, 30s");
          else
            spec.follow_up_after_ms = ms;
        }
        if (auto v = c.string(*follow_up, fp, "template", false, is_template, "a template name")) {
          if (!rules.templates_available)
            c.fail(fp + "/template", "names a template, but this gateway has no templates configured");
          else if (rules.templates != nullptr && !rules.templates->count(*v))
            c.fail(fp + "/template", "is not a known template \"" + *v + "\"");
          else
            spec.follow_up_template = *v;
        }
      }
    }
    out.push_back(std::move(spec));
  }
}

void parse_recipient(Checker& c, const Json& j, Recipient& r, const std::string& p, bool id_required) {
  if (!j.is_object()) {
    c.fail(p, j.is_null() ? "is required" : "must be an object");
    return;
  }
  if (id_required)
    c.only(j, p, {"id", "timezone", "locale", "contacts"});
  else
    c.only(j, p, {"timezone", "locale", "contacts"});
  if (id_required) {
    if (auto v = c.string(j, p, "id", true, nullptr, nullptr)) {
      if (!is_recipient_id(*v))
        c.fail(p + "/id", "must be 1 to " + std::to_string(kMaxRecipientIdBytes) + " bytes");
      else
        r.id = *v;
    }
  }
  if (auto v = c.string(j, p, "timezone", false, is_timezone, "an IANA time zone name such as Asia/Tokyo")) {
    if (!policy::TimeZone::load(*v))
      c.fail(p + "/timezone", "is not a time zone this system knows (IANA tzdata): " + *v);
    else
      r.timezone = *v;
  }
  if (auto v = c.string(j, p, "locale", false, is_locale, "a BCP 47 language tag such as ja-JP")) r.locale = *v;
  auto contacts = j.find("contacts");
  if (contacts == j.end() || contacts->is_null()) return;
  const std::string cp = p + "/contacts";
  if (!contacts->is_object()) {
    c.fail(cp, "must be an object of contact kind to contact point");
    return;
  }
  for (auto it = contacts->begin(); it != contacts->end(); ++it) {
    const std::string kp = cp + "/" + Checker::escape(it.key());
    if (it.key() == "push") {
      if (!it->is_array()) {
        c.fail(kp, "must be an array of {platform, token}");
        continue;
      }
      for (size_t i = 0; i < it->size(); ++i) {
        const Json& t = (*it)[i];
        std::string tp = kp + "/" + std::to_string(i);
        if (!t.is_object()) {
          c.fail(tp, "must be an object {platform, token}");
          continue;
        }
        c.only(t, tp, {"platform", "token"});
        auto platform = c.string(t, tp, "platform", true, is_platform, "\"fcm\" or \"apns\"");
        auto token = c.string(t, tp, "token", true, nullptr, nullptr);
        if (token && !is_push_token(*token)) {
          c.fail(tp + "/token", "must be 1 to 4096 characters");
          token.reset();
        }
        if (platform && token) r.push.push_back({*platform, *token});
      }
      continue;
    }
    if (!is_kind(it.key())) {
      c.fail(kp, "is not a contact kind (expected lower-case letters, digits and _)");
      continue;
    }
    if (!it->is_string()) {
      c.fail(kp, "must be a string");
      continue;
    }
    const std::string& v = it->get_ref<const std::string&>();
    if (const char* problem = contact_problem(it.key(), v)) {
      c.fail(kp, problem);
      continue;
    }
    r.contacts[it.key()] = v;
  }
}

// Content text a channel can carry (checks::control_character_at): a NUL or a bare control code is not text
// any provider takes, so it is refused here by name instead of failing at every attempt.
bool deliverable_text(Checker& c, const std::string& pointer, std::string_view key, const std::string& text) {
  auto at = control_character_at(text);
  if (!at) return true;
  char code[8];
  std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned char>(text[*at]));
  c.fail(pointer, key,
         std::string("contains the control character ") + code + " at byte " + std::to_string(*at) +
             ": only tab, line feed and carriage return are allowed in text");
  return false;
}

}  // namespace

// Ids travel in URLs (GET /v1/messages/{id}), so they are restricted to RFC 3986 unreserved characters + ':'.
bool is_id(std::string_view s) {
  // "." and ".." are unreserved characters, but HTTP clients rewrite /v1/messages/.. as a dot-segment
  // (RFC 3986 §5.2.4), so such an id could be accepted and never looked up.
  return !s.empty() && s.size() <= 128 && s != "." && s != ".." &&
         all_of(s, [](char c) { return alnum(c) || c == '.' || c == '_' || c == '~' || c == ':' || c == '-'; });
}
void parse_recipient(const Json& json, const std::string& pointer, bool id_required, Recipient& out,
                     std::vector<FieldError>& errors) {
  Checker c("", errors);
  parse_recipient(c, json, out, pointer, id_required);
}

ParsedMessage parse_message(const Json& j, const ValidationRules& rules, const std::string& prefix) {
  ParsedMessage result;
  Checker c(prefix, result.errors);
  if (!j.is_object()) {
    c.fail("", "must be a message object");
    return result;
  }
  c.only(j, "", {"id", "recipient", "purpose", "category", "channels", "content", "template", "data", "send_at",
                 "expires_at", "metadata", "responses", "track"});
  Message m;
  if (auto v = c.string(j, "", "id", true, is_id, "1 to 128 characters of A-Z a-z 0-9 . _ ~ : -")) m.id = *v;
  auto recipient = j.find("recipient");
  parse_recipient(c, recipient == j.end() ? Json() : *recipient, m.recipient, "/recipient", true);
  if (auto v = c.string(j, "", "purpose", true, is_purpose, "\"marketing\" or \"transactional\""))
    m.purpose = *v == "marketing" ? Purpose::marketing : Purpose::transactional;
  if (auto v = c.string(j, "", "category", false, is_category, "lower-case letters, digits, _ . - (at most 64)"))
    m.category = *v;

  auto channels = j.find("channels");
  if (channels == j.end() || channels->is_null()) {
    c.fail("/channels", "is required");
  } else if (!channels->is_array() || channels->empty() || channels->size() > 16) {
    c.fail("/channels", "must be an array of 1 to 16 channel names in order of preference");
  } else {
    std::set<std::string> seen;
    for (size_t i = 0; i < channels->size(); ++i) {
      const Json& ch = (*channels)[i];
      std::string p = "/channels/" + std::to_string(i);
      if (!ch.is_string()) {
        c.fail(p, "must be a string");
        continue;
      }
      const std::string& name = ch.get_ref<const std::string&>();
      if (!seen.insert(name).second) {
        c.fail(p, "repeats channel \"" + name + "\"");
        continue;
      }
      if (rules.channels != nullptr && !rules.channels->count(name)) {
        std::string known;
        for (const auto& k : *rules.channels) known += (known.empty() ? "" : ", ") + k;
        c.fail(p, "is not a configured channel \"" + name + "\" (configured: " + known + ")");
        continue;
      }
      m.channels.push_back(name);
    }
  }

  auto content = j.find("content");
  bool has_content = content != j.end() && !content->is_null();
  if (has_content) {
    if (!content->is_object() || content->empty()) {
      c.fail("/content", "must be a non-empty object of field name to text (subject, text, html, title, body, ...)");
    } else {
      size_t bytes = 0;
      for (auto it = content->begin(); it != content->end(); ++it) {
        if (!is_kind(it.key())) {
          c.fail("/content", it.key(), "is not a content field name (lower-case letters, digits and _)");
        } else if (it->is_string()) {
          if (!deliverable_text(c, "/content", it.key(), it->get_ref<const std::string&>())) continue;
          bytes += it->get_ref<const std::string&>().size();
          m.content[it.key()] = it->get_ref<const std::string&>();
        } else if (it->is_object()) {
          // A channel's own wording: {"sms": {"text": "..."}} overrides the shared fields on that channel.
          const std::string p = "/content/" + Checker::escape(it.key());
          if (rules.channels != nullptr && !rules.channels->count(it.key())) {
            c.fail(p, "is an object, so it must name a configured channel (a per-channel variant)");
            continue;
          }
          for (auto f = it->begin(); f != it->end(); ++f) {
            if (!is_kind(f.key()))
              c.fail(p, f.key(), "is not a content field name (lower-case letters, digits and _)");
            else if (!f->is_string())
              c.fail(p, f.key(), "must be a string");
            else if (deliverable_text(c, p, f.key(), f->get_ref<const std::string&>())) {
              bytes += f->get_ref<const std::string&>().size();
              m.content_variants[it.key()][f.key()] = f->get_ref<const std::string&>();
            }
          }
        } else {
          c.fail("/content", it.key(), "must be a string, or an object of fields for one channel");
        }
      }
      if (bytes > rules.max_content_bytes)
        c.fail("/content", "is " + std::to_string(bytes) + " bytes, more than the " +
                               std::to_string(rules.max_content_bytes) + " allowed");
    }
  }
  auto tmpl = c.string(j, "", "template", false, is_template, "a template name such as welcome or orders/shipped");
  if (tmpl) {
    if (!rules.templates_available)
      c.fail("/template", "names a template, but this gateway has no templates configured: send content instead");
    else if (rules.templates != nullptr && !rules.templates->count(*tmpl))
      c.fail("/template", "is not a known template \"" + *tmpl + "\"");
    else
      m.template_name = *tmpl;
  }
  auto tmpl_member = j.find("template");
  if (!has_content && (tmpl_member == j.end() || tmpl_member->is_null()))
    c.fail("/content", "is required (or name a template)");
  auto data = j.find("data");
  if (data != j.end() && !data->is_null()) {
    if (!data->is_object())
      c.fail("/data", "must be an object");
    else
      m.data = *data;
  }
  // send_at may be an instant (with offset) or a wall-clock time in the recipient's zone (without).
  if (auto v = c.string(j, "", "send_at", false, nullptr, nullptr)) {
    if (auto absolute = parse_rfc3339_ms(*v)) {
      m.send_at_ms = absolute;
    } else if (policy::parse_local_datetime(*v)) {
      std::string zone_name = m.recipient.timezone;
      if (zone_name.empty() && rules.stored_timezone) zone_name = rules.stored_timezone(m.recipient.id);
      if (zone_name.empty()) zone_name = rules.default_timezone;
      auto zone = policy::TimeZone::load(zone_name);
      if (zone) {
        m.send_at_ms = policy::resolve_datetime(*v, *zone);
        m.send_at_local = true;
      }
    } else {
      c.fail("/send_at",
             "must be an RFC 3339 date-time, with an offset (an instant) or without (the recipient's local time)");
    }
  }
  m.expires_at_ms = c.instant(j, "", "expires_at");
  if (m.send_at_ms && m.expires_at_ms && *m.expires_at_ms <= *m.send_at_ms)
    c.fail("/expires_at", "must be later than send_at");
  auto metadata = j.find("metadata");
  if (metadata != j.end() && !metadata->is_null()) {
    if (!metadata->is_object()) {
      c.fail("/metadata", "must be an object");
    } else {
      size_t bytes = dump_json(*metadata).size();
      if (bytes > rules.max_metadata_bytes)
        c.fail("/metadata", "is " + std::to_string(bytes) + " bytes as JSON, more than the " +
                                std::to_string(rules.max_metadata_bytes) + " allowed");
      else
        m.metadata = *metadata;
    }
  }
  parse_responses(c, j, rules, m.responses);
  if (auto track = j.find("track"); track != j.end() && !track->is_null()) {
    if (!track->is_object()) {
      c.fail("/track", "must be an object {clicks, opens}");
    } else {
      c.only(*track, "/track", {"clicks", "opens"});
      for (auto [key, out] : {std::pair{"clicks", &m.track_clicks}, std::pair{"opens", &m.track_opens}}) {
        auto v = track->find(key);
        if (v == track->end()) continue;
        const std::string pointer = std::string("/track/") + key;
        if (!v->is_boolean())
          c.fail(pointer, "must be true or false");
        else if (v->get<bool>() && !rules.links_available)
          c.fail(pointer, "needs server.public_url: a tracked link points at the gateway");
        else
          *out = v->get<bool>();
      }
    }
  }
  if (result.errors.empty()) result.message = std::move(m);
  return result;
}

namespace {

// read_stored_message's reader: the members of a stored message as canonical_json writes them.
class StoredReader {
 public:
  explicit StoredReader(std::string_view text) : in_(text) {}

  std::optional<Message> message() {
    Message m;
    bool has_id = false, has_recipient = false, has_purpose = false, has_channels = false, has_body = false;
    bool read = object([&](std::string_view key) {
      if (key == "category") return in_.string(m.category);
      if (key == "channels") return has_channels = channels(m.channels);
      if (key == "content") return has_body = content(m);
      if (key == "data") return json_object(m.data);
      if (key == "expires_at") return instant(m.expires_at_ms);
      if (key == "id") return has_id = in_.string(m.id);
      if (key == "metadata") return json_object(m.metadata);
      if (key == "purpose") return has_purpose = purpose(m.purpose);
      if (key == "recipient") return has_recipient = recipient(m.recipient);
      if (key == "responses") return responses(m.responses);
      if (key == "send_at") return instant(m.send_at_ms);  // an instant; a local time is parse_message's
      if (key == "template") return has_body = in_.string(m.template_name);
      if (key == "track") return track(m);
      return false;
    });
    if (!read || !in_.at_end() || !has_id || !has_recipient || !has_purpose || !has_channels || !has_body)
      return std::nullopt;
    return m;
  }

 private:
  // An object's members, each once and in key order (canonical_json writes a std::map); `member(key)` reads
  // the value of one, of the one type it expects (so a null member, whose meaning parse_message decides, is
  // never read).
  template <typename Member>
  bool object(Member&& member) {
    std::string previous;
    bool first = true;
    return in_.members([&](std::string_view key) {
      if ((!first && key <= previous) || !member(key)) return false;
      previous.assign(key);
      first = false;
      return true;
    });
  }

  bool channels(std::vector<std::string>& out) {
    return in_.items([&] {
      std::string name;
      if (!in_.string(name) || std::find(out.begin(), out.end(), name) != out.end()) return false;
      out.push_back(std::move(name));
      return true;
    }) && !out.empty() &&
           out.size() <= 16;
  }

  bool purpose(Purpose& out) {
    std::string v;
    if (!in_.string(v) || !is_purpose(v)) return false;
    out = v == "marketing" ? Purpose::marketing : Purpose::transactional;
    return true;
  }

  bool recipient(Recipient& r) {
    return object([&](std::string_view key) {
             if (key == "contacts") return contacts(r);
             if (key == "id") return in_.string(r.id);
             if (key == "locale") return in_.string(r.locale);
             if (key == "timezone") return in_.string(r.timezone);
             return false;
           }) &&
           !r.id.empty();
  }

  bool contacts(Recipient& r) {
    return object([&](std::string_view kind) {
      if (kind != "push") return in_.string(r.contacts[std::string(kind)]);
      return in_.items([&] {
        PushToken t;
        return object([&](std::string_view key) {
                 if (key == "platform") return in_.string(t.platform);
                 if (key == "token") return in_.string(t.token);
                 return false;
               }) &&
               !t.platform.empty() && !t.token.empty() && (r.push.push_back(std::move(t)), true);
      });
    });
  }

  // Shared fields are text; an object is one channel's own wording ({"sms": {"text": "..."}}).
  bool content(Message& m) {
    bool any = false;
    return object([&](std::string_view field) {
             any = true;
             if (!in_.next_is('{')) return in_.string(m.content[std::string(field)]);
             return object([&](std::string_view key) {
               return in_.string(m.content_variants[std::string(field)][std::string(key)]);
             });
           }) &&
           any;
  }

  bool responses(std::vector<ResponseSpec>& out) {
    return in_.items([&] {
      ResponseSpec r;
      bool read = object([&](std::string_view key) {
        if (key == "follow_up") return follow_up(r);
        if (key == "id") return in_.string(r.id);
        if (key == "label") return in_.string(r.label);
        return false;
      });
      if (!read || r.id.empty() || r.label.empty()) return false;
      out.push_back(std::move(r));
      return true;
    }) && !out.empty();
  }

  bool follow_up(ResponseSpec& r) {
    std::string after;
    return object([&](std::string_view key) {
             if (key == "after") return in_.string(after) && (r.follow_up_after_ms = parse_delay_ms(after)).has_value();
             if (key == "template") return in_.string(r.follow_up_template);
             return false;
           }) &&
           r.follow_up_after_ms.has_value();
  }

  bool track(Message& m) {
    return object([&](std::string_view key) {
      bool v = false;
      if (key != "clicks" && key != "opens") return false;
      if (!in_.boolean(v)) return false;
      (key == "clicks" ? m.track_clicks : m.track_opens) = v;
      return true;
    });
  }

  bool instant(std::optional<int64_t>& out) {
    std::string v;
    return in_.string(v) && (out = parse_rfc3339_ms(v)).has_value();
  }

  bool json_object(Json& out) { return in_.next_is('{') && in_.value(out); }

  JsonCursor in_;
};

}  // namespace

std::optional<Message> read_stored_message(std::string_view payload) { return StoredReader(payload).message(); }

ValidationRules stored_message_rules() {
  ValidationRules rules;
  rules.templates_available = true;
  return rules;
}

std::optional<Message> stored_message(std::string_view payload) {
  if (auto m = read_stored_message(payload)) return m;
  Json json = parse_json_or_discarded(payload);
  if (json.is_discarded()) return std::nullopt;
  return std::move(parse_message(json, stored_message_rules()).message);
}

std::optional<int64_t> parse_delay_ms(std::string_view s) {
  if (s.empty() || s[0] != 'P') return parse_duration_ms(s);
  // ISO 8601 §4.4.3.2 durations, the exact part: PnW or PnDTnHnMnS (no years or months: their length varies).
  // Each unit appears at most once and in that order (§4.4.3.2 lists them so); "P9W9W…" repeated would
  // otherwise add past int64_t.
  struct Unit {
    char letter;
    bool in_time;
    int64_t ms;
  };
  static constexpr Unit kUnits[] = {{'W', false, 7 * 86'400'000LL}, {'D', false, 86'400'000LL},
                                    {'H', true, 3'600'000LL},       {'M', true, 60'000LL},
                                    {'S', true, 1'000LL}};
  int64_t total = 0;
  bool in_time = false, any = false;
  size_t next_unit = 0;  // index into kUnits of the first unit still allowed
  size_t i = 1;
  while (i < s.size()) {
    if (s[i] == 'T') {
      if (in_time) return std::nullopt;
      in_time = true;
      ++i;
      continue;
    }
    size_t start = i;
    while (i < s.size() && digit(s[i])) ++i;
    if (i == start || i - start > 9 || i == s.size()) return std::nullopt;
    int64_t n = std::stoll(std::string(s.substr(start, i - start)));
    char letter = s[i++];
    size_t u = next_unit;
    while (u < std::size(kUnits) && (kUnits[u].letter != letter || kUnits[u].in_time != in_time)) ++u;
    if (u == std::size(kUnits)) return std::nullopt;
    next_unit = u + 1;
    // Nine digits of weeks times five units stays below 2^63; the sum is checked all the same.
    if (__builtin_add_overflow(total, n * kUnits[u].ms, &total)) return std::nullopt;
    any = true;
  }
  if (!any || s.back() == 'T') return std::nullopt;
  return total;
}

std::string canonical_json(const Json& json) {
  // Stored payloads were hashed as nlohmann's strict dump(); dump_json writes the same bytes, faster.
  return dump_json(json);
}

}  // namespace tayori::core
