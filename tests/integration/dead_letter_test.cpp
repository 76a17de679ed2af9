// Dead letters end to end, through the real binary and the provider simulator (tayori-sim): a channel's
// retry budget (`retry: {max_attempts: 3}`) spent on 5xx answers ends the message `dead` with the provider's
// reason; the dead letters are listed (GET /v1/messages?state=dead) and replayed, one
// (POST /v1/messages/{id}:retry) or by filter (POST /v1/messages:retry), once the fault is gone; a message
// with a second channel falls back to it instead; an open circuit shows in /readyz without making the
// gateway unready; and the replay endpoints refuse work while the gateway drains.
#include <gtest/gtest.h>

#include <set>

#include "harness.hpp"
#include "sim_harness.hpp"

namespace tayori::testing {
namespace {

constexpr const char* kPhone = "+819012345678";

class DeadLetters : public ::testing::Test {
 protected:
  // Both channels retry quickly and give up after 3 attempts. `line_circuit` is the LINE channel's
  // circuit_breaker block; off by default, so that only the retry budget decides.
  void start(const std::string& line_circuit = "{failures: 0}") {
    sim_ = std::make_unique<Sim>(all_providers(), false);
    ::setenv("LINE_TOKEN", kLineToken, 1);
    ::setenv("TWILIO_TOKEN", kTwilioToken, 1);
    std::string budget = "    retry: {base: 10ms, cap: 50ms, max_attempts: 3}\n";
    std::string yaml =
        "channels:\n"
        "  - name: sms\n    plugin: sms_twilio\n    inbound: false\n" + budget + "    circuit_breaker: {failures: 0}\n"
        "    settings:\n"
        "      base_url: " + sim_->http_base() + "\n      account_sid: " + kTwilioSid + "\n"
        "      auth_token_env: TWILIO_TOKEN\n      from: \"+15005550006\"\n      status_callback: false\n"
        "  - name: line\n    plugin: line\n" + budget + "    circuit_breaker: " + line_circuit + "\n"
        "    settings:\n"
        "      base_url: " + sim_->http_base() + "\n      channel_access_token_env: LINE_TOKEN\n"
        "policy:\n  consent:\n    defaults:\n      transactional: opted_in\n";
    gw_ = std::make_unique<Gateway>(dir_, yaml);
    gw_->start();
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }

  Json message(const std::string& id, std::vector<std::string> channels) {
    return {{"id", id},
            {"purpose", "transactional"},
            {"channels", channels},
            {"recipient", {{"id", "r-" + id}, {"contacts", {{"phone", kPhone}, {"line", kLineUser}}}}},
            {"content", {{"text", "ご注文 " + id}}}};
  }
  // Every request to `provider` fails with `status`.
  void fail_all(const std::string& provider, int status) {
    ASSERT_EQ(sim_->faults({{"provider", provider}, {"error_share", 1.0}, {"error_status", status}}).status, 200);
  }
  void clear_faults() { ASSERT_EQ(call("DELETE", sim_->url("/_sim/faults")).status, 200); }

  void submit(const Json& m) {
    HttpResult r = gw_->post_json(http_, "/v1/messages", m);
    ASSERT_EQ(r.status, 202) << r.body;
  }
  bool reaches(const std::string& id, const std::string& state) {
    return eventually([&] { return state_of(*gw_, http_, id) == state; });
  }
  Json status(const std::string& id) { return gw_->get(http_, "/v1/messages/" + id).json(); }
  std::vector<Json> events_of(const std::string& id, const std::string& type) {
    std::vector<Json> out;
    Json s = status(id);  // named: ranging over status(id)["events"] would dangle
    for (const auto& e : s["events"])
      if (e["type"] == type) out.push_back(e);
    return out;
  }
  std::vector<std::string> listed(const std::string& query) {
    HttpResult r = gw_->get(http_, "/v1/messages?" + query);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> ids;
    Json body = r.json();
    for (const auto& m : body["messages"]) ids.push_back(m["id"]);
    return ids;
  }

