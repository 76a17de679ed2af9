// CrashFault: SIGKILL the gateway at random moments while clients submit to LINE (which de-duplicates on
// X-Line-Retry-Key) and to Twilio SMS (which does not), restart it on the same data dir, many rounds.
// Afterwards every message that got a 202 is delivered and the simulator saw it; LINE accepted exactly one
// request per message (every resend carried the same retry key, so LINE answered it 409); an SMS went out
// twice only when its timeline shows it was in flight at a kill (`requeued`). On SQLite, and on PostgreSQL.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "fault_harness.hpp"

namespace tayori::testing::fault {
namespace {

// `store_yaml`: the store section (empty: the embedded SQLite in the gateway's folder).
void crash_rounds(const std::string& store_yaml, int rounds) {
  const int per_round = env_int("TAYORI_FAULT_MESSAGES", 300);  // at most this many submissions per round
  std::mt19937_64 rng(seed("CrashFault"));
  set_channel_secrets();
  Sim sim(all_providers(), false);
  TempDir dir;
  Gateway gw(dir, store_yaml + "channels:\n" + line_channel(sim, "line") + sms_channel(sim, "sms") + kConsent, "",
             "retry_base: 50ms\nmax_attempts: 20");

  std::mutex mutex;
  std::set<std::string> acked, acked_line, acked_sms;
  for (int round = 0; round < rounds; ++round) {
    gw.start();
    std::atomic<int> submitted{0};
    std::atomic<int> acks{0};
    std::atomic<bool> killed{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        HttpClient http;
        // Three clients send LINE, one SMS: Twilio keeps no idempotency key, so its duplicates are visible.
        const std::string channel = t == 3 ? "sms" : "line";
        for (int i = 0; !killed && submitted++ < per_round; ++i) {
          std::string id = "r" + std::to_string(round) + "-c" + std::to_string(t) + "-" + std::to_string(i);
          HttpResult r = gw.post_json(http, "/v1/messages", fault_message(id, channel));
          if (r.status != 202) continue;  // killed mid-request: not acknowledged, so nothing is promised
          std::lock_guard lock(mutex);
          acked.insert(id);
          (channel == "line" ? acked_line : acked_sms).insert(id);
          ++acks;
        }
      });
    }
    // Load first, then the kill at a random moment within the next 400 ms: sometimes during intake, sometimes
    // with deliveries in flight, sometimes after the clients have finished.
    ASSERT_TRUE(eventually([&] { return acks > 0; }, std::chrono::seconds(20))) << gw.stderr_text();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 400)(rng)));
    EXPECT_EQ(gw.stop(SIGKILL), -SIGKILL);
    killed = true;
    for (auto& c : clients) c.join();
  }

  gw.start();
  HttpClient http;
  std::vector<std::string> lost;
  for (const auto& id : acked)
    if (gw.get(http, "/v1/messages/" + id).status != 200) lost.push_back(id);
  ASSERT_TRUE(lost.empty()) << lost.size() << " acknowledged messages were lost, e.g. " << lost.front();
  auto late = undelivered(gw, acked, std::chrono::seconds(60 + acked.size() / 50));
  ASSERT_TRUE(late.empty()) << describe(gw, late);

  // LINE: the first request under a retry key is the accepted one; a resend with the same key gets 409.
  auto line = sends_by_message(sim, "line");
  int line_resends = 0;
  for (const auto& id : acked_line) {
    const auto& sends = line[id];
    ASSERT_FALSE(sends.empty()) << id << " is delivered but LINE never saw it";
    std::set<std::string> keys;
    for (const auto& s : sends) keys.insert(s.retry_key);
    EXPECT_EQ(keys.size(), 1u) << id << " reached LINE under " << keys.size()
                               << " retry keys, so LINE accepted it more than once";
    EXPECT_FALSE(sends.front().retry_key.empty()) << id;
    line_resends += static_cast<int>(sends.size()) - 1;
  }
  // SMS: a second send is allowed only for a message that was in flight at a kill.
  auto sms = sends_by_message(sim, "twilio");
  int sms_duplicates = 0;
  for (const auto& id : acked_sms) {
    const auto& sends = sms[id];
    ASSERT_FALSE(sends.empty()) << id << " is delivered but Twilio never saw it";
    if (sends.size() == 1) continue;
    ++sms_duplicates;
    Json status = gw.get(http, "/v1/messages/" + id).json();
    EXPECT_TRUE(has_event(status, "requeued"))
        << id << " went out " << sends.size() << " times without being in flight at a kill: " << status.dump();
  }
  std::cout << "[CrashFault] " << rounds << " kills, " << acked.size() << " acknowledged (" << acked_line.size()
            << " LINE, " << acked_sms.size() << " SMS), all delivered; LINE resends " << line_resends
            << " (all under the message's one retry key: 1 accepted each); SMS duplicates " << sms_duplicates
            << " (all requeued)\n";
  EXPECT_EQ(gw.stop(SIGTERM), 0) << gw.stderr_text();
}

TEST(CrashFault, AcknowledgedMessagesSurviveSigkillAndLineAcceptsEachOnce) {
  crash_rounds("", env_int("TAYORI_FAULT_ROUNDS", 20));
}

// The same on PostgreSQL: the restarted node (same store.node_id) takes its own claims back at once.
TEST(CrashFault, OnPostgresAcknowledgedMessagesSurviveSigkill) {
  crash_rounds(postgres_store("crash", "crashing"), env_int("TAYORI_FAULT_ROUNDS", 20) / 2);
}

}  // namespace
}  // namespace tayori::testing::fault
