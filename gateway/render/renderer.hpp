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

struct RenderResult {
  std::optional<std::vector<std::pair<std::string, std::string>>> fields;  // set on success
  std::string error;   // e.g. "missing variable \"name\" in templates/welcome/email.ja.yaml field subject"
  std::string source;  // which template or "inline"
};

// The names a Mustache text uses as plain variables ({{x}}, {{{x}}}, {{&x}}, with spaces inside the braces
// allowed); sections, inverted sections, partials and comments are not variables. A single pass over the
// text, with no recursion: template text comes from users and may be long.
std::set<std::string> variable_names(std::string_view text);

// Renders the message for `channel`. With `missing_is_error`, a variable the data does not define fails
// the render with its name; otherwise it renders empty.
RenderResult render(const core::Message& message, const std::string& channel, const TemplateStore* templates,
                    bool missing_is_error);

}  // namespace tayori::render
