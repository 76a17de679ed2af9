// Templates plus render: the input is a Mustache text, then a NUL byte, then the message's `data` (JSON).
// The text is the message's inline content (subject, text and html, the one HTML-escaped field), rendered
// for a channel with missing variables refused and allowed; variable_names scans it as intake does.
#include <cstddef>
#include <cstdint>
#include <string>

#include "api/http_util.hpp"
#include "fuzz_support.hpp"
#include "render/renderer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tayori;
  std::string_view input = fuzz::text(data, size);
  size_t split = input.find('\0');
  std::string_view text = input.substr(0, split);
  core::Message m;
  m.id = "fuzz";
  m.recipient.id = "r";
  m.content = {{"subject", std::string(text)}, {"text", std::string(text)}, {"html", std::string(text)}};
  if (split != std::string_view::npos) {
    std::string_view json = input.substr(split + 1);
    if (api::json_too_deep(json)) return 0;  // the API refuses the body before parsing it
    try {
      m.data = core::Json::parse(json);
    } catch (const core::Json::exception&) {
      return 0;  // intake refuses a body that is not JSON
    }
    if (!m.data.is_object()) return 0;  // intake: data must be an object
  }
  (void)render::variable_names(text);
  for (bool missing_is_error : {false, true}) (void)render::render(m, "email", nullptr, missing_is_error);
  return 0;
}
