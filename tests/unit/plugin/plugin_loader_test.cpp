// The ABI suite, host side (docs/architecture.md §6.3, §6.10): plugin::Library::open must refuse every deliberately broken
// fixture in tests/fixtures/plugins loudly and precisely (naming the file, both versions, the missing
// symbol, dlopen's reason), a plugin built for a newer minor among them (§6.2), and plugin::build_registry must
// report settings problems at their YAML place ("test.yaml:LINE:COL: channels[0].settings.x: ...").
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "plugin/channel.hpp"
#include "transport/outbound_transport.hpp"
#include "required_tool.hpp"

namespace tayori::plugin {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string fixture(const std::string& name) { return std::string(TAYORI_FIXTURE_DIR) + "/" + name + ".so"; }

// "MAJOR.MINOR", as the loader's messages write an ABI version.
std::string abi(unsigned major, unsigned minor) { return std::to_string(major) + "." + std::to_string(minor); }

class PinnedClock final : public Clock {
 public:
  int64_t now_ms() const override { return 1'795'474'800'250; }  // 2026-11-23T23:00:00.250Z
};

// A fresh folder under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tayori-abi-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Opens a fixture that must be refused; returns the message after checking it names the file.
std::string refusal_of(const std::string& name) {
  auto lib = Library::open(fixture(name));
  if (lib) {
    ADD_FAILURE() << name << " was loaded but must be refused";
    return "";
  }
  // A plugin that cannot be trusted is the configuration's problem, not one that retrying solves.
  EXPECT_EQ(lib.error().code, ErrorCode::invalid);
  EXPECT_THAT(lib.error().message, HasSubstr("\"" + fixture(name) + "\"")) << "the message must name the file";
  return lib.error().message;
}

// True while `path` is mapped into this process (RTLD_NOLOAD opens nothing new).
bool still_loaded(const std::string& path) {
  void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (h == nullptr) return false;
  ::dlclose(h);
  return true;
}

// ---- Library::open: refusals -----------------------------------------------------------------

TEST(PluginLoader, RefusesWrongMajorNamingBothVersionsAndTheFile) {
  std::string error = refusal_of("fixture_wrong_major");
  EXPECT_THAT(error, HasSubstr("version mismatch"));
  EXPECT_THAT(error, HasSubstr("ABI " + abi(TAYORI_ABI_MAJOR, TAYORI_ABI_MINOR)));  // what the host speaks
  EXPECT_THAT(error, HasSubstr("ABI 2.0"));  // what the plugin was built for
}

TEST(PluginLoader, RefusesDescriptorShorterThanAbi10) {
  std::string error = refusal_of("fixture_short_struct");
  EXPECT_THAT(error, HasSubstr("shorter"));
  EXPECT_THAT(error, HasSubstr(std::to_string(offsetof(tayori_plugin, on_deliver)) + " bytes"));
  EXPECT_THAT(error, HasSubstr(std::to_string(TAYORI_PLUGIN_V1_0_SIZE) + " bytes"));
}

// A broken fixture the loader must refuse, and what its message must say besides the file's name.
struct Refusal {
  const char* fixture;
  std::vector<std::string> says;
};

class PluginLoaderRefuses : public ::testing::TestWithParam<Refusal> {};

TEST_P(PluginLoaderRefuses, NamingTheFileAndTheReason) {
  std::string error = refusal_of(GetParam().fixture);
  for (const std::string& part : GetParam().says) EXPECT_THAT(error, HasSubstr(part));
}

INSTANTIATE_TEST_SUITE_P(
    PluginLoader, PluginLoaderRefuses,
    ::testing::Values(Refusal{"fixture_missing_entry", {TAYORI_PLUGIN_ENTRY_SYMBOL}},  // the symbol it looked for
                      Refusal{"fixture_null_entry", {TAYORI_PLUGIN_ENTRY_SYMBOL, "NULL"}},
                      Refusal{"fixture_no_delivery", {"on_deliver", "on_build/on_classify"}},  // it can deliver nothing
                      Refusal{"fixture_half_sans_io", {"on_build and on_classify come as a pair"}},
                      Refusal{"fixture_batch_without_builder", {"batch_max is 500 but on_build_batch is NULL"}},
                      Refusal{"fixture_batch_without_pair", {"on_build_batch needs the on_build/on_classify pair"}},
                      Refusal{"fixture_bad_name", {"name", "[a-z][a-z0-9_]*"}}),  // a name outside lower snake case
    [](const ::testing::TestParamInfo<Refusal>& info) { return std::string(info.param.fixture); });

TEST(PluginLoader, RefusesSecretSettingWithADefault) {
  std::string error = refusal_of("fixture_bad_setting_spec");
  EXPECT_THAT(error, HasSubstr("setting api_token is a secret and cannot have a default"));
  EXPECT_THAT(error, ::testing::Not(HasSubstr("hunter2")));
}

TEST(PluginLoader, UnresolvedSymbolFailsAtLoadWithDlopensReason) {
  std::string error = refusal_of("fixture_unresolved_symbol");
  EXPECT_THAT(error, StartsWith("cannot load plugin"));
  // dlerror()'s own words, so an operator sees which symbol is missing (RTLD_NOW: now, not mid-delivery).
  EXPECT_THAT(error, HasSubstr("undefined symbol: tayori_fixture_symbol_nobody_defines"));
}

TEST(PluginLoader, MissingFileGivesDlopensReason) {
  TempDir dir;
  std::string path = dir.file("absent.so");
  auto lib = Library::open(path);
  ASSERT_FALSE(lib);
  EXPECT_THAT(lib.error().message, AllOf(HasSubstr("\"" + path + "\""), HasSubstr("No such file")));
}

TEST(PluginLoader, RefusedLibraryIsUnloaded) {
  ASSERT_FALSE(still_loaded(fixture("fixture_wrong_major")));
  ASSERT_FALSE(Library::open(fixture("fixture_wrong_major")));
  EXPECT_FALSE(still_loaded(fixture("fixture_wrong_major"))) << "a refused plugin's handle was leaked";
}

// ---- Library::open: a newer minor is refused (older minors load: abi_compat_test.cpp) ------------------

// A newer minor may rely on host behaviour this host would silently ignore (docs/architecture.md §6.2): the
// fixture is valid in every other way, and its appended tail callback would abort if anything called it.
TEST(PluginLoader, RefusesANewerMinorNamingBothVersionsAndWhatToDo) {
  const std::string host = abi(TAYORI_ABI_MAJOR, TAYORI_ABI_MINOR);
  EXPECT_EQ(refusal_of("fixture_newer_minor"),
            "incompatible plugin \"" + fixture("fixture_newer_minor") + "\": it was built for plugin ABI " +
                abi(TAYORI_ABI_MAJOR, TAYORI_ABI_MINOR + 1) + " but this host speaks " + host +
                "; build it against the " + host + " headers (the SDK this host installs) or upgrade Tayori");
  EXPECT_FALSE(still_loaded(fixture("fixture_newer_minor"))) << "a refused plugin's handle was leaked";
}

// ---- Channel::inbound across minors (1.2 appended ref and the contact flags to tayori_inbound_event) -------

TEST(PluginInbound, A11PluginsEventsAreReadToTheirSizeAndItsAnswersKept) {
  auto lib = Library::open(fixture("fixture_inbound_abi_1_1"));
  ASSERT_TRUE(lib) << lib.error().message;
  EXPECT_EQ((*lib)->descriptor().abi_minor, 1);
  PinnedClock clock;
  Channel channel("sms", "phone", *lib, clock);
  Result<void> created = channel.create({});
  ASSERT_TRUE(created) << created.error().message;
  InboundRequest call;
  call.method = "POST";
  call.url = "https://gw.example/inbound/fixture_inbound_abi_1_1/sms";
  call.body = "events";
  std::vector<ProviderReport> events;
  InboundAnswer answer;
  ASSERT_TRUE(channel.inbound(call, events, answer)) << answer.body;
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.content_type, "text/xml");
  EXPECT_EQ(answer.body, "<Response/>");
  ASSERT_EQ(events.size(), 3u) << "the event of an unknown kind is dropped";
  // The 1.2 tail the fixture filled (ref "never-read", both flags set) is past its struct_size: unread.
  EXPECT_EQ(events[0].kind, ReportKind::opt_in);
  EXPECT_EQ(events[0].report_id, "e-1");
  EXPECT_EQ(events[0].contact, "+819012345678");
  EXPECT_EQ(events[0].ref, "");
  EXPECT_FALSE(events[0].reactivate_contact);
  EXPECT_FALSE(events[0].deactivate_contact);
  // FAILED: the provider's id in message_ref, its reason in text (plugin.h).
  EXPECT_EQ(events[1].kind, ReportKind::failed);
  EXPECT_EQ(events[1].provider_message_id, "SM1");
  EXPECT_EQ(events[1].reason, "provider.reason");
  EXPECT_EQ(events[1].text, "");
  EXPECT_EQ(events[1].at_ms, 1234);
  EXPECT_FALSE(events[1].deactivate_contact);
  // CONTACT_DEACTIVATED (1.0) reads as a failure that deactivates.
  EXPECT_EQ(events[2].kind, ReportKind::failed);
  EXPECT_TRUE(events[2].deactivate_contact);

