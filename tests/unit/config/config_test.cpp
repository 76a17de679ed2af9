// Tests for the YAML configuration loader (gateway/config/config.cpp): every field read, every problem
// reported at once with its exact place ("gw.yaml:LINE:COL: key.path: message"), and secrets taken only
// from an injected environment (never the process's own).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace tayori::config {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// A hermetic environment: only the variables given here exist.
Environment env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::vector<std::string> diagnostics(const LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  return out;
}

LoadResult load(const std::string& yaml, const Environment& env) {
  return load_string(yaml, "gw.yaml", "/etc/tayori", env);
}

// The smallest valid document: the two required sections.
const char* const kMinimal =
    "api_keys:\n"
    "  - name: upstream\n"
    "    key_env: KEY_UP\n"
    "channels:\n"
    "  - name: email\n"
    "    plugin: email_smtp\n";

const std::map<std::string, std::string> kMinimalEnv = {{"KEY_UP", "s3cret-up"}};

// ---- A valid document ------------------------------------------------------------------------------

TEST(ConfigLoad, FullConfigRoundTripsEveryField) {
  const std::string yaml =
      "server:\n"                            // 1
      "  listen: \"0.0.0.0:9090\"\n"         // 2
      "  threads: 8\n"                       // 3
      "  max_body_bytes: 2048\n"             // 4
      "  max_batch: 50\n"                    // 5
      "  header_timeout: 250ms\n"            // 6
      "  body_timeout: 5s\n"                 // 7
      "  idle_timeout: 2m\n"                 // 8
      "store:\n"                             // 9
      "  data_dir: var/../var/data\n"        // 10
      "  retention: 2d\n"                    // 11
      "dispatcher:\n"                        // 12
      "  workers: 3\n"                       // 13
      "  claim_batch: 10\n"                  // 14
      "  poll_interval: 500ms\n"             // 15
      "  max_attempts: 7\n"                  // 16
      "  retry_base: 2s\n"                   // 17
      "api_keys:\n"                          // 18
      "  - name: upstream\n"                 // 19
      "    key_env: TAYORI_KEY_UPSTREAM\n"   // 20
      "  - name: ops\n"                      // 21
      "    key_env: TAYORI_KEY_OPS\n"        // 22
      "plugin_dirs:\n"                       // 23
      "  - plugins\n"                        // 24
      "  - /opt/tayori/plugins\n"            // 25
      "channels:\n"                          // 26
      "  - name: email\n"                    // 27
      "    plugin: email_smtp\n"             // 28
      "    contact: email\n"                 // 29
      "    settings:\n"                      // 30
      "      host: smtp.example.jp\n"        // 31
      "      port: 587\n"                    // 32
      "      password_env: SMTP_PASSWORD\n"  // 33
      "  - name: sms_2\n"                    // 34
      "    plugin: ./custom/sms.so\n";       // 35
  auto env = env_of({{"TAYORI_KEY_UPSTREAM", "up-secret"}, {"TAYORI_KEY_OPS", "ops-secret"},
                     {"SMTP_PASSWORD", "hunter2"}});
  LoadResult r = load(yaml, env);
  ASSERT_THAT(diagnostics(r), IsEmpty());
  ASSERT_TRUE(r.config.has_value());
  const Config& c = *r.config;

  EXPECT_EQ(c.file, "gw.yaml");
  EXPECT_EQ(c.base_dir, "/etc/tayori");

  EXPECT_EQ(c.server.listen, "0.0.0.0:9090");
  EXPECT_EQ(c.server.threads, 8);
  EXPECT_EQ(c.server.max_body_bytes, 2048);
  EXPECT_EQ(c.server.max_batch, 50);
  EXPECT_EQ(c.server.header_timeout_ms, 250);
  EXPECT_EQ(c.server.body_timeout_ms, 5'000);
  EXPECT_EQ(c.server.idle_timeout_ms, 120'000);

  EXPECT_EQ(c.store.data_dir, "/etc/tayori/var/data");  // relative, resolved and normalised
  EXPECT_EQ(c.store.retention_ms, 2 * 86'400'000LL);

  EXPECT_EQ(c.dispatcher.workers, 3);
  EXPECT_EQ(c.dispatcher.claim_batch, 10);
  EXPECT_EQ(c.dispatcher.max_in_flight, 0);  // not set
  EXPECT_EQ(in_flight_bound(c.dispatcher), 4096);
  EXPECT_EQ(c.dispatcher.poll_interval_ms, 500);
  EXPECT_EQ(c.dispatcher.retry.max_attempts, 7);
  EXPECT_EQ(c.dispatcher.retry.base_ms, 2'000);

  ASSERT_EQ(c.api_keys.size(), 2u);
  EXPECT_EQ(c.api_keys[0].name, "upstream");
  EXPECT_EQ(c.api_keys[0].secret, "up-secret");
  EXPECT_EQ(c.api_keys[1].name, "ops");
  EXPECT_EQ(c.api_keys[1].secret, "ops-secret");

  EXPECT_THAT(c.plugin_dirs, ElementsAre("/etc/tayori/plugins", "/opt/tayori/plugins"));

  ASSERT_EQ(c.channels.size(), 2u);
  const ChannelConfig& email = c.channels[0];
  EXPECT_EQ(email.name, "email");
  EXPECT_EQ(email.plugin, "email_smtp");
  EXPECT_EQ(email.contact, "email");
  EXPECT_EQ(email.index, 0);
  EXPECT_EQ(email.at.line, 27);
  EXPECT_EQ(email.at.column, 5);
  EXPECT_EQ(email.settings_at.line, 31);
  EXPECT_EQ(email.settings_at.column, 7);
  ASSERT_EQ(email.settings.size(), 3u);
  EXPECT_EQ(email.settings[0].key, "host");
  EXPECT_EQ(email.settings[0].value, "smtp.example.jp");
  EXPECT_FALSE(email.settings[0].from_env);
  EXPECT_EQ(email.settings[0].env_name, "");
  EXPECT_EQ(email.settings[0].at.line, 31);
  EXPECT_EQ(email.settings[0].at.column, 7);
  EXPECT_EQ(email.settings[1].key, "port");
  EXPECT_EQ(email.settings[1].value, "587");
  EXPECT_FALSE(email.settings[1].from_env);
  EXPECT_EQ(email.settings[2].key, "password");  // "_env" dropped: the plugin sees the secret's own name
  EXPECT_EQ(email.settings[2].value, "hunter2");
  EXPECT_TRUE(email.settings[2].from_env);
  EXPECT_EQ(email.settings[2].env_name, "SMTP_PASSWORD");
  EXPECT_EQ(email.settings[2].at.line, 33);
  EXPECT_EQ(email.settings[2].at.column, 7);

  const ChannelConfig& sms = c.channels[1];
  EXPECT_EQ(sms.name, "sms_2");
  EXPECT_EQ(sms.plugin, "./custom/sms.so");  // kept as written: the plugin loader resolves it
  EXPECT_EQ(sms.contact, "");
  EXPECT_EQ(sms.index, 1);
  EXPECT_EQ(sms.at.line, 34);
  EXPECT_EQ(sms.settings_at.line, 34);  // no settings block: the channel's own place
  EXPECT_THAT(sms.settings, IsEmpty());
}

TEST(ConfigLoad, DefaultsApplyWhenOptionalSectionsAreOmitted) {
  LoadResult r = load(kMinimal, env_of(kMinimalEnv));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  const Config& c = *r.config;
  const ServerConfig server;
  const DispatcherConfig dispatcher;
  EXPECT_EQ(c.server.listen, "127.0.0.1:8080");
  EXPECT_EQ(c.server.threads, 0);
  EXPECT_EQ(c.server.max_body_bytes, 4 * 1024 * 1024);
  EXPECT_EQ(c.server.max_batch, 1000);
  EXPECT_EQ(c.server.header_timeout_ms, server.header_timeout_ms);
  EXPECT_EQ(c.store.data_dir, "/etc/tayori/data");  // the default "data", resolved like any other
  EXPECT_EQ(c.store.retention_ms, 7 * 86'400'000LL);
  EXPECT_EQ(c.dispatcher.workers, dispatcher.workers);
  EXPECT_TRUE(c.dispatcher.enabled);
  EXPECT_EQ(c.dispatcher.retry.max_attempts, 5);
  EXPECT_EQ(c.dispatcher.retry.base_ms, 5'000);
  EXPECT_THAT(c.plugin_dirs, IsEmpty());
  ASSERT_EQ(c.api_keys.size(), 1u);
  EXPECT_EQ(c.api_keys[0].secret, "s3cret-up");
  ASSERT_EQ(c.channels.size(), 1u);
  EXPECT_EQ(c.channels[0].batch_window_ms, 0);  // batching is opt-in per channel
}

TEST(ConfigLoad, TheDispatcherCanBeDisabledForAnIntakeOnlyProcess) {
  LoadResult r = load(std::string(kMinimal) + "dispatcher:\n  enabled: false\n", env_of(kMinimalEnv));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  EXPECT_FALSE(r.config->dispatcher.enabled);
}

TEST(ConfigLoad, TheDispatchersRoomIsSetOrFollowsTheClaimBatchAndTheWorkers) {
  auto bound = [](const std::string& dispatcher) {
    LoadResult r = load(std::string(kMinimal) + "dispatcher:\n" + dispatcher, env_of(kMinimalEnv));
    EXPECT_THAT(diagnostics(r), IsEmpty()) << dispatcher;
    return r.config ? in_flight_bound(r.config->dispatcher) : -1;
  };
  EXPECT_EQ(bound("  max_in_flight: 20000\n"), 20'000);
  EXPECT_EQ(bound("  claim_batch: 8\n  max_in_flight: 8\n"), 8);
  EXPECT_EQ(bound("  claim_batch: 6000\n"), 6'000);  // room for one claim at least
  EXPECT_EQ(bound("  workers: 256\n  claim_batch: 100\n"), 4'096);
  EXPECT_EQ(bound("  workers: 4\n"), 4'096);
}

TEST(ConfigLoad, AbsoluteDataDirIsKept) {
  LoadResult r = load(std::string(kMinimal) + "store:\n  data_dir: /var/lib/tayori/\n", env_of(kMinimalEnv));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  EXPECT_EQ(r.config->store.data_dir, "/var/lib/tayori/");
}

TEST(ConfigLoad, PostgresSettingsAreReadWithTheUriFromTheEnvironment) {
  LoadResult r = load(std::string(kMinimal) +
                          "store:\n  backend: postgres\n  url_env: TAYORI_PG\n  pool_size: 4\n"
                          "  statement_timeout: 2s\n  lease: 15s\n  node_id: node-a\n",
                      env_of({{"KEY_UP", "s3cret-up"}, {"TAYORI_PG", "postgresql://tayori:pw@db/tayori"}}));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  const StoreConfig& s = r.config->store;
  EXPECT_EQ(s.backend, StoreBackend::postgres);
  EXPECT_EQ(s.url_env, "TAYORI_PG");
  EXPECT_EQ(s.url, "postgresql://tayori:pw@db/tayori");
  EXPECT_EQ(s.pool_size, 4);
  EXPECT_EQ(s.statement_timeout_ms, 2'000);
  EXPECT_EQ(s.lease_ms, 15'000);
  EXPECT_EQ(s.node_id, "node-a");
}

TEST(ConfigLoad, TheDefaultStoreIsSqlite) {
  LoadResult r = load(kMinimal, env_of(kMinimalEnv));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  EXPECT_EQ(r.config->store.backend, StoreBackend::sqlite);
  EXPECT_EQ(r.config->store.lease_ms, 30'000);
}

TEST(ConfigLoad, ListenAcceptsIpLiterals) {
  for (const char* listen : {"0.0.0.0:0", "127.0.0.1:8787", "[::1]:8787", "[::]:65535"}) {
    LoadResult r = load(std::string(kMinimal) + "server:\n  listen: \"" + listen + "\"\n", env_of(kMinimalEnv));
    ASSERT_THAT(diagnostics(r), IsEmpty()) << listen;
    EXPECT_EQ(r.config->server.listen, listen);
  }
}

TEST(ConfigLoad, NeverReadsTheProcessEnvironment) {
  // KEY_UP is set in the real environment but not in the injected one: the loader must not see it.
  ::setenv("KEY_UP", "from-the-process", 1);
  LoadResult r = load(kMinimal, env_of({}));
  ::unsetenv("KEY_UP");
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r),
              ElementsAre("gw.yaml:3:14: api_keys[0].key_env: environment variable KEY_UP is not set"));
}

// ---- Every problem at once, each at its place ---------------------------------------------------------

TEST(ConfigLoad, ReportsEveryProblemAtOnceWithExactPlaces) {
  const std::string yaml =
      "server:\n"                      // 1
      "  listen: nocolon\n"            // 2
      "  threads: 1000\n"              // 3
      "  body_timeout: soon\n"         // 4
      "store:\n"                       // 5
      "  retention: 1h\n"              // 6
      "dispatcher:\n"                  // 7
      "  workers: many\n"              // 8
      "  poll_interval: 5ms\n"         // 9
      "api_keys:\n"                    // 10
      "  - name: upstream\n"           // 11
      "    key_env: KEY_UP\n"          // 12
      "channels:\n"                    // 13
      "  - name: Email\n"              // 14
      "    plugin: email_smtp\n"       // 15
      "    colour: blue\n";            // 16
  LoadResult r = load(yaml, env_of({}));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r),
              UnorderedElementsAre(
                  "gw.yaml:2:11: server.listen: must be HOST:PORT, e.g. 127.0.0.1:8787 or [::1]:8787",
                  "gw.yaml:3:12: server.threads: must be between 0 and 256",
                  "gw.yaml:4:17: server.body_timeout: must be a duration like 250ms, 10s, 5m, 24h or 7d",
                  "gw.yaml:6:14: store.retention: must be at least 1d",
                  "gw.yaml:8:12: dispatcher.workers: must be an integer",
                  "gw.yaml:9:18: dispatcher.poll_interval: must be at least 10ms",
                  "gw.yaml:12:14: api_keys[0].key_env: environment variable KEY_UP is not set",
                  "gw.yaml:14:11: channels[0].name: must match [a-z][a-z0-9_]* (it appears in messages and metrics)",
                  "gw.yaml:16:5: channels[0].colour: unknown key (expected one of: name, plugin, contact, settings, concurrency, rate_limit, burst, batch_window, retry, circuit_breaker, inbound, track)"));
  // Diagnostics carry their parts separately too.
  ASSERT_FALSE(r.errors.empty());
  for (const auto& d : r.errors) EXPECT_EQ(d.file, "gw.yaml");
}

struct BadValueCase {
  const char* name;
  std::string yaml;  // appended to kMinimal
  std::string expected;
};

class ConfigBadValue : public ::testing::TestWithParam<BadValueCase> {};

TEST_P(ConfigBadValue, IsReportedAtItsValue) {
  LoadResult r = load(std::string(kMinimal) + GetParam().yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r), ElementsAre(GetParam().expected));
}

// kMinimal is 6 lines long: appended sections start on line 7.
INSTANTIATE_TEST_SUITE_P(
    Table, ConfigBadValue,
    ::testing::Values(
        BadValueCase{"threads_negative", "server:\n  threads: -1\n",
                     "gw.yaml:8:12: server.threads: must be between 0 and 256"},
        BadValueCase{"threads_fraction", "server:\n  threads: 1.5\n",
                     "gw.yaml:8:12: server.threads: must be an integer"},
        BadValueCase{"max_body_too_small", "server:\n  max_body_bytes: 1023\n",
                     "gw.yaml:8:19: server.max_body_bytes: must be between 1024 and 1073741824"},
        BadValueCase{"max_batch_zero", "server:\n  max_batch: 0\n",
                     "gw.yaml:8:14: server.max_batch: must be between 1 and 100000"},
        BadValueCase{"listen_list", "server:\n  listen: [a, b]\n", "gw.yaml:8:11: server.listen: must be a string"},
        BadValueCase{"header_timeout_too_short", "server:\n  header_timeout: 99ms\n",
                     "gw.yaml:8:19: server.header_timeout: must be at least 100ms"},
        BadValueCase{"idle_timeout_unitless", "server:\n  idle_timeout: 60\n",
                     "gw.yaml:8:17: server.idle_timeout: must be a duration like 250ms, 10s, 5m, 24h or 7d"},
        BadValueCase{"listen_host_name", "server:\n  listen: localhost:8080\n",
                     "gw.yaml:8:11: server.listen: host \"localhost\" must be an IP address (0.0.0.0 for every "
                     "interface), not a name"},
        BadValueCase{"listen_port_too_big", "server:\n  listen: 127.0.0.1:65536\n",
                     "gw.yaml:8:11: server.listen: port \"65536\" must be a number from 0 to 65535"},
        BadValueCase{"listen_port_missing", "server:\n  listen: \"127.0.0.1:\"\n",
                     "gw.yaml:8:11: server.listen: port \"\" must be a number from 0 to 65535"},
        BadValueCase{"listen_no_host", "server:\n  listen: \":8080\"\n",
                     "gw.yaml:8:11: server.listen: must be HOST:PORT, e.g. 127.0.0.1:8787 or [::1]:8787"},
        BadValueCase{"server_not_a_map", "server: fast\n", "gw.yaml:7:9: server: must be a mapping"},
        BadValueCase{"store_not_a_map", "store:\n  - a\n", "gw.yaml:8:3: store: must be a mapping"},
        BadValueCase{"claim_batch_too_big", "dispatcher:\n  claim_batch: 10001\n",
                     "gw.yaml:8:16: dispatcher.claim_batch: must be between 1 and 10000"},
        BadValueCase{"max_in_flight_below_claim_batch", "dispatcher:\n  max_in_flight: 1000\n",
                     "gw.yaml:8:18: dispatcher.max_in_flight: must be at least claim_batch (1024) and workers x 2 (8)"},
        BadValueCase{
            "max_in_flight_below_twice_the_workers",
            "dispatcher:\n  workers: 200\n  claim_batch: 10\n  max_in_flight: 300\n",
            "gw.yaml:10:18: dispatcher.max_in_flight: must be at least claim_batch (10) and workers x 2 (400)"},
        BadValueCase{"dispatcher_enabled_not_a_boolean", "dispatcher:\n  enabled: no\n",
                     "gw.yaml:8:12: dispatcher.enabled: must be true or false"},
        BadValueCase{"max_attempts_zero", "dispatcher:\n  max_attempts: 0\n",
                     "gw.yaml:8:17: dispatcher.max_attempts: must be between 1 and 1000"},
        BadValueCase{"store_max_size_unitless_word", "store:\n  max_size: big\n",
                     "gw.yaml:8:13: store.max_size: must be a size of at least 64KiB, like 512MiB or 2GiB"},
        BadValueCase{"store_max_size_too_small", "store:\n  max_size: 1KiB\n",
                     "gw.yaml:8:13: store.max_size: must be a size of at least 64KiB, like 512MiB or 2GiB"},
        // 999999999999 TiB is no int64_t count of bytes: refused, not shifted into a negative or small size.
        BadValueCase{"store_max_size_overflows", "store:\n  max_size: 999999999999TiB\n",
                     "gw.yaml:8:13: store.max_size: must be a size of at least 64KiB, like 512MiB or 2GiB"},
        BadValueCase{"store_backend_unknown", "store:\n  backend: mysql\n",
                     "gw.yaml:8:12: store.backend: must be sqlite or postgres"},
        BadValueCase{"store_postgres_without_url_env", "store:\n  backend: postgres\n",
                     "gw.yaml:8:3: store.url_env: is required"},
        BadValueCase{"store_postgres_url_env_unset", "store:\n  backend: postgres\n  url_env: NO_SUCH_PG_URL\n",
                     "gw.yaml:9:12: store.url_env: environment variable NO_SUCH_PG_URL is not set"},
        BadValueCase{"store_postgres_url_in_url_env", "store:\n  backend: postgres\n  url_env: postgresql://x/y\n",
                     "gw.yaml:9:12: store.url_env: must name an environment variable (A-Z, 0-9, _), not hold the URI"},
        BadValueCase{"store_max_size_on_postgres", "store:\n  backend: postgres\n  url_env: KEY_UP\n  max_size: 1GiB\n",
                     "gw.yaml:10:13: store.max_size: applies to store.backend: sqlite only"},
        BadValueCase{"store_pool_size_on_sqlite", "store:\n  pool_size: 4\n",
                     "gw.yaml:8:14: store.pool_size: applies to store.backend: postgres only"},
        BadValueCase{"store_pool_size_one", "store:\n  backend: postgres\n  url_env: KEY_UP\n  pool_size: 1\n",
                     "gw.yaml:10:14: store.pool_size: must be between 2 and 256"},
        BadValueCase{"store_lease_too_short", "store:\n  backend: postgres\n  url_env: KEY_UP\n  lease: 10ms\n",
                     "gw.yaml:10:10: store.lease: must be at least 1s"},
        BadValueCase{"store_node_id_spaces", "store:\n  backend: postgres\n  url_env: KEY_UP\n  node_id: a b\n",
                     "gw.yaml:10:12: store.node_id: must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', ':', '-'"},
        BadValueCase{"shutdown_grace_unitless", "server:\n  shutdown_grace: 10\n",
                     "gw.yaml:8:19: server.shutdown_grace: must be a duration like 250ms, 10s, 5m, 24h or 7d"},
        BadValueCase{"retry_cap_below_base", "dispatcher:\n  retry_base: 10s\n  retry_cap: 1s\n",
                     "gw.yaml:8:3: dispatcher.retry_cap: must be at least retry_base"},
        BadValueCase{"retry_base_zero", "dispatcher:\n  retry_base: 0ms\n",
                     "gw.yaml:8:15: dispatcher.retry_base: must be at least 1ms"},
        BadValueCase{"plugin_dirs_scalar", "plugin_dirs: plugins\n",
                     "gw.yaml:7:14: plugin_dirs: must be a list of folders"},
        BadValueCase{"plugin_dirs_nested", "plugin_dirs:\n  - ok\n  - [nested]\n",
                     "gw.yaml:9:5: plugin_dirs[1]: must be a folder path"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ConfigLoad, UnknownKeysAreReportedAtEachLevel) {
  const std::string yaml =
      "colour: blue\n"                  // 1
      "server:\n"                       // 2
      "  port: 8080\n"                  // 3
      "store:\n"                        // 4
      "  path: /tmp\n"                  // 5
      "dispatcher:\n"                   // 6
      "  retries: 3\n"                  // 7
      "api_keys:\n"                     // 8
      "  - name: upstream\n"            // 9
      "    key_env: KEY_UP\n"           // 10
      "    key: abc\n"                  // 11
      "channels:\n"                     // 12
      "  - name: email\n"               // 13
      "    plugin: email_smtp\n"        // 14
      "    setting:\n"                  // 15
      "      host: x\n";                // 16
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(
      diagnostics(r),
      UnorderedElementsAre(
          "gw.yaml:1:1: colour: unknown key (expected one of: server, outbound, store, dispatcher, api_keys, "
          "plugin_dirs, "
          "channels, policy, templates, webhooks, responses, inbound, attribution)",
          "gw.yaml:3:3: server.port: unknown key (expected one of: listen, threads, max_body_bytes, max_batch, "
          "header_timeout, body_timeout, idle_timeout, max_connections, public_url, link_secret_env, link_secrets, "
          "link_ttl, "
          "shutdown_grace)",
          "gw.yaml:5:3: store.path: unknown key (expected one of: backend, data_dir, retention, max_size, url_env, "
          "pool_size, statement_timeout, lease, node_id)",
          "gw.yaml:7:3: dispatcher.retries: unknown key (expected one of: enabled, workers, claim_batch, "
          "max_in_flight, "
          "poll_interval, max_attempts, retry_base, retry_cap, retry_max_age)",
          "gw.yaml:11:5: api_keys[0].key: unknown key (expected one of: name, key_env, scopes)",
          "gw.yaml:15:5: channels[0].setting: unknown key (expected one of: name, plugin, contact, settings, "
          "concurrency, rate_limit, burst, batch_window, retry, circuit_breaker, inbound, track)"));
}

// BUG (core): a key repeated in one mapping is silently ignored. yaml-cpp keeps both pairs and
// node["key"] returns the first, while expect_map only checks names against the known list — so a second
// `store:` section, or a second `retention:` line, is dropped without a word (YAML 1.2 §3.2.1.1 requires
// unique keys). Expected: each repeat reported at its own place, e.g. "gw.yaml:8:3: store.retention:
// duplicate key (first at line 7)".
TEST(ConfigLoad, DuplicateKeysAreReported) {
  const std::string yaml = std::string(kMinimal) +
                           "store:\n"              // 7
                           "  retention: 30d\n"    // 8
                           "  retention: 1d\n"     // 9
                           "store:\n"              // 10
                           "  data_dir: /x\n";     // 11
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value()) << "a repeated key was silently ignored";
  std::vector<std::string> d = diagnostics(r);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_THAT(d, ::testing::Contains(::testing::AllOf(::testing::StartsWith("gw.yaml:9:3: store.retention: "),
                                                      ::testing::HasSubstr("duplicate"))));
  EXPECT_THAT(d, ::testing::Contains(::testing::AllOf(::testing::StartsWith("gw.yaml:10:1: store: "),
                                                      ::testing::HasSubstr("duplicate"))));
}

// ---- api_keys -----------------------------------------------------------------------------------------

struct ApiKeyCase {
  const char* name;
  std::string yaml;  // the whole api_keys section; a valid channels section follows it
  std::map<std::string, std::string> env;
  std::vector<std::string> expected;
};

class ConfigApiKeys : public ::testing::TestWithParam<ApiKeyCase> {};

TEST_P(ConfigApiKeys, AreChecked) {
  const std::string yaml = GetParam().yaml + "channels:\n  - name: email\n    plugin: email_smtp\n";
  LoadResult r = load(yaml, env_of(GetParam().env));
  EXPECT_FALSE(r.config.has_value());
  std::vector<::testing::Matcher<std::string>> matchers(GetParam().expected.begin(), GetParam().expected.end());
  EXPECT_THAT(diagnostics(r), UnorderedElementsAreArray(matchers));
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigApiKeys,
    ::testing::Values(
        ApiKeyCase{"missing_env_var",
                   "api_keys:\n  - name: upstream\n    key_env: KEY_UP\n",
                   {},
                   {"gw.yaml:3:14: api_keys[0].key_env: environment variable KEY_UP is not set"}},
        ApiKeyCase{"empty_env_var",
                   "api_keys:\n  - name: upstream\n    key_env: KEY_UP\n",
                   {{"KEY_UP", ""}},
                   {"gw.yaml:3:14: api_keys[0].key_env: environment variable KEY_UP is empty"}},
        ApiKeyCase{"key_env_lower_case_looks_like_a_secret",
                   "api_keys:\n  - name: upstream\n    key_env: sk_live_abc123\n",
                   {{"sk_live_abc123", "x"}},
                   {"gw.yaml:3:14: api_keys[0].key_env: must name an environment variable (A-Z, 0-9, _), not hold "
                    "a key"}},
        ApiKeyCase{"key_env_with_dash_looks_like_a_secret",
                   "api_keys:\n  - name: upstream\n    key_env: ABC-DEF-123\n",
                   {{"ABC-DEF-123", "x"}},
                   {"gw.yaml:3:14: api_keys[0].key_env: must name an environment variable (A-Z, 0-9, _), not hold "
                    "a key"}},
        ApiKeyCase{"duplicate_names",
                   "api_keys:\n  - name: upstream\n    key_env: KEY_A\n  - name: upstream\n    key_env: KEY_B\n",
                   {{"KEY_A", "a"}, {"KEY_B", "b"}},
                   {"gw.yaml:4:11: api_keys[1].name: duplicate name \"upstream\""}},
        ApiKeyCase{"missing_name_and_key_env",
                   "api_keys:\n  - {}\n",
                   {},
                   {"gw.yaml:2:5: api_keys[0].name: is required", "gw.yaml:2:5: api_keys[0].key_env: is required"}},
        ApiKeyCase{"entry_not_a_map", "api_keys:\n  - upstream\n", {},
                   {"gw.yaml:2:5: api_keys[0]: must be a mapping"}},
        ApiKeyCase{"empty_list", "api_keys: []\n", {},
                   {"gw.yaml:1:11: api_keys: must be a non-empty list of {name, key_env}"}},
        ApiKeyCase{"missing_section", "", {},
                   {"gw.yaml:1:1: api_keys: is required (a list of {name, key_env, scopes?})"}},
        ApiKeyCase{"unknown_scope_and_empty_scopes",
                   "api_keys:\n  - {name: a, key_env: KEY_A, scopes: [send, write]}\n"
                   "  - {name: b, key_env: KEY_B, scopes: []}\n",
                   {{"KEY_A", "a"}, {"KEY_B", "b"}},
                   {"gw.yaml:2:46: api_keys[0].scopes[1]: must be one of send, read, read_all, admin",
                    "gw.yaml:3:39: api_keys[1].scopes: must be a non-empty list of send, read, read_all, admin"}},
        ApiKeyCase{"every_entry_checked",
                   "api_keys:\n  - name: a\n    key_env: KEY_A\n  - name: b\n    key_env: KEY_B\n",
                   {},
                   {"gw.yaml:3:14: api_keys[0].key_env: environment variable KEY_A is not set",
                    "gw.yaml:5:14: api_keys[1].key_env: environment variable KEY_B is not set"}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ConfigLoad, ScopesNarrowAKeyAndAKeyWithoutScopesHasThemAll) {
  LoadResult r = load("api_keys:\n"
                      "  - {name: all, key_env: KEY_ALL}\n"
                      "  - {name: sender, key_env: KEY_SEND, scopes: [send]}\n"
                      "  - {name: auditor, key_env: KEY_AUDIT, scopes: [read_all]}\n"
                      "channels:\n  - name: email\n    plugin: email_smtp\n",
                      env_of({{"KEY_ALL", "1"}, {"KEY_SEND", "2"}, {"KEY_AUDIT", "3"}}));
  ASSERT_TRUE(r.config.has_value()) << ::testing::PrintToString(diagnostics(r));
  const auto& keys = r.config->api_keys;
  ASSERT_EQ(keys.size(), 3u);
  for (Scope s : {Scope::send, Scope::read, Scope::read_all, Scope::admin}) EXPECT_TRUE(keys[0].allows(s));
  EXPECT_TRUE(keys[1].allows(Scope::send));
  EXPECT_FALSE(keys[1].allows(Scope::read));
  EXPECT_FALSE(keys[1].allows(Scope::admin));
  EXPECT_TRUE(keys[2].allows(Scope::read_all));
  EXPECT_TRUE(keys[2].allows(Scope::read));  // read_all includes read
  EXPECT_FALSE(keys[2].allows(Scope::send));
  // App keys take no scopes: they only ever answer /v1/inbound/app.
  LoadResult app = load(std::string(kMinimal) + "inbound:\n  app_keys:\n  - {name: ios, key_env: KEY_UP, scopes: [send]}\n",
                        env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(app), ElementsAre(::testing::HasSubstr("inbound.app_keys[0].scopes: unknown key (expected one of: name, key_env)")));
}

// ---- channels -----------------------------------------------------------------------------------------

TEST(ConfigChannels, DuplicateNamesAreReportedAtTheSecond) {
  const std::string yaml = std::string(kMinimal) +
                           "  - name: sms\n"            // 7
                           "    plugin: sms_twilio\n"   // 8
                           "  - name: email\n"          // 9
                           "    plugin: email_smtp\n";  // 10
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r), ElementsAre("gw.yaml:9:11: channels[2].name: duplicate channel name \"email\""));
}

class ConfigChannelName : public ::testing::TestWithParam<std::string> {};

TEST_P(ConfigChannelName, IsRefused) {
  const std::string yaml = "api_keys:\n  - name: upstream\n    key_env: KEY_UP\nchannels:\n  - name: \"" +
                           GetParam() + "\"\n    plugin: email_smtp\n";
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r),
              ElementsAre("gw.yaml:5:11: channels[0].name: must match [a-z][a-z0-9_]* (it appears in messages and "
                          "metrics)"))
      << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Table, ConfigChannelName,
                         ::testing::Values("Email", "1email", "e-mail", "e mail", "", "_email", "email.eu",
                                           "e" + std::string(63, 'x')));  // 64 characters: one too many

TEST(ConfigChannels, LongestNameIsAccepted) {
  const std::string name = "e" + std::string(62, 'x');  // 63 characters
  const std::string yaml = "api_keys:\n  - name: upstream\n    key_env: KEY_UP\nchannels:\n  - name: " + name +
                           "\n    plugin: email_smtp\n";
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  EXPECT_EQ(r.config->channels[0].name, name);
}

TEST(ConfigChannels, ContactMustNameAContactKind) {
  for (const char* good : {"email", "phone", "line_user", "push.fcm", "push.apns"}) {
    LoadResult r = load(std::string(kMinimal) + "    contact: " + good + "\n", env_of(kMinimalEnv));
    ASSERT_THAT(diagnostics(r), IsEmpty()) << good;
    EXPECT_EQ(r.config->channels[0].contact, good);
  }
  for (const char* bad : {"Email", "push.web", "e-mail", "push.fcm.x"}) {
    LoadResult r = load(std::string(kMinimal) + "    contact: " + bad + "\n", env_of(kMinimalEnv));
    EXPECT_THAT(diagnostics(r), ElementsAre("gw.yaml:7:14: channels[0].contact: must name a recipient contact kind "
                                            "(email, phone, line, ...) or push.fcm / push.apns"))
        << bad;
  }
}

// BUG (core): `contact: push` is accepted, but no recipient can ever match it. In a message,
// recipient.contacts.push is the list of push tokens (kept in Recipient::push, never in the contacts map),
// and Recipient::contact("push") is always empty, so every message routed to such a channel is skipped
// with "no_contact" — a silent misconfiguration. Expected: refused at load time like any bad kind.
TEST(ConfigChannels, ContactPushAloneIsRefused) {
  LoadResult r = load(std::string(kMinimal) + "    contact: push\n", env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r), ElementsAre("gw.yaml:7:14: channels[0].contact: must name a recipient contact kind "
                                          "(email, phone, line, ...) or push.fcm / push.apns"));
}

TEST(ConfigChannels, StructuralProblems) {
  const std::string yaml =
      "api_keys:\n"                         // 1
      "  - name: upstream\n"                // 2
      "    key_env: KEY_UP\n"               // 3
      "channels:\n"                         // 4
      "  - name: a\n"                       // 5  (no plugin)
      "  - plugin: p\n"                     // 6  (no name)
      "  - name: c\n"                       // 7
      "    plugin: p\n"                     // 8
      "    settings: [x]\n"                 // 9
      "  - name: d\n"                       // 10
      "    plugin: p\n"                     // 11
      "    settings:\n"                     // 12
      "      hosts: [a, b]\n"               // 13
      "      port: 25\n"                    // 14
      "  - just_a_string\n";                // 15
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r),
              UnorderedElementsAre(
                  "gw.yaml:5:5: channels[0].plugin: is required", "gw.yaml:6:5: channels[1].name: is required",
                  "gw.yaml:9:15: channels[2].settings: must be a mapping",
                  "gw.yaml:13:14: channels[3].settings.hosts: must be a scalar (string, number, boolean or duration)",
                  "gw.yaml:15:5: channels[4]: must be a mapping"));
}

TEST(ConfigChannels, SectionMissingOrEmpty) {
  const std::string keys = "api_keys:\n  - name: upstream\n    key_env: KEY_UP\n";
  EXPECT_THAT(diagnostics(load(keys, env_of(kMinimalEnv))),
              ElementsAre("gw.yaml:1:1: channels: is required (a list of {name, plugin, settings})"));
  EXPECT_THAT(diagnostics(load(keys + "channels: {}\n", env_of(kMinimalEnv))),
              ElementsAre("gw.yaml:4:11: channels: must be a non-empty list of {name, plugin, contact?, settings?}"));
}

TEST(ConfigChannels, EnvSettingsAreResolvedFromTheEnvironment) {
  const std::string yaml = std::string(kMinimal) +
                           "    settings:\n"                        // 7
                           "      account_sid: AC123\n"             // 8
                           "      auth_token_env: TWILIO_TOKEN\n"   // 9
                           "      api_key_env: TWILIO_KEY_2\n"      // 10
                           "      _env: NOT_A_SECRET\n";            // 11: just "_env" is an ordinary key
  LoadResult r = load(yaml, env_of({{"KEY_UP", "k"}, {"TWILIO_TOKEN", "tok-123"}, {"TWILIO_KEY_2", "key-456"}}));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  const auto& s = r.config->channels[0].settings;
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].key, "account_sid");
  EXPECT_EQ(s[0].value, "AC123");
  EXPECT_FALSE(s[0].from_env);

  EXPECT_EQ(s[1].key, "auth_token");
  EXPECT_EQ(s[1].value, "tok-123");
  EXPECT_TRUE(s[1].from_env);
  EXPECT_EQ(s[1].env_name, "TWILIO_TOKEN");
  EXPECT_EQ(s[1].at.line, 9);
  EXPECT_EQ(s[1].at.column, 7);

  EXPECT_EQ(s[2].key, "api_key");
  EXPECT_EQ(s[2].value, "key-456");
  EXPECT_TRUE(s[2].from_env);
  EXPECT_EQ(s[2].env_name, "TWILIO_KEY_2");
  EXPECT_EQ(s[2].at.line, 10);

  EXPECT_EQ(s[3].key, "_env");
  EXPECT_EQ(s[3].value, "NOT_A_SECRET");
  EXPECT_FALSE(s[3].from_env);
}

