// The public API, driven over HTTP against the real binary: auth, validation, idempotency, batches,
// cancel, status timelines, scheduling, health, metrics and the server's own limits.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <map>
#include <regex>
#include <set>

#include "harness.hpp"

namespace tayori::testing {
namespace {

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gw_ = std::make_unique<Gateway>(dir_, "server:\n  max_body_bytes: 65536\n  max_batch: 50\n"
                                          "  header_timeout: 300ms\n  body_timeout: 300ms\n" +
                                              default_channels(dir_));
    gw_->start();
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }
  std::vector<Json> outbox() const { return read_jsonl(dir_.file("outbox-email.jsonl")); }
  size_t deliveries_of(const std::string& id) const {
    size_t n = 0;
    for (const auto& line : outbox()) n += line["message_id"] == id;
    return n;
  }

  TempDir dir_;
  std::unique_ptr<Gateway> gw_;
  HttpClient http_;
};

TEST_F(ApiTest, RefusesRequestsWithoutTheRightKey) {
  HttpResult none = http_.request("POST", gw_->url("/v1/messages"), sample_message("a1").dump(),
                                  {"Content-Type: application/json"});
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.headers["content-type"], "application/problem+json");
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer realm=\"tayori\"");
  HttpResult wrong = http_.request("GET", gw_->url("/v1/messages/a1"), "", {"Authorization: Bearer nope"});
  EXPECT_EQ(wrong.status, 401);
  HttpResult prefix = http_.request("GET", gw_->url("/v1/messages/a1"), "",
                                    {"Authorization: Bearer " + std::string(kApiKey).substr(0, 10)});
  EXPECT_EQ(prefix.status, 401);
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("a1")).status, 202);
}

TEST_F(ApiTest, AcceptsDeliversAndExplainsAMessage) {
  HttpResult r = gw_->post_json(http_, "/v1/messages", sample_message("order-1001"));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.json()["status"], "accepted");
  EXPECT_EQ(r.json()["id"], "order-1001");
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "order-1001") == "delivered"; }));

  Json status = gw_->get(http_, "/v1/messages/order-1001").json();
  EXPECT_EQ(status["api_key"], "it");
  EXPECT_EQ(status["channel"], "email");
  EXPECT_EQ(status["attempts"], 1);
  EXPECT_EQ(status["message"]["content"]["subject"], "ご注文ありがとうございます");
  std::vector<std::string> types;
  for (const auto& e : status["events"]) types.push_back(e["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"accepted", "dispatched", "delivered"}));
  for (const auto& e : status["events"]) EXPECT_TRUE(e["at"].get<std::string>().ends_with("Z"));

  ASSERT_EQ(deliveries_of("order-1001"), 1u);
  Json line = outbox().back();
  EXPECT_EQ(line["contact"], "hanako@example.jp");
  EXPECT_EQ(line["content"]["text"], "注文番号 order-1001");
  EXPECT_EQ(line["locale"], "ja-JP");
}

TEST_F(ApiTest, AMessageDueNowIsHandedToTheDispatcherByItsAcceptingCommit) {
  // The dispatcher takes hand-overs once its first claim has found the due queue empty (just after start),
  // so the first answers may still say `scheduled`.
  // Every answer that says `dispatched` is a hand-over, and the metric counts exactly those.
  int dispatched_answers = 0;
  auto count_handed = [&](const HttpResult& r) {
    if (r.status != 202) return;
    Json body = r.json();
    if (!body.contains("results")) body = Json{{"results", Json::array({body})}};
    for (const auto& result : body["results"])
      if (result.value("state", "") == "dispatched") ++dispatched_answers;
  };
  std::string handed;
  int n = 0;
  ASSERT_TRUE(eventually([&] {
    std::string id = "now-" + std::to_string(++n);
    HttpResult r = gw_->post_json(http_, "/v1/messages", sample_message(id));
    count_handed(r);
    if (r.status != 202) return false;
    if (r.json()["state"] == "dispatched") handed = id;
    return !handed.empty();
  }));
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, handed) == "delivered"; }));
  Json status = gw_->get(http_, "/v1/messages/" + handed).json();
  EXPECT_EQ(status["attempts"], 1);
  std::vector<std::string> types;
  for (const auto& e : status["events"]) types.push_back(e["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"accepted", "dispatched", "delivered"}));
  EXPECT_EQ(deliveries_of(handed), 1u);

  // In a batch, only what is due now is handed over; a later send_at waits in the store. The claim loop's poll
  // marks the store as possibly due until its claim comes back, and meanwhile new messages queue behind it: a
  // batch is sent again, with new ids, until its message due now is handed over.
  std::string now_id, later_id;
  HttpResult batch;
  int tries = 0;
  ASSERT_TRUE(eventually([&] {
    ++tries;
    now_id = "batch-now-" + std::to_string(tries);
    later_id = "batch-later-" + std::to_string(tries);
    Json later = sample_message(later_id);
    later["send_at"] = "2099-01-01T00:00:00Z";
    batch = gw_->post_json(http_, "/v1/messages", Json{{"messages", {sample_message(now_id), later}}});
    count_handed(batch);
    return batch.status == 202 && batch.json()["results"][0]["state"] == "dispatched";
  })) << batch.body;
  EXPECT_EQ(batch.json()["results"][1]["state"], "scheduled") << batch.body;
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, now_id) == "delivered"; }));
  EXPECT_EQ(state_of(*gw_, http_, later_id), "scheduled");
  // A handed-over message goes as intake validated it, each its own: a refused message and a duplicate
  // between them shift nothing.
  Json refused = sample_message("pair-bad");
  refused["purpose"] = "unknown";
  std::string first, second;
  HttpResult mixed;
  ASSERT_TRUE(eventually([&] {
    ++tries;
    first = "pair-1-" + std::to_string(tries);
    second = "pair-2-" + std::to_string(tries);
    mixed = gw_->post_json(
        http_, "/v1/messages",
        Json{{"messages", {sample_message(first), refused, sample_message(now_id), sample_message(second)}}});
    count_handed(mixed);
    return mixed.status == 202 && mixed.json()["results"][0]["state"] == "dispatched";
  })) << mixed.body;
  EXPECT_EQ(mixed.json()["results"][3]["state"], "dispatched") << mixed.body;
  for (const std::string& id : {first, second})
    ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, id) == "delivered"; })) << id;
  std::map<std::string, std::vector<std::string>> texts_of;
  for (const auto& line : outbox()) texts_of[line["message_id"]].push_back(line["content"]["text"]);
  for (const std::string& id : {first, second, now_id})
    EXPECT_EQ(texts_of[id], std::vector<std::string>{std::string("注文番号 ") + id}) << id;
  // `scheduled` marks a message that waits for its send_at; one due at once (above) has none.
  Json waiting = gw_->get(http_, "/v1/messages/" + later_id).json();
  ASSERT_EQ(waiting["events"].size(), 2u) << waiting;
  EXPECT_EQ(waiting["events"][0]["type"], "accepted");
  EXPECT_EQ(waiting["events"][1]["type"], "scheduled");
  EXPECT_EQ(waiting["events"][1]["detail"]["due_at"], "2099-01-01T00:00:00.000Z") << waiting;
  const std::string metrics = http_.request("GET", gw_->url("/metrics")).body;
  EXPECT_NE(metrics.find("\ntayori_intake_handed_over_total " + std::to_string(dispatched_answers) + "\n"),
            std::string::npos)
      << dispatched_answers << "\n"
      << metrics;
}

