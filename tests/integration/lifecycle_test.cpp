// The gateway's life as an operator lives it: SIGHUP reloads channels and policies without losing or
// duplicating a message (and refuses a broken file, keeping the running configuration); SIGTERM stops
// intake at once with 503, lets deliveries in flight finish within server.shutdown_grace, and exits on
// time even when they do not, leaving them for the next start.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>

#include "sim_harness.hpp"

namespace tayori::testing {
namespace {

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

std::map<std::string, int> deliveries_in(const std::string& path) {
  std::map<std::string, int> seen;
  for (const auto& line : read_jsonl(path)) ++seen[line["message_id"]];
  return seen;
}

TEST(Lifecycle, SighupReloadsUnderLoadWithoutLosingOrDuplicatingAMessage) {
  TempDir dir;
  Gateway gw(dir, default_channels(dir));
  gw.start();
  const std::string original = read_file(gw.config_path());
  // The reloaded configuration adds a channel and a quiet-hours-free policy change: a real difference.
  const std::string extended = original + "  - name: sms2\n    plugin: file_sink\n    contact: phone\n"
                                          "    settings:\n      path: " + dir.file("outbox-sms2.jsonl") + "\n";

  std::set<std::string> acknowledged;
  std::mutex mutex;
  std::atomic<bool> done{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t)
    clients.emplace_back([&, t] {
      HttpClient http;
      for (int i = 0; !done; ++i) {
        std::string id = "reload-c" + std::to_string(t) + "-" + std::to_string(i);
        if (gw.post_json(http, "/v1/messages", sample_message(id)).status == 202) {
          std::lock_guard lock(mutex);
          acknowledged.insert(id);
        }
      }
    });
  auto acked = [&] {
    std::lock_guard lock(mutex);
    return acknowledged.size();
  };
  for (int reload = 1; reload <= 6; ++reload) {
    size_t before = acked();
    ASSERT_TRUE(eventually([&] { return acked() >= before + 40; }, std::chrono::seconds(20)));
    write_file(gw.config_path(), reload % 2 ? extended : original);
    gw.signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
      std::string log = gw.stderr_text();
      size_t n = 0;
      for (size_t at = log.find("SIGHUP: reloaded"); at != std::string::npos; at = log.find("SIGHUP: reloaded", at + 1))
        ++n;
      return n >= static_cast<size_t>(reload);
    })) << gw.stderr_text();
  }
  done = true;
  for (auto& c : clients) c.join();

  // The last reload (6, even) went back to the original: sms2 is unknown again, so a message naming it is
  // refused; one reload earlier it was known.
  HttpClient http;
  Json to_sms2 = sample_message("to-sms2", "sms2");
  to_sms2["recipient"]["contacts"]["phone"] = "+819012345678";
  EXPECT_EQ(gw.post_json(http, "/v1/messages", to_sms2).status, 400);
  write_file(gw.config_path(), extended);
  gw.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return gw.post_json(http, "/v1/messages", to_sms2).status == 202; }));
  ASSERT_TRUE(eventually([&] { return state_of(gw, http, "to-sms2") == "delivered"; })) << gw.stderr_text();

  std::string straggler = await_all(gw, http, acknowledged, "delivered");
  ASSERT_EQ(straggler, "") << "not every acknowledged message was delivered";
  std::map<std::string, int> seen = deliveries_in(dir.file("outbox-email.jsonl"));
  for (const auto& id : acknowledged) EXPECT_EQ(seen[id], 1) << id << " was delivered " << seen[id] << " times";
  EXPECT_EQ(seen.size(), acknowledged.size());
  std::printf("[ summary ] %zu messages across 7 reloads, each delivered exactly once\n", acknowledged.size());
}

