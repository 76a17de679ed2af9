// The stats end to end through the real binary (file_sink channels): messages accepted, delivered and
// suppressed, a tracked link clicked twice, an answer and a conversion (sent twice) are counted once each,
// by category, channel and template, and read back from GET /v1/stats; the flow per minute and the queue by
// the hour it reopens agree; a question the route cannot answer is refused naming its parameter.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "common/time.hpp"
#include "harness.hpp"
#include "links/links.hpp"

namespace tayori::testing {
namespace {

constexpr const char* kLinkSecret = "stats-link-secret-0123456789";
constexpr const char* kPublicUrl = "https://gw.example.jp";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Stats : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("TAYORI_TEST_LINK_SECRET", kLinkSecret, 1);
    gw_ = std::make_unique<Gateway>(dir_, std::string("server:\n  public_url: ") + kPublicUrl +
                                              "\n  link_secret_env: TAYORI_TEST_LINK_SECRET\n" +
                                              default_channels(dir_));
    gw_->start();
    Json opt_in = {{"channel", "email"}, {"purpose", "marketing"}, {"state", "opted_in"}, {"source", "web_form"}};
    ASSERT_EQ(gw_->put_json(http_, "/v1/recipients/r-1/consent", opt_in).status, 200);
  }

  static Json message(const std::string& id, const std::string& recipient, const std::string& purpose,
                      const std::string& category) {
    return {{"id", id},
            {"recipient", {{"id", recipient}, {"contacts", {{"email", recipient + "@example.jp"}}}}},
            {"purpose", purpose},
            {"category", category},
            {"channels", {"email"}},
            {"content", {{"subject", "Hello"}, {"text", "See https://shop.example/sale"}}}};
  }
  std::string send(const Json& m, bool settle = true) {
    HttpResult r = gw_->post_json(http_, "/v1/messages", m);
    EXPECT_EQ(r.status, 202) << r.body;
    std::string state;
    if (settle)
      eventually([&] {
        state = state_of(*gw_, http_, m["id"]);
        return state != "scheduled" && state != "dispatched";
      });
    return state;
  }
  Json group(const std::string& by, const std::string& key) {
    const Json answer = gw_->get(http_, "/v1/stats?by=" + by).json();
    for (const auto& g : answer["groups"])
      if (g["key"] == key) return g;
    ADD_FAILURE() << "no group " << key << " in " << answer.dump();
    return Json::object();
  }
  static int64_t sum(const Json& series) {
    int64_t n = 0;
    for (const auto& v : series) n += v.get<int64_t>();
    return n;
  }