  // Refused with the plugin's own 4xx answer; a failure is a 500 the provider redelivers. No events either way.
  call.body = "refuse";
  EXPECT_FALSE(channel.inbound(call, events, answer));
  EXPECT_EQ(answer.status, 401);
  EXPECT_EQ(answer.body, "bad signature");
  EXPECT_TRUE(events.empty());
  call.body = "fail";
  EXPECT_FALSE(channel.inbound(call, events, answer));
  EXPECT_EQ(answer.status, 500);
  EXPECT_TRUE(events.empty());
}

TEST(PluginInbound, APluginWithoutOnInboundAnswers404) {
  auto lib = Library::open(fixture("fixture_abi_1_0_size"));
  ASSERT_TRUE(lib) << lib.error().message;
  PinnedClock clock;
  Channel channel("mail", "email", *lib, clock);
  Result<void> created = channel.create({});
  ASSERT_TRUE(created) << created.error().message;
  std::vector<ProviderReport> events;
  InboundAnswer answer;
  EXPECT_FALSE(channel.inbound(InboundRequest{}, events, answer));
  EXPECT_EQ(answer.status, 404);
}

// ---- Library::open: 1.1 batching fields ----------------------------------------------------------

TEST(PluginLoader, AnAbi10SizedDescriptorIsReadOnlyToItsSizeAndNeverBatches) {
  auto lib = Library::open(fixture("fixture_abi_1_0_size"));
  ASSERT_TRUE(lib) << lib.error().message;
  EXPECT_EQ((*lib)->descriptor().struct_size, TAYORI_PLUGIN_V1_0_SIZE);
  EXPECT_EQ((*lib)->descriptor().batch_max, 0u);  // the fixture's bytes past its size say 7: never read
  EXPECT_EQ((*lib)->descriptor().on_build_batch, nullptr);
  EXPECT_FALSE((*lib)->batches());
}