TEST(Lifecycle, AnInvalidReloadIsRefusedWithItsErrorsAndTheRunningConfigurationStays) {
  TempDir dir;
  Gateway gw(dir, default_channels(dir));
  gw.start();
  const std::string original = read_file(gw.config_path());
  write_file(gw.config_path(), replace_all(original, "plugin: file_sink", "plugin: no_such_plugin"));
  gw.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return gw.stderr_text().find("the running one stays") != std::string::npos; }))
      << gw.stderr_text();
  // The problem is named where it is, like check-config names it.
  EXPECT_NE(gw.stderr_text().find("channels[0].plugin"), std::string::npos) << gw.stderr_text();

  HttpClient http;
  ASSERT_EQ(gw.post_json(http, "/v1/messages", sample_message("after-bad-reload")).status, 202);
  EXPECT_TRUE(eventually([&] { return state_of(gw, http, "after-bad-reload") == "delivered"; }));
  EXPECT_EQ(gw.get(http, "/readyz").status, 200);

  // A YAML syntax error is refused the same way.
  write_file(gw.config_path(), "channels: [\n");
  gw.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    std::string log = gw.stderr_text();
    return log.find("the running one stays") != log.rfind("the running one stays");  // said twice now
  })) << gw.stderr_text();
  ASSERT_EQ(gw.post_json(http, "/v1/messages", sample_message("after-broken-yaml")).status, 202);
  EXPECT_TRUE(eventually([&] { return state_of(gw, http, "after-broken-yaml") == "delivered"; }));
}

// LINE through the simulator, answering slowly, so deliveries are in flight when SIGTERM comes.
class Drain : public ::testing::Test {
 protected:
  void start(const std::string& grace, int latency_ms) {
    sim_ = std::make_unique<Sim>(all_providers(), false);
    ASSERT_EQ(sim_->faults({{"provider", "line"}, {"latency_ms", latency_ms}}).status, 200);
    ::setenv("LINE_TOKEN", kLineToken, 1);
    gw_ = std::make_unique<Gateway>(dir_,
                                    "server:\n  shutdown_grace: " + grace + "\n"
                                    "channels:\n  - name: line\n    plugin: line\n    settings:\n"
                                    "      base_url: " + sim_->http_base() + "\n"
                                    "      channel_access_token_env: LINE_TOKEN\n",
                                    "", "retry_base: 20ms");
    gw_->start();
  }
  Json line_message(const std::string& id) {
    return {{"id", id},
            {"purpose", "transactional"},
            {"channels", {"line"}},
            {"recipient", {{"id", "r-" + id}, {"contacts", {{"line", kLineUser}}}}},
            {"content", {{"text", "ご注文ありがとうございます " + id}}}};
  }
  // Submits `n` messages and waits until the simulator holds all of them (answering slowly).
  std::vector<std::string> submit_in_flight(int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      ids.push_back("drain-" + std::to_string(i));
      EXPECT_EQ(gw_->post_json(http_, "/v1/messages", line_message(ids.back())).status, 202);
    }
    EXPECT_TRUE(eventually([&] { return sim_->requests("line").size() >= static_cast<size_t>(n); }));
    return ids;
  }
  // Every request the simulator saw for one delivery carried the same X-Line-Retry-Key.
  std::map<std::string, std::set<std::string>> retry_keys_by_text() {
    std::map<std::string, std::set<std::string>> keys;
    for (const auto& r : sim_->requests("line")) {
      Json body = Json::parse(r["body"].get<std::string>());
      keys[body["messages"][0]["text"]].insert(r["headers"]["x-line-retry-key"].get<std::string>());
    }
    return keys;
  }

  TempDir dir_;
  HttpClient http_;
  std::unique_ptr<Sim> sim_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(Drain, SigtermRefusesNewWorkWith503AndFinishesDeliveriesInFlightBeforeExiting) {
  start("10s", 1500);
  std::vector<std::string> ids = submit_in_flight(4);
  auto signalled = std::chrono::steady_clock::now();
  gw_->signal(SIGTERM);
  // Draining: intake and readiness say 503 at once, while the deliveries are still in flight.
  ASSERT_TRUE(eventually([&] { return gw_->get(http_, "/readyz").status == 503; }, std::chrono::seconds(1)));
  HttpResult refused = gw_->post_json(http_, "/v1/messages", line_message("too-late"));
  EXPECT_EQ(refused.status, 503) << refused.body;
  std::optional<int> status = gw_->wait_exit(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value()) << "did not exit within the grace period";
  EXPECT_EQ(*status, 0) << gw_->stderr_text();
  EXPECT_GE(std::chrono::steady_clock::now() - signalled, std::chrono::milliseconds(500))
      << "exited before the deliveries in flight could finish";

  // They finished and were recorded before the exit: nothing to requeue, nothing sent twice.
  gw_->start();
  for (const auto& id : ids) {
    Json s = gw_->get(http_, "/v1/messages/" + id).json();
    EXPECT_EQ(s["state"], "delivered") << s.dump();
    for (const auto& e : s["events"]) EXPECT_NE(e["type"], "requeued") << s.dump();
  }
  EXPECT_EQ(gw_->get(http_, "/v1/messages/too-late").status, 404);
  EXPECT_EQ(sim_->requests("line").size(), ids.size());
}