TEST_F(ApiTest, ListsEveryValidationErrorWithItsPointer) {
  Json bad = {{"id", "has space"},
              {"recipient", {{"contacts", {{"phone", "090-1234-5678"}, {"email", "not-an-address"}}}}},
              {"purpose", "spam"},
              {"channels", Json::array({"email", "fax"})},
              {"colour", "blue"}};
  HttpResult r = gw_->post_json(http_, "/v1/messages", bad);
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(r.headers["content-type"], "application/problem+json") << r.body;
  std::map<std::string, std::string> errors;
  Json body = r.json();  // named: ranging over r.json()["errors"] would dangle
  for (const auto& e : body["errors"]) errors[e["pointer"].get<std::string>()] = e["detail"].get<std::string>();
  EXPECT_TRUE(errors.count("/id")) << r.body;
  EXPECT_TRUE(errors.count("/recipient/id"));
  EXPECT_TRUE(errors.count("/recipient/contacts/phone"));
  EXPECT_TRUE(errors.count("/recipient/contacts/email"));
  EXPECT_TRUE(errors.count("/purpose"));
  EXPECT_TRUE(errors.count("/channels/1"));
  EXPECT_TRUE(errors.count("/colour"));
  EXPECT_TRUE(errors.count("/content"));
  EXPECT_NE(errors["/channels/1"].find("fax"), std::string::npos);
  // Nothing of it was stored.
  EXPECT_EQ(gw_->get(http_, "/v1/messages/has%20space").status, 404);
}

TEST_F(ApiTest, RefusesMalformedBodiesAndWrongContentTypes) {
  auto post = [&](const std::string& body, const std::string& type) {
    return http_.request("POST", gw_->url("/v1/messages"), body,
                         {"Authorization: Bearer " + std::string(kApiKey), "Content-Type: " + type});
  };
  EXPECT_EQ(post(sample_message("ct1").dump(), "text/plain").status, 415);
  EXPECT_EQ(post(sample_message("ct2").dump(), "application/json; charset=utf-8").status, 202);
  HttpResult broken = post("{\"id\": \"x\", ", "application/json");
  EXPECT_EQ(broken.status, 400);
  EXPECT_NE(broken.json()["detail"].get<std::string>().find("not valid JSON"), std::string::npos);
  EXPECT_EQ(post("[1,2,3]", "application/json").status, 400);
  // Over server.max_body_bytes (64 KiB here): 413 before the body is read in full.
  Json big = sample_message("big");
  big["content"]["text"] = std::string(70000, 'x');
  EXPECT_EQ(post(big.dump(), "application/json").status, 413);
  // The server is still fine afterwards.
  EXPECT_EQ(gw_->get(http_, "/healthz").status, 200);
}

