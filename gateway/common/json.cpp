// The fast JSON reader and writer (json.hpp). The grammar is RFC 8259's; where nlohmann makes a choice the
// RFC leaves open, the reader makes the same one, because callers and stored hashes rely on nlohmann's values:
// - a number without fraction or exponent is number_unsigned when it has no sign, number_integer when it has
//   one, and a double when it does not fit 64 bits (§6 lets the range be limited);
// - of two members with the same name the last wins (§4: "names within an object SHOULD be unique");
// - strings must be well-formed UTF-8 (§8.1) and a \u escape of a surrogate must be half of a pair (§7).
#include "common/json.hpp"

#include <tayori/text.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>

namespace tayori {

namespace {

// Bytes a string can hold as they are: everything but the quote, the backslash, controls and non-ASCII.
constexpr bool plain_in_string(unsigned char c) { return c >= 0x20 && c != '"' && c != '\\' && c < 0x80; }

struct PlainTable {
  bool plain[256] = {};
  constexpr PlainTable() {
    for (int c = 0; c < 256; ++c) plain[c] = plain_in_string(static_cast<unsigned char>(c));
  }
};
constexpr PlainTable kPlain;

constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

// A recursive-descent reader that gives up (answers false) instead of reporting: the caller then asks
// nlohmann, whose verdict and message are the ones users see.
bool JsonCursor::read_whole(Json& out) {
  if (!value(out, 0)) return false;
  return at_end();
}

bool JsonCursor::at_end() {
  skip_space();
  return i_ == s_.size();
}

bool JsonCursor::next_is(char c) {
  skip_space();
  return i_ < s_.size() && s_[i_] == c;
}

bool JsonCursor::take(char c) {
  if (!next_is(c)) return false;
  ++i_;
  return true;
}

bool JsonCursor::string(std::string& out) { return next_is('"') && quoted(out); }

bool JsonCursor::value(Json& out) { return value(out, 0); }

bool JsonCursor::value(Json& out, int depth) {
  skip_space();
  return nested(out, depth);
}

bool JsonCursor::boolean(bool& out) {
  skip_space();
  if (s_.substr(i_, 4) == "true") {
    i_ += 4;
    out = true;
    return true;
  }
  if (s_.substr(i_, 5) == "false") {
    i_ += 5;
    out = false;
    return true;
  }
  return false;
}

void JsonCursor::skip_space() {
  while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
}

bool JsonCursor::literal(std::string_view word, Json value, Json& out) {
  if (s_.substr(i_, word.size()) != word) return false;
  i_ += word.size();
  out = std::move(value);
  return true;
}

bool JsonCursor::nested(Json& out, int depth) {
  if (i_ >= s_.size()) return false;
  switch (s_[i_]) {
    case '{': return object(out, depth + 1);
    case '[': return array(out, depth + 1);
    case '"': {
      out = Json::string_t();
      return quoted(out.get_ref<Json::string_t&>());
    }
    case 't': return literal("true", true, out);
    case 'f': return literal("false", false, out);
    case 'n': return literal("null", nullptr, out);
    default: return number(out);
  }
}

bool JsonCursor::object(Json& out, int depth) {
  if (depth > kFastDepth) return false;
  ++i_;
  out = Json::object();
  auto& members = out.get_ref<Json::object_t&>();
  skip_space();
  if (i_ < s_.size() && s_[i_] == '}') {
    ++i_;
    return true;
  }
  std::string key;
  for (;;) {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    key.clear();
    if (!quoted(key)) return false;
    skip_space();
    if (i_ >= s_.size() || s_[i_] != ':') return false;
    ++i_;
    skip_space();
    // A repeated name: the last value wins, as in nlohmann's DOM parser.
    Json& member = members.try_emplace(std::move(key)).first->second;
    member = Json();
    if (!nested(member, depth)) return false;
    skip_space();
    if (i_ >= s_.size()) return false;
    if (s_[i_] == '}') {
      ++i_;
      return true;
    }
    if (s_[i_] != ',') return false;
    ++i_;
    skip_space();
  }
}

bool JsonCursor::array(Json& out, int depth) {
  if (depth > kFastDepth) return false;
  ++i_;
  out = Json::array();
  auto& items = out.get_ref<Json::array_t&>();
  skip_space();
  if (i_ < s_.size() && s_[i_] == ']') {
    ++i_;
    return true;
  }
  for (;;) {
    items.emplace_back();
    if (!nested(items.back(), depth)) return false;
    skip_space();
    if (i_ >= s_.size()) return false;
    if (s_[i_] == ']') {
      ++i_;
      return true;
    }
    if (s_[i_] != ',') return false;
    ++i_;
    skip_space();
  }
}

// At the opening quote; appends the decoded string to `out`.
bool JsonCursor::quoted(std::string& out) {
  ++i_;
  for (;;) {
    size_t run = i_;
    while (run < s_.size() && kPlain.plain[static_cast<unsigned char>(s_[run])]) ++run;
    out.append(s_.data() + i_, run - i_);
    i_ = run;
    if (i_ >= s_.size()) return false;
    auto c = static_cast<unsigned char>(s_[i_]);
    if (c == '"') {
      ++i_;
      return true;
    }
    if (c == '\\') {
      if (!escape(out)) return false;
    } else if (c >= 0x80) {
      size_t n = text::utf8_sequence_length(s_, i_);
      if (n == 0) return false;
      out.append(s_.data() + i_, n);
      i_ += n;
    } else {
      return false;  // a control character must be escaped (§7)
    }
  }
}

std::optional<uint32_t> JsonCursor::hex4() {
  if (i_ + 4 > s_.size()) return std::nullopt;
  uint32_t v = 0;
  for (int k = 0; k < 4; ++k) {
    char c = s_[i_++];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= static_cast<uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= static_cast<uint32_t>(c - 'A' + 10);
    else
      return std::nullopt;
  }
  return v;
}

bool JsonCursor::escape(std::string& out) {
  if (++i_ >= s_.size()) return false;
  char c = s_[i_++];
  switch (c) {
    case '"': out += '"'; return true;
    case '\\': out += '\\'; return true;
    case '/': out += '/'; return true;
    case 'b': out += '\b'; return true;
    case 'f': out += '\f'; return true;
    case 'n': out += '\n'; return true;
    case 'r': out += '\r'; return true;
    case 't': out += '\t'; return true;
    case 'u': break;
    default: return false;
  }
  auto unit = hex4();
  if (!unit || (*unit >= 0xDC00 && *unit <= 0xDFFF)) return false;  // a low surrogate alone
  uint32_t cp = *unit;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') return false;
    i_ += 2;
    auto low = hex4();
    if (!low || *low < 0xDC00 || *low > 0xDFFF) return false;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (*low - 0xDC00);
  }
  append_utf8(out, cp);
  return true;
}

// RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
bool JsonCursor::number(Json& out) {
  const size_t start = i_;
  bool negative = false;
  if (s_[i_] == '-') {
    negative = true;
    ++i_;
  }
  if (i_ >= s_.size() || !is_digit(s_[i_])) return false;
  if (s_[i_] == '0')
    ++i_;
  else
    while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
  const size_t integer_end = i_;
  bool is_float = false;
  if (i_ < s_.size() && s_[i_] == '.') {
    is_float = true;
    ++i_;
    if (i_ >= s_.size() || !is_digit(s_[i_])) return false;
    while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
  }
  if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
    is_float = true;
    ++i_;
    if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
    if (i_ >= s_.size() || !is_digit(s_[i_])) return false;
    while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
  }
  const char* first = s_.data() + start;
  const char* last = s_.data() + i_;
  if (!is_float) {
    uint64_t magnitude = 0;
    bool fits = true;
    for (const char* p = first + (negative ? 1 : 0); p < s_.data() + integer_end && fits; ++p)
      fits = !__builtin_mul_overflow(magnitude, 10u, &magnitude) &&
             !__builtin_add_overflow(magnitude, static_cast<uint64_t>(*p - '0'), &magnitude);
    constexpr uint64_t kMinMagnitude = uint64_t{1} << 63;  // |INT64_MIN|
    if (fits && !negative) {
      out = static_cast<Json::number_unsigned_t>(magnitude);
      return true;
    }
    if (fits && magnitude <= kMinMagnitude) {
      out = magnitude == kMinMagnitude ? std::numeric_limits<Json::number_integer_t>::min()
                                       : -static_cast<Json::number_integer_t>(magnitude);
      return true;
    }
    // Beyond 64 bits nlohmann reads a double; from_chars below rounds the same way strtod does.
  }
  double d = 0;
  auto [end, ec] = std::from_chars(first, last, d);
  if (ec != std::errc() || end != last || !std::isfinite(d)) return false;  // out of range: nlohmann says why
  out = static_cast<Json::number_float_t>(d);
  return true;
}

