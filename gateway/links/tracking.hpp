// Click tracking: the links of a rendered message rewritten to the gateway's /c/{token}, each token a signed
// redirect to the URL that was there (links.hpp, kind click). Pure: the caller says how a tracked URL is made.
//
// Which content fields are read, and how:
//   html         the href of every <a> and <area> (HTML Living Standard §4.6): what a reader can click
//   text, body   URLs standing in plain text (e-mail's text part, SMS, LINE, a push's body)
//   link         the whole value, when it is a URL: a push notification's deep link
// Only http:// and https:// URLs are tracked (never mailto:, tel:, or a link to the gateway itself, such as an
// unsubscribe page). A URL that appears several times is one link with one index: the index is its place in
// the order the URLs first appear, over the fields in their order.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tayori::links {

struct TrackedContent {
  std::vector<std::pair<std::string, std::string>> fields;  // the content with its links rewritten
  std::vector<std::string> targets;                         // the original URLs, by link index
};

// `tracked(index, url)` returns the URL to put in place of `url`; `own_prefix` is the gateway's public URL,
// whose links are left alone.
TrackedContent track_clicks(const std::vector<std::pair<std::string, std::string>>& fields,
                            const std::function<std::string(size_t index, const std::string& url)>& tracked,
                            std::string_view own_prefix);

// An http:// or https:// URL (the scheme in any case, RFC 3986 §3.1): the only links tracked and redirected to.
bool is_web_url(std::string_view s);

// The URLs standing in plain text: an http(s) scheme, then the characters RFC 3986 §2 allows in a URI, up to
// the first other one (whitespace, '<', '"', any non-ASCII byte such as a Japanese particle right after the
// URL), without trailing sentence punctuation or an unbalanced ')'. Offsets and lengths into `text`.
std::vector<std::pair<size_t, size_t>> urls_in_text(std::string_view text);

// The html field with an open pixel (a 1x1 image at `pixel_url`) before its </body>, or at its end; the
// other fields as they are. Nothing when there is no html field: only e-mail's HTML can load an image.
std::vector<std::pair<std::string, std::string>> with_open_pixel(std::vector<std::pair<std::string, std::string>> fields,
                                                                  const std::string& pixel_url);

// Who fetched a tracked link: true for the automated fetchers that open every link of a message to inspect it
// (mail security scanners, link-preview bots), whose fetch is not the recipient's click. Matched on the
// User-Agent; docs/operator-guide.md ("Click tracking") lists the names and what cannot be told apart.
bool is_link_scanner(std::string_view user_agent);

}  // namespace tayori::links