TEST(PluginLoader, SdkPluginsDeclareBatchingOnlyWithBuildBatchAndKBatchMax) {
  auto batching = Library::open(fixture("fixture_batch"));
  ASSERT_TRUE(batching) << batching.error().message;
  EXPECT_EQ((*batching)->descriptor().batch_max, 3u);
  EXPECT_NE((*batching)->descriptor().on_build_batch, nullptr);
  EXPECT_TRUE((*batching)->batches());
  auto plain = Library::open(fixture("fixture_http"));
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ((*plain)->descriptor().batch_max, 0u);
  EXPECT_EQ((*plain)->descriptor().on_build_batch, nullptr);
  EXPECT_FALSE((*plain)->batches());
}

// ---- find_plugin --------------------------------------------------------------------------------

TEST(PluginLoader, FindPluginLooksInEveryDirInOrderAndSaysWhere) {
  TempDir empty;
  std::string searched;
  EXPECT_EQ(find_plugin("fixture_scripted", {empty.path(), TAYORI_FIXTURE_DIR}, "/", searched),
            fixture("fixture_scripted"));
  EXPECT_EQ(find_plugin("nope", {empty.path(), TAYORI_FIXTURE_DIR}, "/", searched), "");
  EXPECT_EQ(searched, empty.path() + "/nope.so, " + std::string(TAYORI_FIXTURE_DIR) + "/nope.so");
  EXPECT_EQ(find_plugin("nope", {}, "/", searched), "");
  EXPECT_EQ(searched, "(no plugin_dirs configured)");
}

