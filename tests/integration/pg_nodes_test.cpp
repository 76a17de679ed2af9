// Several gateway nodes on one PostgreSQL (docs/operator-guide.md §16), end to end: two real `tayori` processes
// with `store.backend: postgres` on one throw-away cluster (tests/support/pg_cluster.hpp), delivering to LINE on
// the provider simulator. No mocks. Caps hold across nodes, an id is one message whichever node takes it, a
// killed node's claims are requeued by the other once its lease passes, a PostgreSQL restart loses nothing that
// was acknowledged, and two live nodes never share a node id.
//
// This binary is one CTest entry (pg_integration_tests), so that its tests share one cluster (one initdb); each
// test has a database of its own.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <latch>
#include <memory>
#include <mutex>

#include "fault_harness.hpp"
#include "pg_cluster.hpp"

namespace tayori::testing::fault {
namespace {

constexpr const char* kUrlEnv = "TAYORI_IT_PG_URL";

const std::set<std::string> kFinalStates = {"delivered", "failed", "cancelled", "suppressed", "dead"};

// A transactional or marketing message to LINE for `recipient`, its text tagged with the id.
Json line_message(const std::string& id, const std::string& recipient, const std::string& purpose = "transactional") {
  Json m = fault_message(id, "line");
  m["recipient"]["id"] = recipient;
  m["purpose"] = purpose;
  return m;
}

// The `detail` of each event of `type` in a message status.
std::vector<Json> details(const Json& status, const std::string& type) {
  std::vector<Json> out;
  for (const auto& e : status.value("events", Json::array()))
    if (e.value("type", "") == type) out.push_back(e.value("detail", Json::object()));
  return out;
}

// Posts `bodies[k]` to `nodes[k]` (k = 0, 1) from two threads released in the same instant; the two answers.
std::array<HttpResult, 2> at_once(const std::array<const Gateway*, 2>& nodes, const std::array<Json, 2>& bodies) {
  std::latch go(2);
  std::array<HttpResult, 2> answers;
  std::vector<std::thread> clients;
  for (int k = 0; k < 2; ++k)
    clients.emplace_back([&, k] {
      HttpClient http;
      go.arrive_and_wait();
      answers[k] = nodes[k]->post_json(http, "/v1/messages", bodies[k]);
    });
  for (auto& c : clients) c.join();
  return answers;
}

class PgNodes : public ::testing::Test {
 protected:
  // One node: a folder of its own (config, data dir), the test's database.
  struct Node {
    TempDir dir;
    std::unique_ptr<Gateway> gw;
  };

  void SetUp() override {
    set_channel_secrets();
    // The test cluster trades durability for speed (synchronous_commit off), under which a crash of the server
    // may lose the last commits it acknowledged: these databases commit as production ones do, so that an
    // acknowledged message is one that survives PostgreSQL's crash (APostgresRestartLosesNothingAcknowledged).
    static int databases = 0;
    const std::string name = "nodes_" + std::to_string(++databases);
    ::setenv(kUrlEnv, cluster().create_database(name).c_str(), 1);
    cluster().execute("ALTER DATABASE " + name + " SET synchronous_commit = on");
    sim_ = std::make_unique<Sim>(all_providers(), false);
  }
  void TearDown() override {
    if (!cluster().running()) cluster().start();  // a failed test must not leave the next without its database
    if (!HasFailure()) return;
    for (const auto& n : nodes_)
      if (n->gw) std::cerr << "node stderr:\n" << n->gw->stderr_text();
    std::cerr << "postgres log:\n" << cluster().log_tail();
  }

  static PgCluster& cluster() { return shared_pg_cluster(); }

  // A node named `id` (store.node_id) with claims leased for `lease`, not yet started; `policy` is its policy block.
  Gateway& node(const std::string& id, const std::string& lease = "2s", const std::string& policy = kConsent) {
    auto n = std::make_unique<Node>();
    n->gw = std::make_unique<Gateway>(n->dir,
                                      "store:\n  backend: postgres\n  url_env: " + std::string(kUrlEnv) +
                                          "\n  node_id: " + id + "\n  lease: " + lease +
                                          "\n  statement_timeout: 2s\nchannels:\n" + line_channel(*sim_, "line") +
                                          policy,
                                      "", "retry_base: 50ms\nmax_attempts: 30");
    nodes_.push_back(std::move(n));
    return *nodes_.back()->gw;
  }
  Gateway& started(const std::string& id, const std::string& lease = "2s", const std::string& policy = kConsent) {
    Gateway& gw = node(id, lease, policy);
    gw.start();
    return gw;
  }