TEST(ConfigChannels, EnvSettingProblemsAreAllReported) {
  const std::string yaml = std::string(kMinimal) +
                           "    settings:\n"                        // 7
                           "      token_env: MISSING_TOKEN\n"       // 8
                           "      password_env: EMPTY_PASSWORD\n"   // 9
                           "      secret_env: s3cr3t-value\n";      // 10
  LoadResult r = load(yaml, env_of({{"KEY_UP", "k"}, {"EMPTY_PASSWORD", ""}, {"s3cr3t-value", "x"}}));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r),
              UnorderedElementsAre(
                  "gw.yaml:8:18: channels[0].settings.token_env: environment variable MISSING_TOKEN is not set",
                  "gw.yaml:9:21: channels[0].settings.password_env: environment variable EMPTY_PASSWORD is empty",
                  "gw.yaml:10:19: channels[0].settings.secret_env: must name an environment variable (A-Z, 0-9, _)"));
}

// ---- Whole-file problems ------------------------------------------------------------------------------

TEST(ConfigLoad, YamlSyntaxErrorIsLocated) {
  const std::string yaml =
      "api_keys:\n"                 // 1
      "  - name: upstream\n"        // 2
      "    key_env: [KEY_UP\n"      // 3: the flow sequence is never closed
      "channels:\n";                // 4
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u);
  const Diagnostic& d = r.errors[0];
  EXPECT_EQ(d.file, "gw.yaml");
  EXPECT_EQ(d.key_path, "");
  EXPECT_FALSE(d.message.empty());
  // yaml-cpp notices at the point where the unterminated sequence can no longer continue.
  EXPECT_GE(d.at.line, 3);
  EXPECT_LE(d.at.line, 5);
  EXPECT_GE(d.at.column, 1);
  EXPECT_EQ(d.to_string(), "gw.yaml:" + std::to_string(d.at.line) + ":" + std::to_string(d.at.column) + ": " +
                               d.message);
}