TEST(PluginLoader, FindPluginTakesAPathRelativeToTheYamlFolder) {
  std::string searched;
  std::filesystem::path dir(TAYORI_FIXTURE_DIR);
  EXPECT_EQ(find_plugin("./fixture_scripted.so", {}, dir.string(), searched), fixture("fixture_scripted"));
  EXPECT_EQ(find_plugin("../fixture-plugins/missing.so", {}, dir.string(), searched), "");
  EXPECT_EQ(searched, (dir.parent_path() / "fixture-plugins/missing.so").lexically_normal().string());
}

// ---- build_registry: settings checked against the declared map, with YAML places ------------------

// "LINE:COL" (1-based) of the first occurrence of `needle` in `text`: an oracle independent of yaml-cpp.
std::string place_of(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  if (at == std::string::npos) return "<" + needle + " not in the YAML>";
  size_t line_start = text.rfind('\n', at);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
  return std::to_string(line) + ":" + std::to_string(at - line_start + 1);
}

config::Environment test_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (name == "TAYORI_TEST_KEY") return "k-test";
    if (name == "TYPED_TOKEN") return "s3cret";
    if (name == "TEST_LINK_SECRET") return "link-secret-0123456789";
    return std::nullopt;
  };
}

// The YAML every registry test starts from; `channels` is appended as written.
std::string yaml_with(const std::string& plugin_dir, const std::string& channels) {
  return "api_keys:\n"
         "  - name: test\n"
         "    key_env: TAYORI_TEST_KEY\n"
         "plugin_dirs:\n"
         "  - " + plugin_dir + "\n"
         "channels:\n" + channels;
}

struct Built {
  RegistryResult result;
  std::vector<std::string> errors;  // Diagnostic::to_string() of each
};

Built build(const std::string& yaml, const std::string& base_dir, const Clock& clock,
            transport::OutboundTransport* transport = nullptr) {
  auto loaded = config::load_string(yaml, "test.yaml", base_dir, test_env());
  Built b;
  if (!loaded.config) {
    for (auto& e : loaded.errors) ADD_FAILURE() << "the YAML itself is wrong: " << e.to_string();
    return b;
  }
  b.result = build_registry(*loaded.config, clock, transport);
  for (auto& e : b.result.errors) b.errors.push_back(e.to_string());
  return b;
}

// Builds a registry expected to fail, in a folder and with a clock of its own; returns what it reported.
Built build_refused(const std::string& yaml) {
  PinnedClock clock;
  TempDir dir;
  Built b = build(yaml, dir.path(), clock);
  EXPECT_EQ(b.result.registry, nullptr);
  b.result.registry.reset();  // were it built after all, it must not outlive the clock it reads
  return b;
}

// Builds a registry expected to fail with exactly one diagnostic and returns it.
std::string only_error(const std::string& yaml) {
  Built b = build_refused(yaml);
  EXPECT_EQ(b.errors.size(), 1u) << ::testing::PrintToString(b.errors);
  return b.errors.empty() ? std::string() : b.errors.front();
}

const char* const kTyped =
    "  - name: typed\n"
    "    plugin: fixture_typed_settings\n"
    "    settings:\n";

