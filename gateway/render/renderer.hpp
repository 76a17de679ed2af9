// Personalised content: Mustache templates (kainjow::mustache) from a templates folder or inline in
// the message, per-channel variants and locale fallback (ja-JP -> ja -> default).
//
// Template files: <templates_dir>/<name>/<variant>[.<locale>].yaml, where <variant> is a channel name or
// "default", each a mapping of content field to Mustache text, e.g. templates/welcome/email.ja.yaml:
//   subject: "{{name}}様、ようこそ"
//   text: "..."
//   html: "<p>{{name}}様</p>"
// Only the `html` field is HTML-escaped; text fields (SMS, push, LINE, the email text part) are not.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "core/message.hpp"

namespace tayori::render {

using Fields = std::map<std::string, std::string>;

class TemplateStore {
 public:
  // Reads every template under `dir`. Errors (unreadable YAML, a non-string field) name the file.
  static std::unique_ptr<TemplateStore> load(const std::string& dir, std::vector<std::string>& errors);

  bool has(const std::string& name) const { return templates_.count(name) > 0; }
  // The best file for a channel and locale, with its name for messages; nullptr when none fits.
  const Fields* find(const std::string& name, const std::string& channel, const std::string& locale,
                     std::string& source) const;
  std::vector<std::string> names() const;

 private:
  // name -> "<variant>.<locale>" (locale may be empty: "<variant>.") -> fields
  std::map<std::string, std::map<std::string, Fields>> templates_;
};

// A message's content made for one channel.
struct Rendered {
  std::vector<std::pair<std::string, std::string>> fields;
  std::string source;  // which template ("welcome/email.ja") or "inline"
};

// The names a Mustache text uses as plain variables ({{x}}, {{{x}}}, {{&x}}, with spaces inside the braces
// allowed); sections, inverted sections, partials and comments are not variables. A single pass over the
// text, with no recursion: template text comes from users and may be long.
std::set<std::string> variable_names(std::string_view text);

// Limits on one render: the template and the data both come from the upstream, and sections over lists
// multiply (ten nested sections over a list of ten items make 10^10 copies), so a message could otherwise
// take the dispatcher's memory and time for ever. Each exceeded limit fails the render naming the field and
// the limit: a render error, so the message fails (render_error) instead of crash-looping the dispatcher.
struct RenderLimits {
  static constexpr int kMaxSectionDepth = 8;                 // sections open inside each other
  static constexpr size_t kMaxFieldBytes = 1 << 20;          // one rendered field
  static constexpr size_t kMaxMessageBytes = 2 << 20;        // all the fields of one channel's content
  // The work of one render, counted as it runs: a name looked up costs 1 plus the text it yields, each
  // pass through a section costs 1 plus the field's template length (the most literal text a pass can add).
  // A bound on time and on memory, not on output: it is a multiple of kMaxMessageBytes so that a template
  // well within the output limit is never refused for it.
  static constexpr size_t kMaxWork = 8 * kMaxMessageBytes;
};

// Renders the message for `channel`. With `missing_is_error`, a variable the data does not define fails
// the render with its name; otherwise it renders empty. Partials ({{> name}}) are refused: the only text
// they could name is the message's data, and data is never a template. A failure is ErrorCode::invalid, its
// message what failed ("missing variable \"name\" in field subject of welcome/email.ja"), its field the member of
// the message whose text it was: "/template", or "/content" for inline content.
Result<Rendered> render(const core::Message& message, const std::string& channel, const TemplateStore* templates,
                        bool missing_is_error);

}  // namespace tayori::render