TEST(ConfigLoad, TabIndentationIsASyntaxErrorWithAPlace) {
  LoadResult r = load("server:\n  listen: a:1\n\tthreads: 2\n", env_of({}));
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].at.line, 3);
}

TEST(ConfigLoad, EmptyFile) {
  for (const char* yaml : {"", "\n\n", "# only a comment\n", "~\n"}) {
    LoadResult r = load(yaml, env_of({}));
    EXPECT_FALSE(r.config.has_value()) << yaml;
    EXPECT_THAT(diagnostics(r), ElementsAre("gw.yaml:1:1: the file is empty")) << yaml;
  }
}

TEST(ConfigLoad, RootMustBeAMapping) {
  EXPECT_THAT(diagnostics(load("- a\n- b\n", env_of({}))), ElementsAre("gw.yaml:1:1: must be a mapping"));
  EXPECT_THAT(diagnostics(load("just text\n", env_of({}))), ElementsAre("gw.yaml:1:1: must be a mapping"));
}

class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tayori_config_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ConfigFile, MissingFileIsOneDiagnosticNamingIt) {
  const std::string path = (dir_ / "nope.yaml").string();
  LoadResult r = load_file(path, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r), ElementsAre(path + ":0:0: cannot read the file"));
}

TEST_F(ConfigFile, LoadsAndResolvesAgainstTheFilesFolder) {
  const std::string path = (dir_ / "gateway.yaml").string();
  {
    std::ofstream out(path);
    out << kMinimal << "plugin_dirs:\n  - ../plugins\nstore:\n  data_dir: state\n";
  }
  LoadResult r = load_file(path, env_of(kMinimalEnv));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  EXPECT_EQ(r.config->file, path);
  EXPECT_EQ(r.config->base_dir, dir_.string());
  EXPECT_EQ(r.config->store.data_dir, (dir_ / "state").string());
  EXPECT_THAT(r.config->plugin_dirs, ElementsAre((dir_.parent_path() / "plugins").string()));
}