TEST_F(ApiTest, SameIdSamePayloadIsADuplicateAndIsDeliveredOnce) {
  Json m = sample_message("idem-1");
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", m).json()["status"], "accepted");
  // Key order does not matter: the payload is compared in canonical form.
  std::string reordered = R"({"purpose":"transactional","category":"order","channels":["email"],"id":"idem-1",)"
                          R"("content":{"text":"注文番号 idem-1","subject":"ご注文ありがとうございます"},)"
                          R"("recipient":{"contacts":{"phone":"+819012345678","email":"hanako@example.jp"},)"
                          R"("timezone":"Asia/Tokyo","locale":"ja-JP","id":"r-idem-1"}})";
  for (int i = 0; i < 3; ++i) {
    HttpResult r = http_.request("POST", gw_->url("/v1/messages"), reordered,
                                 {"Authorization: Bearer " + std::string(kApiKey), "Content-Type: application/json"});
    ASSERT_EQ(r.status, 202) << r.body;
    EXPECT_EQ(r.json()["status"], "duplicate");
  }
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "idem-1") == "delivered"; }));
  HttpResult after = gw_->post_json(http_, "/v1/messages", m);
  EXPECT_EQ(after.json()["status"], "duplicate");
  EXPECT_EQ(after.json()["state"], "delivered");
  EXPECT_EQ(deliveries_of("idem-1"), 1u);

  Json changed = m;
  changed["content"]["text"] = "別の本文";
  HttpResult conflict = gw_->post_json(http_, "/v1/messages", changed);
  EXPECT_EQ(conflict.status, 422);
  EXPECT_NE(conflict.json()["detail"].get<std::string>().find("idem-1"), std::string::npos);
}

TEST_F(ApiTest, BatchesAnswerPerMessage) {
  Json invalid = sample_message("b-bad");
  invalid["purpose"] = "unknown";
  Json batch = {{"messages", {sample_message("b-1"), invalid, sample_message("b-2"), sample_message("b-1")}}};
  HttpResult r = gw_->post_json(http_, "/v1/messages", batch);
  ASSERT_EQ(r.status, 202) << r.body;
  Json body = r.json();
  EXPECT_EQ(body["accepted"], 2);
  EXPECT_EQ(body["rejected"], 1);
  EXPECT_EQ(body["duplicate"], 1);
  EXPECT_EQ(body["results"][0]["status"], "accepted");
  EXPECT_EQ(body["results"][1]["status"], "rejected");
  EXPECT_EQ(body["results"][1]["errors"][0]["pointer"], "/messages/1/purpose");
  EXPECT_EQ(body["results"][3]["status"], "duplicate");
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "b-2") == "delivered"; }));

  HttpResult all_bad = gw_->post_json(http_, "/v1/messages", {{"messages", {invalid}}});
  EXPECT_EQ(all_bad.status, 400);
  Json too_many = {{"messages", Json::array()}};
  for (int i = 0; i < 51; ++i) too_many["messages"].push_back(sample_message("tm-" + std::to_string(i)));
  HttpResult over = gw_->post_json(http_, "/v1/messages", too_many);
  EXPECT_EQ(over.status, 400);
  EXPECT_EQ(over.json()["errors"][0]["pointer"], "/messages");
  EXPECT_EQ(gw_->get(http_, "/v1/messages/tm-0").status, 404);
}

TEST_F(ApiTest, HonoursSendAtAndCancelsWhatIsNotYetHandedOver) {
  Json later = sample_message("later-1");
  later["send_at"] = "2099-01-01T09:00:00+09:00";
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", later).status, 202);
  Json status = gw_->get(http_, "/v1/messages/later-1").json();
  EXPECT_EQ(status["state"], "scheduled");
  EXPECT_EQ(status["due_at"], "2099-01-01T00:00:00.000Z");

  HttpResult cancelled = gw_->del(http_, "/v1/messages/later-1");
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(cancelled.json()["state"], "cancelled");
  EXPECT_EQ(gw_->get(http_, "/v1/messages/later-1").json()["events"].back()["type"], "cancelled");
  EXPECT_EQ(gw_->del(http_, "/v1/messages/later-1").status, 409);
  EXPECT_EQ(gw_->del(http_, "/v1/messages/no-such").status, 404);

  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("now-1")).status, 202);
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "now-1") == "delivered"; }));
  HttpResult too_late = gw_->del(http_, "/v1/messages/now-1");
  EXPECT_EQ(too_late.status, 409);
  EXPECT_NE(too_late.json()["detail"].get<std::string>().find("delivered"), std::string::npos);

  // A send_at a moment away is held until then, then delivered.
  Json soon = sample_message("soon-1");
  auto at = std::chrono::system_clock::now() + std::chrono::milliseconds(1500);
  std::time_t t = std::chrono::system_clock::to_time_t(at);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  soon["send_at"] = buf;
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", soon).status, 202);
  EXPECT_EQ(state_of(*gw_, http_, "soon-1"), "scheduled");
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "soon-1") == "delivered"; }));
  EXPECT_EQ(deliveries_of("later-1"), 0u);
}

TEST_F(ApiTest, SuppressesAMessageNoChannelCanReachAndSaysWhy) {
  Json m = sample_message("nocontact-1", "sms");
  m["recipient"]["id"] = "lonely";
  m["recipient"]["contacts"] = {{"email", "only@example.jp"}};
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", m).status, 202);
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "nocontact-1") == "suppressed"; }));
  Json status = gw_->get(http_, "/v1/messages/nocontact-1").json();
  EXPECT_EQ(status["last_reason"], "no_usable_channel");
  EXPECT_EQ(status["events"].back()["type"], "suppressed");
  Json detail = status["events"].back()["detail"];
  EXPECT_EQ(detail["skipped"][0]["channel"], "sms");
  EXPECT_EQ(detail["skipped"][0]["reason"], "no_contact");

  Json expired = sample_message("expired-1");
  expired["expires_at"] = "2020-01-01T00:00:00Z";
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", expired).status, 202);
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "expired-1") == "suppressed"; }));
  EXPECT_EQ(gw_->get(http_, "/v1/messages/expired-1").json()["last_reason"], "expired");
}

