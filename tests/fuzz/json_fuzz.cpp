// common/json.hpp against nlohmann, on any bytes: the fast reader never accepts what nlohmann refuses, reads
// every value nlohmann reads with the same types and numbers, and dump_json writes nlohmann's bytes (or throws
// its error) for whatever nlohmann read. A difference aborts, so libFuzzer keeps the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "common/json.hpp"
#include "fuzz_support.hpp"
#include "json_identical.hpp"

namespace {

using tayori::Json;
using tayori::testing::identical;

[[noreturn]] void differ(const char* what) {
  std::fprintf(stderr, "common/json differs from nlohmann: %s\n", what);
  std::abort();
}

// The text nlohmann writes, or its error's message.
std::string dumped(const Json& json, bool fast) {
  try {
    return fast ? tayori::dump_json(json) : json.dump(-1, ' ', false, Json::error_handler_t::strict);
  } catch (const Json::type_error& e) {
    return std::string("error: ") + e.what();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = tayori::fuzz::text(data, size);
  Json expected = Json::parse(text, nullptr, false);
  std::optional<Json> fast = tayori::read_json_fast(text);
  if (expected.is_discarded()) {
    if (fast) differ("the fast reader accepts a text nlohmann refuses");
    return 0;
  }
  if (fast && !identical(*fast, expected)) differ("the fast reader reads another value");
  if (dumped(expected, true) != dumped(expected, false)) differ("dump_json writes other bytes");
  // The bytes as one string value: every byte sequence, valid UTF-8 or not, through the writer.
  Json as_string = std::string(text);
  if (dumped(as_string, true) != dumped(as_string, false)) differ("dump_json writes a string otherwise");
  if (tayori::dump_json(as_string, tayori::InvalidUtf8::replace) !=
      as_string.dump(-1, ' ', false, Json::error_handler_t::replace))
    differ("dump_json replaces invalid UTF-8 otherwise");
  return 0;
}
