// The feed (events back to the upstream system), through the real binary: the webhooks (signed, ordered,
// at-least-once, retried while the receiver fails) and GET /v1/events (the same events, paged by seq).
// The receiver is the project's own api::HttpServer in this process; signatures are checked with the host's
// HMAC over "<t>.<raw body>", as an upstream system would.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <regex>
#include <set>

#include "api/http_server.hpp"
#include "harness.hpp"
#include "crypto/crypto.hpp"

namespace tayori::testing {
namespace {

constexpr const char* kSecret = "whsec-integration-0123456789";

// Answers 500 to its first `failures` requests to `failing_path`, then 200; keeps every request.
class Receiver final : public api::Handler {
 public:
  Receiver(std::string failing_path, int failures)
      : failing_path_(std::move(failing_path)), failures_(failures), server_(*this, api::ServerLimits{}, 1) {
    port_ = server_.start("127.0.0.1", 0);
  }
  ~Receiver() override { server_.stop(500); }

  void handle(api::HttpRequest request, api::Responder respond) override {
    api::HttpResponse r;
    {
      std::lock_guard lock(mu_);
      r.status = request.path == failing_path_ && failures_-- > 0 ? 500 : 200;
      got_.push_back({request, r.status});
    }
    r.body = "{}";
    respond(std::move(r));
  }

  struct Got {
    api::HttpRequest request;
    int answered;
  };
  std::vector<Got> got() {
    std::lock_guard lock(mu_);
    return got_;
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  std::mutex mu_;
  std::string failing_path_;
  int failures_;
  std::vector<Got> got_;
  api::HttpServer server_;
  uint16_t port_ = 0;
};

// Verifies Tayori-Signature the way a receiver does; "" when good, else why not.
std::string check_signature(const api::HttpRequest& r) {
  std::smatch m;
  std::string header(r.header("tayori-signature"));
  if (!std::regex_match(header, m, std::regex("t=([0-9]+),v1=([0-9a-f]{64})"))) return "malformed: " + header;
  auto mac = crypto::hmac_sha256(kSecret, m[1].str() + "." + r.body);
  if (!mac || !crypto::constant_time_equal(crypto::hex(mac.value()), m[2].str())) return "forged: " + header;
  long long t = std::stoll(m[1].str());
  if (std::llabs(t - static_cast<long long>(std::time(nullptr))) > 300) return "stale t: " + header;
  return "";
}

// Every event of GET /v1/events, following `next` with pages of `limit`.
std::vector<Json> feed(const Gateway& gw, HttpClient& c, int limit) {
  std::vector<Json> out;
  int64_t after = 0;
  for (int pages = 0; pages < 1000; ++pages) {
    HttpResult r = gw.get(c, "/v1/events?after=" + std::to_string(after) + "&limit=" + std::to_string(limit));
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) break;
    Json body = r.json();
    for (const auto& e : body["events"]) out.push_back(e);
    if (body["next"].is_null()) break;
    after = body["next"].get<int64_t>();
  }
  return out;
}

TEST(Feed, WebhookGetsEveryEventSignedInOrderThroughFailuresAndTheFeedAgrees) {
  TempDir dir;
  Receiver receiver("/hooks/all", 2);  // crm's first two POSTs fail: its first event waits through two backoffs
  ::setenv("TAYORI_WEBHOOK_SECRET", kSecret, 1);
  Gateway gw(dir, default_channels(dir) +
                      "webhooks:\n"
                      "  - name: crm\n"
                      "    url: " + receiver.url("/hooks/all") + "\n"
                      "    secret_env: TAYORI_WEBHOOK_SECRET\n"
                      "    timeout: 2s\n"
                      "  - name: audit\n"
                      "    url: " + receiver.url("/hooks/delivered") + "\n"
                      "    secret_env: TAYORI_WEBHOOK_SECRET\n"
                      "    events: [delivered]\n");
  gw.start();
  HttpClient c;
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back("ev-" + std::to_string(i));
    ASSERT_EQ(gw.post_json(c, "/v1/messages", sample_message(ids.back())).status, 202);
  }
  ASSERT_EQ(await_all(gw, c, ids, "delivered"), "");