TEST_F(ApiTest, RoutesAndMethods) {
  EXPECT_EQ(http_.request("GET", gw_->url("/nope")).status, 404);
  HttpResult m = http_.request("PUT", gw_->url("/v1/messages"), "{}", {"Authorization: Bearer " + std::string(kApiKey)});
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.headers["allow"], "GET, POST");
  EXPECT_EQ(gw_->get(http_, "/v1/messages/unknown-id").status, 404);
  EXPECT_EQ(http_.request("GET", gw_->url("/healthz")).json()["status"], "ok");
  HttpResult ready = http_.request("GET", gw_->url("/readyz"));
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.json()["checks"]["store"], "ok");
  EXPECT_EQ(ready.json()["checks"]["channels"]["email"], (Json{{"status", "ok"}, {"circuit", "closed"}}));
  HttpResult retry_put = http_.request("PUT", gw_->url("/v1/messages:retry"), "{}",
                                       {"Authorization: Bearer " + std::string(kApiKey)});
  EXPECT_EQ(retry_put.status, 405);
  EXPECT_EQ(retry_put.headers["allow"], "POST");
}

// The operator console's page and files: served without a key (the page asks for one), each under its media
// type, with a policy that runs nothing inline, revalidated by ETag; every file the page names is served.
TEST_F(ApiTest, ServesTheConsoleWithoutAKeyUnderAStrictPolicy) {
  HttpResult page = http_.request("GET", gw_->url("/console"));
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.headers["content-type"], "text/html; charset=utf-8");
  const std::string& csp = page.headers["content-security-policy"];
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self';"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  EXPECT_EQ(page.headers["cache-control"], "no-cache");
  EXPECT_EQ(page.headers["x-content-type-options"], "nosniff");
  EXPECT_EQ(http_.request("GET", gw_->url("/console/")).body, page.body);

  // Every script and stylesheet the page names is a file of the console, and none is inline.
  std::regex reference(R"re(<(script|link)\b[^>]*?(src|href)="([^"]*)")re");
  std::set<std::string> names;
  for (auto it = std::sregex_iterator(page.body.begin(), page.body.end(), reference); it != std::sregex_iterator(); ++it)
    names.insert((*it)[3].str());
  EXPECT_EQ(names, (std::set<std::string>{"/console/app.js", "/console/console.css", "/console/uPlot.min.js",
                                          "/console/uPlot.min.css"}));
  EXPECT_EQ(std::regex_search(page.body, std::regex(R"(<script>|<style|\son[a-z]+=)")), false);
  for (const auto& name : names) {
    HttpResult file = http_.request("GET", gw_->url(name));
    EXPECT_EQ(file.status, 200) << name;
    EXPECT_EQ(file.headers["content-type"], name.ends_with(".js") ? "text/javascript; charset=utf-8"
                                                                 : "text/css; charset=utf-8")
        << name;
    EXPECT_FALSE(file.body.empty()) << name;
  }

  HttpResult again = http_.request("GET", gw_->url("/console/app.js"), "",
                                   {"If-None-Match: " + http_.request("GET", gw_->url("/console/app.js")).headers["etag"]});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  HttpResult missing = http_.request("GET", gw_->url("/console/nope.js"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.headers["content-type"], "application/problem+json");
  HttpResult post = http_.request("POST", gw_->url("/console"), "x");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers["allow"], "GET");
  // One metrics label for every file name, whatever is asked for.
  std::string metrics = http_.request("GET", gw_->url("/metrics")).body;
  EXPECT_NE(metrics.find(R"(tayori_http_requests_total{method="GET",route="/console/{asset}",status="404"} 1)"),
            std::string::npos);
  EXPECT_NE(metrics.find(R"(tayori_http_requests_total{method="GET",route="/console",status="200"} 2)"),
            std::string::npos);
}

TEST_F(ApiTest, ListsMessagesByStateAndChannelAPageAtATime) {
  for (const char* id : {"lm-1", "lm-2", "lm-3"}) ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message(id)).status, 202);
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("lm-s", "sms")).status, 202);
  Json later = sample_message("lm-later");
  later["send_at"] = "2099-01-01T09:00:00+09:00";
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", later).status, 202);
  for (const char* id : {"lm-1", "lm-2", "lm-3", "lm-s"})
    ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, id) == "delivered"; })) << id;

  auto page = [&](const std::string& query) {
    HttpResult r = gw_->get(http_, "/v1/messages" + query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    return r.json();
  };
  auto ids = [](const Json& body) {
    std::vector<std::string> out;
    for (const auto& m : body["messages"]) out.push_back(m["id"]);
    return out;
  };
  EXPECT_EQ(ids(page("")), (std::vector<std::string>{"lm-1", "lm-2", "lm-3", "lm-later", "lm-s"}));
  EXPECT_EQ(ids(page("?state=delivered&channel=email")), (std::vector<std::string>{"lm-1", "lm-2", "lm-3"}));
  Json first = page("?state=delivered&limit=2");
  EXPECT_EQ(ids(first), (std::vector<std::string>{"lm-1", "lm-2"}));
  EXPECT_EQ(first["next"], "lm-2");
  Json second = page("?state=delivered&limit=2&after=" + first["next"].get<std::string>());
  EXPECT_EQ(ids(second), (std::vector<std::string>{"lm-3", "lm-s"}));
  Json last = page("?state=delivered&limit=2&after=lm-s");
  EXPECT_TRUE(last["messages"].empty());
  EXPECT_TRUE(last["next"].is_null());

  Json waiting = page("?state=scheduled");
  ASSERT_EQ(waiting["messages"].size(), 1u);
  EXPECT_TRUE(waiting["next"].is_null());
  Json item = waiting["messages"][0];
  EXPECT_EQ(item["id"], "lm-later");
  EXPECT_EQ(item["state"], "scheduled");
  EXPECT_TRUE(item["channel"].is_null());
  EXPECT_TRUE(item["last_reason"].is_null());
  EXPECT_EQ(item["attempts"], 0);
  EXPECT_TRUE(item["updated_at"].get<std::string>().ends_with("Z")) << item;
  EXPECT_EQ(item.size(), 6u) << "a listing shows the summary, not the content: " << item;

  // Every problem with the query is reported, each naming its parameter (and the values allowed).
  auto refused = [&](const std::string& query) {
    HttpResult r = gw_->get(http_, "/v1/messages" + query);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/problem+json");
    std::map<std::string, std::string> errors;
    Json body = r.json();
    for (const auto& e : body["errors"]) errors[e["pointer"].get<std::string>()] = e["detail"].get<std::string>();
    return errors;
  };
  auto bad_state = refused("?state=zombie");
  ASSERT_TRUE(bad_state.count("state"));
  EXPECT_NE(bad_state["state"].find("dead"), std::string::npos) << bad_state["state"];
  EXPECT_NE(bad_state["state"].find("scheduled"), std::string::npos);
  EXPECT_NE(gw_->get(http_, "/v1/messages?state=zombie").json()["detail"].get<std::string>().find("state"),
            std::string::npos);
  EXPECT_TRUE(refused("?limit=0").count("limit"));
  EXPECT_TRUE(refused("?limit=1001").count("limit"));
  EXPECT_TRUE(refused("?limit=ten").count("limit"));
  EXPECT_TRUE(refused("?limit=-1").count("limit"));
  EXPECT_TRUE(refused("?channel=").count("channel"));
  EXPECT_TRUE(refused("?colour=blue").count("colour"));
  EXPECT_TRUE(refused("?state=dead&state=failed").count("state"));
  EXPECT_EQ(refused("?state=nope&limit=0&page=2").size(), 3u);
  EXPECT_EQ(page("?limit=1000")["messages"].size(), 5u);
}

