// tayori/provider_helpers.hpp — what channels share beyond the plugin contract, so that no two plugins carry
// their own copy: Retry-After and IMF-fixdate parsing, form bodies, base64 without a host, UUID text derived
// from a delivery id, the token each attempt was sent with (for invalidate-only-if-same), and Tayori's
// content conventions (notification text, content-or-metadata fields). Nothing here is specific to one
// provider, and nothing here is needed to write a plugin: include it for what it offers. It depends on
// tayori/plugin.hpp (the Delivery, Response and RequestSink it reads) and tayori/text.hpp.
#ifndef TAYORI_PROVIDER_HELPERS_HPP
#define TAYORI_PROVIDER_HELPERS_HPP

#include <tayori/plugin.hpp>
#include <tayori/text.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tayori::sdk {

// ---- Helpers channels share: nothing here is specific to one provider. ----------------------------

inline bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// application/x-www-form-urlencoded (WHATWG URL "application/x-www-form-urlencoded parsing"): name=value
// pairs split on '&', '+' read as a space, %XX decoded; a pair without '=' has an empty value. In the
// order sent, duplicates kept (Twilio signs every pair).
inline std::vector<std::pair<std::string, std::string>> parse_form(std::string_view body) {
  return text::decode_pairs(body, /*plus_is_space=*/true);
}


// Characters as providers count them in their text limits (tayori/text.hpp), and the UTF-8 check a plugin
// makes before it labels text charset=UTF-8.
using text::is_valid_utf8;
using text::utf8_code_points;

// Base64 with the RFC 4648 §4 alphabet and '=' padding, for code that has no Host at hand (the e-mail
// plugin's MIME builder is pure functions). With a Host, Host::base64 gives the same text from the
// gateway's OpenSSL; this is the one copy on the plugin side.
inline std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t group = 0;
    for (size_t k = 0; k < 3; ++k)
      group = (group << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    // n input bytes fill n + 1 characters; '=' stands for each byte the last group lacks (RFC 4648 §4).
    for (size_t k = 0; k < 4; ++k) out += k <= n ? kAlphabet[(group >> (18 - 6 * k)) & 0x3F] : '=';
  }
  return out;
}

// `text` as a JSON string, quotes included (RFC 8259 §7): '"', '\\' and the control characters escaped, every
// other byte as it is (UTF-8 passes through). For plugins that write a small JSON body and need no JSON
// library for it.
inline std::string json_quote(std::string_view text) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += hex[(c >> 4) & 0xF];
          out += hex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// base64 text (RFC 4648 §4, '=' padding optional) as bytes; nullopt for a character outside the alphabet or
// padding anywhere but the end. For secrets handed over in base64 (a Standard Webhooks "whsec_" key).
inline std::optional<std::string> base64_decode(std::string_view text) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::string out;
  uint32_t bits = 0;
  int pending = 0;
  for (char c : text) {
    const size_t value = kAlphabet.find(c);
    if (value == std::string_view::npos) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(value);
    if ((pending += 6) >= 8) out += static_cast<char>((bits >> (pending -= 8)) & 0xFF);
  }
  return out;
}

// The parts of an absolute URL's authority (RFC 3986 §3.2): scheme "https", host without IPv6 brackets,
// port ("" when absent), and whether it carries userinfo ("user:pw@"). nullopt when it is not
// scheme://authority...
struct UrlAuthority {
  std::string scheme, host, port;
  bool has_userinfo = false;
};
inline std::optional<UrlAuthority> url_authority(std::string_view url) {
  const size_t colon = url.find("://");
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  UrlAuthority a;
  a.scheme = text::ascii_lower(url.substr(0, colon));
  std::string_view authority = url.substr(colon + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    a.has_userinfo = true;
    authority.remove_prefix(at + 1);
  }
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    a.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() != ':') return std::nullopt;
  } else {
    a.host = std::string(authority.substr(0, authority.find(':')));
    authority.remove_prefix(a.host.size());
  }
  if (authority.starts_with(':')) a.port = std::string(authority.substr(1));
  if (a.host.empty()) return std::nullopt;
  return a;
}

