// Small helpers shared by the API's resource handlers.
#pragma once

#include <cctype>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tayori/text.hpp>

#include "api/http.hpp"
#include "common/json.hpp"
#include "core/message.hpp"

namespace tayori::api {

// A response body's JSON text. Answers echo what the client sent (a path, an id, the parser's last bytes),
// which need not be UTF-8: invalid bytes become U+FFFD instead of throwing (nlohmann's strict dump
// terminated the process on `GET /x\xc3\x28`).
inline std::string json_text(const core::Json& body) { return dump_json(body, InvalidUtf8::replace); }

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

// A query's problems, each naming its parameter: [(name, what is wrong)].
using QueryErrors = std::vector<std::pair<std::string, std::string>>;

// Reads a query string: `read(name, value, errors)` takes each parameter (false: not one it knows); a
// parameter given twice, or one not known (`known` lists them: "after, limit"), is a problem too. Every
// problem is answered at once, as a 400 naming each parameter; nullopt when there is none.
// The 400 for a query's problems: "query parameter by must be ...; query parameter from ...".
HttpResponse query_problem(const QueryErrors& errors);

std::optional<HttpResponse> read_query(
    std::string_view query, std::string_view known,
    const std::function<bool(const std::string& name, const std::string& value, QueryErrors& errors)>& read);

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

// Whether a Content-Type is the media type `want` (lower case), with or without parameters, compared
// case-insensitively (RFC 9110 §8.3.1).
inline bool has_media_type(std::string_view content_type, std::string_view want) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  return text::ascii_lower(media) == want;
}

// application/json, with or without parameters (charset=utf-8).
inline bool is_json(std::string_view content_type) { return has_media_type(content_type, "application/json"); }

// The value of parameter `name` (lower case) of a header such as Content-Type or Content-Disposition, unquoted
// (RFC 9110 §5.6.6, without quoted-pair escapes, which boundaries and field names do not need); "" if absent.
inline std::string header_parameter(std::string_view header, std::string_view name) {
  size_t at = header.find(';');
  while (at != std::string_view::npos) {
    size_t start = at + 1;
    while (start < header.size() && (header[start] == ' ' || header[start] == '\t')) ++start;
    size_t eq = header.find('=', start);
    if (eq == std::string_view::npos) return "";
    const std::string key = text::ascii_lower(header.substr(start, eq - start));
    std::string_view rest = header.substr(eq + 1);
    std::string value;
    size_t next;
    if (!rest.empty() && rest.front() == '"') {
      size_t close = rest.find('"', 1);
      if (close == std::string_view::npos) return "";
      value = rest.substr(1, close - 1);
      next = header.find(';', eq + 1 + close);
    } else {
      size_t end = rest.find(';');
      value = rest.substr(0, end);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
      next = end == std::string_view::npos ? end : eq + 1 + end;
    }
    if (key == name) return value;
    at = next;
  }
  return "";
}

// The value of form field `name` in a multipart/form-data body (RFC 7578): the body is split at the boundary
// its Content-Type names (RFC 2046 §5.1.1), and each part's Content-Disposition gives its field name.
// nullopt when the body is not multipart/form-data or holds no such field.
inline std::optional<std::string> multipart_form_field(std::string_view content_type, std::string_view body,
                                                      std::string_view name) {
  if (!has_media_type(content_type, "multipart/form-data")) return std::nullopt;
  const std::string boundary = header_parameter(content_type, "boundary");
  if (boundary.empty()) return std::nullopt;
  const std::string delimiter = "--" + boundary;
  size_t at = body.find(delimiter);
  while (at != std::string_view::npos) {
    size_t part = body.find("\r\n", at + delimiter.size());
    if (part == std::string_view::npos) return std::nullopt;  // the close delimiter ("--boundary--")
    part += 2;
    size_t end = body.find("\r\n" + delimiter, part);
    if (end == std::string_view::npos) return std::nullopt;
    std::string_view whole = body.substr(part, end - part);
    size_t blank = whole.find("\r\n\r\n");
    std::string_view headers = whole.substr(0, blank == std::string_view::npos ? whole.size() : blank + 2);
    for (size_t line = 0; line < headers.size();) {
      size_t eol = headers.find("\r\n", line);
      std::string_view h = headers.substr(line, eol - line);
      size_t colon = h.find(':');
      const std::string field = text::ascii_lower(h.substr(0, colon == std::string_view::npos ? 0 : colon));
      if (field == "content-disposition" && header_parameter(h.substr(colon + 1), "name") == name)
        return blank == std::string_view::npos ? std::string() : std::string(whole.substr(blank + 4));
      if (eol == std::string_view::npos) break;
      line = eol + 2;
    }
    at = end + 2;
  }
  return std::nullopt;
}

}  // namespace tayori::api