  std::vector<Json> events = feed(gw, c, 3);
  ASSERT_GE(events.size(), ids.size() * 3);  // accepted, dispatched, delivered at least
  std::vector<Json> all_pages = feed(gw, c, 1000);
  EXPECT_EQ(events, all_pages);  // paging does not change what is seen
  int64_t last = 0;
  for (const auto& e : events) {
    EXPECT_GT(e["seq"].get<int64_t>(), last);
    last = e["seq"].get<int64_t>();
    EXPECT_EQ(e["id"], "evt_" + std::to_string(last));
    EXPECT_EQ(e["recipient_id"], "r-" + e["message_id"].get<std::string>());
  }

  // Both subscriptions catch up: every event (crm) and every delivered one (audit), de-duplicated by id.
  auto received = [&](const std::string& path) {
    std::map<std::string, Json> by_id;
    for (const auto& g : receiver.got())
      if (g.request.path == path && g.answered == 200) by_id[std::string(g.request.header("tayori-event-id"))] =
                                                           Json::parse(g.request.body);
    return by_id;
  };
  size_t delivered_events = 0;
  for (const auto& e : events) delivered_events += e["type"] == "delivered";
  ASSERT_TRUE(eventually([&] {
    return received("/hooks/all").size() == events.size() && received("/hooks/delivered").size() == delivered_events;
  }, std::chrono::seconds(20)))
      << received("/hooks/all").size() << " of " << events.size() << "\n" << gw.stderr_text();

  std::vector<Receiver::Got> got = receiver.got();
  size_t failed = 0;
  for (const auto& g : got) failed += g.answered == 500;
  EXPECT_EQ(failed, 2u);
  // Each POST is signed, names its event, and carries exactly the feed's JSON for it.
  std::map<std::string, Json> by_id;
  for (const auto& e : events) by_id[e["id"]] = e;
  std::map<std::string, std::vector<int64_t>> seqs;  // per path, in arrival order, first delivery only
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& g : got) {
    EXPECT_EQ(g.request.method, "POST");
    EXPECT_EQ(check_signature(g.request), "") << g.request.body;
    Json body = Json::parse(g.request.body);
    std::string id(g.request.header("tayori-event-id"));
    EXPECT_EQ(body["id"], id);
    ASSERT_TRUE(by_id.count(id)) << id;
    EXPECT_EQ(body, by_id[id]);
    if (g.answered == 200 && seen.insert({g.request.path, id}).second)
      seqs[g.request.path].push_back(body["seq"].get<int64_t>());
    if (g.request.path == "/hooks/delivered") EXPECT_EQ(body["type"], "delivered");
  }
  // Ordered: in seq order per subscription (so per message too), and each event delivered once (a retry
  // only follows a failure: no 2xx'd event was sent again).
  for (const auto& [path, list] : seqs) EXPECT_TRUE(std::is_sorted(list.begin(), list.end())) << path;
  size_t ok_posts = 0;
  for (const auto& g : got) ok_posts += g.answered == 200;
  EXPECT_EQ(ok_posts, events.size() + delivered_events);