  TempDir dir_;
  HttpClient http_;
  std::unique_ptr<Sim> sim_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(DeadLetters, ASpentRetryBudgetEndsDeadAndAReplayDeliversItOnceTheFaultIsGone) {
  start();
  fail_all("twilio", 503);
  submit(message("dl-1", {"sms"}));
  ASSERT_TRUE(reaches("dl-1", "dead")) << status("dl-1").dump();

  Json s = status("dl-1");
  EXPECT_EQ(s["attempts"], 3);
  EXPECT_EQ(s["channel"], "sms");
  EXPECT_EQ(s["last_reason"].get<std::string>().rfind("twilio.20503", 0), 0u) << s.dump();
  EXPECT_EQ(events_of("dl-1", "retry_scheduled").size(), 2u);
  auto dead = events_of("dl-1", "dead");
  ASSERT_EQ(dead.size(), 1u) << s.dump();
  EXPECT_EQ(dead[0]["detail"]["reason"], "max_attempts");
  EXPECT_EQ(dead[0]["detail"]["attempts"], 3);
  EXPECT_EQ(dead[0]["detail"]["channel"], "sms");
  EXPECT_EQ(dead[0]["detail"]["last_reason"], s["last_reason"]);
  EXPECT_EQ(sim_->requests("twilio").size(), 3u);

  // Listed as a dead letter of its channel, with the provider's answer.
  HttpResult list = gw_->get(http_, "/v1/messages?state=dead&channel=sms");
  ASSERT_EQ(list.status, 200) << list.body;
  Json body = list.json();
  ASSERT_EQ(body["messages"].size(), 1u) << list.body;
  Json item = body["messages"][0];
  EXPECT_EQ(item["id"], "dl-1");
  EXPECT_EQ(item["state"], "dead");
  EXPECT_EQ(item["channel"], "sms");
  EXPECT_EQ(item["attempts"], 3);
  EXPECT_EQ(item["last_reason"], s["last_reason"]);
  EXPECT_EQ(item["updated_at"], s["updated_at"]);
  EXPECT_TRUE(body["next"].is_null());
  EXPECT_TRUE(listed("state=dead&channel=line").empty());

  // Replayed after the fault is cleared: scheduled from its first channel with a fresh budget, then delivered.
  clear_faults();
  HttpResult retried = gw_->post_json(http_, "/v1/messages/dl-1:retry", Json::object());
  ASSERT_EQ(retried.status, 202) << retried.body;
  EXPECT_EQ(retried.json(), (Json{{"id", "dl-1"}, {"state", "scheduled"}}));
  ASSERT_TRUE(reaches("dl-1", "delivered")) << status("dl-1").dump();
  auto replayed = events_of("dl-1", "replayed");
  ASSERT_EQ(replayed.size(), 1u);
  EXPECT_EQ(replayed[0]["detail"], (Json{{"from", "dead"}, {"by", "it"}}));
  EXPECT_EQ(status("dl-1")["events"].back()["type"], "delivered");
  EXPECT_EQ(status("dl-1")["attempts"], 4);
  EXPECT_TRUE(listed("state=dead").empty());

  // Delivered is final: retrying it again is a conflict that names the state.
  HttpResult again = gw_->post_json(http_, "/v1/messages/dl-1:retry", Json::object());
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.json()["state"], "delivered") << again.body;
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages/no-such:retry", Json::object()).status, 404);
}

TEST_F(DeadLetters, BulkRetryReplaysTheDeadLettersOfAChannelAPageAtATime) {
  start();
  fail_all("twilio", 503);
  fail_all("line", 500);
  for (const char* id : {"bl-1", "bl-2", "bl-3"}) submit(message(id, {"sms"}));
  submit(message("bl-l", {"line"}));
  for (const char* id : {"bl-1", "bl-2", "bl-3", "bl-l"}) ASSERT_TRUE(reaches(id, "dead")) << status(id).dump();

  // Paging through every dead letter: a full page names its last id as the cursor.
  HttpResult first = gw_->get(http_, "/v1/messages?state=dead&limit=3");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.json()["next"], "bl-3");
  EXPECT_EQ(listed("state=dead&limit=3&after=bl-3"), std::vector<std::string>{"bl-l"});
  EXPECT_EQ(listed("state=dead&channel=sms"), (std::vector<std::string>{"bl-1", "bl-2", "bl-3"}));

  clear_faults();
  HttpResult some = gw_->post_json(http_, "/v1/messages:retry", {{"state", "dead"}, {"channel", "sms"}, {"limit", 2}});
  ASSERT_EQ(some.status, 202) << some.body;
  EXPECT_EQ(some.json(), (Json{{"retried", 2}, {"ids", {"bl-1", "bl-2"}}}));
  HttpResult rest = gw_->post_json(http_, "/v1/messages:retry", {{"state", "dead"}, {"channel", "sms"}});
  ASSERT_EQ(rest.status, 202) << rest.body;
  EXPECT_EQ(rest.json(), (Json{{"retried", 1}, {"ids", {"bl-3"}}}));
  for (const char* id : {"bl-1", "bl-2", "bl-3"}) {
    ASSERT_TRUE(reaches(id, "delivered")) << status(id).dump();
    EXPECT_EQ(events_of(id, "replayed").size(), 1u);
  }
  EXPECT_EQ(state_of(*gw_, http_, "bl-l"), "dead");  // another channel's dead letter was left alone
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages:retry", {{"state", "dead"}, {"channel", "sms"}}).json()["retried"], 0);