TEST_F(ConfigFile, DiagnosticsNameThePathGiven) {
  const std::string path = (dir_ / "bad.yaml").string();
  {
    std::ofstream out(path);
    out << kMinimal << "server:\n  threads: x\n";
  }
  EXPECT_THAT(diagnostics(load_file(path, env_of(kMinimalEnv))),
              ElementsAre(path + ":8:12: server.threads: must be an integer"));
}

// ---- Small helpers ------------------------------------------------------------------------------------

TEST(ConfigResolvePath, Table) {
  struct Case {
    const char* base;
    const char* path;
    const char* expected;
  };
  for (const Case& c : {Case{"/etc/tayori", "data", "/etc/tayori/data"},
                        Case{"/etc/tayori", "./a/../b", "/etc/tayori/b"},
                        Case{"/etc/tayori", "../lib", "/etc/lib"},
                        Case{"/etc/tayori", "/var/x", "/var/x"},
                        Case{"/etc/tayori", "/var/./x/../y", "/var/y"},
                        Case{"", "a/./b", "a/b"}})
    EXPECT_EQ(resolve_path(c.base, c.path), c.expected) << c.base << " + " << c.path;
}

TEST(ConfigDiagnostic, ToStringOmitsAnEmptyKeyPath) {
  EXPECT_EQ((Diagnostic{"f.yaml", {3, 7}, "a.b", "bad"}).to_string(), "f.yaml:3:7: a.b: bad");
  EXPECT_EQ((Diagnostic{"f.yaml", {1, 1}, "", "the file is empty"}).to_string(), "f.yaml:1:1: the file is empty");
}

}  // namespace
}  // namespace tayori::config