namespace {

// nlohmann's serializer (dump with ensure_ascii false) escapes these and writes every other valid byte as is.
void write_string(std::string& out, std::string_view s, bool& valid) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    size_t run = i;
    while (run < s.size() && kPlain.plain[static_cast<unsigned char>(s[run])]) ++run;
    out.append(s.data() + i, run - i);
    i = run;
    if (i >= s.size()) break;
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = text::utf8_sequence_length(s, i);
      if (n == 0) {
        valid = false;
        return;
      }
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    ++i;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";  // nlohmann writes \u%04x: lower case
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      }
    }
  }
  out += '"';
}

template <typename Integer>
void write_integer(std::string& out, Integer v) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, static_cast<size_t>(end - digits));
}

// Appends `json`; clears `valid` (and stops) at what only nlohmann writes or refuses: an invalid UTF-8
// string (type_error 316), a binary value, a discarded one.
void write(std::string& out, const Json& json, bool& valid) {
  switch (json.type()) {
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : json.get_ref<const Json::object_t&>()) {
        if (!first) out += ',';
        first = false;
        write_string(out, key, valid);
        out += ':';
        write(out, member, valid);
        if (!valid) return;
      }
      out += '}';
      return;
    }
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const Json& item : json.get_ref<const Json::array_t&>()) {
        if (!first) out += ',';
        first = false;
        write(out, item, valid);
        if (!valid) return;
      }
      out += ']';
      return;
    }
    case Json::value_t::string: write_string(out, json.get_ref<const Json::string_t&>(), valid); return;
    case Json::value_t::boolean: out += json.get<bool>() ? "true" : "false"; return;
    case Json::value_t::null: out += "null"; return;
    case Json::value_t::number_integer: write_integer(out, json.get<Json::number_integer_t>()); return;
    case Json::value_t::number_unsigned: write_integer(out, json.get<Json::number_unsigned_t>()); return;
    case Json::value_t::number_float: out += json.dump(); return;  // nlohmann's shortest round-trip form
    case Json::value_t::binary:
    case Json::value_t::discarded: valid = false; return;
  }
}

}  // namespace