// The one error of a typed channel that has its required label and `key: value` besides, with the place
// of `key` and its path taken off the front when both are right, so that a test compares only the reason
// (and a wrong place shows as the whole error).
std::string reason_for_setting(const std::string& key, const std::string& value) {
  std::string yaml =
      yaml_with(TAYORI_FIXTURE_DIR, std::string(kTyped) + "      label: hello\n      " + key + ": " + value + "\n");
  std::string error = only_error(yaml);
  std::string at = "test.yaml:" + place_of(yaml, key + ":") + ": channels[0].settings." + key + ": ";
  return error.rfind(at, 0) == 0 ? error.substr(at.size()) : error;
}

TEST(PluginRegistry, UnknownSettingIsReportedAtItsKeyWithWhatThePluginTakes) {
  EXPECT_EQ(reason_for_setting("colour", "red"),
            "unknown setting for plugin fixture_typed_settings "
            "(it takes: label, count, enabled, timeout, token, endpoint, file)");
}

TEST(PluginRegistry, MissingRequiredSettingIsReportedAtTheSettingsBlock) {
  std::string yaml = yaml_with(TAYORI_FIXTURE_DIR, std::string(kTyped) + "      count: 5\n");
  // settings_at is the settings mapping itself, which yaml-cpp places at its first key.
  EXPECT_EQ(only_error(yaml), "test.yaml:" + place_of(yaml, "count:") +
                                  ": channels[0].settings.label: is required by plugin fixture_typed_settings");
}

TEST(PluginRegistry, MissingRequiredSettingWithoutSettingsBlockIsReportedAtTheChannel) {
  std::string yaml = yaml_with(TAYORI_FIXTURE_DIR,
                               "  - name: typed\n"
                               "    plugin: fixture_typed_settings\n");
  EXPECT_EQ(only_error(yaml), "test.yaml:" + place_of(yaml, "name: typed") +
                                  ": channels[0].settings.label: is required by plugin fixture_typed_settings");
}

TEST(PluginRegistry, WrongTypedBoolIsReportedAtItsKey) {
  EXPECT_EQ(reason_for_setting("enabled", "maybe"), "must be true or false");
}

TEST(PluginRegistry, WrongTypedDurationIsReportedAtItsKey) {
  EXPECT_EQ(reason_for_setting("timeout", "10 seconds"), "must be a duration like 250ms, 10s, 5m, 24h or 7d");
}

TEST(PluginRegistry, WrongTypedIntAndUrlAreReported) {
  std::string yaml = yaml_with(TAYORI_FIXTURE_DIR, std::string(kTyped) +
                                                       "      label: hello\n"
                                                       "      count: many\n"
                                                       "      endpoint: ftp://example.com/x\n");
  Built b = build_refused(yaml);
  EXPECT_THAT(b.errors, ::testing::ElementsAre(
                            "test.yaml:" + place_of(yaml, "count:") + ": channels[0].settings.count: must be an integer",
                            "test.yaml:" + place_of(yaml, "endpoint:") +
                                ": channels[0].settings.endpoint: must be an absolute http(s):// or smtp(s):// URL"));
}

TEST(PluginRegistry, SecretWrittenInlineIsRefusedAndNotEchoed) {
  std::string reason = reason_for_setting("token", "hunter2-inline");
  EXPECT_EQ(reason, "is a secret: name an environment variable with token_env instead of writing it here");
  EXPECT_THAT(reason, ::testing::Not(HasSubstr("hunter2")));
}

TEST(PluginRegistry, NonSecretFromEnvironmentIsRefused) {
  EXPECT_EQ(reason_for_setting("endpoint_env", "TYPED_TOKEN"), "is not a secret: write endpoint directly");
}