  // Each field is checked and named.
  auto pointers = [&](const Json& body) {
    HttpResult r = gw_->post_json(http_, "/v1/messages:retry", body);
    EXPECT_EQ(r.status, 400) << r.body;
    std::set<std::string> out;
    Json answer = r.json();
    for (const auto& e : answer["errors"]) out.insert(e["pointer"].get<std::string>());
    return out;
  };
  EXPECT_EQ(pointers({{"state", "delivered"}}), std::set<std::string>{"/state"});
  EXPECT_EQ(pointers({{"channel", "sms"}}), std::set<std::string>{"/state"});
  EXPECT_EQ(pointers({{"state", "dead"}, {"limit", 0}}), std::set<std::string>{"/limit"});
  EXPECT_EQ(pointers({{"state", "dead"}, {"limit", 10001}}), std::set<std::string>{"/limit"});
  EXPECT_EQ(pointers({{"state", "failed"}, {"channel", 5}, {"colour", "blue"}}),
            (std::set<std::string>{"/channel", "/colour"}));
  EXPECT_EQ(pointers(Json::array({"dead"})), std::set<std::string>{""});
}

TEST_F(DeadLetters, ASecondChannelTakesOverWhenTheFirstChannelsBudgetIsSpent) {
  start();
  fail_all("line", 500);
  submit(message("fb-1", {"line", "sms"}));
  ASSERT_TRUE(reaches("fb-1", "delivered")) << status("fb-1").dump();

  Json s = status("fb-1");
  EXPECT_EQ(s["channel"], "sms");
  auto given_up = events_of("fb-1", "attempt_failed");
  ASSERT_EQ(given_up.size(), 1u) << s.dump();
  EXPECT_EQ(given_up[0]["detail"]["channel"], "line");
  EXPECT_EQ(given_up[0]["detail"]["reason"], "max_attempts");
  EXPECT_EQ(given_up[0]["detail"]["attempts"], 3);
  EXPECT_EQ(given_up[0]["detail"]["fallback_to"], "sms");
  EXPECT_TRUE(events_of("fb-1", "dead").empty());
  EXPECT_EQ(sim_->requests("line").size(), 3u);
  EXPECT_EQ(sim_->requests("twilio").size(), 1u);
}

// The readiness choice: an open circuit is the provider's trouble, not the gateway's. /readyz shows it per
// channel and stays 200, so a load balancer keeps sending intake for the channels that work.
TEST_F(DeadLetters, AnOpenCircuitShowsInReadinessWithoutMakingTheGatewayUnready) {
  start("{failures: 2, probe_interval: 1h}");
  HttpResult before = http_.request("GET", gw_->url("/readyz"));
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(before.json()["checks"]["channels"]["line"], (Json{{"status", "ok"}, {"circuit", "closed"}}));

  fail_all("line", 500);
  submit(message("cb-1", {"line"}));
  HttpResult ready;
  ASSERT_TRUE(eventually([&] {
    ready = http_.request("GET", gw_->url("/readyz"));
    return ready.json()["checks"]["channels"]["line"]["circuit"] == "open";
  })) << ready.body;
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ready.json()["status"], "ready");
  EXPECT_EQ(ready.json()["checks"]["channels"]["sms"], (Json{{"status", "ok"}, {"circuit", "closed"}}));
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages", message("cb-2", {"sms"})).status, 202);
  EXPECT_TRUE(reaches("cb-2", "delivered"));
}

TEST_F(DeadLetters, RetriesAreRefusedWhileTheGatewayDrains) {
  start();
  // A slow provider keeps one delivery in flight, so the drain lasts while we ask.
  ASSERT_EQ(sim_->faults({{"provider", "twilio"}, {"latency_ms", 1500}}).status, 200);
  submit(message("slow-1", {"sms"}));
  ASSERT_TRUE(eventually([&] { return sim_->requests("twilio").size() == 1; }));
  gw_->signal(SIGTERM);
  ASSERT_TRUE(eventually([&] { return gw_->get(http_, "/readyz").status == 503; }, std::chrono::seconds(1)));
  HttpResult one = gw_->post_json(http_, "/v1/messages/slow-1:retry", Json::object());
  EXPECT_EQ(one.status, 503) << one.body;
  EXPECT_EQ(one.json()["detail"], "the gateway is shutting down");
  HttpResult bulk = gw_->post_json(http_, "/v1/messages:retry", {{"state", "dead"}});
  EXPECT_EQ(bulk.status, 503) << bulk.body;
  EXPECT_EQ(gw_->wait_exit(std::chrono::seconds(10)), std::optional<int>(0));
}

}  // namespace
}  // namespace tayori::testing