  // Waits until every message of `ids` is in a final state; their states (or "http-N" / a non-final state).
  static std::map<std::string, std::string> final_states(const Gateway& gw, const std::vector<std::string>& ids,
                                                         std::chrono::seconds timeout = std::chrono::seconds(30)) {
    HttpClient http;
    std::map<std::string, std::string> states;
    eventually(
        [&] {
          for (const auto& id : ids)
            if (!kFinalStates.count(states[id])) states[id] = state_of(gw, http, id);
          return std::all_of(states.begin(), states.end(), [](const auto& s) { return kFinalStates.count(s.second); });
        },
        timeout);
    return states;
  }

  std::unique_ptr<Sim> sim_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// 1. Two nodes clear messages of the same recipients at the same time under "3 marketing messages a day":
// the per-recipient advisory lock makes the cap exact across nodes.
TEST_F(PgNodes, FrequencyCapHoldsAcrossTwoNodes) {
  const std::string policy = std::string(kConsent) +
                             "  caps:\n"
                             "    - name: marketing_daily\n"
                             "      scope: all\n"
                             "      purpose: marketing\n"
                             "      limit: 3\n"
                             "      window: 24h\n";
  Gateway& a = started("cap-a", "2s", policy);
  Gateway& b = started("cap-b", "2s", policy);
  const std::vector<std::string> recipients = {"rcp-x", "rcp-y", "rcp-z"};
  const int per_recipient = 12;
  std::map<std::string, std::string> recipient_of;
  std::array<Json, 2> batches = {Json{{"messages", Json::array()}}, Json{{"messages", Json::array()}}};
  for (int i = 0; i < per_recipient; ++i)
    for (const auto& rid : recipients) {
      std::string id = "cap-" + rid + "-" + std::to_string(i);
      recipient_of[id] = rid;
      batches[i % 2]["messages"].push_back(line_message(id, rid, "marketing"));
    }
  // Both nodes take their half in the same instant.
  for (const auto& r : at_once({&a, &b}, batches)) {
    ASSERT_EQ(r.status, 202) << r.body;
    ASSERT_EQ(r.json()["accepted"], per_recipient * static_cast<int>(recipients.size()) / 2) << r.body;
  }

  std::vector<std::string> ids;
  for (const auto& [id, rid] : recipient_of) ids.push_back(id);
  auto states = final_states(a, ids);
  HttpClient http;
  std::map<std::string, std::map<std::string, int>> by_recipient;
  for (const auto& [id, state] : states) {
    ++by_recipient[recipient_of[id]][state];
    if (state == "suppressed") {
      EXPECT_EQ(a.get(http, "/v1/messages/" + id).json()["last_reason"], "frequency_cap") << id;
    }
  }
  std::map<std::string, int> at_line;  // recipient -> messages LINE accepted
  for (const auto& [id, sends] : sends_by_message(*sim_, "line")) ++at_line[recipient_of[id]];
  for (const auto& rid : recipients) {
    EXPECT_EQ(by_recipient[rid]["delivered"], 3) << rid << ": " << ::testing::PrintToString(by_recipient[rid]);
    EXPECT_EQ(by_recipient[rid]["suppressed"], per_recipient - 3)
        << rid << ": " << ::testing::PrintToString(by_recipient[rid]);
    EXPECT_EQ(at_line[rid], 3) << rid << " at the simulator";
  }
  // Both nodes added to the same stats rows at once; either node reads the sum.
  const int all = per_recipient * static_cast<int>(recipients.size());
  for (Gateway* node : {&a, &b}) {
    const Json stats = node->get(http, "/v1/stats?by=channel").json();
    ASSERT_EQ(stats["groups"].size(), 1u) << stats.dump();
    const Json& line = stats["groups"][0];
    EXPECT_EQ(line["key"], "line");
    EXPECT_EQ(line["accepted"], all);
    EXPECT_EQ(line["delivered"], 3 * static_cast<int>(recipients.size()));
    EXPECT_EQ(line["suppressed"], (Json{{"total", all - 9}, {"by_reason", {{"frequency_cap", all - 9}}}}));
  }
  EXPECT_EQ(a.stop(SIGTERM), 0) << a.stderr_text();
  EXPECT_EQ(b.stop(SIGTERM), 0) << b.stderr_text();
}

// 2. The same id sent to both nodes at the same moment is one message: one `accepted`, one `duplicate`; a
// different payload under that id is refused (422) by either node.
TEST_F(PgNodes, OneIdSentToBothNodesAtOnceIsOneMessage) {
  Gateway& a = started("dup-a");
  Gateway& b = started("dup-b");
  for (int round = 0; round < 5; ++round) {
    const std::string id = "dup-" + std::to_string(round);
    const Json m = line_message(id, "r-" + id);
    auto answers = at_once({&a, &b}, {m, m});
    std::multiset<std::string> said;
    for (const auto& r : answers) {
      ASSERT_EQ(r.status, 202) << r.body;
      said.insert(r.json().value("status", ""));
    }
    EXPECT_EQ(said, (std::multiset<std::string>{"accepted", "duplicate"})) << answers[0].body << answers[1].body;

    Json changed = m;
    changed["content"]["text"] = tag(id) + " changed";
    HttpClient http;
    EXPECT_EQ(a.post_json(http, "/v1/messages", changed).status, 422);
    EXPECT_EQ(b.post_json(http, "/v1/messages", changed).status, 422);
    ASSERT_EQ(final_states(b, {id})[id], "delivered");
  }
  auto line = sends_by_message(*sim_, "line");
  for (int round = 0; round < 5; ++round)
    EXPECT_EQ(line["dup-" + std::to_string(round)].size(), 1u) << "dup-" << round << " reached LINE more than once";
}

// 3. A node killed with its claims in flight: once their lease (2 s) has passed, the other node requeues them
// (naming the dead node) and delivers everything that either node acknowledged.
TEST_F(PgNodes, AKilledNodesClaimsAreFinishedByTheOtherAfterTheLease) {
  Gateway& victim = started("victim");
  Gateway& survivor = started("survivor");
  // LINE answers slowly, so the victim holds claims when it dies.
  ASSERT_EQ(sim_->faults({{"provider", "line"}, {"latency_ms", 400}}).status, 200);
  std::set<std::string> acked;
  HttpClient http;
  for (int i = 0; i < 40; ++i) {
    const std::string id = "kill-" + std::to_string(i);
    HttpResult r = (i % 4 == 0 ? survivor : victim).post_json(http, "/v1/messages", line_message(id, "r-" + id));
    ASSERT_EQ(r.status, 202) << r.body;
    acked.insert(id);
  }
  ASSERT_TRUE(eventually([&] { return sim_->requests("line").size() >= 4; })) << victim.stderr_text();
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(victim.stop(SIGKILL), -SIGKILL);
  ASSERT_EQ(sim_->faults({{"provider", "line"}, {"latency_ms", 0}}).status, 200);

  auto late = undelivered(survivor, acked, std::chrono::seconds(30));
  ASSERT_TRUE(late.empty()) << describe(survivor, late);
  const auto took = std::chrono::steady_clock::now() - killed_at;
  int requeued = 0;
  for (const auto& id : acked) {
    Json status = survivor.get(http, "/v1/messages/" + id).json();
    for (const Json& d : details(status, "requeued")) {
      EXPECT_EQ(d.value("reason", ""), "the lease of node victim expired") << status.dump();
      ++requeued;
    }
  }
  EXPECT_GT(requeued, 0) << "the victim held no claim when it was killed";
  EXPECT_GE(took, std::chrono::milliseconds(1300)) << "claims were taken over before the victim's lease passed";
  std::cout << "[PgNodes] " << requeued << " claims of the killed node requeued; all " << acked.size()
            << " delivered " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
            << " ms after the kill\n";
  EXPECT_EQ(survivor.stop(SIGTERM), 0) << survivor.stderr_text();
}

// 4. PostgreSQL restarted under load, cleanly (fast) and as a crash (immediate): while it is down intake answers
// 503 with Retry-After and /readyz 503; the node reconnects by itself; every message that got a 202 is delivered.
TEST_F(PgNodes, APostgresRestartLosesNothingAcknowledged) {
  Gateway& gw = started("restart");
  std::mutex mutex;
  std::set<std::string> acked;
  std::map<long, int> answers;
  std::atomic<bool> done{false};
  std::atomic<int> n{0};
  std::thread load([&] {
    HttpClient http;
    while (!done) {
      const std::string id = "load-" + std::to_string(n++);
      HttpResult r = gw.post_json(http, "/v1/messages", line_message(id, "r-" + id));
      std::lock_guard lock(mutex);
      ++answers[r.status];
      if (r.status == 202) acked.insert(id);
      if (r.status == 503) {
        EXPECT_EQ(r.headers["retry-after"], "1") << r.body;
      }
      if (r.status != 202) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  HttpClient http;
  int probes = 0;
  auto probe = [&] {
    const std::string id = "probe-" + std::to_string(++probes);
    HttpResult r = gw.post_json(http, "/v1/messages", line_message(id, "r-" + id));
    std::lock_guard lock(mutex);
    if (r.status == 202) acked.insert(id);
    return r;
  };
  for (PgCluster::Stop how : {PgCluster::Stop::fast, PgCluster::Stop::immediate}) {
    ASSERT_TRUE(eventually([&] { return n > 20; })) << gw.stderr_text();
    cluster().stop(how);
    HttpResult down = probe();
    EXPECT_EQ(down.status, 503) << down.body;
    EXPECT_EQ(down.headers["retry-after"], "1");
    EXPECT_EQ(gw.get(http, "/readyz").status, 503);
    const int before = n;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    cluster().start();
    ASSERT_TRUE(eventually([&] { return probe().status == 202; }, std::chrono::seconds(10))) << gw.stderr_text();
    ASSERT_TRUE(eventually([&] { return gw.get(http, "/readyz").status == 200; }, std::chrono::seconds(10)));
    ASSERT_TRUE(eventually([&] { return n > before + 20; })) << "intake did not resume";
  }
  done = true;
  load.join();
  {
    std::lock_guard lock(mutex);
    for (const auto& [status, count] : answers)
      EXPECT_TRUE(status == 202 || status == 503) << count << " answers " << status;
  }
  std::vector<std::string> lost;
  for (const auto& id : acked)
    if (gw.get(http, "/v1/messages/" + id).status != 200) lost.push_back(id);
  ASSERT_TRUE(lost.empty()) << lost.size() << " acknowledged messages were lost, e.g. " << lost.front();
  auto late = undelivered(gw, acked, std::chrono::seconds(30));
  ASSERT_TRUE(late.empty()) << describe(gw, late);
  std::cout << "[PgNodes] " << acked.size() << " acknowledged across two restarts, all delivered; answers "
            << ::testing::PrintToString(answers) << "\n";
  EXPECT_EQ(gw.stop(SIGTERM), 0) << gw.stderr_text();
}

// 5. A second live node with a running node's store.node_id refuses to start, saying so; the first runs on.
TEST_F(PgNodes, ASecondLiveNodeWithTheSameIdRefusesToStart) {
  Gateway& first = started("twin");
  Gateway& second = node("twin");
  try {
    second.start();
    FAIL() << "a second node with store.node_id twin started";
  } catch (const std::runtime_error& e) {
    const std::string why = e.what();
    EXPECT_NE(why.find("store.node_id"), std::string::npos) << why;
    EXPECT_NE(why.find("twin"), std::string::npos) << why;
  }
  HttpClient http;
  ASSERT_EQ(first.post_json(http, "/v1/messages", line_message("twin-1", "r-twin")).status, 202);
  EXPECT_EQ(final_states(first, {"twin-1"})["twin-1"], "delivered");
  EXPECT_EQ(first.stop(SIGTERM), 0) << first.stderr_text();
}

}  // namespace
}  // namespace tayori::testing::fault
