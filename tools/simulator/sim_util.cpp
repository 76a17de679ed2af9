// Shared helpers for the simulated providers (see sim_util.hpp).
#include "sim_util.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "common/json.hpp"

namespace tayori::sim {

std::string_view SimRequest::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return v;
  return {};
}

size_t SimRequest::header_count(std::string_view lower_name) const {
  size_t n = 0;
  for (const auto& [k, v] : headers) n += k == lower_name;
  return n;
}

SimResponse json_response(int status, const Json& body, std::string content_type) {
  SimResponse r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = body.dump();
  return r;
}

void JsonObjectText::key(std::string_view key) {
  if (out_.size() > 1) out_ += ',';
  value(key);
  out_ += ':';
}

void JsonObjectText::value(std::string_view text) {
  size_t start = out_.size();
  if (append_json_string(out_, text)) return;
  out_.resize(start);
  out_ += Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

JsonObjectText& JsonObjectText::text(std::string_view key, std::string_view value) {
  this->key(key);
  this->value(value);
  return *this;
}

JsonObjectText& JsonObjectText::text_or_null(std::string_view key, std::string_view value) {
  return value.empty() ? null(key) : text(key, value);
}

JsonObjectText& JsonObjectText::null(std::string_view key) { return raw(key, "null"); }

JsonObjectText& JsonObjectText::raw(std::string_view key, std::string_view json) {
  this->key(key);
  out_ += json;
  return *this;
}

std::string JsonObjectText::done() {
  out_ += '}';
  return std::move(out_);
}

SimResponse JsonObjectText::response(int status) {
  SimResponse r;
  r.status = status;
  r.body = done();
  return r;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string form_escape(std::string_view s) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::string form_encode(const Params& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += form_escape(k) + "=" + form_escape(v);
  }
  return out;
}

std::optional<std::string> param(const Params& params, std::string_view name) {
  for (const auto& [k, v] : params)
    if (k == name) return v;
  return std::nullopt;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc2822_date(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

namespace {

// Identifiers only need to be unique, not reproducible (the seeded PRNG is for fault shares).
std::mt19937_64& id_rng() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

}  // namespace

std::string random_hex(size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    uint64_t v = id_rng()();
    for (int i = 0; i < 16 && out.size() < n; ++i, v >>= 4) out += digits[v & 15];
  }
  return out;
}

std::string uuid_v4() {
  std::string h = random_hex(32);
  h[12] = '4';                           // version 4 (RFC 9562 §5.4)
  h[16] = "89ab"[hex_value(h[16]) & 3];  // variant 10xx
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

bool is_hex(std::string_view s) {
  for (char c : s)
    if (hex_value(c) < 0) return false;
  return true;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : hex_value(s[i]) < 0) return false;
  }
  return true;
}

std::optional<int64_t> parse_int(std::string_view s) {
  if (s.empty()) return std::nullopt;
  bool negative = s[0] == '-';
  size_t i = negative ? 1 : 0;
  if (i == s.size()) return std::nullopt;
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(s[i] - '0');
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  }
  return negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
}

std::optional<std::string> bearer_token(std::string_view authorization) {
  static constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size()) return std::nullopt;
  for (size_t i = 0; i < scheme.size(); ++i) {
    char c = authorization[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != scheme[i]) return std::nullopt;
  }
  std::string_view token = authorization.substr(scheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (token.empty()) return std::nullopt;
  return std::string(token);
}

size_t utf16_units(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) == 0x80) continue;
    n += (c & 0xF8) == 0xF0 ? 2 : 1;  // a 4-byte sequence is outside the BMP: a surrogate pair
  }
  return n;
}

std::optional<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace tayori::sim