// Loopback only (RFC 6890: 127.0.0.0/8 and ::1; "localhost" per RFC 6761 §6.3): the one place where an
// unencrypted hop never leaves the machine. The host is compared whole: 127.0.0.1.example.com is not one.
inline bool is_loopback_host(std::string_view host) {
  if (iequals(host, "localhost") || host == "::1") return true;
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') ++dots;
    else if (c < '0' || c > '9') return false;
  }
  return dots == 3;
}

// For a URL setting a plugin sends to: https:// anywhere, plain http:// only to a loopback host (a local
// stand-in in tests), never with credentials in it. Throws Error naming the setting.
inline void require_https_or_loopback(const std::string& setting, std::string_view url) {
  auto a = url_authority(url);
  if (a && !a->has_userinfo && (a->scheme == "https" || (a->scheme == "http" && is_loopback_host(a->host)))) return;
  throw Error(setting + ": must be https:// (plain http only to 127.0.0.1, [::1] or localhost), without credentials");
}

// A base URL setting as request URLs are built on it: without trailing '/'.
inline std::string without_trailing_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

// The whole file named by setting `setting` (a key, a service-account JSON), read at construction time;
// Error "setting: cannot read path" when it cannot be opened.
inline std::string read_setting_file(const std::string& setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(setting + ": cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date -------------------------------------

// An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 §5.6.7, the form senders must use) as unix
// milliseconds; nullopt for anything else. Locale-independent, unlike strptime's %a and %b.
inline std::optional<int64_t> imf_fixdate_ms(std::string_view v) {
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (v.size() != 29 || v.substr(3, 2) != ", " || v.substr(25) != " GMT") return std::nullopt;
  auto num = [&](size_t at, size_t n) -> std::optional<int> {
    int x = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (v[i] < '0' || v[i] > '9') return std::nullopt;
      x = x * 10 + (v[i] - '0');
    }
    return x;
  };
  auto day = num(5, 2), year = num(12, 4), hh = num(17, 2), mm = num(20, 2), ss = num(23, 2);
  unsigned month = 0;
  for (unsigned i = 0; i < 12; ++i)
    if (v.substr(8, 3) == months[i]) month = i + 1;
  if (!day || !year || !hh || !mm || !ss || month == 0 || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' || v[19] != ':' ||
      v[22] != ':')
    return std::nullopt;
  // A date that does not exist ("30 Feb") is not a date the sender meant: refused like any malformed value.
  const std::chrono::year_month_day date{std::chrono::year{*year}, std::chrono::month{month},
                                         std::chrono::day{static_cast<unsigned>(*day)}};
  if (!date.ok()) return std::nullopt;
  const int64_t days = std::chrono::sys_days{date}.time_since_epoch().count();
  int64_t s = days * 86'400 + *hh * 3600 + *mm * 60 + *ss;
  return s * 1000;
}

// How long a Retry-After value asks to wait, in milliseconds from `now_ms` (Host::now_ms): delay-seconds,
// or an IMF-fixdate. 0 -- the host's backoff decides -- when absent, empty, unreadable, in the past, or
// more than 9 digits of seconds (beyond any sensible wait; the host clamps waits anyway). Surrounding
// whitespace is ignored (RFC 9110 §5.5: it is not part of the field value).
inline int64_t retry_after_ms(std::optional<std::string_view> value, int64_t now_ms) {
  if (!value) return 0;
  std::string_view v = *value;
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.empty()) return 0;
  if (v.find_first_not_of("0123456789") == std::string_view::npos) {
    if (v.size() > 9) return 0;
    return std::stoll(std::string(v)) * 1000;
  }
  auto at = imf_fixdate_ms(v);
  return at && *at > now_ms ? *at - now_ms : 0;
}
// The response's Retry-After header, read as above.
inline int64_t retry_after_ms(const Response& r, int64_t now_ms) {
  return retry_after_ms(r.header("retry-after"), now_ms);
}

// ---- Ids derived from a delivery id: the same on every attempt, so a provider can spot a resend ----------

namespace detail {
// 32 hex digits as 8-4-4-4-12 (RFC 9562 §4 layout).
inline std::string uuid_dashes(const std::string& hex) {
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20, 12);
}
}  // namespace detail

