// docs/plugin-author-guide.md promises authors the loader's own words: its table of refusals quotes what
// Library::open says of each broken plugin. This loads the deliberately broken fixtures
// (tests/fixtures/plugins/) and checks that every message, without the `incompatible plugin "PATH": `
// prefix that names the file, is in the guide exactly, so the two cannot drift apart.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "plugin/channel.hpp"

namespace tayori::plugin {
namespace {

std::string guide() {
  std::ifstream in(std::string(TAYORI_DOCS_DIR) + "/plugin-author-guide.md");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(PluginAuthorGuide, ItsTableOfRefusalsQuotesTheLoadersRealMessages) {
  const std::string text = guide();
  ASSERT_FALSE(text.empty());
  for (const char* name : {"fixture_missing_entry", "fixture_null_entry", "fixture_wrong_major", "fixture_newer_minor",
                           "fixture_short_struct", "fixture_bad_name", "fixture_no_delivery", "fixture_half_sans_io",
                           "fixture_batch_without_builder", "fixture_batch_without_pair",
                           "fixture_bad_setting_spec"}) {
    const std::string path = std::string(TAYORI_FIXTURE_DIR) + "/" + name + ".so";
    auto opened = Library::open(path);
    ASSERT_FALSE(opened) << name;
    const std::string& error = opened.error().message;
    const std::string prefix = "incompatible plugin \"" + path + "\": ";
    ASSERT_EQ(error.rfind(prefix, 0), 0u) << error;
    const std::string message = error.substr(prefix.size());
    EXPECT_NE(text.find("`" + message + "`"), std::string::npos) << name << " says, and the guide does not quote:\n" << message;
  }
  // A file dlopen refuses is reported with dlopen's own words, which the guide cannot quote: it shows the form.
  auto opened = Library::open(std::string(TAYORI_FIXTURE_DIR) + "/fixture_unresolved_symbol.so");
  ASSERT_FALSE(opened);
  const std::string& error = opened.error().message;
  EXPECT_EQ(error.rfind("cannot load plugin \"", 0), 0u) << error;
  EXPECT_NE(text.find("`cannot load plugin \"PATH\": <dlerror text>`"), std::string::npos);
}

}  // namespace
}  // namespace tayori::plugin
