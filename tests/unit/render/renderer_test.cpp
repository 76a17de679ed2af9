#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "render/renderer.hpp"

namespace tayori::render {
namespace {

namespace fs = std::filesystem;

class Templates : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tayori-tpl-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "welcome");
    write("welcome/default.yaml", "text: \"Welcome, {{name}}!\"\n");
    write("welcome/default.ja.yaml", "text: \"{{name}}様、ようこそ\"\n");
    write("welcome/email.ja.yaml",
          "subject: \"{{name}}様、ようこそ\"\ntext: \"{{name}}様\"\nhtml: \"<p>{{name}}様</p>\"\n");
    write("welcome/sms.yaml", "text: \"Hi {{name}}\"\n");
    std::vector<std::string> errors;
    store_ = TemplateStore::load(dir_.string(), errors);
    ASSERT_TRUE(errors.empty()) << errors[0];
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& rel, const std::string& text) { std::ofstream(dir_ / rel) << text; }

  static core::Message message(const std::string& locale) {
    core::Message m;
    m.id = "m-1";
    m.recipient.id = "r-1";
    m.recipient.locale = locale;
    m.template_name = "welcome";
    m.data = {{"name", "<花子>"}};
    return m;
  }
  static std::map<std::string, std::string> fields(const Result<Rendered>& r) {
    return {r->fields.begin(), r->fields.end()};
  }

  fs::path dir_;
  std::unique_ptr<TemplateStore> store_;
};

TEST_F(Templates, PicksTheChannelVariantInTheRecipientsLanguage) {
  Result<Rendered> r = render(message("ja-JP"), "email", store_.get(), true);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->source, "welcome/email.ja");
  auto f = fields(r);
  EXPECT_EQ(f["subject"], "<花子>様、ようこそ");        // text fields are not escaped
  EXPECT_EQ(f["html"], "<p>&lt;花子&gt;様</p>");       // only HTML is
}

TEST_F(Templates, FallsBackFromLocaleToLanguageToDefault) {
  EXPECT_EQ(render(message("ja-JP"), "push", store_.get(), true)->source, "welcome/default.ja");
  EXPECT_EQ(render(message("en-US"), "sms", store_.get(), true)->source, "welcome/sms");
  EXPECT_EQ(render(message(""), "push", store_.get(), true)->source, "welcome/default");
  // The language outranks the channel: a Japanese SMS reader gets default.ja, not English sms.yaml.
  EXPECT_EQ(render(message("ja"), "sms", store_.get(), true)->source, "welcome/default.ja");
}

TEST_F(Templates, AMissingVariableIsAnErrorThatNamesIt) {
  core::Message m = message("en");
  m.data = core::Json::object();
  Result<Rendered> r = render(m, "sms", store_.get(), true);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("missing variable \"name\""), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("welcome/sms"), std::string::npos) << r.error().message;
  Result<Rendered> lenient = render(m, "sms", store_.get(), false);
  ASSERT_TRUE(lenient.ok());
  EXPECT_EQ(fields(lenient)["text"], "Hi ");
}

TEST_F(Templates, InlineContentAndPerChannelVariants) {
  core::Message m = message("ja");
  m.template_name.clear();
  m.content = {{"text", "{{name}}さん、こんにちは"}, {"subject", "お知らせ"}};
  m.content_variants["sms"] = {{"text", "SMS: {{name}}"}};
  Result<Rendered> email = render(m, "email", nullptr, true);
  ASSERT_TRUE(email.ok()) << email.error().message;
  EXPECT_EQ(email->source, "inline");
  EXPECT_EQ(fields(email)["text"], "<花子>さん、こんにちは");
  Result<Rendered> sms = render(m, "sms", nullptr, true);
  EXPECT_EQ(fields(sms)["text"], "SMS: <花子>");
  EXPECT_EQ(fields(sms)["subject"], "お知らせ");
}

TEST_F(Templates, SectionsOverMissingNamesAreFalseNotErrors) {
  core::Message m = message("en");
  m.template_name.clear();
  m.content = {{"text", "{{#vip}}VIP {{/vip}}{{name}}; {{#items}}{{sku}} {{/items}}"}};
  m.data = {{"name", "Hanako"}, {"items", {{{"sku", "A1"}}, {{"sku", "B2"}}}}};
  Result<Rendered> r = render(m, "sms", nullptr, true);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(fields(r)["text"], "Hanako; A1 B2 ");
}

TEST(TemplateStoreLoad, ReportsBrokenFilesByName) {
  fs::path dir = fs::temp_directory_path() / ("tayori-tpl-bad-" + std::to_string(::getpid()));
  fs::create_directories(dir / "promo");
  std::ofstream(dir / "promo" / "email.yaml") << "subject: \"{{#open}} never closed\"\n";
  std::ofstream(dir / "promo" / "Email Copy.yaml") << "text: x\n";
  std::vector<std::string> errors;
  TemplateStore::load(dir.string(), errors);
  fs::remove_all(dir);
  ASSERT_EQ(errors.size(), 2u);
  std::string all = errors[0] + "\n" + errors[1];
  EXPECT_NE(all.find("email.yaml: field subject"), std::string::npos) << all;
  EXPECT_NE(all.find("Email Copy.yaml: not named"), std::string::npos) << all;
}

