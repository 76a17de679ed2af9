// Click tracking's pure parts (tracking.hpp): finding the links of a rendered message and rewriting them, and
// telling a link scanner's fetch from a recipient's click.
#include "links/tracking.hpp"

#include <tayori/text.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>

namespace tayori::links {

namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && text::ascii_lower(s.substr(0, prefix.size())) == prefix;
}

// RFC 3986 §2.2-2.3: unreserved, reserved and '%' of a percent-encoding.
bool uri_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("-._~:/?#[]@!$&'()*+,;=%").find(c) != std::string_view::npos;
}

// The character references an href value may hold (HTML Living Standard §13.5): the named ones a URL needs and
// numeric ones. Anything else is left as written.
std::string html_unescape(std::string_view s) {
  static const std::pair<std::string_view, char> named[] = {
      {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}, {"&lt;", '<'}, {"&gt;", '>'}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '&') {
      bool done = false;
      for (const auto& [ref, c] : named)
        if (s.substr(i, ref.size()) == ref) {
          out += c;
          i += ref.size();
          done = true;
          break;
        }
      if (done) continue;
      if (s.substr(i, 2) == "&#") {
        const bool hex = i + 2 < s.size() && (s[i + 2] == 'x' || s[i + 2] == 'X');
        size_t j = i + (hex ? 3 : 2);
        unsigned value = 0;
        while (j < s.size() && j - i < 10 && std::isxdigit(static_cast<unsigned char>(s[j])) &&
               (hex || std::isdigit(static_cast<unsigned char>(s[j])))) {
          value = value * (hex ? 16 : 10) + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(s[j]))
                                                                      ? s[j] - '0'
                                                                      : (s[j] | 0x20) - 'a' + 10);
          ++j;
        }
        if (j < s.size() && s[j] == ';' && value > 0 && value < 0x80) {
          out += static_cast<char>(value);
          i = j + 1;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return out;
}

// Assigns link indexes in order of first appearance and makes each tracked URL once.
class Links {
 public:
  Links(const std::function<std::string(size_t, const std::string&)>& tracked, std::string_view own_prefix)
      : tracked_(tracked), own_prefix_(own_prefix) {}
  // The replacement of `url`, or nullopt when it is not to be tracked.
  const std::string* replacement(const std::string& url) {
    if (!is_web_url(url) || (!own_prefix_.empty() && url.starts_with(own_prefix_))) return nullptr;
    auto [it, added] = by_url_.try_emplace(url);
    if (added) {
      it->second = tracked_(targets_.size(), url);
      targets_.push_back(url);
    }
    return &it->second;
  }
  std::vector<std::string> take_targets() { return std::move(targets_); }

 private:
  const std::function<std::string(size_t, const std::string&)>& tracked_;
  std::string_view own_prefix_;
  std::map<std::string, std::string> by_url_;
  std::vector<std::string> targets_;
};

std::string rewrite_text(std::string_view text, Links& links) {
  std::string out;
  size_t at = 0;
  for (auto [start, length] : urls_in_text(text)) {
    out.append(text.substr(at, start - at));
    const std::string url(text.substr(start, length));
    const std::string* tracked = links.replacement(url);
    out += tracked ? *tracked : url;
    at = start + length;
  }
  out.append(text.substr(at));
  return out;
}

// The href values of <a> and <area> start tags (HTML Living Standard §13.2.5.32-38 in small: a tag name, then
// attributes name[=value], the value quoted with " or ' or unquoted). Everything else is copied as it is.
std::string rewrite_html(std::string_view html, Links& links) {
  std::string out;
  size_t i = 0;
  while (i < html.size()) {
    size_t lt = html.find('<', i);
    if (lt == std::string_view::npos) break;
    size_t name_end = lt + 1;
    while (name_end < html.size() && std::isalnum(static_cast<unsigned char>(html[name_end]))) ++name_end;
    const std::string name = text::ascii_lower(html.substr(lt + 1, name_end - lt - 1));
    if (name != "a" && name != "area") {
      out.append(html.substr(i, name_end - i));
      i = name_end;
      continue;
    }
    out.append(html.substr(i, name_end - i));
    size_t j = name_end;
    while (j < html.size() && html[j] != '>') {
      // One attribute: its name, then perhaps '=' and a value.
      size_t attr = j;
      while (j < html.size() && std::isspace(static_cast<unsigned char>(html[j]))) ++j;
      size_t name_at = j;
      while (j < html.size() && html[j] != '=' && html[j] != '>' && !std::isspace(static_cast<unsigned char>(html[j])) &&
             !(html[j] == '/' && j + 1 < html.size() && html[j + 1] == '>'))
        ++j;
      const std::string attr_name = text::ascii_lower(html.substr(name_at, j - name_at));
      size_t k = j;
      while (k < html.size() && std::isspace(static_cast<unsigned char>(html[k]))) ++k;
      if (k >= html.size() || html[k] != '=') {
        out.append(html.substr(attr, (j == attr ? j + 1 : j) - attr));
        j = j == attr ? j + 1 : j;
        continue;
      }
      ++k;
      while (k < html.size() && std::isspace(static_cast<unsigned char>(html[k]))) ++k;
      char quote = k < html.size() && (html[k] == '"' || html[k] == '\'') ? html[k] : '\0';
      size_t value_at = quote ? k + 1 : k;
      size_t value_end = quote ? html.find(quote, value_at) : html.find_first_of(" \t\r\n>", value_at);
      if (value_end == std::string_view::npos) value_end = html.size();
      const std::string_view value = html.substr(value_at, value_end - value_at);
      const std::string* tracked = attr_name == "href" ? links.replacement(html_unescape(value)) : nullptr;
      out.append(html.substr(attr, value_at - attr));
      // A tracked URL is base64url and '.', '/', ':': nothing in it needs escaping in an attribute value.
      out += tracked ? *tracked : std::string(value);
      j = quote && value_end < html.size() ? value_end + 1 : value_end;
      if (quote && value_end < html.size()) out += quote;
    }
    i = j;
  }
  out.append(html.substr(std::min(i, html.size())));
  return out;
}

}  // namespace

