// The plugins' exported symbols (docs/architecture.md §6.3), read by `nm` run as a child process: every plugin
// and SDK fixture exports the entry and nothing else. (The loader's refusals of broken plugins, in-process:
// tests/unit/plugin/plugin_loader_test.cpp.) Without nm (binutils) these tests skip, and fail under CI
// (required_tool.hpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tayori/plugin.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "required_tool.hpp"

namespace tayori::plugin {
namespace {

std::string fixture(const std::string& name) { return std::string(TAYORI_FIXTURE_DIR) + "/" + name + ".so"; }

// Plugins are built with hidden visibility and export only the entry (docs/architecture.md §6.3): anything else is a
// symbol another library could bind to. Returns the dynamic symbols `path` defines, or nullopt without nm.
std::optional<std::vector<std::string>> exported_symbols(const std::string& path) {
  std::string command = "nm -D --defined-only --format=posix '" + path + "' 2>/dev/null";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::vector<std::string> names;
  char line[4096];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    std::string s(line);
    names.push_back(s.substr(0, s.find(' ')));
  }
  int status = ::pclose(pipe);
  if (status != 0) return std::nullopt;
  return names;
}

TEST(PluginSymbols, SdkFixturesExportOnlyTheEntry) {
  for (const char* name : {"fixture_scripted", "fixture_throwing", "fixture_typed_settings", "fixture_batch"}) {
    auto symbols = exported_symbols(fixture(name));
    TAYORI_REQUIRE_TOOL(symbols, "nm is not available (binutils)");
    EXPECT_THAT(*symbols, ::testing::ElementsAre(TAYORI_PLUGIN_ENTRY_SYMBOL)) << name;
  }
}

// Without the version script in tayori_add_plugin, file_sink.so would also export libstdc++ template
// instantiations and GNU-unique statics, which -fvisibility=hidden cannot hide.
TEST(PluginSymbols, FileSinkExportsOnlyTheEntry) {
  auto symbols = exported_symbols(std::string(TAYORI_PLUGIN_DIR) + "/file_sink.so");
  TAYORI_REQUIRE_TOOL(symbols, "nm is not available (binutils)");
  EXPECT_THAT(*symbols, ::testing::ElementsAre(TAYORI_PLUGIN_ENTRY_SYMBOL));
}

}  // namespace
}  // namespace tayori::plugin
