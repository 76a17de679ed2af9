// The renderer (renderer.hpp): templates loaded from their folder (TemplateStore::load), the variant and
// locale chosen per channel, and Mustache rendered with caps on output size and template complexity.
// Workers call it after clearance; :simulate too.
#include "render/renderer.hpp"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <kainjow/mustache.hpp>
#include <regex>
#include <set>
#include <stdexcept>

namespace tayori::render {

namespace mustache = kainjow::mustache;

std::unique_ptr<TemplateStore> TemplateStore::load(const std::string& dir, std::vector<std::string>& errors) {
  namespace fs = std::filesystem;
  auto store = std::make_unique<TemplateStore>();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    errors.push_back(dir + ": not a folder");
    return store;
  }
  static const std::regex kFile("^([a-z][a-z0-9_]*)(?:\\.([A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*))?\\.ya?ml$");
  for (const auto& t : fs::directory_iterator(dir)) {
    if (!t.is_directory()) continue;
    std::string name = t.path().filename().string();
    for (const auto& f : fs::directory_iterator(t.path())) {
      std::string file = f.path().filename().string();
      std::smatch match;
      if (!std::regex_match(file, match, kFile)) {
        errors.push_back(f.path().string() + ": not named <channel|default>[.<locale>].yaml");
        continue;
      }
      try {
        YAML::Node root = YAML::LoadFile(f.path().string());
        if (!root.IsMap()) {
          errors.push_back(f.path().string() + ": must be a mapping of content field to text");
          continue;
        }
        Fields fields;
        for (auto it = root.begin(); it != root.end(); ++it) {
          if (!it->second.IsScalar()) {
            errors.push_back(f.path().string() + ":" + std::to_string(it->second.Mark().line + 1) + ": field " +
                             it->first.as<std::string>() + " must be text");
            continue;
          }
          // Compile now so a broken template is refused at start, not at the first delivery.
          mustache::mustache check(it->second.Scalar());
          if (!check.is_valid()) {
            errors.push_back(f.path().string() + ": field " + it->first.as<std::string>() + ": " + check.error_message());
            continue;
          }
          fields[it->first.as<std::string>()] = it->second.Scalar();
        }
        std::string locale = match[2].matched ? match[2].str() : "";
        for (char& c : locale) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        store->templates_[name][match[1].str() + "." + locale] = std::move(fields);
      } catch (const YAML::Exception& e) {
        errors.push_back(f.path().string() + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
      }
    }
  }
  return store;
}

std::vector<std::string> TemplateStore::names() const {
  std::vector<std::string> out;
  for (const auto& [k, _] : templates_) out.push_back(k);
  return out;
}

namespace {

// ja-JP -> {"ja-jp", "ja", ""}: the locale, its language, then the default.
std::vector<std::string> locale_chain(std::string locale) {
  for (char& c : locale) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::vector<std::string> chain;
  while (!locale.empty()) {
    chain.push_back(locale);
    auto dash = locale.rfind('-');
    locale = dash == std::string::npos ? "" : locale.substr(0, dash);
  }
  chain.push_back("");
  return chain;
}

mustache::data to_data(const core::Json& j) {
  switch (j.type()) {
    case core::Json::value_t::object: {
      mustache::data d{mustache::data::type::object};
      for (auto it = j.begin(); it != j.end(); ++it) d.set(it.key(), to_data(*it));
      return d;
    }
    case core::Json::value_t::array: {
      mustache::data d{mustache::data::type::list};
      for (const auto& e : j) d.push_back(to_data(e));
      return d;
    }
    case core::Json::value_t::string: return mustache::data(j.get<std::string>());
    case core::Json::value_t::boolean: return j.get<bool>() ? mustache::data::type::bool_true : mustache::data::type::bool_false;
    case core::Json::value_t::null: return mustache::data::type::bool_false;
    default: return mustache::data(j.dump());
  }
}

// A limit of RenderLimits exceeded mid-render; what() names the limit.
struct LimitExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The work left for one message's render, shared by its fields (RenderLimits::kMaxWork).
struct Budget {
  size_t left = RenderLimits::kMaxWork;
  void spend(size_t units) {
    if (units > left)
      throw LimitExceeded("takes more than " + std::to_string(RenderLimits::kMaxWork) +
                          " units of work (sections over lists multiply)");
    left -= units;
  }
};

// A context that remembers the names it could not resolve, so a missing variable can be named, and that
// counts the render's work and section depth as kainjow calls it (every lookup and every section pass goes
// through get and push), throwing LimitExceeded out of the render when a limit is passed.
class RecordingContext : public mustache::context<std::string> {
 public:
  RecordingContext(const mustache::data* root, Budget& budget, size_t template_bytes)
      : mustache::context<std::string>(root), budget_(budget), pass_cost_(1 + template_bytes) {}
  const mustache::data* get(const std::string& name) const override {
    const mustache::data* d = mustache::context<std::string>::get(name);
    if (d == nullptr) missing.insert(name);
    budget_.spend(1 + (d != nullptr && d->is_string() ? d->string_value().size() : 0));
    return d;
  }
  const mustache::data* get_partial(const std::string& name) const override {
    throw LimitExceeded("uses the partial {{> " + name + "}}: partials are not supported");
  }
  void push(const mustache::data* data) override {
    if (depth_ == RenderLimits::kMaxSectionDepth)
      throw LimitExceeded("nests sections deeper than " + std::to_string(RenderLimits::kMaxSectionDepth));
    budget_.spend(pass_cost_);
    mustache::context<std::string>::push(data);
    ++depth_;
  }
  void pop() override {
    mustache::context<std::string>::pop();
    --depth_;
  }
  mutable std::set<std::string> missing;