bool is_web_url(std::string_view s) { return starts_with_ci(s, "http://") || starts_with_ci(s, "https://"); }

std::vector<std::pair<size_t, size_t>> urls_in_text(std::string_view text) {
  std::vector<std::pair<size_t, size_t>> found;
  const std::string lower = text::ascii_lower(text);  // schemes are case-insensitive (RFC 3986 §3.1)
  size_t i = 0;
  while (i < text.size()) {
    size_t at = lower.find("http", i);
    if (at == std::string_view::npos) break;
    // A scheme begins a word: "xhttp://" is not a URL of ours.
    const bool word_start = at == 0 || !std::isalnum(static_cast<unsigned char>(text[at - 1]));
    if (!word_start || !is_web_url(text.substr(at))) {
      i = at + 4;
      continue;
    }
    size_t end = at + (starts_with_ci(text.substr(at), "https://") ? 8 : 7);
    while (end < text.size() && uri_char(text[end])) ++end;
    // Sentence punctuation after a URL ends the sentence, not the URL; a ')' closes a parenthesis around it
    // unless the URL opened one itself (Wikipedia's "Foo_(bar)").
    while (end > at) {
      const char last = text[end - 1];
      if (std::string_view(".,;:!?'*").find(last) != std::string_view::npos) {
        --end;
      } else if (last == ')') {
        const std::string_view url = text.substr(at, end - at);
        if (std::count(url.begin(), url.end(), '(') >= std::count(url.begin(), url.end(), ')')) break;
        --end;
      } else {
        break;
      }
    }
    const size_t scheme_end = text.find("://", at) + 3;
    if (end > scheme_end) found.emplace_back(at, end - at);
    i = std::max(end, at + 4);
  }
  return found;
}

TrackedContent track_clicks(const std::vector<std::pair<std::string, std::string>>& fields,
                            const std::function<std::string(size_t, const std::string&)>& tracked,
                            std::string_view own_prefix) {
  Links links(tracked, own_prefix);
  TrackedContent out;
  for (const auto& [name, value] : fields) {
    if (name == "html") {
      out.fields.emplace_back(name, rewrite_html(value, links));
    } else if (name == "text" || name == "body") {
      out.fields.emplace_back(name, rewrite_text(value, links));
    } else if (name == "link") {
      const std::string* replacement = links.replacement(value);
      out.fields.emplace_back(name, replacement ? *replacement : value);
    } else {
      out.fields.emplace_back(name, value);
    }
  }
  out.targets = links.take_targets();
  return out;
}

std::vector<std::pair<std::string, std::string>> with_open_pixel(std::vector<std::pair<std::string, std::string>> fields,
                                                                  const std::string& pixel_url) {
  // alt="": screen readers skip it; the size and the style keep it from taking room in any client.
  const std::string img = "<img src=\"" + pixel_url + "\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">";
  for (auto& [name, value] : fields) {
    if (name != "html") continue;
    const size_t body_end = text::ascii_lower(value).rfind("</body");
    value.insert(body_end == std::string::npos ? value.size() : body_end, img);
  }
  return fields;
}

bool is_link_scanner(std::string_view user_agent) {
  // Products that fetch every link of a message before (or instead of) a person: mail security gateways
  // (Safe Links, URL Defense, Mimecast, Barracuda), link previews of chat and social apps, search crawlers.
  // Lower-case substrings of their User-Agent.
  static constexpr std::array<std::string_view, 22> kScanners = {
      "bot",         "crawler",     "spider",      "preview",      "scanner",      "slurp",
      "python-",     "curl/",       "wget/",       "go-http-client", "java/",      "okhttp",
      "headlesschrome", "barracuda", "proofpoint", "mimecast",     "safelinks",    "urldefense",
      "facebookexternalhit", "whatsapp", "skypeuripreview", "linkexpanding"};
  if (user_agent.empty()) return true;  // a browser always says what it is
  const std::string ua = text::ascii_lower(user_agent);
  for (std::string_view s : kScanners)
    if (ua.find(s) != std::string::npos) return true;
  return false;
}

}  // namespace tayori::links