// Twilio signs the URL it called, which only server.public_url gives (behind a TLS terminator the Host
// header is not it): without it every STOP would get a 401 nobody sees. The host decides from what the
// plugin declares (TAYORI_INBOUND_SIGNS_URL), not from its name: LINE signs only the body.
TEST(PluginRegistry, AChannelWhosePluginSignsTheUrlItIsCalledAtNeedsThePublicUrl) {
  const std::string sms = "  - name: sms\n"
                          "    plugin: sms_twilio\n"
                          "    settings:\n"
                          "      account_sid: AC0123456789abcdef0123456789abcdef\n"
                          "      auth_token_env: TYPED_TOKEN\n"
                          "      from: \"+15005550006\"\n";
  std::string yaml = yaml_with(TAYORI_PLUGIN_DIR, sms);
  PinnedClock clock;
  TempDir dir;
  transport::OutboundTransport transport{transport::TransportOptions{}};  // the plugins are sans-I/O
  Built refused = build(yaml, dir.path(), clock, &transport);
  EXPECT_EQ(refused.result.registry, nullptr);
  EXPECT_EQ(refused.errors, std::vector<std::string>{"test.yaml:" + place_of(yaml, "name: sms") +
                                                     ": server.public_url: is required by channel sms: plugin "
                                                     "sms_twilio verifies its provider's signature over the URL it "
                                                     "calls, which only public_url gives (or set inbound: false on "
                                                     "the channel if its provider never calls back)"});
  const std::string server = "server:\n  public_url: https://gw.example.jp\n  link_secret_env: TEST_LINK_SECRET\n";
  Built with_url = build(server + yaml, dir.path(), clock, &transport);
  EXPECT_NE(with_url.result.registry, nullptr) << ::testing::PrintToString(with_url.errors);
  std::string outbound_only = sms;
  outbound_only.insert(outbound_only.find("    settings:"), "    inbound: false\n");
  Built without = build(yaml_with(TAYORI_PLUGIN_DIR, outbound_only), dir.path(), clock, &transport);
  EXPECT_NE(without.result.registry, nullptr) << ::testing::PrintToString(without.errors);
  Built line = build(yaml_with(TAYORI_PLUGIN_DIR, "  - name: line\n    plugin: line\n    settings:\n"
                                                  "      channel_access_token_env: TYPED_TOKEN\n"
                                                  "      channel_secret_env: TYPED_TOKEN\n"),
                     dir.path(), clock, &transport);
  EXPECT_NE(line.result.registry, nullptr) << ::testing::PrintToString(line.errors);
}

TEST(PluginRegistry, PluginNotFoundListsWhereItLooked) {
  TempDir empty;
  std::string yaml = yaml_with(empty.path(),
                               "  - plugin: no_such_plugin\n"
                               "    name: ghost\n");
  EXPECT_EQ(only_error(yaml), "test.yaml:" + place_of(yaml, "plugin: no_such") +
                                  ": channels[0].plugin: plugin \"no_such_plugin\" not found (looked in: " +
                                  empty.path() + "/no_such_plugin.so)");
}

TEST(PluginRegistry, BrokenPluginIsReportedWithTheLoadersReason) {
  std::string yaml = yaml_with(TAYORI_FIXTURE_DIR,
                               "  - plugin: fixture_wrong_major\n"
                               "    name: old\n");
  std::string error = only_error(yaml);
  EXPECT_THAT(error, StartsWith("test.yaml:" + place_of(yaml, "plugin: fixture_wrong") + ": channels[0].plugin: "));
  EXPECT_THAT(error, AllOf(HasSubstr(fixture("fixture_wrong_major")), HasSubstr("ABI 2.0")));
}

TEST(PluginRegistry, InvalidDeclaredDefaultIsReportedAtTheChannel) {
  std::string yaml = yaml_with(TAYORI_FIXTURE_DIR,
                               "  - name: lazy\n"
                               "    plugin: fixture_bad_default\n"
                               "    settings: {}\n");
  EXPECT_EQ(only_error(yaml), "test.yaml:" + place_of(yaml, "{}") +
                                  ": channels[0].settings.wait: plugin fixture_bad_default declares an invalid default "
                                  "\"soon\": must be a duration like 250ms, 10s, 5m, 24h or 7d");
}