std::optional<Json> read_json_fast(std::string_view text) {
  Json out;
  if (!JsonCursor(text).read_whole(out)) return std::nullopt;
  return out;
}

Json parse_json(std::string_view text) {
  if (auto fast = read_json_fast(text)) return std::move(*fast);
  return Json::parse(text);
}

Json parse_json_or_discarded(std::string_view text) {
  if (auto fast = read_json_fast(text)) return std::move(*fast);
  return Json::parse(text, nullptr, false);
}

bool append_json_string(std::string& out, std::string_view text) {
  bool valid = true;
  write_string(out, text, valid);
  return valid;
}

void append_json_string_replacing(std::string& out, std::string_view text) {
  const size_t mark = out.size();
  if (append_json_string(out, text)) return;
  out.resize(mark);
  out += dump_json(Json(std::string(text)), InvalidUtf8::replace);
}

void JsonObjectText::key(std::string_view k) {
  if (out_.size() > 1) out_ += ',';
  append_json_string_replacing(out_, k);
  out_ += ':';
}

JsonObjectText& JsonObjectText::string(std::string_view k, std::string_view value) {
  key(k);
  append_json_string_replacing(out_, value);
  return *this;
}

JsonObjectText& JsonObjectText::integer(std::string_view k, int64_t value) {
  key(k);
  write_integer(out_, value);
  return *this;
}

std::string JsonObjectText::take() {
  out_ += '}';
  std::string text = std::move(out_);
  out_.assign(1, '{');  // not = "{": g++ 12 warns of an overlapping copy that cannot happen (-Wrestrict)
  return text;
}

std::string dump_json(const Json& json, InvalidUtf8 invalid) {
  std::string out;
  bool valid = true;
  write(out, json, valid);
  if (valid) return out;
  // The same text, or the same error.
  return json.dump(-1, ' ', false,
                   invalid == InvalidUtf8::replace ? Json::error_handler_t::replace : Json::error_handler_t::strict);
}

}  // namespace tayori