TEST_F(Drain, PastTheGracePeriodItExitsAnywayAndTheNextStartDeliversWithTheSameRetryKey) {
  start("300ms", 3000);
  std::vector<std::string> ids = submit_in_flight(3);
  auto signalled = std::chrono::steady_clock::now();
  gw_->signal(SIGTERM);
  std::optional<int> status = gw_->wait_exit(std::chrono::seconds(2));
  ASSERT_TRUE(status.has_value()) << "did not exit after its 300ms grace period";
  EXPECT_EQ(*status, 0) << gw_->stderr_text();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, std::chrono::milliseconds(2500));
  EXPECT_NE(gw_->stderr_text().find("shutdown_grace"), std::string::npos) << gw_->stderr_text();

  ASSERT_EQ(sim_->faults({{"provider", "line"}, {"latency_ms", 0}}).status, 200);
  gw_->start();
  for (const auto& id : ids) {
    ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, id) == "delivered"; })) << id;
    Json s = gw_->get(http_, "/v1/messages/" + id).json();
    bool requeued = false;
    for (const auto& e : s["events"]) requeued = requeued || e["type"] == "requeued";
    EXPECT_TRUE(requeued) << s.dump() << sim_->requests("line").dump();
  }
  // Sent again after the restart, each with the key of its first attempt: LINE accepts it once.
  for (const auto& [text, keys] : retry_keys_by_text()) EXPECT_EQ(keys.size(), 1u) << text;
  EXPECT_GE(sim_->requests("line").size(), 2 * ids.size());
}

// dispatcher.enabled: false makes a process that accepts and answers the API but delivers nothing (the
// intake-only bench uses it); what it accepted is delivered by the next process that does dispatch.
TEST(Lifecycle, AnIntakeOnlyProcessAcceptsAndTheNextDispatchingOneDelivers) {
  TempDir dir;
  HttpClient http;
  {
    Gateway intake_only(dir, default_channels(dir), "", "enabled: false");
    intake_only.start();
    ASSERT_EQ(intake_only.post_json(http, "/v1/messages", sample_message("held-1")).status, 202);
    EXPECT_EQ(state_of(intake_only, http, "held-1"), "scheduled");
    EXPECT_NE(intake_only.stderr_text().find("dispatcher: disabled"), std::string::npos) << intake_only.stderr_text();
    Json held = intake_only.get(http, "/v1/messages/held-1").json();
    EXPECT_EQ(held["attempts"], 0);
    EXPECT_EQ(intake_only.stop(SIGTERM), 0);
  }
  Gateway dispatching(dir, default_channels(dir));
  dispatching.start();
  ASSERT_TRUE(eventually([&] { return state_of(dispatching, http, "held-1") == "delivered"; }));
  EXPECT_EQ(dispatching.get(http, "/v1/messages/held-1").json()["attempts"], 1);
}

// One process per SQLite data folder: the store keeps in memory what it knows of the file's rows (which recipients
// have nothing stored), right only while every write is its own. A second process on the same folder refuses to
// start and names the holder; a crash lets go of the folder.
TEST(Lifecycle, ASecondProcessOnTheSameDataFolderRefusesToStartAndACrashLetsItGo) {
  TempDir dir, other;
  HttpClient http;
  Gateway first(dir, default_channels(dir));
  first.start();
  Gateway second(other, default_channels(other), first.data_dir());
  try {
    second.start();
    FAIL() << "a second gateway started on " << first.data_dir();
  } catch (const std::runtime_error& e) {
    const std::string why = e.what();
    EXPECT_NE(why.find("is in use by another process (pid " + std::to_string(first.pid()) + ")"), std::string::npos)
        << why;
  }
  ASSERT_EQ(first.post_json(http, "/v1/messages", sample_message("after-refusal")).status, 202);
  EXPECT_EQ(first.stop(SIGKILL), -SIGKILL);
  second.start();
  ASSERT_TRUE(eventually([&] { return state_of(second, http, "after-refusal") == "delivered"; }));
}

}  // namespace
}  // namespace tayori::testing
