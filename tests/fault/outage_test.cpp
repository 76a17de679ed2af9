// OutageFault: the provider fails hard (5xx on everything, then connections dropped without an answer), then
// recovers. With circuit_breaker {failures: 3, probe_interval: 500ms} the gateway stops hammering it: during
// the outage the provider sees about one probe per interval, tayori_circuit_state{channel} reads 1 (open),
// and after recovery it reads 0 and every message is delivered. On SQLite, and on PostgreSQL.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "fault_harness.hpp"

namespace tayori::testing::fault {
namespace {

// `store_yaml`: the store section (empty: the embedded SQLite in the gateway's folder).
void outage(const std::string& store_yaml) {
  const int outage_ms = env_int("TAYORI_FAULT_OUTAGE_MS", 4000);  // each of the two phases lasts half
  constexpr int kFailures = 3, kProbeMs = 500, kWorkers = 4;
  set_channel_secrets();
  Sim sim(all_providers({"--seed", std::to_string(seed("OutageFault"))}), false);
  TempDir dir;
  Gateway gw(dir,
             store_yaml + "channels:\n" +
                 sms_channel(sim, "sms",
                             "    circuit_breaker: {failures: 3, probe_interval: 500ms}\n"
                             "    retry: {base: 50ms, cap: 500ms, max_attempts: 1000, max_age: 1h}\n") +
                 kConsent,
             "", "retry_base: 50ms\nmax_attempts: 1000\nworkers: " + std::to_string(kWorkers));
  gw.start();
  HttpClient http;
  std::mutex mutex;
  std::set<std::string> ids;
  auto submit = [&](HttpClient& h, const std::string& id) {
    HttpResult r = gw.post_json(h, "/v1/messages", fault_message(id, "sms"));
    ASSERT_EQ(r.status, 202) << r.body;
    std::lock_guard lock(mutex);
    ids.insert(id);
  };

  for (int i = 0; i < 5; ++i) submit(http, "before-" + std::to_string(i));
  auto late = undelivered(gw, ids, std::chrono::seconds(15));
  ASSERT_TRUE(late.empty()) << describe(gw, late);
  EXPECT_EQ(circuit_state(gw, http, "sms"), 0.0);

  // Steady load through the whole outage: a message every 50 ms.
  std::atomic<bool> outage{true};
  std::thread load([&] {
    HttpClient h;
    for (int i = 0; outage; ++i) {
      submit(h, "during-" + std::to_string(i));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  const int64_t start = unix_ms();
  ASSERT_EQ(sim.faults({{"provider", "twilio"}, {"error_share", 1.0}, {"error_status", 503}}).status, 200);
  bool opened = eventually([&] { return circuit_state(gw, http, "sms") == 1.0; }, std::chrono::seconds(10));
  const int64_t opened_at = unix_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(outage_ms / 2));  // the outage's length, not a check
  call("DELETE", sim.url("/_sim/faults"));
  ASSERT_EQ(sim.faults({{"provider", "twilio"}, {"drop_share", 1.0}}).status, 200);
  // Dropped connections are transport failures: the circuit is still (or again) open.
  bool open_while_dropping = eventually([&] { return circuit_state(gw, http, "sms") == 1.0; }, std::chrono::seconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(outage_ms / 2));
  const int64_t end = unix_ms();
  call("DELETE", sim.url("/_sim/faults"));
  outage = false;
  load.join();

  EXPECT_TRUE(opened) << "tayori_circuit_state{channel=\"sms\"} never read 1 during the 5xx phase";
  EXPECT_TRUE(open_while_dropping) << "tayori_circuit_state{channel=\"sms\"} never read 1 while connections dropped";
  int during = 0;
  for (const Json& r : sim.requests("twilio")) {
    int64_t t = r["time_ms"].get<int64_t>();
    if (t >= start && t < end) ++during;
  }
  // Before it opens, `failures` requests (plus those the other workers had in flight); after, one probe per
  // interval.
  const int64_t allowed = (end - start) / kProbeMs + kFailures + kWorkers;
  EXPECT_LE(during, allowed) << "the provider saw " << during << " requests in a " << end - start
                             << " ms outage; the circuit should let about one probe per " << kProbeMs << " ms through";

  EXPECT_TRUE(eventually([&] { return circuit_state(gw, http, "sms") == 0.0; }, std::chrono::seconds(30)))
      << "the circuit did not close after the provider recovered";
  late = undelivered(gw, ids, std::chrono::seconds(60));
  ASSERT_TRUE(late.empty()) << describe(gw, late);
  auto sms = sends_by_message(sim, "twilio");
  int deferred = 0;
  for (const auto& id : ids) {
    EXPECT_FALSE(sms[id].empty()) << id;
    if (has_event(gw.get(http, "/v1/messages/" + id).json(), "deferred")) ++deferred;
  }
  std::cout << "[OutageFault] " << end - start << " ms outage (5xx then dropped connections): " << during
            << " provider requests (allowed " << allowed << ", circuit opened after " << opened_at - start << " ms); "
            << ids.size() << " messages, " << deferred << " deferred by the open circuit, all delivered\n";
}

TEST(OutageFault, CircuitOpensProbesAtItsIntervalAndEverythingIsDeliveredAfter) { outage(""); }

TEST(OutageFault, OnPostgresCircuitOpensProbesAtItsIntervalAndEverythingIsDeliveredAfter) {
  outage(postgres_store("outage", "outage-node"));
}

}  // namespace
}  // namespace tayori::testing::fault