TEST(PluginRegistry, ReportsEveryChannelsProblemsAtOnce) {
  std::string yaml = yaml_with(TAYORI_FIXTURE_DIR, std::string(kTyped) +
                                                       "      label: hello\n"
                                                       "      colour: red\n"
                                                       "  - name: second\n"
                                                       "    plugin: fixture_typed_settings\n"
                                                       "    settings:\n"
                                                       "      label: again\n"
                                                       "      enabled: yes\n");
  Built b = build_refused(yaml);
  ASSERT_EQ(b.errors.size(), 2u) << ::testing::PrintToString(b.errors);
  EXPECT_THAT(b.errors[0], StartsWith("test.yaml:" + place_of(yaml, "colour:") + ": channels[0].settings.colour: "));
  EXPECT_THAT(b.errors[1], StartsWith("test.yaml:" + place_of(yaml, "enabled:") + ": channels[1].settings.enabled: "));
}

TEST(PluginRegistry, HandsThePluginNormalisedValuesWithDefaults) {
  TempDir dir;
  std::string yaml = yaml_with(TAYORI_FIXTURE_DIR, std::string(kTyped) +
                                                       "      label: hello\n"
                                                       "      count: -12\n"
                                                       "      enabled: true\n"
                                                       "      timeout: 2m\n"
                                                       "      token_env: TYPED_TOKEN\n"
                                                       "      endpoint: https://api.example.com/v1\n"
                                                       "      file: out/../sent.txt\n"
                                                       "  - name: defaults\n"
                                                       "    plugin: fixture_typed_settings\n"
                                                       "    settings:\n"
                                                       "      label: bare\n");
  PinnedClock clock;
  Built b = build(yaml, dir.path(), clock);
  ASSERT_NE(b.result.registry, nullptr) << ::testing::PrintToString(b.errors);
  ASSERT_EQ(b.result.registry->channels().size(), 2u);
  auto echo = [&](const std::string& channel, const std::string& key) {
    Channel* c = b.result.registry->find(channel);
    if (c == nullptr) return std::string("<no channel " + channel + ">");
    DeliveryRequest r;
    r.message_id = "m";
    r.delivery_id = "d";
    r.content = {{"echo", key}};
    DeliveryOutcome out = c->deliver(r);
    EXPECT_EQ(out.kind, OutcomeKind::delivered);
    return out.provider_message_id;
  };
  EXPECT_EQ(echo("typed", "label"), "hello");
  EXPECT_EQ(echo("typed", "count"), "-12");
  EXPECT_EQ(echo("typed", "enabled"), "true");
  EXPECT_EQ(echo("typed", "timeout"), "120000");  // durations arrive in milliseconds
  EXPECT_EQ(echo("typed", "token"), "s3cret");     // resolved from token_env
  EXPECT_EQ(echo("typed", "endpoint"), "https://api.example.com/v1");
  EXPECT_EQ(echo("typed", "file"), dir.path() + "/sent.txt");  // absolute against the YAML's folder
  EXPECT_EQ(echo("defaults", "count"), "3");
  EXPECT_EQ(echo("defaults", "enabled"), "false");
  EXPECT_EQ(echo("defaults", "timeout"), "10000");
  EXPECT_EQ(echo("defaults", "token"), "<unset>");
  EXPECT_EQ(echo("defaults", "file"), "<unset>");
  EXPECT_EQ(b.result.registry->find("typed")->contact(), "email");  // the plugin's default_contact
}

// ---- The real file_sink plugin --------------------------------------------------------------

// A file_sink channel "outbox" for phone numbers, writing outbox.jsonl in the test's folder.
std::string outbox_yaml() {
  return yaml_with(TAYORI_PLUGIN_DIR,
                   "  - name: outbox\n"
                   "    plugin: file_sink\n"
                   "    contact: phone\n"
                   "    settings:\n"
                   "      path: outbox.jsonl\n");
}