// ---- Links, outbound connections and channel limits (issue "Real channels") -------------------------

namespace tayori::config {
namespace {

TEST(ConfigLoad, PublicUrlLinkSecretOutboundAndChannelLimitsAreRead) {
  std::string yaml = std::string(
                         "server:\n"
                         "  public_url: https://gw.example.com/tayori\n"
                         "  link_secret_env: LINK_KEY\n"
                         "  link_ttl: 30d\n"
                         "outbound:\n"
                         "  verify_tls: false\n"
                         "  ca_file: /etc/hostname\n"
                         "  connect_timeout: 2s\n"
                         "  timeout: 15s\n") +
                     kMinimal +
                     "    concurrency: 8\n"
                     "    rate_limit: 600/m\n"
                     "    burst: 20\n"
                     "    batch_window: 200ms\n";
  auto env = kMinimalEnv;
  env["LINK_KEY"] = "k3y";
  LoadResult r = load(yaml, env_of(env));
  ASSERT_TRUE(r.config.has_value()) << testing::PrintToString(diagnostics(r));
  EXPECT_EQ(r.config->server.public_url, "https://gw.example.com/tayori");
  ASSERT_EQ(r.config->server.link_keys.size(), 1u);
  EXPECT_EQ(r.config->server.link_keys[0].id, "");
  EXPECT_EQ(r.config->server.link_keys[0].secret, "k3y");
  EXPECT_EQ(r.config->server.link_ttl_ms, 30LL * 86'400'000);
  EXPECT_FALSE(r.config->outbound.verify_tls);
  EXPECT_EQ(r.config->outbound.ca_file, "/etc/hostname");
  EXPECT_EQ(r.config->outbound.connect_timeout_ms, 2000);
  EXPECT_EQ(r.config->outbound.timeout_ms, 15000);
  EXPECT_EQ(r.config->channels[0].concurrency, 8);
  EXPECT_DOUBLE_EQ(r.config->channels[0].rate_per_second, 10.0);
  EXPECT_DOUBLE_EQ(r.config->channels[0].burst, 20.0);
  EXPECT_EQ(r.config->channels[0].batch_window_ms, 200);
}

// `track: {clicks}` on a channel: read as a bool, and refused without server.public_url (the tracked links
// point at the gateway), at the channel's track block.
TEST(ConfigLoad, ClickTrackingIsAChannelsChoiceAndNeedsThePublicUrl) {
  const std::string minimal = kMinimal;
  LoadResult without = load(minimal + "    track: {clicks: true}\n", env_of(kMinimalEnv));
  EXPECT_FALSE(without.config.has_value());
  EXPECT_THAT(diagnostics(without),
              testing::ElementsAre(testing::HasSubstr("channels[0].track.clicks: needs server.public_url")));
  LoadResult bad = load(minimal + "    track: {clicks: maybe}\n", env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(bad), testing::Contains(testing::HasSubstr("channels[0].track.clicks: must be true or false")));
  std::map<std::string, std::string> vars = kMinimalEnv;
  vars["LINK_SECRET"] = "0123456789abcdef0123456789abcdef";
  LoadResult with = load("server:\n  public_url: https://gw.example.com\n  link_secret_env: LINK_SECRET\n" + minimal +
                             "    track: {clicks: true}\n",
                         env_of(vars));
  ASSERT_TRUE(with.config.has_value()) << (diagnostics(with).empty() ? "" : diagnostics(with)[0]);
  EXPECT_TRUE(with.config->channels[0].track_clicks);
  EXPECT_FALSE(load(minimal, env_of(kMinimalEnv)).config->channels[0].track_clicks);
}

// attribution: a window for every message, and per category where a category says otherwise.
TEST(ConfigLoad, AttributionWindowsAreSetPerCategory) {
  const std::string minimal = kMinimal;
  LoadResult r = load("attribution:\n  window: 3d\n  categories:\n    flash_sale: 12h\n" + minimal, env_of(kMinimalEnv));
  ASSERT_TRUE(r.config.has_value()) << diagnostics(r)[0];
  EXPECT_EQ(r.config->attribution.window_of("news"), 3 * 86'400'000LL);
  EXPECT_EQ(r.config->attribution.window_of("flash_sale"), 12 * 3'600'000LL);
  EXPECT_EQ(r.config->attribution.longest_ms(), 3 * 86'400'000LL);
  EXPECT_EQ(load(minimal, env_of(kMinimalEnv)).config->attribution.window_of("news"), 7 * 86'400'000LL);
  LoadResult misspelt = load("attribution:\n  categories:\n    Flash_Sale: 12h\n" + minimal, env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(misspelt), testing::Contains(testing::HasSubstr(
                                   "attribution.categories.Flash_Sale: is not a category a message can have")));
  LoadResult bad = load("attribution:\n  window: soon\n  categories: [a]\n" + minimal, env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(bad), testing::UnorderedElementsAre(
                                    testing::HasSubstr("attribution.window: must be a duration"),
                                    testing::HasSubstr("attribution.categories: must map a category to its window")));
}

// A rule for a category no message can have (a capital, a space) would never apply: refused at load.
TEST(ConfigLoad, ACapsCategoryMustBeOneAMessageCanHave) {
  const std::string minimal = kMinimal;
  LoadResult r = load("policy:\n  caps:\n    - {name: sale, category: Spring Sale, limit: 1, window: 24h}\n" + minimal,
                      env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(r), testing::ElementsAre(testing::HasSubstr(
                                  "policy.caps[0].category: is not a category a message can have")));
  EXPECT_TRUE(load("policy:\n  caps:\n    - {name: sale, category: spring_sale, limit: 1, window: 24h}\n" + minimal,
                   env_of(kMinimalEnv))
                  .errors.empty());
}

TEST(ConfigLoad, BadLinksOutboundAndLimitsNameTheirKeys) {
  std::string yaml = std::string(
                         "server:\n"
                         "  public_url: ftp://gw.example.com\n"
                         "outbound:\n"
                         "  verify_tls: maybe\n"
                         "  ca_file: /no/such/ca.pem\n") +
                     kMinimal +
                     "    concurrency: 0\n"
                     "    rate_limit: fast\n"
                     "    batch_window: 1m\n";
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r),
              testing::UnorderedElementsAre(
                  testing::HasSubstr("server.public_url: must be an absolute http(s) URL"),
                  testing::HasSubstr("outbound.verify_tls: must be true or false"),
                  testing::HasSubstr("outbound.ca_file: no such file: /no/such/ca.pem"),
                  testing::HasSubstr("channels[0].concurrency: must be between 1 and 10000"),
                  testing::HasSubstr("channels[0].rate_limit: must be a rate like 100/s"),
                  testing::HasSubstr("channels[0].batch_window: must be at most 10s")));
}