// POST /v1/messages/{id}:retry and POST /v1/messages:retry on messages that are neither dead nor failed (the
// replays themselves are in dead_letter_test.cpp, with a provider that fails).
TEST_F(ApiTest, RetryRefusesWhatIsNotDeadOrFailedAndKeepsEveryIdAddressable) {
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("rt-1")).status, 202);
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "rt-1") == "delivered"; }));
  HttpResult done = gw_->post_json(http_, "/v1/messages/rt-1:retry", Json::object());
  EXPECT_EQ(done.status, 409);
  EXPECT_EQ(done.json()["state"], "delivered") << done.body;
  EXPECT_NE(done.json()["detail"].get<std::string>().find("dead or failed"), std::string::npos);
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages/unknown:retry", Json::object()).status, 404);
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages/:retry", Json::object()).status, 404);

  Json later = sample_message("rt-later");
  later["send_at"] = "2099-01-01T09:00:00+09:00";
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", later).status, 202);
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages/rt-later:retry", Json::object()).json()["state"], "scheduled");

  // An id may itself end in ":retry": GET and DELETE never treat it as an action, and POST treats only the
  // last literal ":retry" as one (a %3A is part of the id).
  Json odd = sample_message("odd:retry");
  odd["send_at"] = "2099-01-01T09:00:00+09:00";
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", odd).status, 202);
  EXPECT_EQ(gw_->get(http_, "/v1/messages/odd:retry").json()["id"], "odd:retry");
  HttpResult odd_retry = gw_->post_json(http_, "/v1/messages/odd:retry:retry", Json::object());
  EXPECT_EQ(odd_retry.status, 409);
  EXPECT_NE(odd_retry.json()["detail"].get<std::string>().find("\"odd:retry\""), std::string::npos) << odd_retry.body;
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages/odd%3Aretry:retry", Json::object()).status, 409);
  HttpResult not_an_action = gw_->post_json(http_, "/v1/messages/odd%3Aretry", Json::object());
  EXPECT_EQ(not_an_action.status, 405);
  EXPECT_EQ(not_an_action.headers["allow"], "GET, DELETE");
  HttpResult other = gw_->post_json(http_, "/v1/messages/odd:retry", Json::object());  // retries "odd"
  EXPECT_EQ(other.status, 404);
  EXPECT_NE(other.json()["detail"].get<std::string>().find("\"odd\""), std::string::npos) << other.body;
  EXPECT_EQ(gw_->del(http_, "/v1/messages/odd:retry").status, 200);

  HttpResult none = gw_->post_json(http_, "/v1/messages:retry", {{"state", "failed"}});
  ASSERT_EQ(none.status, 202) << none.body;
  EXPECT_EQ(none.json(), (Json{{"retried", 0}, {"ids", Json::array()}}));
  EXPECT_EQ(http_.request("POST", gw_->url("/v1/messages:retry"), R"({"state":"dead"})",
                          {"Authorization: Bearer " + std::string(kApiKey), "Content-Type: text/plain"})
                .status,
            415);
  EXPECT_EQ(http_.request("POST", gw_->url("/v1/messages/rt-1:retry"), "", {}).status, 401);

  std::string metrics = http_.request("GET", gw_->url("/metrics")).body;
  EXPECT_NE(metrics.find(R"(tayori_http_requests_total{method="POST",route="/v1/messages/{id}:retry",status="409"} 4)"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"(tayori_http_requests_total{method="POST",route="/v1/messages:retry",status="202"} 1)"),
            std::string::npos);
}