// The names a text uses as plain variables, by the rule the std::regex it replaced stated:
// \{\{\{?\s*&?\s*([A-Za-z0-9_.]+)\s*\}?\}\}, found left to right without overlapping.
TEST(VariableNames, PlainVariablesOnly) {
  using Names = std::set<std::string>;
  struct Case {
    const char* text;
    Names names;
  };
  const Case cases[] = {
      {"Hi {{name}}", {"name"}},
      {"{{ name }} and {{{raw}}} and {{& amp }} and {{{ spaced }}}", {"name", "raw", "amp", "spaced"}},
      {"{{user.first_name}} {{coupon_2}}", {"user.first_name", "coupon_2"}},
      {"{{#items}}{{label}}{{/items}}{{^none}}-{{/none}}", {"label"}},  // sections are not variables
      {"{{! a comment }}{{> partial}}{{=<% %>=}}", {}},
      {"{{{x}}", {"x"}},     // the third closing brace is optional
      {"{{x}}}", {"x"}},
      {"{{{{y}}", {"y"}},    // a stray brace before a tag
      {"{{ }} {{bad-name}} {{open", {}},
      {"no tags at all", {}},
      {"", {}},
  };
  for (const auto& c : cases) EXPECT_EQ(variable_names(c.text), c.names) << c.text;
}

// libstdc++'s std::regex recursed once per character of the text it scanned, so a long template could overflow
// the stack (issue "Hostile input"); the scanner is a loop.
TEST(VariableNames, ALongTextIsScannedWithoutRecursion) {
  std::string text;
  while (text.size() < 4 * 1024 * 1024) text += "filler text without tags, then {{name}} and {{#s}}x{{/s}}. ";
  EXPECT_EQ(variable_names(text), (std::set<std::string>{"name"}));
}

TEST_F(Templates, TextWithoutTagsIsItselfAndTextWithTagsIsRendered) {
  core::Message m = message("en");
  m.template_name.clear();
  m.content = {{"subject", "Plain {braces} stay"}, {"text", "Hi {{name}}"}};
  Result<Rendered> r = render(m, "sms", nullptr, true);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto f = fields(r);
  EXPECT_EQ(f["subject"], "Plain {braces} stay");
  EXPECT_EQ(f["text"], "Hi <花子>");
}

// Render limits (issue "Hostile input"): the template and the data both come from the upstream, and sections
// over lists multiply. Each limit fails the render with an error naming the field and the limit.
class RenderLimitsTest : public ::testing::Test {
 protected:
  static core::Message inline_message(core::Json data, std::map<std::string, std::string> content) {
    core::Message m;
    m.id = "m-1";
    m.recipient.id = "r-1";
    m.data = std::move(data);
    m.content = std::move(content);
    return m;
  }
  static std::string nested(int depth, const std::string& inner) {
    std::string t;
    for (int i = 0; i < depth; ++i) t += "{{#a}}";
    t += inner;
    for (int i = 0; i < depth; ++i) t += "{{/a}}";
    return t;
  }
  static core::Json list_of(size_t n) { return core::Json(std::vector<core::Json>(n, core::Json::object())); }
};

TEST_F(RenderLimitsTest, NestedSectionsOverListsStopAtTheWorkLimit) {
  // 20^6 = 64 million copies of "x": without a limit this renders (64 MB here, 10^10 copies with ten
  // sections over ten items) on the dispatcher's thread.
  Result<Rendered> r = render(inline_message({{"a", list_of(20)}}, {{"text", nested(6, "x")}}), "sms", nullptr, true);
  ASSERT_FALSE(r.ok()) << "rendered " << r->fields.front().second.size() << " bytes";
  EXPECT_EQ(r.error().message, "field text of inline takes more than " + std::to_string(RenderLimits::kMaxWork) +
                                   " units of work (sections over lists multiply)");
}

TEST_F(RenderLimitsTest, SectionsNestAtMostEightDeep) {
  core::Json data = {{"a", list_of(1)}};
  Result<Rendered> ok =
      render(inline_message(data, {{"text", nested(RenderLimits::kMaxSectionDepth, "x")}}), "sms", nullptr, true);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->fields.front().second, "x");
  Result<Rendered> deep =
      render(inline_message(data, {{"text", nested(RenderLimits::kMaxSectionDepth + 1, "x")}}), "sms", nullptr, true);
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().message, "field text of inline nests sections deeper than 8");
}

TEST_F(RenderLimitsTest, AFieldRendersToAtMostOneMebibyte) {
  core::Json data = {{"s", std::string(64 * 1024, 'y')}, {"a", list_of(16)}};
  Result<Rendered> ok = render(inline_message(data, {{"text", "{{#a}}{{s}}{{/a}}"}}), "sms", nullptr, true);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->fields.front().second.size(), RenderLimits::kMaxFieldBytes);
  data["a"] = list_of(17);
  Result<Rendered> big = render(inline_message(data, {{"text", "{{#a}}{{s}}{{/a}}"}}), "sms", nullptr, true);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().message, "field text of inline renders to more than 1048576 bytes");
}

TEST_F(RenderLimitsTest, AChannelsContentRendersToAtMostTwoMebibytes) {
  core::Json data = {{"s", std::string(64 * 1024, 'y')}, {"a", list_of(16)}};
  const std::string mib = "{{#a}}{{s}}{{/a}}";
  Result<Rendered> r =
      render(inline_message(data, {{"html", mib}, {"subject", "hi"}, {"text", mib}}), "email", nullptr, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "the content of inline for channel email renders to more than 2097152 bytes");
}

TEST_F(RenderLimitsTest, PartialsAreRefusedSoDataIsNeverATemplate) {
  // Without the refusal, kainjow renders the data string as a template: this one includes itself for ever.
  Result<Rendered> r = render(inline_message({{"p", "{{>p}}"}}, {{"text", "{{>p}}"}}), "sms", nullptr, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "field text of inline uses the partial {{> p}}: partials are not supported");
}

}  // namespace
}  // namespace tayori::render