// 8-4-4-4-12 lower-case UUID text hashed from `text`: two FNV-1a 64 passes, one from the FNV offset basis
// and one from `salt`, give the 32 hex digits. Deterministic, so every attempt recomputes the same id
// without a random source. The salt is part of the id's meaning: a plugin picks one and never changes it,
// or ids it already sent (retry keys, apns-ids) stop matching their resends.
inline std::string hashed_uuid(std::string_view text, uint64_t salt) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (uint64_t h : {uint64_t{0xcbf29ce484222325ULL}, salt}) {
    for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ULL;
    for (int shift = 60; shift >= 0; shift -= 4) hex += digits[(h >> shift) & 0xF];
  }
  return detail::uuid_dashes(hex);
}

// The UUID text of a delivery id: the dispatcher's ids (32 hex digits) are only lower-cased and dashed,
// so logs on both sides match; any other id is hashed_uuid(id, salt).
inline std::string uuid_from(std::string_view id, uint64_t salt) {
  if (id.size() != 32 || !std::all_of(id.begin(), id.end(), is_hex)) return hashed_uuid(id, salt);
  std::string hex;
  for (char c : id) hex += ascii_lower(c);
  return detail::uuid_dashes(hex);
}

// ---- Content conventions shared by channels ------------------------------------------------------------

// A content field `key` when non-empty, else a non-empty string `key` at the top level of the message
// metadata (e.g. "collapse_id"). Json is the JSON type the plugin already uses (nlohmann::json), so the
// SDK itself depends on the standard library only.
template <class Json>
std::optional<std::string> content_or_metadata(const Delivery& d, const std::string& key) {
  if (auto c = d.content(key); c && !c->empty()) return std::string(*c);
  Json meta = Json::parse(d.metadata_json(), nullptr, false);
  if (meta.is_object() && meta.contains(key) && meta[key].is_string() && !meta[key].template get<std::string>().empty())
    return meta[key].template get<std::string>();
  return std::nullopt;
}

// What a push notification shows: content "title", and "body" (or, when there is no "body" field, "text").
// Either may be empty; nullopt when both are, since a notification must show something.
struct NotificationText {
  std::string_view title, body;
};
inline std::optional<NotificationText> notification_text(const Delivery& d) {
  auto title = d.content("title");
  auto body = d.content("body");
  if (!body) body = d.content("text");
  NotificationText n{title.value_or(std::string_view{}), body.value_or(std::string_view{})};
  if (n.title.empty() && n.body.empty()) return std::nullopt;
  return n;
}

// ---- Which token each attempt was sent with -------------------------------------------------------------

// For invalidate-only-if-same (Host::invalidate_token): build() records the cached token an attempt's
// request carries, classify() takes it back, and a refusal forgets exactly that token -- never a newer one
// another delivery has already obtained, so a burst of refusals costs one re-mint. Keyed by delivery id and
// attempt; safe from the host's concurrent build/classify calls.
class AttemptTokens {
 public:
  // Hands `request` to `sink` and remembers `token` for d's attempt; forgets it again if the sink refuses
  // (no classify() will follow).
  void add(const RequestSink& sink, const Request& request, const Delivery& d, std::string token) {
    put(key(d), std::move(token));
    try {
      sink.add(request);
    } catch (...) {
      take(d);
      throw;
    }
  }
  // The token d's attempt was sent with, now forgotten; empty when none was recorded.
  std::string take(const Delivery& d) {
    std::lock_guard lock(mu_);
    auto it = by_attempt_.find(key(d));
    if (it == by_attempt_.end()) return {};
    std::string token = std::move(it->second);
    by_attempt_.erase(it);
    return token;
  }

 private:
  static std::string key(const Delivery& d) { return std::string(d.delivery_id()) + "#" + std::to_string(d.attempt()); }
  void put(std::string key, std::string token) {
    std::lock_guard lock(mu_);
    if (by_attempt_.size() > 100'000) by_attempt_.clear();  // only if the host dropped many classifies
    by_attempt_[std::move(key)] = std::move(token);
  }
  std::mutex mu_;
  std::map<std::string, std::string> by_attempt_;
};

}  // namespace tayori::sdk

#endif  // TAYORI_PROVIDER_HELPERS_HPP