 private:
  Budget& budget_;
  size_t pass_cost_;
  int depth_ = 0;  // the root, pushed by the base's constructor, is not a section
};

}  // namespace

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

// A variable tag starting at `at` ("{{" there), with or without a third opening brace: its name and where it
// ends, or nothing.
std::optional<std::pair<std::string_view, size_t>> variable_tag(std::string_view t, size_t at, bool triple) {
  size_t i = at + 2;
  if (triple) {
    if (i >= t.size() || t[i] != '{') return std::nullopt;
    ++i;
  }
  while (i < t.size() && is_space(t[i])) ++i;
  if (i < t.size() && t[i] == '&') ++i;
  while (i < t.size() && is_space(t[i])) ++i;
  size_t name = i;
  while (i < t.size() && is_name_char(t[i])) ++i;
  if (i == name) return std::nullopt;
  size_t name_end = i;
  while (i < t.size() && is_space(t[i])) ++i;
  // "}}}" or "}}": a third closing brace is optional whatever the opening was.
  if (t.substr(i, 3) == "}}}") return std::pair{t.substr(name, name_end - name), i + 3};
  if (t.substr(i, 2) == "}}") return std::pair{t.substr(name, name_end - name), i + 2};
  return std::nullopt;
}

}  // namespace

std::set<std::string> variable_names(std::string_view text) {
  std::set<std::string> out;
  size_t at = text.find("{{");
  while (at != std::string_view::npos) {
    auto tag = variable_tag(text, at, true);
    if (!tag) tag = variable_tag(text, at, false);
    if (tag) out.emplace(tag->first);
    at = text.find("{{", tag ? tag->second : at + 1);
  }
  return out;
}

const Fields* TemplateStore::find(const std::string& name, const std::string& channel, const std::string& locale,
                                  std::string& source) const {
  auto t = templates_.find(name);
  if (t == templates_.end()) return nullptr;
  // The recipient's language matters more than a channel-specific wording: try every variant in a
  // locale before falling back to a less specific locale.
  for (const auto& loc : locale_chain(locale)) {
    for (const std::string& variant : {channel, std::string("default")}) {
      auto f = t->second.find(variant + "." + loc);
      if (f != t->second.end()) {
        source = name + "/" + variant + (loc.empty() ? "" : "." + loc);
        return &f->second;
      }
    }
  }
  return nullptr;
}

Result<Rendered> render(const core::Message& m, const std::string& channel, const TemplateStore* templates,
                        bool missing_is_error) {
  Rendered result;
  auto fail = [&m](std::string why) {
    return Error(ErrorCode::invalid, std::move(why), m.template_name.empty() ? "/content" : "/template");
  };
  Fields source_fields;
  if (!m.template_name.empty()) {
    const Fields* f = templates ? templates->find(m.template_name, channel, m.recipient.locale, result.source) : nullptr;
    if (f == nullptr) {
      return fail("template \"" + m.template_name + "\" has no variant for channel " + channel + " or default");
    }
    source_fields = *f;
  } else {
    result.source = "inline";
  }
  // Inline content overrides (or, without a template, is) the fields; a channel's variant overrides both.
  for (const auto& [k, v] : m.content) source_fields[k] = v;
  auto variant = m.content_variants.find(channel);
  if (variant != m.content_variants.end())
    for (const auto& [k, v] : variant->second) source_fields[k] = v;

  if (source_fields.empty()) {
    return fail("no content for channel " + channel + " (only other channels have a variant)");
  }
  std::optional<mustache::data> root;  // built for the first field that has a tag
  Budget budget;

  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [field, text] : source_fields) {
    // Text without a tag renders as itself (most inline content): no parse, no data to build.
    if (text.find("{{") == std::string::npos) {
      out.emplace_back(field, text);
      continue;
    }
    if (!root) {
      core::Json data = m.data;
      data["recipient"] = {{"id", m.recipient.id}, {"locale", m.recipient.locale}};
      data["message"] = {{"id", m.id}};
      root = to_data(data);
    }
    mustache::mustache tmpl(text);
    if (!tmpl.is_valid()) {
      return fail("field " + field + " of " + result.source + ": " + tmpl.error_message());
    }
    // HTML-escape only where the output is HTML (the email html part); elsewhere "<" is just text.
    if (field != "html") tmpl.set_custom_escape([](const std::string& s) { return s; });
    RecordingContext ctx(&*root, budget, text.size());
    std::string rendered;
    try {
      rendered = tmpl.render(ctx);
    } catch (const LimitExceeded& e) {
      return fail("field " + field + " of " + result.source + " " + e.what());
    }
    if (rendered.size() > RenderLimits::kMaxFieldBytes) {
      return fail("field " + field + " of " + result.source + " renders to more than " +
                  std::to_string(RenderLimits::kMaxFieldBytes) + " bytes");
    }
    if (missing_is_error) {
      for (const auto& name : variable_names(text)) {
        if (ctx.missing.count(name) || ctx.missing.count(name.substr(0, name.find('.')))) {
          return fail("missing variable \"" + name + "\" in field " + field + " of " + result.source);
        }
      }
    }
    out.emplace_back(field, std::move(rendered));
  }
  size_t total = 0;
  for (const auto& [field, text] : out) total += text.size();
  if (total > RenderLimits::kMaxMessageBytes) {
    return fail("the content of " + result.source + " for channel " + channel + " renders to more than " +
                std::to_string(RenderLimits::kMaxMessageBytes) + " bytes");
  }
  result.fields = std::move(out);
  return result;
}

}  // namespace tayori::render
