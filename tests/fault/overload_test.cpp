// OverloadFault: a flood of malformed and oversized requests (bad JSON, wrong types, missing fields, bodies
// over server.max_body_bytes, a wrong Content-Type, huge headers, broken HTTP) interleaved with valid ones from
// several keep-alive clients. Every bad one gets a 4xx, every good one a 202 and then delivery; the process
// stays up and its resident memory stays flat between a warm-up batch and the end.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "fault_harness.hpp"

namespace tayori::testing::fault {
namespace {

constexpr int kMaxBody = 65536;  // server.max_body_bytes below

// One kind of bad request: sent on `http` (or raw, by port), returns the status the gateway answered.
struct BadKind {
  const char* name;
  std::function<HttpResult(const Gateway&, HttpClient&, const std::string& id)> send;
};

const std::string kAuth = "Authorization: Bearer " + std::string(kApiKey);

// POST /v1/messages with `body` as it is (post_json would have to make it valid JSON first).
HttpResult post_raw(const Gateway& gw, HttpClient& h, const std::string& body,
                    std::vector<std::string> headers = {kAuth, "Content-Type: application/json"}) {
  return h.request("POST", gw.url("/v1/messages"), body, std::move(headers));
}

const std::vector<BadKind>& bad_kinds() {
  static const std::vector<BadKind> kinds = {
      {"bad JSON", [](const Gateway& gw, HttpClient& h,
                      const std::string& id) { return post_raw(gw, h, R"({"id": ")" + id + R"(", "recipient": {)"); }},
      {"wrong types",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         Json m = fault_message(id, "line");
         m["id"] = 12345;
         m["recipient"] = "nobody";
         m["channels"] = "line";
         return gw.post_json(h, "/v1/messages", m);
       }},
      {"missing fields",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         Json m = fault_message(id, "line");
         m.erase("recipient");
         m.erase("content");
         return gw.post_json(h, "/v1/messages", m);
       }},
      {"invalid values",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         Json m = fault_message(id, "no-such-channel");
         m["purpose"] = "spam";
         m["send_at"] = "yesterday";
         return gw.post_json(h, "/v1/messages", m);
       }},
      {"number beyond a double",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         std::string body = fault_message(id, "line").dump();
         body.insert(body.rfind('}'), R"(,"metadata":{"n":1e400})");
         return post_raw(gw, h, body);
       }},
      {"not an object", [](const Gateway& gw, HttpClient& h,
                           const std::string&) { return gw.post_json(h, "/v1/messages", Json("just a string")); }},
      {"invalid UTF-8",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         std::string body = fault_message(id, "line").dump();
         body.replace(body.find("tayori-fault"), 2, "\xc3\x28");
         return post_raw(gw, h, body);
       }},
      {"oversized body",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         return gw.post_json(h, "/v1/messages", fault_message(id, "line", 2 * kMaxBody));
       }},
      {"wrong content type",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         return post_raw(gw, h, fault_message(id, "line").dump(), {kAuth, "Content-Type: text/plain"});
       }},
      {"huge header",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         return post_raw(gw, h, fault_message(id, "line").dump(),
                         {kAuth, "Content-Type: application/json", "X-Filler: " + std::string(64 * 1024, 'h')});
       }},
      {"no credentials",
       [](const Gateway& gw, HttpClient& h, const std::string& id) {
         return post_raw(gw, h, fault_message(id, "line").dump(), {"Content-Type: application/json"});
       }},
      {"wrong method", [](const Gateway& gw, HttpClient& h,
                          const std::string& id) { return gw.put_json(h, "/v1/messages", fault_message(id, "line")); }},
      {"invalid UTF-8 in an id",
       [](const Gateway& gw, HttpClient& h, const std::string&) { return gw.get(h, "/v1/messages/%C3%28"); }},
      {"invalid UTF-8 path, no credentials",
       [](const Gateway& gw, HttpClient&, const std::string&) {
         return raw_exchange(gw.port(), "GET /v1/x\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n");
       }},
      {"broken HTTP",
       [](const Gateway& gw, HttpClient&, const std::string&) {
         return raw_exchange(gw.port(), "P\x01ST /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n");
       }},
  };
  return kinds;
}

