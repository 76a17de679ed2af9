// The operator console (/console): its page, stylesheet, script and the vendored uPlot, embedded in the
// binary so that the console needs no file beside the executable and no network (no CDN). The API serves
// them (api/console_api.cpp); the page then reads the JSON API with the key the operator types in.
#pragma once

#include <string>
#include <string_view>

namespace tayori::console {

struct Asset {
  std::string_view name;          // "index.html", "app.js", ...
  std::string_view content_type;  // from the name's extension, with a charset for text
  std::string_view body;
  // A strong validator (RFC 9110 §8.8.3), quoted: the files change only with the binary, so a browser keeps
  // them and revalidates with If-None-Match.
  std::string etag;
};

// The page itself: what /console and /console/ answer.
inline constexpr std::string_view kPage = "index.html";

// The asset served as /console/{name}, or nullptr when there is none.
const Asset* find_asset(std::string_view name);

}  // namespace tayori::console