// store.max_size reached: intake answers 503 (never 202) saying the store could not record the messages, and
// what was acknowledged before is still there to read.
TEST(StoreFull, IntakeAnswers503AndWhatWasAcknowledgedStaysReadable) {
  TempDir dir;
  Gateway gw(dir, "store:\n  max_size: 256KiB\n" + default_channels(dir));
  gw.start();
  HttpClient http;
  // Scheduled far ahead, so that only intake writes.
  auto message = [](const std::string& id) {
    Json m = sample_message(id);
    m["send_at"] = "2099-01-01T09:00:00+09:00";
    m["content"]["text"] = std::string(16 * 1024, 'x');
    return m;
  };
  std::vector<std::string> acknowledged;
  HttpResult full;
  for (int i = 0; i < 100; ++i) {
    std::string id = "fill-" + std::to_string(i);
    full = gw.post_json(http, "/v1/messages", message(id));
    if (full.status != 202) break;
    acknowledged.push_back(id);
  }
  ASSERT_EQ(full.status, 503) << full.body;
  ASSERT_FALSE(acknowledged.empty());
  EXPECT_EQ(full.headers["content-type"], "application/problem+json");
  EXPECT_EQ(full.headers["retry-after"], "1");
  EXPECT_NE(full.json()["detail"].get<std::string>().find("the store could not record the messages"), std::string::npos)
      << full.body;
  EXPECT_EQ(gw.get(http, "/v1/messages/fill-" + std::to_string(acknowledged.size())).status, 404);
  for (const auto& id : acknowledged) {
    HttpResult r = gw.get(http, "/v1/messages/" + id);
    ASSERT_EQ(r.status, 200) << id;
    EXPECT_EQ(r.json()["message"]["content"]["text"].get<std::string>().size(), 16u * 1024);
  }
  EXPECT_NE(gw.stderr_text().find("full"), std::string::npos) << gw.stderr_text();
}

TEST_F(ApiTest, ExposesMetrics) {
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("mt-" + std::to_string(i))).status, 202);
  gw_->post_json(http_, "/v1/messages", Json{{"id", "x"}});
  // All three: deliveries finish in any order (the last accepted is not the last recorded).
  ASSERT_TRUE(eventually([&] {
    for (const char* id : {"mt-0", "mt-1", "mt-2"})
      if (state_of(*gw_, http_, id) != "delivered") return false;
    return true;
  }));
  HttpResult r = http_.request("GET", gw_->url("/metrics"));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers["content-type"].find("text/plain"), std::string::npos);
  const std::string& text = r.body;
  EXPECT_NE(text.find(R"(tayori_http_requests_total{method="POST",route="/v1/messages",status="202"} 3)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(tayori_http_requests_total{method="POST",route="/v1/messages",status="400"} 1)"),
            std::string::npos);
  EXPECT_NE(text.find(R"(tayori_intake_messages_total{result="accepted"} 3)"), std::string::npos);
  EXPECT_NE(text.find("# TYPE tayori_intake_handed_over_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("tayori_accept_latency_seconds_count 3"), std::string::npos);
  EXPECT_NE(text.find(R"(tayori_messages{state="delivered"} 3)"), std::string::npos);
  EXPECT_NE(text.find("tayori_queue_depth 0"), std::string::npos);
  // What the writes cost: each of the three messages was accepted, claimed and recorded in commits of its own
  // or shared ones, each commit ran statements and wrote pages.
  auto sample = [&](const std::string& name) {
    auto at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + name.size() + 2));
  };
  double commits = sample(R"(tayori_store_writes_total{unit="commits"})");
  EXPECT_GE(commits, 3) << text;
  EXPECT_GT(sample(R"(tayori_store_writes_total{unit="statements"})"), 3 * commits);
  EXPECT_GE(sample(R"(tayori_store_writes_total{unit="pages"})"), commits);
}

// A client that sends half a request and stalls is cut off after the header timeout (300ms here), while
// a well-behaved client on another connection is unaffected.
TEST_F(ApiTest, DropsSlowClients) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(gw_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string partial = "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Le";
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto started = std::chrono::steady_clock::now();
  std::string answer;
  char buf[512];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) answer.append(buf, static_cast<size_t>(n));
  auto waited = std::chrono::steady_clock::now() - started;
  ::close(fd);
  // Beast closes the socket when the deadline passes, so the client sees the connection end, with no answer.
  EXPECT_LT(waited, std::chrono::seconds(4)) << "the server held a stalled connection";
  EXPECT_EQ(answer, "");
}

}  // namespace
}  // namespace tayori::testing

// ---- Scoped API keys (issue "Hostile input") ---------------------------------------------------------