TEST(OverloadFault, BadRequestsGet4xxGoodOnesAreDeliveredAndMemoryStaysFlat) {
  const int bad_total = env_int("TAYORI_FAULT_BAD", 10000);
  const int bad_per_good = 10;
  constexpr int kThreads = 4;
  std::mt19937_64 rng(seed("OverloadFault"));
  set_channel_secrets();
  Sim sim(all_providers(), false);
  TempDir dir;
  Gateway gw(dir,
             "server:\n  max_body_bytes: " + std::to_string(kMaxBody) + "\n" + "channels:\n" +
                 line_channel(sim, "line") + kConsent,
             "", "workers: 4");
  gw.start();
  const pid_t pid = gw.pid();
  ASSERT_GT(pid, 0);

  std::mutex mutex;
  std::set<std::string> good;
  std::map<std::string, int> bad_by_kind;
  std::vector<std::string> failures;  // "kind: status" of a bad request not answered 4xx, or a good one not 202
  // Runs `count` bad requests (and one good per bad_per_good) over kThreads keep-alive clients.
  auto batch = [&](const std::string& prefix, int count) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      uint64_t thread_seed = rng();
      threads.emplace_back([&, t, thread_seed] {
        std::mt19937_64 r(thread_seed);
        HttpClient http;
        for (int i = t; i < count; i += kThreads) {
          const std::string id = prefix + "-" + std::to_string(i);
          const BadKind& kind = bad_kinds()[r() % bad_kinds().size()];
          HttpResult bad = kind.send(gw, http, id);
          std::lock_guard lock(mutex);
          ++bad_by_kind[kind.name];
          if (bad.status < 400 || bad.status > 499)
            failures.push_back(std::string(kind.name) + ": " + std::to_string(bad.status) + " " + bad.body);
          if (i % bad_per_good != 0) continue;
          std::string good_id = id + "-ok";
          HttpResult ok = gw.post_json(http, "/v1/messages", fault_message(good_id, "line"));
          if (ok.status == 202)
            good.insert(good_id);
          else
            failures.push_back("valid message: " + std::to_string(ok.status) + " " + ok.body);
        }
      });
    }
    for (auto& th : threads) th.join();
  };

  // The process must survive every batch; when it does not, its stderr says why (and the rest would time out).
  auto alive = [&] {
    if (!gw.wait_exit(std::chrono::milliseconds(0))) return true;  // still running (not reaped)
    std::map<std::string, int> kinds;
    for (const auto& f : failures) ++kinds[f.substr(0, f.find(':'))];
    std::string summary;
    for (const auto& [k, n] : kinds) summary += k + " x" + std::to_string(n) + "; ";
    ADD_FAILURE() << "the gateway died; wrong answers: " << summary << "stderr:\n" << gw.stderr_text();
    return false;
  };
  const int warmup = std::max(bad_total / 10, 1);
  batch("w", warmup);
  ASSERT_TRUE(alive());
  auto late = undelivered(gw, good, std::chrono::seconds(60));
  ASSERT_TRUE(late.empty()) << describe(gw, late);
  const long rss_warm = rss_kib(pid);

  batch("b", bad_total - warmup);
  ASSERT_TRUE(alive());
  late = undelivered(gw, good, std::chrono::seconds(60 + good.size() / 20));
  ASSERT_TRUE(late.empty()) << describe(gw, late);
  const long rss_end = rss_kib(pid);

  HttpClient http;
  EXPECT_EQ(http.request("GET", gw.url("/healthz")).status, 200);
  std::map<std::string, int> failure_kinds;
  for (const auto& f : failures) ++failure_kinds[f.substr(0, f.find(':'))];
  std::string summary;
  for (const auto& [k, n] : failure_kinds) summary += k + " x" + std::to_string(n) + "; ";
  EXPECT_TRUE(failures.empty()) << failures.size() << " wrong answers (" << summary << "), e.g. " << failures.front();

  auto line = sends_by_message(sim, "line");
  for (const auto& id : good) EXPECT_FALSE(line[id].empty()) << id << " is delivered but LINE never saw it";
  EXPECT_LT(rss_end - rss_warm, 32 * 1024)
      << "resident memory grew from " << rss_warm << " KiB to " << rss_end << " KiB";
  int bad_sent = 0;
  for (const auto& [k, n] : bad_by_kind) bad_sent += n;
  std::cout << "[OverloadFault] " << bad_sent << " bad requests over " << bad_by_kind.size() << " kinds, "
            << failures.size() << " not answered 4xx; " << good.size() << " good, all delivered; VmRSS "
            << rss_warm / 1024 << " MiB after warm-up, " << rss_end / 1024 << " MiB at the end ("
            << (rss_end - rss_warm) / 1024.0 << " MiB)\n";
}

}  // namespace
}  // namespace tayori::testing::fault
