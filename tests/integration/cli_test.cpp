// The command line as an operator meets it: check-config's FILE:LINE:COL messages, serve refusing a bad
// config with the same messages, plugins listing what is loaded, version.
#include <gtest/gtest.h>

#include "harness.hpp"

#include <tayori/plugin.h>

namespace tayori::testing {
namespace {

struct CliRun {
  int exit_code;
  std::string output;  // stdout and stderr together
};

CliRun run(const std::string& args, const std::string& env = "TAYORI_API_KEY=k") {
  std::string command = "env " + env + " " TAYORI_BINARY " " + args + " 2>&1";
  FILE* p = ::popen(command.c_str(), "r");
  std::string out;
  char buf[512];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

const char* kBadConfig =
    "server:\n"
    "  listen: 127.0.0.1:0\n"
    "  threads: many\n"
    "api_keys:\n"
    "  - name: ma\n"
    "    key_env: MISSING_TAYORI_KEY\n"
    "plugin_dirs: [" TAYORI_PLUGIN_DIR "]\n"
    "channels:\n"
    "  - name: email\n"
    "    plugin: file_sink\n"
    "    settings:\n"
    "      path: out.jsonl\n"
    "      colour: blue\n";

// kBadConfig with the server and api_keys problems mended, so that only the plugin's setting is wrong.
std::string config_with_only_bad_settings() {
  std::string yaml = kBadConfig;
  yaml.replace(yaml.find("  threads: many\n"), 16, "");
  yaml.replace(yaml.find("MISSING_TAYORI_KEY"), 18, "TAYORI_API_KEY");
  return yaml;
}

TEST(Cli, CheckConfigReportsEveryProblemWithItsPlace) {
  TempDir dir;
  std::string path = dir.file("bad.yaml");
  write_file(path, kBadConfig);
  CliRun r = run("check-config " + path);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find(path + ":3:12: server.threads: must be an integer"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(path + ":6:14: api_keys[0].key_env: environment variable MISSING_TAYORI_KEY is not set"),
            std::string::npos)
      << r.output;
}

TEST(Cli, CheckConfigReportsPluginSettingProblems) {
  TempDir dir;
  std::string path = dir.file("bad-settings.yaml");
  write_file(path, config_with_only_bad_settings());
  CliRun r = run("check-config " + path);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find(path + ":12:7: channels[0].settings.colour: unknown setting for plugin file_sink"),
            std::string::npos)
      << r.output;
}

TEST(Cli, ServeRefusesAnInvalidConfig) {
  TempDir dir;
  std::string path = dir.file("bad.yaml");
  write_file(path, kBadConfig);
  CliRun r = run("serve --config " + path + " --data-dir " + dir.file("data"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("server.threads: must be an integer"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("data"))) << "nothing is created for a refused config";
}

TEST(Cli, PluginsListsLoadedPluginsWithTheirSettings) {
  TempDir dir;
  std::string path = dir.file("ok.yaml");
  std::string yaml = config_with_only_bad_settings();
  yaml.replace(yaml.find("      colour: blue\n"), 19, "");
  write_file(path, yaml);
  CliRun check = run("check-config " + path);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  CliRun r = run("plugins --config " + path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("channel email: plugin file_sink 1.0.0 (ABI 1."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("setting path (path, required)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("setting fsync (bool, default false)"), std::string::npos) << r.output;
}

TEST(Cli, VersionAndUsage) {
  CliRun v = run("version");
  EXPECT_EQ(v.exit_code, 0);
  // The ABI of the header the binary was built with, which is the one the loader enforces.
  const std::string abi = "(plugin ABI " + std::to_string(TAYORI_ABI_MAJOR) + "." + std::to_string(TAYORI_ABI_MINOR) + ")";
  EXPECT_NE(v.output.find(abi), std::string::npos) << v.output;
  CliRun bad = run("frobnicate");
  EXPECT_EQ(bad.exit_code, 64);
  EXPECT_NE(bad.output.find("usage:"), std::string::npos);
}

}  // namespace
}  // namespace tayori::testing
