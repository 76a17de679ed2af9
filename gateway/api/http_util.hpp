// Small helpers shared by the API's resource handlers.
#pragma once

#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tayori/text.hpp>

#include "api/http.hpp"
#include "core/message.hpp"

namespace tayori::api {

// A response body's JSON text. Answers echo what the client sent (a path, an id, the parser's last bytes),
// which need not be UTF-8: invalid bytes become U+FFFD instead of throwing (nlohmann's strict dump
// terminated the process on `GET /x\xc3\x28`).
inline std::string json_text(const core::Json& body) {
  return body.dump(-1, ' ', false, core::Json::error_handler_t::replace);
}

inline HttpResponse json_response(int status, const core::Json& body) {
  HttpResponse r;
  r.status = status;
  r.body = json_text(body);
  return r;
}

// Path segments and query values are percent-decoded (RFC 3986 §2.1) with '+' kept as it is: the API's
// query strings are not form bodies, and a phone number's '+' must survive.
using text::percent_decode;

// Every `name=value` pair of a query string, decoded, in order ("a=1&b=2"; a bare `name` has an empty value),
// so a handler can refuse parameters it does not know and parameters given twice.
inline std::vector<std::pair<std::string, std::string>> query_params(std::string_view query) {
  return text::decode_pairs(query, /*plus_is_space=*/false);
}

// The decoded value of the first `name` in a query string ("a=1&b=2"); empty when absent.
inline std::string query_param(std::string_view query, std::string_view name) {
  for (auto& [k, v] : query_params(query))
    if (k == name) return std::move(v);
  return {};
}

// A decimal integer from `lo` to `hi` (digits only: no sign, no space, no exponent), or nullopt.
inline std::optional<int> parse_bounded_int(std::string_view text, int lo, int hi) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  int v = std::stoi(std::string(text));
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

// How deep a request's JSON may nest (RFC 8259 §9 lets a parser limit it). Copying and printing a JSON value
// recurse once per level, so a body of 100,000 brackets overflowed the stack; no message needs more than a
// few levels.
inline constexpr int kMaxJsonDepth = 64;

// The byte offset at which `text` opens its (limit+1)-th nested array or object, or nullopt when it never
// nests deeper than `limit`. Brackets inside strings do not count. Runs before the parser, in one pass.
inline std::optional<size_t> json_too_deep(std::string_view text, int limit = kMaxJsonDepth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

// application/json, with or without parameters (charset=utf-8), case-insensitive (RFC 9110 §8.3.1).
inline bool is_json(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  constexpr std::string_view want = "application/json";
  if (media.size() != want.size()) return false;
  for (size_t i = 0; i < want.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(media[i])) != want[i]) return false;
  return true;
}

}  // namespace tayori::api
