// Small helpers every simulated provider shares: JSON answers, form encoding (RFC 1866 §8.2.1 /
// WHATWG application/x-www-form-urlencoded), identifiers, text measures and clocks. Crypto is not here: the
// signatures the simulator makes (webhooks) use the host's crypto/crypto.hpp; the JWTs it checks, its own
// OpenSSL calls (sim_jwt.hpp), so that a signing mistake in the gateway cannot pass on both sides.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <tayori/text.hpp>

#include "sim_types.hpp"

namespace tayori::sim {

using Json = nlohmann::json;
using Params = std::vector<std::pair<std::string, std::string>>;

// A JSON answer. Content type defaults to application/json; providers that add a charset pass it.
SimResponse json_response(int status, const Json& body, std::string content_type = "application/json");

// A JSON object written member by member, for answers on a hot path (Twilio's 201 at every send), where
// building a Json of a score of members cost more than the rest of the answer. The caller gives the members in
// the order json_response writes them (nlohmann sorts keys); a value that is not UTF-8 is written with U+FFFD
// for its bad bytes, where json_response would throw.
class JsonObjectText {
 public:
  JsonObjectText& text(std::string_view key, std::string_view value);
  JsonObjectText& text_or_null(std::string_view key, std::string_view value);  // null when empty
  JsonObjectText& null(std::string_view key);
  JsonObjectText& raw(std::string_view key, std::string_view json);  // a value that is JSON text already
  std::string done();                                                // the text; the writer is spent
  SimResponse response(int status);

 private:
  void key(std::string_view key);
  void value(std::string_view text);

  std::string out_ = "{";
};

// Percent-encodes everything except unreserved characters (RFC 3986 §2.3); spaces become %20.
std::string form_escape(std::string_view s);
// application/x-www-form-urlencoded pairs, '+' a space (tayori/text.hpp, the gateway's and plugins' copy).
inline Params form_decode(std::string_view body) { return text::decode_pairs(body, /*plus_is_space=*/true); }
std::string form_encode(const Params& params);
// The first value of `name` in a query string or form body, or nullopt.
std::optional<std::string> param(const Params& params, std::string_view name);

// Unix milliseconds from the system clock.
int64_t unix_ms();
// RFC 2822 date ("Thu, 30 Jul 2015 20:12:31 +0000"), as Twilio's resources carry it.
std::string rfc2822_date(int64_t unix_ms);

// Random lower-case hex of `n` characters, and a random (version 4) UUID, lower case.
std::string random_hex(size_t n);
std::string uuid_v4();

bool is_hex(std::string_view s);
// 8-4-4-4-12 hex digits (either case), RFC 9562 §4's textual form.
bool is_uuid(std::string_view s);
// A decimal integer (optional leading '-'), within int64; nullopt otherwise.
std::optional<int64_t> parse_int(std::string_view s);
// The token of an "Authorization: Bearer <token>" header (scheme matched case-insensitively, RFC 9110 §11.1).
std::optional<std::string> bearer_token(std::string_view authorization);

// UTF-8 validation (RFC 3629) and length in Unicode code points, as the gateway and plugins have them.
using text::is_valid_utf8;
using text::utf8_code_points;
// Length in UTF-16 code units (what Java-backed APIs count). Assumes valid UTF-8.
size_t utf16_units(std::string_view s);

// The whole file, or nullopt when it cannot be read.
std::optional<std::string> read_text_file(const std::string& path);

}  // namespace tayori::sim