namespace tayori::testing {
namespace {

class ScopedKeys : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& [env, key] : kKeys) ::setenv(env, key, 1);
    gw_ = std::make_unique<Gateway>(dir_, default_channels(dir_));
    gw_->add_api_keys(
        "  - {name: team_a, key_env: TAYORI_KEY_A, scopes: [send, read]}\n"
        "  - {name: team_b, key_env: TAYORI_KEY_B, scopes: [send, read]}\n"
        "  - {name: auditor, key_env: TAYORI_KEY_AUDITOR, scopes: [read_all]}\n"
        "  - {name: crm, key_env: TAYORI_KEY_CRM, scopes: [admin]}\n");
    gw_->start();
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }
  HttpResult as(const std::string& env, const std::string& method, const std::string& path, const Json& body = {}) {
    std::vector<std::string> headers = {"Authorization: Bearer " + std::string(key_of(env))};
    if (!body.is_null()) headers.push_back("Content-Type: application/json");
    return http_.request(method, gw_->url(path), body.is_null() ? "" : body.dump(), headers);
  }
  static const char* key_of(const std::string& env) {
    for (const auto& [e, key] : kKeys)
      if (env == e) return key;
    return "";
  }
  static std::set<std::string> ids_of(const Json& items, const char* member) {
    std::set<std::string> ids;
    for (const auto& i : items) ids.insert(i[member].get<std::string>());
    return ids;
  }
  // 10,004 events: team A's first message (accepted, scheduled: seqs 1 and 2), 5,000 of team B's (seqs 3 to
  // 10,002) and team A's last (10,003 and 10,004).
  void fill_feed() {
    ASSERT_EQ(as("TAYORI_KEY_A", "POST", "/v1/messages", later("a-first")).status, 202);
    for (int batch = 0; batch < 50; ++batch) {
      Json messages = Json::array();
      for (int i = 0; i < 100; ++i) messages.push_back(later("b-" + std::to_string(batch * 100 + i)));
      ASSERT_EQ(as("TAYORI_KEY_B", "POST", "/v1/messages", {{"messages", messages}}).status, 202);
    }
    ASSERT_EQ(as("TAYORI_KEY_A", "POST", "/v1/messages", later("a-last")).status, 202);
  }
  // Scheduled far ahead, so that a cancel finds it still cancellable.
  static Json later(const std::string& id) {
    Json m = sample_message(id);
    m["send_at"] = "2099-01-01T00:00:00Z";
    return m;
  }

  static constexpr std::pair<const char*, const char*> kKeys[] = {{"TAYORI_KEY_A", "key-of-team-a-0123456789"},
                                                                  {"TAYORI_KEY_B", "key-of-team-b-0123456789"},
                                                                  {"TAYORI_KEY_AUDITOR", "key-of-auditor-012345"},
                                                                  {"TAYORI_KEY_CRM", "key-of-crm-0123456789"}};
  TempDir dir_;
  std::unique_ptr<Gateway> gw_;
  HttpClient http_;
};

TEST_F(ScopedKeys, AKeyReadsOnlyItsOwnMessagesUnlessItMayReadAll) {
  ASSERT_EQ(as("TAYORI_KEY_A", "POST", "/v1/messages", later("a-1")).status, 202);
  ASSERT_EQ(as("TAYORI_KEY_B", "POST", "/v1/messages", later("b-1")).status, 202);

  // The same message under the same id from another key is a conflict, not that key's duplicate.
  HttpResult taken = as("TAYORI_KEY_B", "POST", "/v1/messages", later("a-1"));
  EXPECT_EQ(taken.status, 422) << taken.body;
  HttpResult own = as("TAYORI_KEY_A", "POST", "/v1/messages", later("a-1"));
  EXPECT_EQ(own.status, 202);
  EXPECT_EQ(own.json()["status"], "duplicate");

  EXPECT_EQ(as("TAYORI_KEY_A", "GET", "/v1/messages/a-1").status, 200);
  // Another key's message is not found, not forbidden: its existence is not revealed.
  EXPECT_EQ(as("TAYORI_KEY_A", "GET", "/v1/messages/b-1").status, 404);
  EXPECT_EQ(as("TAYORI_KEY_AUDITOR", "GET", "/v1/messages/b-1").status, 200);

  HttpResult mine = as("TAYORI_KEY_A", "GET", "/v1/messages");
  ASSERT_EQ(mine.status, 200) << mine.body;
  EXPECT_EQ(ids_of(Json::parse(mine.body)["messages"], "id"), std::set<std::string>{"a-1"});
  HttpResult all = as("TAYORI_KEY_AUDITOR", "GET", "/v1/messages");
  EXPECT_EQ(ids_of(Json::parse(all.body)["messages"], "id"), (std::set<std::string>{"a-1", "b-1"}));

  HttpResult my_events = as("TAYORI_KEY_B", "GET", "/v1/events");
  ASSERT_EQ(my_events.status, 200) << my_events.body;
  EXPECT_EQ(ids_of(Json::parse(my_events.body)["events"], "message_id"), std::set<std::string>{"b-1"});
  HttpResult all_events = as("TAYORI_KEY_AUDITOR", "GET", "/v1/events");
  EXPECT_EQ(ids_of(Json::parse(all_events.body)["events"], "message_id"), (std::set<std::string>{"a-1", "b-1"}));
}