  TempDir dir_;
  HttpClient http_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(Stats, WhatHappenedIsCountedOnceByCategoryChannelAndTemplate) {
  Json sale = message("s-1", "r-1", "marketing", "sale");
  sale["track"] = {{"clicks", true}};
  sale["responses"] = {{{"id", "interested"}, {"label", "Yes"}}, {{"id", "later"}, {"label", "Later"}}};
  ASSERT_EQ(send(sale), "delivered");
  ASSERT_EQ(send(message("s-2", "r-2", "marketing", "sale")), "suppressed");  // r-2 never opted in
  ASSERT_EQ(send(message("n-1", "r-1", "transactional", "news")), "delivered");
  Json later = message("n-2", "r-1", "transactional", "news");
  const int64_t in_three_hours = now_ms() + 3 * 3'600'000;
  later["send_at"] = format_rfc3339_ms(in_three_hours);
  send(later, false);

  // The recipient clicks twice, answers and buys (the shop reports the purchase twice).
  std::string text;
  for (const Json& line : read_jsonl(dir_.file("outbox-email.jsonl")))
    if (line["message_id"] == "s-1") text = line["content"]["text"];
  const std::string click = text.substr(text.find("/c/"));
  const std::string browser = "User-Agent: Mozilla/5.0 (Macintosh) Safari/605.1.15";
  for (int i = 0; i < 2; ++i) ASSERT_EQ(http_.request("GET", gw_->url(click), "", {browser}).status, 302);
  links::LinkSigner signer(kPublicUrl, kLinkSecret);
  const std::string answer =
      signer.token({links::LinkKind::response, "s-1", "email", "interested", now_ms() / 1000 + 3600});
  ASSERT_EQ(http_.request("POST", gw_->url("/r/" + answer), "").status, 200);
  Json purchase = {{"id", "order-1"}, {"recipient", "r-1"}, {"event", "purchase"}, {"value", 1200.5}};
  HttpResult bought = gw_->post_json(http_, "/v1/conversions", purchase);
  ASSERT_EQ(bought.status, 201) << bought.body;
  ASSERT_EQ(bought.json()["message_id"], "s-1") << "the click is the last touch";
  ASSERT_EQ(gw_->post_json(http_, "/v1/conversions", purchase).status, 200);

  const Json s = group("category", "sale");
  EXPECT_EQ(s["accepted"], 2);
  EXPECT_EQ(s["sent"], 1);
  EXPECT_EQ(s["delivered"], 1);
  EXPECT_EQ(s["failed"], 0);
  EXPECT_EQ(s["suppressed"]["total"], 1);
  const std::string reason = gw_->get(http_, "/v1/messages/s-2").json()["last_reason"];
  EXPECT_EQ(s["suppressed"]["by_reason"], (Json{{reason, 1}})) << "the reason the timeline gives";
  EXPECT_EQ(s["clicked"], 1) << "only a message's first click counts";
  EXPECT_EQ(s["responded"], Json::parse(R"({"total":1,"by_option":{"interested":1}})"));
  EXPECT_EQ(s["converted"], 1) << "a conversion sent twice counts once";
  EXPECT_DOUBLE_EQ(s["conversion_value"].get<double>(), 1200.5);
  const Json n = group("category", "news");
  EXPECT_EQ(n["accepted"], 2);
  EXPECT_EQ(n["delivered"], 1);
  EXPECT_EQ(n["clicked"], 0);

  const Json email = group("channel", "email");
  EXPECT_EQ(email["accepted"], 4);
  EXPECT_EQ(email["delivered"], 2);
  EXPECT_EQ(email["latency_ms"]["count"], 2);
  EXPECT_GE(email["latency_ms"]["p99"].get<int64_t>(), email["latency_ms"]["p50"].get<int64_t>());
  EXPECT_EQ(group("template", "")["accepted"], 4) << "messages without a template";

  const Json flow = gw_->get(http_, "/v1/stats/flow?minutes=10").json();
  ASSERT_EQ(flow["minutes"].size(), 10u);
  EXPECT_EQ(sum(flow["channels"]["email"]["accepted"]), 4);
  EXPECT_EQ(sum(flow["channels"]["email"]["delivered"]), 2);
  EXPECT_EQ(sum(flow["channels"]["email"]["suppressed"]), 1);

  const Json queue = gw_->get(http_, "/v1/stats/queue").json();
  EXPECT_EQ(queue["total"], 1);
  ASSERT_EQ(queue["hours"].size(), 1u);
  EXPECT_EQ(queue["hours"][0]["at"], format_rfc3339_ms(in_three_hours - in_three_hours % 3'600'000));

  // A range before any of it: nothing.
  const Json before = gw_->get(http_, "/v1/stats?by=category&from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z").json();
  EXPECT_TRUE(before["groups"].empty()) << before.dump();
  // The counts are the store's: they are there after a restart.
  gw_->stop();
  gw_->start();
  EXPECT_EQ(group("category", "sale")["clicked"], 1);
}

TEST_F(Stats, AQuestionItCannotAnswerIsRefusedNamingTheParameter) {
  auto refused = [&](const std::string& query, const std::string& says) {
    HttpResult r = gw_->get(http_, "/v1/stats" + query);
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_NE(r.body.find(says), std::string::npos) << r.body;
  };
  refused("", "by is required");
  refused("?by=recipient", "by must be category, channel or template");
  refused("?by=channel&from=yesterday", "from must be an RFC 3339 time");
  refused("?by=channel&from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "from must be before to");
  refused("?by=channel&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "at most 366 days");
  refused("?by=channel&by=category", "by is given more than once");
  refused("?by=channel&limit=5", "limit is not a known parameter");
  refused("/flow?minutes=0", "minutes must be a number from 1 to 1440");
  refused("/queue?x=1", "x is not a known parameter");
  EXPECT_EQ(gw_->post_json(http_, "/v1/stats?by=channel", Json::object()).status, 405);
}

}  // namespace
}  // namespace tayori::testing
