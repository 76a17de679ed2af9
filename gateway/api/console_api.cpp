// GET /console, /console/ and /console/{asset}: the operator console's page and files (console/assets.hpp).
// They are the same for everyone and hold no data, so they need no key: the page asks the operator for one
// and sends it with each API call it makes (Authorization: Bearer), which is where scopes are checked.
#include "api/api.hpp"
#include "console/assets.hpp"

namespace tayori::api {

namespace {

// Everything the page runs comes from this origin, and nothing inline: an injected <script> or on* attribute
// does not run, the page cannot be framed (clickjacking its Replay button), and the key it holds can only be
// sent back to the gateway (connect-src). uPlot styles its elements through the CSSOM, which style-src allows.
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace

HttpResponse Api::console_asset(const HttpRequest& request, const std::string& route) {
  std::string_view name = route == "/console/{asset}" ? std::string_view(request.path).substr(kConsolePrefix.size())
                                                      : console::kPage;
  const console::Asset* asset = console::find_asset(name);
  if (asset == nullptr) return problem(404, "Not Found", "no such resource: " + request.path);
  HttpResponse r;
  r.content_type = std::string(asset->content_type);
  // Revalidated at each load (no-cache, not no-store): a new binary's console is used at once, and an
  // unchanged one costs a 304.
  r.headers = {{"Cache-Control", "no-cache"},
               {"ETag", asset->etag},
               {"Content-Security-Policy", kContentSecurityPolicy},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"}};
  if (request.header("if-none-match") == asset->etag) {
    r.status = 304;
    return r;
  }
  r.body = std::string(asset->body);
  return r;
}

}  // namespace tayori::api
