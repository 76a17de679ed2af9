// JSON text to and from nlohmann::json, fast on the hot paths (every body at intake, every stored payload at
// dispatch) and indistinguishable from nlohmann's own parse() and dump() everywhere else.
//
// nlohmann's lexer reads a byte at a time through an input adapter and grows each string a byte at a time;
// its serializer runs every byte through a UTF-8 decoder. Together they were 2/3 of an HTTP thread's time on
// batched intake (docs/architecture.md §6). The reader here scans runs of plain bytes at once and builds the
// same values; whatever it does not handle itself (a parse error, a number beyond 64 bits or a double's range,
// a byte order mark, nesting deeper than kFastDepth) it hands to nlohmann, so errors, their messages and
// their byte offsets stay exactly nlohmann's.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace tayori {

using Json = nlohmann::json;

// Nesting the fast reader follows itself; deeper text goes to nlohmann (the API refuses it before, see
// api/http_util.hpp json_too_deep).
inline constexpr int kFastDepth = 64;

// Json::parse(text): the same value, or the same exception (parse_error, out_of_range 406).
Json parse_json(std::string_view text);

// Json::parse(text, nullptr, false): the same value, or a discarded value where nlohmann would throw.
Json parse_json_or_discarded(std::string_view text);

// The fast reader alone: the value nlohmann would produce, or nullopt when the text is not valid JSON or
// lies outside what it reads itself. For tests and the differential fuzzer; callers use parse_json.
std::optional<Json> read_json_fast(std::string_view text);

// JSON text read a token at a time, with read_json_fast's grammar and values, for a caller that maps text of a
// known shape straight onto its own types instead of building a Json first (core::read_stored_message,
// core::read_intake). Each call consumes what it read; false means the text is not what the caller expected there
// (or not JSON), and the caller then gives up on the cursor and parses the text with parse_json, which explains any
// error.
class JsonCursor {
 public:
  explicit JsonCursor(std::string_view text) : s_(text) {}

  bool next_is(char c);           // the next token starts with `c` (white space skipped)
  bool take(char c);              // next_is(c), and consumes it: '{', '}', '[', ']', ':' or ','
  bool string(std::string& out);  // a string, decoded and appended to `out`
  bool boolean(bool& out);
  bool value(Json& out);       // any value, as read_json_fast builds it
  // The same, for a value inside `depth` arrays and objects the caller has entered already: read_json_fast's
  // nesting limit (kFastDepth) counts from the root of the text, and so does this.
  bool value(Json& out, int depth);
  bool at_end();               // nothing but white space is left
  // An object's members in the order written: `member(key)` reads the value of each, the cursor at it.
  template <typename Read>
  bool members(Read&& member) {
    if (!take('{')) return false;
    if (take('}')) return true;
    std::string key;
    do {
      key.clear();
      if (!string(key) || !take(':') || !member(std::string_view(key))) return false;
    } while (take(','));
    return take('}');
  }
  // An array's items: `item()` reads each, the cursor at it.
  template <typename Read>
  bool items(Read&& item) {
    if (!take('[')) return false;
    if (take(']')) return true;
    do {
      if (!item()) return false;
    } while (take(','));
    return take(']');
  }
  bool read_whole(Json& out);  // the text is one value (read_json_fast)

 private:
  void skip_space();
  bool literal(std::string_view word, Json value, Json& out);
  bool nested(Json& out, int depth);  // value(out, depth) at the value's first byte
  bool object(Json& out, int depth);
  bool array(Json& out, int depth);
  bool quoted(std::string& out);  // at the opening quote
  std::optional<uint32_t> hex4();
  bool escape(std::string& out);
  bool number(Json& out);

  std::string_view s_;
  size_t i_ = 0;
};

// What dump_json does with a string that is not UTF-8: nlohmann's error_handler_t strict (throw type_error
// 316), or replace (each invalid byte becomes U+FFFD, for answers that echo what a client sent).
enum class InvalidUtf8 { refuse, replace };

// json.dump(-1, ' ', false, handler): compact, without ensure_ascii, byte for byte the same text. Objects come
// out key-sorted (nlohmann keeps members in a std::map), so with `refuse` this is the canonical form.
std::string dump_json(const Json& json, InvalidUtf8 invalid = InvalidUtf8::refuse);

// Appends `text` as dump_json writes a string (quoted, escaped), for answers written member by member without
// building a Json first. False when `text` is not UTF-8; `out` then holds a part of it and the caller rewrites.
bool append_json_string(std::string& out, std::string_view text);
// The same, but a `text` that is not UTF-8 comes out as dump_json(..., InvalidUtf8::replace) writes it.
void append_json_string_replacing(std::string& out, std::string_view text);

// A JSON object written member by member, byte for byte as dump_json(..., InvalidUtf8::replace) writes the same
// value, for the small objects written once per message (a timeline event's detail), where building a Json to
// dump cost more than the rest of the work. The caller adds the members in key order (dump_json's: nlohmann keeps
// them in a std::map, so bytewise), each key once.
class JsonObjectText {
 public:
  JsonObjectText& string(std::string_view key, std::string_view value);
  JsonObjectText& integer(std::string_view key, int64_t value);
  // The object's text; the writer is empty afterwards.
  std::string take();

 private:
  void key(std::string_view k);
  std::string out_ = "{";
};

}  // namespace tayori