// A key without read_all finds its events among everyone's, so one request reads at most 10,000 of the
// feed's events and says where it stopped (`next`): a key with few messages in a busy feed cannot make one
// request read the whole feed, and still gets every event of its own.
TEST_F(ScopedKeys, AKeysFeedReadsABoundedStretchAndSaysWhereItStopped) {
  fill_feed();
  HttpResult first = as("TAYORI_KEY_A", "GET", "/v1/events");
  ASSERT_EQ(first.status, 200) << first.body;
  Json page = Json::parse(first.body);
  EXPECT_EQ(ids_of(page["events"], "message_id"), std::set<std::string>{"a-first"});
  // Short, but not the end: it stopped at seq 10,000 (team A's last message comes after).
  ASSERT_EQ(page["next"], 10'000) << first.body;
  HttpResult second = as("TAYORI_KEY_A", "GET", "/v1/events?after=10000");
  page = Json::parse(second.body);
  EXPECT_EQ(ids_of(page["events"], "message_id"), std::set<std::string>{"a-last"});
  EXPECT_TRUE(page["next"].is_null()) << second.body;  // the end of the feed
  // A key that may read everything reads a full page, as before.
  Json all = Json::parse(as("TAYORI_KEY_AUDITOR", "GET", "/v1/events?limit=1000").body);
  EXPECT_EQ(all["events"].size(), 1000u);
  EXPECT_EQ(all["next"], all["events"].back()["seq"]);
}

// A type filter is bounded the same way, whoever reads, in both orders: a rare type in a busy feed costs
// pages that are short or empty, each saying where to go on.
TEST_F(ScopedKeys, ATypeFilterReadsABoundedStretchInBothOrders) {
  fill_feed();
  // Seqs 10,005 and 10,006, after everything fill_feed wrote.
  ASSERT_EQ(as("TAYORI_KEY_A", "DELETE", "/v1/messages/a-first").status, 200);
  ASSERT_EQ(as("TAYORI_KEY_A", "DELETE", "/v1/messages/a-last").status, 200);
  auto read = [&](const std::string& query) {
    HttpResult r = as("TAYORI_KEY_AUDITOR", "GET", "/v1/events?types=cancelled&" + query);
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body);
  };
  auto seqs = [](const Json& page) {
    std::vector<int64_t> out;
    for (const auto& e : page["events"]) out.push_back(e["seq"]);
    return out;
  };
  Json page = read("after=0");
  EXPECT_TRUE(page["events"].empty());
  ASSERT_EQ(page["next"], 10'000);
  page = read("after=10000");
  EXPECT_EQ(seqs(page), (std::vector<int64_t>{10'005, 10'006}));
  EXPECT_TRUE(page["next"].is_null());

  page = read("order=desc");
  EXPECT_EQ(seqs(page), (std::vector<int64_t>{10'006, 10'005}));
  ASSERT_EQ(page["next"], 7) << page.dump();  // it read seqs 7 to 10,006: on below 7
  page = read("order=desc&before=7");
  EXPECT_TRUE(page["events"].empty());
  EXPECT_TRUE(page["next"].is_null());  // the oldest event was reached
}

TEST_F(ScopedKeys, AKeyCancelsOnlyItsOwnMessages) {
  ASSERT_EQ(as("TAYORI_KEY_A", "POST", "/v1/messages", later("a-2")).status, 202);
  ASSERT_EQ(as("TAYORI_KEY_A", "POST", "/v1/messages", later("a-3")).status, 202);
  EXPECT_EQ(as("TAYORI_KEY_B", "DELETE", "/v1/messages/a-2").status, 404);
  EXPECT_EQ(as("TAYORI_KEY_A", "DELETE", "/v1/messages/a-2").status, 200);
  // admin may cancel any key's message (an operator stopping a campaign).
  EXPECT_EQ(as("TAYORI_KEY_CRM", "DELETE", "/v1/messages/a-3").status, 403);  // admin without send
  HttpResult by_it = gw_->del(http_, "/v1/messages/a-3");
  EXPECT_EQ(by_it.status, 200) << by_it.body;
}

TEST_F(ScopedKeys, ARouteOutsideTheKeysScopesIs403NamingTheScope) {
  HttpResult send = as("TAYORI_KEY_AUDITOR", "POST", "/v1/messages", later("x-1"));
  EXPECT_EQ(send.status, 403);
  EXPECT_EQ(send.headers["content-type"], "application/problem+json");
  EXPECT_NE(send.body.find("lacks scope \\\"send\\\""), std::string::npos) << send.body;
  EXPECT_EQ(as("TAYORI_KEY_AUDITOR", "POST", "/v1/messages:simulate", later("x-1")).status, 403);
  EXPECT_EQ(as("TAYORI_KEY_CRM", "GET", "/v1/messages").status, 403);
  EXPECT_EQ(as("TAYORI_KEY_CRM", "GET", "/v1/events").status, 403);

  Json opt_in = {{"channel", "email"}, {"purpose", "marketing"}, {"state", "opted_in"}, {"source", "web_form"}};
  HttpResult consent = as("TAYORI_KEY_A", "PUT", "/v1/recipients/r-1/consent", opt_in);
  EXPECT_EQ(consent.status, 403);
  EXPECT_NE(consent.body.find("lacks scope \\\"admin\\\""), std::string::npos) << consent.body;
  EXPECT_EQ(as("TAYORI_KEY_CRM", "PUT", "/v1/recipients/r-1/consent", opt_in).status, 200);
  EXPECT_EQ(as("TAYORI_KEY_A", "GET", "/v1/recipients/r-1").status, 403);
  EXPECT_NE(as("TAYORI_KEY_AUDITOR", "GET", "/v1/recipients/r-1").status, 403);
  EXPECT_EQ(as("TAYORI_KEY_A", "DELETE", "/v1/recipients/r-1").status, 403);
  EXPECT_EQ(as("TAYORI_KEY_A", "GET", "/v1/suppressions").status, 403);
  // Nothing the refused requests asked for happened.
  EXPECT_EQ(as("TAYORI_KEY_AUDITOR", "GET", "/v1/messages/x-1").status, 404);
}

}  // namespace
}  // namespace tayori::testing
