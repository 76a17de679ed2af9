// tayori/text.hpp — text helpers that the gateway, its tools and plugins share: UTF-8 checks, HTML escaping,
// percent-decoding. Header-only and dependent on the standard library alone, because a plugin cannot link
// the gateway while every part of the repository may include include/tayori/ (docs/architecture.md §2):
// that way one copy serves both sides of the plugin boundary.
#ifndef TAYORI_TEXT_HPP
#define TAYORI_TEXT_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tayori::text {

// ---- UTF-8 (RFC 3629) ------------------------------------------------------------------------------

// The length of the well-formed UTF-8 sequence that starts at s[i]: 1 for an ASCII byte, 2 to 4 for a
// multi-byte one, 0 when the bytes there are no well-formed sequence (RFC 3629 §4; Unicode's table 3-7 of
// well-formed byte sequences: no truncated sequence, no overlong form, no surrogate U+D800..U+DFFF, nothing
// past U+10FFFF).
inline size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0; };
  auto in = [](unsigned char b, unsigned char lo, unsigned char hi) { return b >= lo && b <= hi; };
  const unsigned char b0 = byte(0);
  if (i < s.size() && b0 < 0x80) return 1;
  if (in(b0, 0xC2, 0xDF)) return in(byte(1), 0x80, 0xBF) ? 2 : 0;
  if (b0 == 0xE0) return in(byte(1), 0xA0, 0xBF) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  if (in(b0, 0xE1, 0xEC) || in(b0, 0xEE, 0xEF)) return in(byte(1), 0x80, 0xBF) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  if (b0 == 0xED) return in(byte(1), 0x80, 0x9F) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  if (b0 == 0xF0) return in(byte(1), 0x90, 0xBF) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  if (in(b0, 0xF1, 0xF3)) return in(byte(1), 0x80, 0xBF) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  if (b0 == 0xF4) return in(byte(1), 0x80, 0x8F) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  return 0;
}

// Well-formed UTF-8 as RFC 3629 §4 defines it (utf8_sequence_length at every sequence), so text that passes can
// be labelled charset=UTF-8.
inline bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Characters as providers count them in their text limits: Unicode code points. Every byte but a
// continuation byte (10xxxxxx, RFC 3629 §3) starts one; the count is meaningful for valid UTF-8.
inline size_t utf8_code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// ---- Case ------------------------------------------------------------------------------------------

// ASCII letters lowered, every other byte as it is: for the case-insensitive tokens of protocols (header
// names, media types, URL schemes; RFC 9110 §5.1, §8.3.1), never for human text.
inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}
// Equal but for the case of ASCII letters (for the same tokens).
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

// ---- HTML ------------------------------------------------------------------------------------------

// Text made safe in HTML element content and in attribute values quoted with '"' or '\'' (HTML Living
// Standard §13.1.2.6): '&', '<', '>' and both quotes are written as character references, so a value can
// neither end the element or attribute it is in nor start a reference of its own.
inline std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---- Percent-encoding (RFC 3986 §2.1) and form bodies ------------------------------------------------

// "%XX" (either case) becomes the byte 0xXX (RFC 3986 §2.1); a '%' without two hex digits after it is kept
// as it is. With `plus_is_space`, '+' is a space, as application/x-www-form-urlencoded has it (WHATWG URL
// §5.1); in a URI path or an API query a '+' stays a '+' (a phone number "+8190...").
inline std::string percent_decode(std::string_view s, bool plus_is_space = false) {
  auto value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && value(s[i + 1]) >= 0 && value(s[i + 2]) >= 0) {
      out += static_cast<char>(value(s[i + 1]) * 16 + value(s[i + 2]));
      i += 2;
    } else {
      out += plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

// The name=value pairs of a query string or a form body, split on '&' and decoded as percent_decode does:
// in the order sent, duplicates kept (Twilio signs every pair, the API refuses a parameter given twice),
// empty pairs skipped, and a pair without '=' given an empty value.
inline std::vector<std::pair<std::string, std::string>> decode_pairs(std::string_view text, bool plus_is_space) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!text.empty()) {
    const size_t amp = text.find('&');
    const std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view{} : text.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    pairs.emplace_back(percent_decode(pair.substr(0, eq), plus_is_space),
                       eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), plus_is_space));
  }
  return pairs;
}

}  // namespace tayori::text

#endif  // TAYORI_TEXT_HPP