TEST(ConfigLoad, LinkSecretsWithIdsComeFirstAndTheUnnamedKeyLast) {
  std::string yaml = std::string(
                         "server:\n"
                         "  public_url: https://gw.example.com\n"
                         "  link_secret_env: LINK_OLD\n"
                         "  link_secrets:\n"
                         "    - {id: k2026-12, secret_env: LINK_DEC}\n"
                         "    - {id: k2026-11, secret_env: LINK_NOV}\n") +
                     kMinimal;
  auto env = kMinimalEnv;
  env["LINK_OLD"] = "old";
  env["LINK_DEC"] = "dec";
  env["LINK_NOV"] = "nov";
  LoadResult r = load(yaml, env_of(env));
  ASSERT_TRUE(r.config.has_value()) << testing::PrintToString(diagnostics(r));
  const auto& keys = r.config->server.link_keys;
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].id, "k2026-12");
  EXPECT_EQ(keys[0].secret, "dec");
  EXPECT_EQ(keys[1].id, "k2026-11");
  EXPECT_EQ(keys[2].id, "");
  EXPECT_EQ(keys[2].secret, "old");
}

TEST(ConfigLoad, BadLinkSecretsNameTheEntryAndTheProblem) {
  std::string yaml = std::string(
                         "server:\n"
                         "  public_url: https://gw.example.com\n"
                         "  link_secrets:\n"
                         "    - {id: a.b, secret_env: LINK_A}\n"
                         "    - {id: k1, secret_env: LINK_A}\n"
                         "    - {id: k1, secret_env: LINK_B}\n"
                         "    - {id: k3, secret_env: lower}\n"
                         "    - {id: k4, secret_env: LINK_UNSET}\n"
                         "    - {id: k5}\n") +
                     kMinimal;
  auto env = kMinimalEnv;
  env["LINK_A"] = "a";
  env["LINK_B"] = "b";
  LoadResult r = load(yaml, env_of(env));
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(diagnostics(r),
              testing::UnorderedElementsAre(
                  testing::HasSubstr("server.link_secrets[0].id: must be 1 to 16 of A-Z, a-z, 0-9, _ and -"),
                  testing::HasSubstr("server.link_secrets[2].id: duplicate id \"k1\""),
                  testing::HasSubstr("server.link_secrets[3].secret_env: must name an environment variable"),
                  testing::HasSubstr("server.link_secrets[4].secret_env: environment variable LINK_UNSET is not set"),
                  testing::HasSubstr("server.link_secrets[5].secret_env: is required")));
  LoadResult empty = load(std::string("server:\n  public_url: https://gw.example.com\n  link_secrets: []\n") + kMinimal,
                          env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(empty), testing::ElementsAre(testing::HasSubstr(
                                      "server.link_secrets: must be a non-empty list of {id, secret_env}")));
}