  // The metrics saw the retries and the deliveries, and no lag is left.
  std::string metrics = c.request("GET", gw.url("/metrics"), "", {}).body;
  EXPECT_NE(metrics.find("tayori_webhook_deliveries_total{result=\"retried\",webhook=\"crm\"} 2"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tayori_webhook_deliveries_total{result=\"delivered\",webhook=\"crm\"} " +
                         std::to_string(events.size())),
            std::string::npos);
  EXPECT_TRUE(eventually([&] {
    return c.request("GET", gw.url("/metrics"), "", {}).body.find("tayori_webhook_lag_events{webhook=\"crm\"} 0") !=
           std::string::npos;
  }));

  // A restart (cursor in the store) sends only what is new.
  EXPECT_EQ(gw.stop(SIGTERM), 0);
  size_t before = receiver.got().size();
  gw.start();
  ASSERT_EQ(gw.post_json(c, "/v1/messages", sample_message("ev-after-restart")).status, 202);
  ASSERT_EQ(await_all(gw, c, std::vector<std::string>{"ev-after-restart"}, "delivered"), "");
  size_t now_events = feed(gw, c, 1000).size();
  ASSERT_TRUE(eventually([&] { return received("/hooks/all").size() == now_events; }, std::chrono::seconds(10)));
  for (size_t i = before; i < receiver.got().size(); ++i) {
    Json body = Json::parse(receiver.got()[i].request.body);
    EXPECT_GT(body["seq"].get<int64_t>(), last) << "resent after restart: " << body.dump();
  }
}

// A receiver that never recovers: the event is dropped once give_up_after has passed (counted), and the
// sender goes on; a SIGHUP reload replaces the senders without resending what was delivered.
TEST(Feed, GivesUpAfterGiveUpAfterAndSurvivesReload) {
  TempDir dir;
  Receiver receiver("/hooks/down", 1'000'000);
  ::setenv("TAYORI_WEBHOOK_SECRET", kSecret, 1);
  std::string yaml = default_channels(dir) +
                     "webhooks:\n"
                     "  - name: down\n"
                     "    url: " + receiver.url("/hooks/down") + "\n"
                     "    secret_env: TAYORI_WEBHOOK_SECRET\n"
                     "    events: [delivered]\n"
                     "    give_up_after: 1s\n"
                     "  - name: up\n"
                     "    url: " + receiver.url("/hooks/up") + "\n"
                     "    secret_env: TAYORI_WEBHOOK_SECRET\n"
                     "    events: [delivered]\n";
  Gateway gw(dir, yaml);
  gw.start();
  HttpClient c;
  ASSERT_EQ(gw.post_json(c, "/v1/messages", sample_message("drop-1")).status, 202);
  ASSERT_EQ(await_all(gw, c, std::vector<std::string>{"drop-1"}, "delivered"), "");
  auto metric = [&](const std::string& line) {
    return c.request("GET", gw.url("/metrics"), "", {}).body.find(line) != std::string::npos;
  };
  ASSERT_TRUE(eventually([&] { return metric("tayori_webhook_deliveries_total{result=\"dropped\",webhook=\"down\"} 1"); },
                         std::chrono::seconds(10)))
      << gw.stderr_text();
  EXPECT_TRUE(eventually([&] { return metric("tayori_webhook_lag_events{webhook=\"down\"} 0"); }));
  EXPECT_NE(gw.stderr_text().find("dropped evt_"), std::string::npos);
  auto ups = [&] {
    size_t n = 0;
    for (const auto& g : receiver.got()) n += g.request.path == "/hooks/up";
    return n;
  };
  ASSERT_TRUE(eventually([&] { return ups() == 1; }));

  gw.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return gw.stderr_text().find("SIGHUP: reloaded") != std::string::npos; }));
  ASSERT_EQ(gw.post_json(c, "/v1/messages", sample_message("drop-2")).status, 202);
  ASSERT_EQ(await_all(gw, c, std::vector<std::string>{"drop-2"}, "delivered"), "");
  ASSERT_TRUE(eventually([&] { return ups() == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // nothing else comes (no resend after the reload)
  EXPECT_EQ(ups(), 2u);
}

TEST(Feed, ValidatesItsParametersByName) {
  TempDir dir;
  Gateway gw(dir, default_channels(dir));
  gw.start();
  HttpClient c;
  struct Case {
    std::string query, parameter;
  };
  for (const Case& k : std::vector<Case>{{"limit=0", "limit"},
                                         {"limit=1001", "limit"},
                                         {"limit=x", "limit"},
                                         {"after=-1", "after"},
                                         {"after=abc", "after"},
                                         {"after=1&after=2", "after"},
                                         {"before=x", "before"},
                                         {"order=newest", "order"},
                                         {"types=", "types"},
                                         {"types=opted_in,nonsense", "types"},
                                         {"types=opted_in,,opted_out", "types"},
                                         {"cursor=3", "cursor"}}) {
    HttpResult r = gw.get(c, "/v1/events?" + k.query);
    EXPECT_EQ(r.status, 400) << k.query;
    Json body = r.json();
    ASSERT_TRUE(body.contains("errors")) << r.body;
    EXPECT_EQ(body["errors"][0]["pointer"], k.parameter) << r.body;
  }
  HttpResult empty = gw.get(c, "/v1/events");
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.json(), Json::parse(R"({"events":[],"next":null})"));
  EXPECT_EQ(c.request("GET", gw.url("/v1/events"), "", {}).status, 401);
  EXPECT_EQ(gw.post_json(c, "/v1/events", Json::object()).status, 405);
}

// types= keeps only the event types it names; order=desc reads newest first, from `before` down, and its
// pages (following `next` as `before`) are the feed read backwards. The operator console reads the latest
// consent changes this way.
TEST(Feed, FiltersByTypeAndReadsNewestFirst) {
  TempDir dir;
  Gateway gw(dir, default_channels(dir));
  gw.start();
  HttpClient c;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back("feed-" + std::to_string(i));
    ASSERT_EQ(gw.post_json(c, "/v1/messages", sample_message(ids.back())).status, 202);
  }
  ASSERT_EQ(await_all(gw, c, ids, "delivered"), "");
  std::vector<Json> all = feed(gw, c, 1000);

  auto ids_of = [](const std::vector<Json>& events, const std::string& type) {
    std::vector<std::string> out;
    for (const auto& e : events)
      if (e["type"] == type) out.push_back(e["message_id"]);
    return out;
  };
  HttpResult delivered = gw.get(c, "/v1/events?types=delivered&limit=1000");
  ASSERT_EQ(delivered.status, 200) << delivered.body;
  Json only = delivered.json();  // named: its events are iterated
  std::vector<Json> events(only["events"].begin(), only["events"].end());
  EXPECT_EQ(events.size(), 5u) << delivered.body;
  EXPECT_EQ(ids_of(events, "delivered"), ids_of(all, "delivered"));
  EXPECT_TRUE(only["next"].is_null());

  // Newest first, two at a time, following next as before: the whole feed backwards.
  std::vector<Json> backwards;
  std::string before;
  for (int pages = 0; pages < 100; ++pages) {
    HttpResult r = gw.get(c, "/v1/events?order=desc&limit=2" + (before.empty() ? "" : "&before=" + before));
    ASSERT_EQ(r.status, 200) << r.body;
    Json body = r.json();
    for (const auto& e : body["events"]) backwards.push_back(e);
    if (body["next"].is_null()) break;
    before = std::to_string(body["next"].get<int64_t>());
  }
  ASSERT_EQ(backwards.size(), all.size());
  EXPECT_TRUE(std::equal(backwards.begin(), backwards.end(), all.rbegin()));

  // Both at once: the newest two of the types named, and `before` bounds them.
  HttpResult latest = gw.get(c, "/v1/events?types=accepted,delivered&order=desc&limit=2");
  Json page = latest.json();
  ASSERT_EQ(page["events"].size(), 2u) << latest.body;
  EXPECT_EQ(page["events"][0], all.back());  // the last event of all is the last delivery
  EXPECT_GT(page["events"][0]["seq"], page["events"][1]["seq"]);
  EXPECT_EQ(page["next"], page["events"][1]["seq"]);
  int64_t first_seq = all.front()["seq"];
  HttpResult oldest = gw.get(c, "/v1/events?order=desc&before=" + std::to_string(first_seq + 1));
  EXPECT_EQ(oldest.json()["events"].size(), 1u) << oldest.body;
  EXPECT_TRUE(oldest.json()["next"].is_null());
}

}  // namespace
}  // namespace tayori::testing