TEST(PluginFileSink, LoadsWritesOneJsonLinePerDeliveryAndDelivers) {
  TempDir dir;
  PinnedClock clock;
  Built b = build(outbox_yaml(), dir.path(), clock);
  ASSERT_NE(b.result.registry, nullptr) << ::testing::PrintToString(b.errors);
  Channel* channel = b.result.registry->find("outbox");
  ASSERT_NE(channel, nullptr);
  EXPECT_EQ(channel->contact(), "phone");
  EXPECT_STREQ(channel->library().descriptor().name, "file_sink");

  for (uint32_t attempt = 1; attempt <= 2; ++attempt) {
    DeliveryRequest r;
    r.message_id = "msg-1";
    r.delivery_id = "dlv-1";
    r.attempt = attempt;
    r.recipient_id = "user-7";
    r.contact = "+819012345678";
    r.marketing = true;
    r.category = "news";
    r.locale = "ja-JP";
    r.content = {{"text", "こんにちは \"quoted\"\nnext line"}};
    r.metadata_json = R"({"campaign":"c-9"})";
    DeliveryOutcome out = channel->deliver(r);
    EXPECT_EQ(out.kind, OutcomeKind::delivered) << out.reason;
    EXPECT_EQ(out.provider_message_id, "dlv-1");
  }

  auto lines = read_lines(dir.file("outbox.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  for (size_t i = 0; i < lines.size(); ++i) {
    auto j = nlohmann::json::parse(lines[i], nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << lines[i];
    EXPECT_EQ(j["message_id"], "msg-1");
    EXPECT_EQ(j["delivery_id"], "dlv-1");
    EXPECT_EQ(j["attempt"], i + 1);
    EXPECT_EQ(j["channel"], "outbox");
    EXPECT_EQ(j["recipient_id"], "user-7");
    EXPECT_EQ(j["contact"], "+819012345678");
    EXPECT_EQ(j["purpose"], "marketing");
    EXPECT_EQ(j["category"], "news");
    EXPECT_EQ(j["locale"], "ja-JP");
    EXPECT_EQ(j["content"]["text"], "こんにちは \"quoted\"\nnext line");
    EXPECT_EQ(j["metadata"]["campaign"], "c-9");
    EXPECT_EQ(j["written_at_ms"], clock.now_ms());  // the host's clock, not time()
  }
}

// A gateway killed inside write() can leave the last line cut short; the next start writes on a new line, so
// the torn line spoils only itself (CrashTest found a delivery glued to a torn line).
TEST(PluginFileSink, ALineCutShortByACrashIsNotContinuedByTheNextOne) {
  TempDir dir;
  {
    std::ofstream torn(dir.file("outbox.jsonl"), std::ios::binary);
    torn << "{\"message_id\":\"earlier\"}\n{\"message_id\":\"cut";
  }
  PinnedClock clock;
  Built b = build(outbox_yaml(), dir.path(), clock);
  ASSERT_NE(b.result.registry, nullptr) << ::testing::PrintToString(b.errors);
  DeliveryRequest r;
  r.message_id = "after-the-crash";
  r.delivery_id = "dlv-2";
  r.attempt = 1;
  r.recipient_id = "user-7";
  r.contact = "+819012345678";
  r.content = {{"text", "hi"}};
  ASSERT_EQ(b.result.registry->find("outbox")->deliver(r).kind, OutcomeKind::delivered);
  auto lines = read_lines(dir.file("outbox.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], "{\"message_id\":\"cut");
  auto j = nlohmann::json::parse(lines[2], nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << lines[2];
  EXPECT_EQ(j["message_id"], "after-the-crash");
}

TEST(PluginFileSink, UnopenablePathFailsCreationAtTheSettingsBlock) {
  TempDir dir;
  std::string yaml = yaml_with(TAYORI_PLUGIN_DIR,
                               "  - name: outbox\n"
                               "    plugin: file_sink\n"
                               "    settings:\n"
                               "      path: no/such/dir/outbox.jsonl\n");
  PinnedClock clock;
  Built b = build(yaml, dir.path(), clock);
  EXPECT_EQ(b.result.registry, nullptr);
  ASSERT_EQ(b.errors.size(), 1u) << ::testing::PrintToString(b.errors);
  EXPECT_THAT(b.errors[0], StartsWith("test.yaml:" + place_of(yaml, "path: no/") + ": channels[0].settings: path: "));
  EXPECT_THAT(b.errors[0], HasSubstr(dir.path() + "/no/such/dir/outbox.jsonl"));
}

}  // namespace
}  // namespace tayori::plugin