TEST(ConfigLoad, APublicUrlNeedsALinkSecret) {
  LoadResult r = load(std::string("server:\n  public_url: https://gw.example.com\n") + kMinimal, env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(r), testing::ElementsAre(testing::HasSubstr(
                                  "server.link_secrets: is required with public_url (or server.link_secret_env): signed links need a key")));
}

}  // namespace
}  // namespace tayori::config

namespace tayori::config {
namespace {

TEST(ConfigLoad, ChannelsInheritTheDispatchersRetryPolicyAndMayOverrideIt) {
  std::string yaml =
      "dispatcher:\n"
      "  max_attempts: 4\n"
      "  retry_base: 2s\n"
      "  retry_cap: 10m\n"
      "  retry_max_age: 6h\n"
      "server:\n"
      "  shutdown_grace: 3s\n"
      "store:\n"
      "  max_size: 512MiB\n"
      "api_keys:\n"
      "  - name: upstream\n"
      "    key_env: KEY_UP\n"
      "channels:\n"
      "  - name: email\n"
      "    plugin: email_smtp\n"
      "  - name: line\n"
      "    plugin: line\n"
      "    retry: {base: 100ms, max_attempts: 8}\n"
      "    circuit_breaker: {failures: 2, probe_interval: 250ms}\n";
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  ASSERT_THAT(diagnostics(r), IsEmpty());
  const Config& c = *r.config;
  EXPECT_EQ(c.server.shutdown_grace_ms, 3'000);
  EXPECT_EQ(c.store.max_bytes, 512LL << 20);
  const RetryPolicy& inherited = c.channels[0].retry;
  EXPECT_EQ(inherited.max_attempts, 4);
  EXPECT_EQ(inherited.base_ms, 2'000);
  EXPECT_EQ(inherited.cap_ms, 600'000);
  EXPECT_EQ(inherited.max_age_ms, 6 * 3'600'000);
  EXPECT_EQ(c.channels[0].circuit_breaker.failures, 5);  // the default
  EXPECT_EQ(c.channels[0].circuit_breaker.probe_interval_ms, 10'000);
  const RetryPolicy& own = c.channels[1].retry;
  EXPECT_EQ(own.max_attempts, 8);
  EXPECT_EQ(own.base_ms, 100);
  EXPECT_EQ(own.cap_ms, 600'000);  // not overridden: the dispatcher's
  EXPECT_EQ(c.channels[1].circuit_breaker.failures, 2);
  EXPECT_EQ(c.channels[1].circuit_breaker.probe_interval_ms, 250);
}

TEST(ConfigLoad, AChannelsRetryAndCircuitBreakerAreCheckedByKey) {
  std::string yaml = std::string(kMinimal) +
                     "    retry: {base: soon, attempts: 3}\n"
                     "    circuit_breaker: {failures: -1, probe_interval: 1ms}\n";
  LoadResult r = load(yaml, env_of(kMinimalEnv));
  EXPECT_THAT(diagnostics(r),
              UnorderedElementsAre(
                  "gw.yaml:7:25: channels[0].retry.attempts: unknown key (expected one of: base, cap, max_attempts, "
                  "max_age)",
                  "gw.yaml:7:19: channels[0].retry.base: must be a duration like 250ms, 10s, 5m, 24h or 7d",
                  "gw.yaml:8:33: channels[0].circuit_breaker.failures: must be between 0 and 1000000",
                  "gw.yaml:8:53: channels[0].circuit_breaker.probe_interval: must be at least 10ms"));
}

}  // namespace
}  // namespace tayori::config
