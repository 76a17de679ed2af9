// Two-way communication end to end through the real binary (file_sink channels): one-click unsubscribe
// (RFC 8058) opts out of marketing at once and a forged or expired token changes nothing; a response link
// (its page's button, a POST) records the answer while its GET records nothing, "later" schedules a follow-up that is delivered after its delay and a later answer
// cancels it; "not_interested" mapped to a category opt-out stops that category's marketing; apps report
// answers with an app key and the signed ref, never a bare message id. The tokens are minted here with the gateway's link secret (links::LinkSigner),
// as the dispatcher mints them into deliveries.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <set>

#include "harness.hpp"
#include "sim_harness.hpp"
#include "links/links.hpp"

namespace tayori::testing {
namespace {

constexpr const char* kLinkSecret = "twoway-link-secret-0123456789";
constexpr const char* kAppKey = "twoway-app-key-0123456789";
constexpr const char* kPublicUrl = "https://gw.example.jp";

int64_t now_s() { return std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count(); }

// Submits `m` and waits until it has left the queue; returns the state it reached (delivered, failed, ...).
std::string send_and_settle(Gateway& gw, HttpClient& http, const Json& m) {
  HttpResult r = gw.post_json(http, "/v1/messages", m);
  EXPECT_EQ(r.status, 202) << r.body;
  std::string state;
  eventually([&] {
    state = state_of(gw, http, m["id"]);
    return state != "scheduled" && state != "dispatched";
  });
  return state;
}

class TwoWay : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("TAYORI_TEST_LINK_SECRET", kLinkSecret, 1);
    ::setenv("TAYORI_TEST_APP_KEY", kAppKey, 1);
    gw_ = std::make_unique<Gateway>(dir_, std::string("server:\n  public_url: ") + kPublicUrl +
                                              "\n  link_secret_env: TAYORI_TEST_LINK_SECRET\n"
                                              "responses:\n  not_interested: {opt_out: category}\n"
                                              "inbound:\n  app_keys:\n    - name: app\n      key_env: TAYORI_TEST_APP_KEY\n" +
                                              default_channels(dir_));
    gw_->start();
    Json opt_in = {{"channel", "email"}, {"purpose", "marketing"}, {"state", "opted_in"}, {"source", "web_form"}};
    ASSERT_EQ(gw_->put_json(http_, "/v1/recipients/r-1/consent", opt_in).status, 200);
  }

  Json marketing(const std::string& id, const std::string& category = "news", const std::string& after = "1s") {
    return {{"id", id},
            {"recipient", {{"id", "r-1"}, {"locale", "ja-JP"}, {"contacts", {{"email", "hanako@example.jp"}}}}},
            {"purpose", "marketing"},
            {"category", category},
            {"channels", {"email"}},
            {"content", {{"subject", "Sale"}, {"text", "50% off"}}},
            {"responses",
             {{{"id", "interested"}, {"label", "気になる"}},
              {{"id", "later"}, {"label", "あとで"}, {"follow_up", {{"after", after}}}},
              {{"id", "not_interested"}, {"label", "興味なし"}}}}};
  }
  std::string send(const Json& m) { return send_and_settle(*gw_, http_, m); }
  std::string token(links::LinkKind kind, const std::string& id, const std::string& option = "",
                    int64_t expires = 0, const std::string& secret = kLinkSecret) {
    links::LinkSigner signer(kPublicUrl, secret);
    return signer.token({kind, id, "email", option, expires ? expires : now_s() + 3600});
  }
  std::vector<std::string> types(const std::string& id) {
    std::vector<std::string> out;
    Json message = gw_->get(http_, "/v1/messages/" + id).json();  // kept: the loop reads into it
    for (const auto& e : message["events"]) out.push_back(e["type"].get<std::string>());
    return out;
  }
  // The details of `id`'s events of `type`, in order.
  std::vector<Json> details(const std::string& id, const std::string& type) {
    std::vector<Json> out;
    const Json message = gw_->get(http_, "/v1/messages/" + id).json();  // kept: the loop reads into it
    for (const auto& e : message["events"])
      if (e["type"] == type) out.push_back(e["detail"]);
    return out;
  }
  static int count(const std::vector<std::string>& v, const std::string& s) {
    return static_cast<int>(std::count(v.begin(), v.end(), s));
  }

  TempDir dir_;
  HttpClient http_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(TwoWay, OneClickUnsubscribeOptsOutOfMarketingAtOnce) {
  ASSERT_EQ(send(marketing("u-1")), "delivered");
  std::string u = "/u/" + token(links::LinkKind::unsubscribe, "u-1");

  // The confirmation page changes nothing (link scanners GET every URL); it is in the recipient's language.
  HttpResult page = http_.request("GET", gw_->url(u));
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("lang=\"ja\""), std::string::npos);
  EXPECT_NE(page.body.find("List-Unsubscribe"), std::string::npos);
  ASSERT_EQ(send(marketing("u-2")), "delivered");

  // Forged, expired, and a POST without the RFC 8058 body: nothing changes.
  std::string forged = "/u/" + token(links::LinkKind::unsubscribe, "u-1", "", 0, "another-secret");
  std::string expired = "/u/" + token(links::LinkKind::unsubscribe, "u-1", "", now_s() - 10);
  const std::vector<std::string> form = {"Content-Type: application/x-www-form-urlencoded"};
  EXPECT_EQ(http_.request("POST", gw_->url(forged), "List-Unsubscribe=One-Click", form).status, 400);
  EXPECT_EQ(http_.request("POST", gw_->url(expired), "List-Unsubscribe=One-Click", form).status, 410);
  EXPECT_EQ(http_.request("POST", gw_->url(u), "something=else", form).status, 400);
  ASSERT_EQ(send(marketing("u-3")), "delivered");

  // The same body as multipart/form-data (RFC 8058 §3.1 allows both), read by its parts (RFC 7578): the
  // List-Unsubscribe field must say One-Click, wherever else those words appear.
  const std::vector<std::string> multipart = {"Content-Type: multipart/form-data; boundary=\"b0undary\""};
  auto parts = [](const std::vector<std::pair<std::string, std::string>>& fields) {
    std::string body;
    for (const auto& [name, value] : fields)
      body += "--b0undary\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n";
    return body + "--b0undary--\r\n";
  };
  EXPECT_EQ(http_.request("POST", gw_->url(u), parts({{"List-Unsubscribe", "later"}, {"note", "One-Click"}}), multipart)
                .status,
            400);
  ASSERT_EQ(send(marketing("u-3m")), "delivered");

  // RFC 8058 §3.2: the POST opts out at once.
  HttpResult done = http_.request("POST", gw_->url(u), parts({{"note", "x"}, {"List-Unsubscribe", "One-Click"}}), multipart);
  ASSERT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(send(marketing("u-4")), "suppressed");
  EXPECT_EQ(count(types("u-1"), "opted_out"), 1);
  // The form-urlencoded body is as good (each one-click is recorded as it comes).
  EXPECT_EQ(http_.request("POST", gw_->url(u), "List-Unsubscribe=One-Click", form).status, 200);
  EXPECT_EQ(count(types("u-1"), "opted_out"), 2);
  Json history = gw_->get(http_, "/v1/recipients/r-1/consent/history").json()["history"];
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back()["source"], "list_unsubscribe") << history;
}

TEST_F(TwoWay, AResponseLinkRecordsOnlyOnItsButtonsPost) {
  ASSERT_EQ(send(marketing("g-1")), "delivered");
  std::string r = "/r/" + token(links::LinkKind::response, "g-1", "interested");
  // Link scanners GET every URL in a mail: the page changes nothing, however often it is fetched.
  for (int i = 0; i < 2; ++i) {
    HttpResult page = http_.request("GET", gw_->url(r));
    ASSERT_EQ(page.status, 200) << page.body;
    EXPECT_NE(page.body.find("lang=\"ja\""), std::string::npos);
    EXPECT_NE(page.body.find("<form method=\"post\">"), std::string::npos) << page.body;
  }
  EXPECT_EQ(count(types("g-1"), "responded"), 0);
  HttpResult done = http_.request("POST", gw_->url(r), "", {"Content-Type: application/x-www-form-urlencoded"});
  ASSERT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(count(types("g-1"), "responded"), 1);
  // A forged link's GET and POST: 400, nothing recorded.
  std::string forged = "/r/" + token(links::LinkKind::response, "g-1", "interested", 0, "another-secret");
  EXPECT_EQ(http_.request("GET", gw_->url(forged)).status, 400);
  EXPECT_EQ(http_.request("POST", gw_->url(forged), "").status, 400);
  EXPECT_EQ(count(types("g-1"), "responded"), 1);
}

TEST_F(TwoWay, LaterSchedulesAFollowUpThatIsDeliveredAfterTheDelay) {
  ASSERT_EQ(send(marketing("f-1")), "delivered");
  HttpResult r = http_.request("POST", gw_->url("/r/" + token(links::LinkKind::response, "f-1", "later")), "");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("lang=\"ja\""), std::string::npos);
  std::vector<std::string> timeline = types("f-1");
  EXPECT_EQ(count(timeline, "responded"), 1);
  EXPECT_EQ(count(timeline, "follow_up_scheduled"), 1);
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "f-1~follow_up~later") == "delivered"; }))
      << gw_->get(http_, "/v1/messages/f-1~follow_up~later").body;
  EXPECT_EQ(read_jsonl(dir_.file("outbox-email.jsonl")).size(), 2u);
  // The follow-up is a message of its parent's category in the stats, and the answer counts by its option.
  const Json stats = gw_->get(http_, "/v1/stats?by=category").json();
  ASSERT_EQ(stats["groups"].size(), 1u) << stats.dump();
  EXPECT_EQ(stats["groups"][0]["key"], "news");
  EXPECT_EQ(stats["groups"][0]["accepted"], 2);
  EXPECT_EQ(stats["groups"][0]["delivered"], 2);
  EXPECT_EQ(stats["groups"][0]["responded"], Json::parse(R"({"total":1,"by_option":{"later":1}})"));
}

TEST_F(TwoWay, ALaterAnswerCancelsTheScheduledFollowUp) {
  ASSERT_EQ(send(marketing("c-1", "news", "P1D")), "delivered");
  // Answer "later", then "interested" before the follow-up is due (due in a day).
  HttpResult r = http_.request("POST", gw_->url("/v1/inbound/app"),
                               Json{{"ref", token(links::LinkKind::response, "c-1", "later")}}.dump(),
                               {"Authorization: Bearer " + std::string(kAppKey), "Content-Type: application/json"});
  ASSERT_EQ(r.status, 200) << r.body;
  r = http_.request("POST", gw_->url("/v1/inbound/app"),
                    Json{{"ref", token(links::LinkKind::response, "c-1", "interested")}}.dump(),
                    {"Authorization: Bearer " + std::string(kAppKey), "Content-Type: application/json"});
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<std::string> timeline = types("c-1");
  EXPECT_EQ(count(timeline, "responded"), 2);
  EXPECT_EQ(count(timeline, "follow_up_scheduled"), 1);
  EXPECT_EQ(count(timeline, "follow_up_cancelled"), 1);
  EXPECT_EQ(state_of(*gw_, http_, "c-1~follow_up~later"), "cancelled");
}

TEST_F(TwoWay, NotInterestedOptsOutOfTheCategory) {
  ASSERT_EQ(send(marketing("n-1", "news")), "delivered");
  HttpResult r = http_.request("POST", gw_->url("/r/" + token(links::LinkKind::response, "n-1", "not_interested")), "");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(send(marketing("n-2", "news")), "suppressed");
  Json m = gw_->get(http_, "/v1/messages/n-2").json();
  EXPECT_EQ(m["last_reason"], "category_opted_out") << m;
  EXPECT_EQ(send(marketing("n-3", "sale")), "delivered");  // another category still goes
}

TEST_F(TwoWay, AppReportsNeedAnAppKeyAndASignedRef) {
  ASSERT_EQ(send(marketing("a-1")), "delivered");
  const std::string app = gw_->url("/v1/inbound/app");
  const std::string json = "Content-Type: application/json";
  auto ref = [&](const std::string& id, const std::string& option) {
    return Json{{"ref", token(links::LinkKind::response, id, option)}}.dump();
  };
  // The API key is not an app key.
  EXPECT_EQ(http_.request("POST", app, ref("a-1", "interested"), {"Authorization: Bearer " + std::string(kApiKey), json}).status, 401);
  const std::string auth = "Authorization: Bearer " + std::string(kAppKey);
  // The app key ships inside the app: a bare message id would let anyone answer for any recipient.
  HttpResult bare = http_.request("POST", app, Json{{"message_id", "a-1"}, {"option", "interested"}}.dump(), {auth, json});
  EXPECT_EQ(bare.status, 400) << bare.body;
  Json problem = bare.json();
  ASSERT_TRUE(problem["errors"].is_array()) << bare.body;
  std::set<std::string> pointers;
  for (const auto& e : problem["errors"]) pointers.insert(e["pointer"].get<std::string>());
  EXPECT_EQ(pointers, (std::set<std::string>{"/message_id", "/option", "/ref"})) << bare.body;
  EXPECT_NE(bare.body.find("send ref"), std::string::npos) << bare.body;
  EXPECT_EQ(count(types("a-1"), "responded"), 0);
  EXPECT_EQ(http_.request("POST", app, ref("a-1", "maybe"), {auth, json}).status, 404);
  EXPECT_EQ(http_.request("POST", app, ref("nope", "x"), {auth, json}).status, 410);
  HttpResult bad = http_.request("POST", app, Json{{"ref", "not-a-ref"}, {"extra", 1}}.dump(), {auth, json});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("/extra"), std::string::npos) << bad.body;
  EXPECT_EQ(http_.request("POST", app, ref("a-1", "interested"), {auth, json}).status, 200);
  EXPECT_EQ(count(types("a-1"), "responded"), 1);
}

// A push cannot load a pixel: content without html that tracks opens carries an open_ref, which the app posts
// back when the notification is opened; the first open counts in the stats. A click's token is no open ref.
TEST_F(TwoWay, APushOpenIsReportedByItsAppWithTheOpenRef) {
  Json m = {{"id", "po-1"},
            {"recipient", {{"id", "r-1"}, {"contacts", {{"email", "hanako@example.jp"}}}}},
            {"purpose", "transactional"},
            {"category", "orders"},
            {"channels", {"email"}},
            {"content", {{"title", "発送しました"}, {"body", "ご注文の品を発送しました"}}},
            {"track", {{"opens", true}}}};
  ASSERT_EQ(send(m), "delivered");
  std::string open_ref;
  for (const Json& line : read_jsonl(dir_.file("outbox-email.jsonl")))
    if (line["message_id"] == "po-1") open_ref = line["content"].value("open_ref", "");
  ASSERT_FALSE(open_ref.empty()) << "no open_ref in what the channel was given";
  const std::string app = gw_->url("/v1/inbound/app");
  const std::vector<std::string> headers = {"Authorization: Bearer " + std::string(kAppKey),
                                            "Content-Type: application/json"};
  HttpResult opened = http_.request("POST", app, Json{{"ref", open_ref}}.dump(), headers);
  ASSERT_EQ(opened.status, 200) << opened.body;
  EXPECT_EQ(opened.json(), (Json{{"message_id", "po-1"}, {"event", "opened"}, {"recorded", true}}));
  ASSERT_EQ(http_.request("POST", app, Json{{"ref", open_ref}}.dump(), headers).status, 200);
  const std::vector<Json> opens = details("po-1", "opened");
  ASSERT_EQ(opens.size(), 2u);
  EXPECT_EQ(opens[0], (Json{{"channel", "email"}, {"first", true}}));
  EXPECT_EQ(opens[1]["first"], false);
  const Json stats = gw_->get(http_, "/v1/stats?by=category").json();
  ASSERT_EQ(stats["groups"].size(), 1u) << stats.dump();
  EXPECT_EQ(stats["groups"][0]["opened"], 1) << "only the first open counts";
  HttpResult click = http_.request("POST", app, Json{{"ref", token(links::LinkKind::click, "po-1")}}.dump(), headers);
  EXPECT_EQ(click.status, 400);
  EXPECT_NE(click.body.find("not a valid response or open ref"), std::string::npos) << click.body;
}

// Click tracking end to end: a message that asks for it goes out with its links rewritten to /c/ links of the
// gateway (file_sink shows what was sent), and a person's click is taken to the original URL and recorded,
// the first one flagged; a HEAD, a scanner's fetch, an expired link and a message without tracking record
// nothing, and a forged token redirects nowhere.
TEST_F(TwoWay, ATrackedLinkTakesTheRecipientToItsUrlAndRecordsTheFirstClick) {
  const std::string target = "https://shop.example/orders/1?a=1&b=2";
  Json m = {{"id", "k-1"},
            {"recipient", {{"id", "r-1"}, {"contacts", {{"email", "hanako@example.jp"}}}}},
            {"purpose", "transactional"},
            {"channels", {"email"}},
            {"content",
             {{"subject", "ご注文"},
              {"text", "ご注文の確認: " + target + "です。ヘルプ: https://shop.example/help"},
              {"html", "<p><a href=\"https://shop.example/orders/1?a=1&amp;b=2\">ご注文</a></p>"}}},
            {"track", {{"clicks", true}}}};
  ASSERT_EQ(send(m), "delivered");
  Json untracked = m;
  untracked["id"] = "k-2";
  untracked.erase("track");
  ASSERT_EQ(send(untracked), "delivered");

  std::map<std::string, Json> sent;
  for (const Json& line : read_jsonl(dir_.file("outbox-email.jsonl"))) sent[line["message_id"]] = line["content"];
  EXPECT_EQ(sent["k-2"]["text"], untracked["content"]["text"]);
  const std::string text = sent["k-1"]["text"];
  const std::string prefix = std::string(kPublicUrl) + "/c/";
  const size_t at = text.find(prefix);
  ASSERT_NE(at, std::string::npos) << text;
  const size_t end = text.find_first_not_of(
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", at + prefix.size());
  const std::string path = "/c/" + text.substr(at + prefix.size(), end - at - prefix.size());
  EXPECT_EQ(text.substr(end, 6), "です");  // the Japanese right after the URL is not part of it
  EXPECT_NE(text.find(prefix, end), std::string::npos) << "the help link is tracked too: " << text;
  // The html part's link is the same link: the same token.
  EXPECT_NE(sent["k-1"]["html"].get<std::string>().find("href=\"" + std::string(kPublicUrl) + path + "\""),
            std::string::npos)
      << sent["k-1"]["html"];

  const std::string browser = "User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Safari/604.1";
  auto clicks = [&] { return details("k-1", "clicked"); };
  HttpResult head = http_.request("HEAD", gw_->url(path), "", {browser});
  EXPECT_EQ(head.status, 302);
  EXPECT_EQ(head.headers["location"], target);
  HttpResult scanner = http_.request("GET", gw_->url(path), "", {"User-Agent: Mozilla/5.0 (compatible; Googlebot/2.1)"});
  EXPECT_EQ(scanner.status, 302);
  EXPECT_EQ(scanner.headers["location"], target);
  EXPECT_TRUE(clicks().empty());

  HttpResult click = http_.request("GET", gw_->url(path), "", {browser});
  EXPECT_EQ(click.status, 302);
  EXPECT_EQ(click.headers["location"], target);
  EXPECT_EQ(click.headers["cache-control"], "no-store");
  ASSERT_EQ(http_.request("GET", gw_->url(path), "", {browser}).status, 302);
  std::vector<Json> recorded = clicks();
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0], (Json{{"channel", "email"}, {"link", 0}, {"url", target}, {"first", true}}));
  EXPECT_EQ(recorded[1]["first"], false);
  // The click reaches upstream through the event feed.
  bool in_feed = false;
  const Json feed = gw_->get(http_, "/v1/events?limit=1000").json();
  for (const auto& e : feed["events"])
    in_feed = in_feed || (e["type"] == "clicked" && e["message_id"] == "k-1");
  EXPECT_TRUE(in_feed);

  // An expired link still takes the recipient there and records nothing; a forged one goes nowhere.
  links::LinkSigner signer(kPublicUrl, kLinkSecret);
  links::LinkClaims old{links::LinkKind::click, "k-1", "email", "0", now_s() - 10, target};
  HttpResult expired = http_.request("GET", gw_->url("/c/" + signer.token(old)), "", {browser});
  EXPECT_EQ(expired.status, 302);
  EXPECT_EQ(expired.headers["location"], target);
  EXPECT_EQ(clicks().size(), 2u);
  links::LinkSigner forger(kPublicUrl, "another-secret");
  links::LinkClaims evil{links::LinkKind::click, "k-1", "email", "0", now_s() + 3600, "https://evil.example/"};
  HttpResult forged = http_.request("GET", gw_->url("/c/" + forger.token(evil)), "", {browser});
  EXPECT_EQ(forged.status, 400);
  EXPECT_EQ(forged.headers.count("location"), 0u);
}

// Conversions end to end: attributed to the recipient's last message delivered or clicked (a click on an
// older message is the later touch), or to the message the report names; the same id counts once; one with no
// message in the window is still recorded, on the recipient; a report that names another's message is refused.
TEST_F(TwoWay, AConversionIsAttributedToTheLastTouchAndCountsOnce) {
  auto message = [](const std::string& id, const std::string& text, bool track) {
    Json m = {{"id", id},
              {"recipient", {{"id", "r-1"}, {"contacts", {{"email", "hanako@example.jp"}}}}},
              {"purpose", "transactional"},
              {"category", "news"},
              {"channels", {"email"}},
              {"content", {{"subject", "News"}, {"text", text}}}};
    if (track) m["track"] = {{"clicks", true}};
    return m;
  };
  ASSERT_EQ(send(message("v-1", "https://shop.example/a", true)), "delivered");
  ASSERT_EQ(send(message("v-2", "no links", false)), "delivered");
  auto convert = [&](const Json& body) { return gw_->post_json(http_, "/v1/conversions", body); };

  HttpResult first = convert({{"id", "order-1"}, {"recipient", "r-1"}, {"event", "purchase"}, {"value", 1200}});
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(first.json()["message_id"], "v-2");
  EXPECT_EQ(first.json()["attributed"]["via"], "delivered");
  HttpResult again = convert({{"id", "order-1"}, {"recipient", "r-1"}, {"event", "purchase"}, {"value", 1200}});
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.json()["duplicate"], true);
  EXPECT_EQ(count(types("v-2"), "converted"), 1);

  // A click on v-1's link is now the last touch.
  std::string text;
  for (const Json& line : read_jsonl(dir_.file("outbox-email.jsonl")))
    if (line["message_id"] == "v-1") text = line["content"]["text"];
  const std::string path = text.substr(text.find("/c/"));
  ASSERT_EQ(http_.request("GET", gw_->url(path), "", {"User-Agent: Mozilla/5.0 (Macintosh) Safari/605.1.15"}).status, 302);
  HttpResult clicked = convert({{"id", "order-2"}, {"recipient", "r-1"}, {"event", "purchase"}});
  ASSERT_EQ(clicked.status, 201) << clicked.body;
  EXPECT_EQ(clicked.json()["message_id"], "v-1");
  EXPECT_EQ(clicked.json()["attributed"]["via"], "clicked");
  const std::vector<Json> conversions = details("v-1", "converted");
  ASSERT_EQ(conversions.size(), 1u);
  const Json& converted = conversions[0];
  EXPECT_EQ(converted["conversion_id"], "order-2");
  EXPECT_EQ(converted["event"], "purchase");
  EXPECT_TRUE(converted["value"].is_null());

  HttpResult named = convert({{"id", "order-3"}, {"recipient", "r-1"}, {"event", "signup"}, {"message_id", "v-2"}});
  ASSERT_EQ(named.status, 201) << named.body;
  EXPECT_EQ(named.json()["attributed"]["via"], "reported");
  HttpResult foreign = convert({{"id", "order-4"}, {"recipient", "r-2"}, {"event", "signup"}, {"message_id", "v-2"}});
  EXPECT_EQ(foreign.status, 400);
  EXPECT_NE(foreign.body.find("/message_id"), std::string::npos) << foreign.body;

  HttpResult nobody = convert({{"id", "order-5"}, {"recipient", "r-none"}, {"event", "purchase"}});
  ASSERT_EQ(nobody.status, 201) << nobody.body;
  EXPECT_TRUE(nobody.json()["message_id"].is_null());
  bool recorded = false;
  const Json feed = gw_->get(http_, "/v1/events?limit=1000").json();
  for (const auto& e : feed["events"])
    recorded = recorded || (e["type"] == "converted" && e["recipient_id"] == "r-none" && e["message_id"].is_null());
  EXPECT_TRUE(recorded);
  HttpResult invalid = convert({{"id", "order-6"}, {"recipient", "r-1"}});
  EXPECT_EQ(invalid.status, 400);
  EXPECT_NE(invalid.body.find("/event"), std::string::npos) << invalid.body;
}

// An e-mail's open pixel: added to the html of a message that asks for it, a GIF for whoever loads it, and an
// `opened` event for a person's load (the first flagged), none for a HEAD or a scanner.
TEST_F(TwoWay, AnOpenPixelRecordsTheFirstOpen) {
  Json m = {{"id", "p-1"},
            {"recipient", {{"id", "r-1"}, {"contacts", {{"email", "hanako@example.jp"}}}}},
            {"purpose", "transactional"},
            {"channels", {"email"}},
            {"content", {{"subject", "ご注文"}, {"text", "ありがとう"}, {"html", "<html><body><p>ありがとう</p></body></html>"}}},
            {"track", {{"opens", true}}}};
  ASSERT_EQ(send(m), "delivered");
  std::string html;
  for (const Json& line : read_jsonl(dir_.file("outbox-email.jsonl")))
    if (line["message_id"] == "p-1") html = line["content"]["html"];
  const std::string prefix = std::string("<img src=\"") + kPublicUrl + "/o/";
  const size_t at = html.find(prefix);
  ASSERT_NE(at, std::string::npos) << html;
  EXPECT_EQ(html.substr(html.size() - 14), "</body></html>");
  const std::string path = "/o/" + html.substr(at + prefix.size(), html.find('"', at + prefix.size()) - at - prefix.size());
  const std::string browser = "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36";
  auto opens = [&] { return details("p-1", "opened"); };
  EXPECT_EQ(http_.request("HEAD", gw_->url(path), "", {browser}).status, 200);
  HttpResult scanner = http_.request("GET", gw_->url(path), "", {"User-Agent: Barracuda Sentinel (EE)"});
  EXPECT_EQ(scanner.status, 200);
  EXPECT_EQ(scanner.body.size(), 43u);
  EXPECT_TRUE(opens().empty());
  HttpResult load = http_.request("GET", gw_->url(path), "", {browser});
  EXPECT_EQ(load.status, 200);
  EXPECT_EQ(load.headers["content-type"], "image/gif");
  EXPECT_EQ(load.body.substr(0, 6), "GIF89a");
  ASSERT_EQ(http_.request("GET", gw_->url(path), "", {browser}).status, 200);
  std::vector<Json> recorded = opens();
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0], (Json{{"channel", "email"}, {"first", true}}));
  EXPECT_EQ(recorded[1]["first"], false);
  // An open pixel's token is not a tracked link.
  EXPECT_EQ(http_.request("GET", gw_->url("/c/" + path.substr(3)), "", {browser}).status, 400);
}

// `track:` on a channel: its messages' links and html are tracked without asking, and a message can still say
// no for itself.
TEST(TwoWayChannelTracking, AChannelTracksItsMessagesUnlessAMessageSaysOtherwise) {
  ::setenv("TAYORI_TEST_LINK_SECRET", kLinkSecret, 1);
  TempDir dir;
  HttpClient http;
  Gateway gw(dir, std::string("server:\n  public_url: ") + kPublicUrl +
                      "\n  link_secret_env: TAYORI_TEST_LINK_SECRET\n"
                      "channels:\n"
                      "  - name: email\n"
                      "    plugin: file_sink\n"
                      "    contact: email\n"
                      "    track: {clicks: true, opens: true}\n"
                      "    settings:\n"
                      "      path: " + dir.file("outbox-email.jsonl") + "\n");
  gw.start();
  auto message = [](const std::string& id) {
    return Json{{"id", id},
                {"recipient", {{"id", "r-1"}, {"contacts", {{"email", "hanako@example.jp"}}}}},
                {"purpose", "transactional"},
                {"channels", {"email"}},
                {"content",
                 {{"subject", "ご注文"},
                  {"text", "https://shop.example/orders/1"},
                  {"html", "<html><body><a href=\"https://shop.example/orders/1\">ご注文</a></body></html>"}}}};
  };
  Json untracked = message("ct-2");
  untracked["track"] = {{"clicks", false}, {"opens", false}};
  for (const Json& m : {message("ct-1"), untracked}) {
    ASSERT_EQ(gw.post_json(http, "/v1/messages", m).status, 202);
    ASSERT_TRUE(eventually([&] { return state_of(gw, http, m["id"]) == "delivered"; }));
  }
  std::map<std::string, Json> sent;
  for (const Json& line : read_jsonl(dir.file("outbox-email.jsonl"))) sent[line["message_id"]] = line["content"];
  const std::string tracked_html = sent["ct-1"]["html"];
  EXPECT_NE(sent["ct-1"]["text"].get<std::string>().find(std::string(kPublicUrl) + "/c/"), std::string::npos)
      << sent["ct-1"];
  EXPECT_NE(tracked_html.find("href=\"" + std::string(kPublicUrl) + "/c/"), std::string::npos) << tracked_html;
  EXPECT_NE(tracked_html.find("<img src=\"" + std::string(kPublicUrl) + "/o/"), std::string::npos) << tracked_html;
  EXPECT_EQ(sent["ct-2"], untracked["content"]) << "the message's own track: wins";
}

// Tracking needs the gateway's public URL: a message asking for it without one is refused, naming the field.
TEST(TwoWayNoPublicUrl, AMessageAskingForClickTrackingNeedsThePublicUrl) {
  TempDir dir;
  HttpClient http;
  Gateway gw(dir, default_channels(dir));
  gw.start();
  Json m = {{"id", "k-9"},
            {"recipient", {{"id", "r-9"}, {"contacts", {{"email", "a@example.jp"}}}}},
            {"purpose", "transactional"},
            {"channels", {"email"}},
            {"content", {{"text", "https://shop.example/"}}},
            {"track", {{"clicks", true}}}};
  HttpResult r = gw.post_json(http, "/v1/messages", m);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("/track/clicks"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("needs server.public_url"), std::string::npos) << r.body;
}

TEST_F(TwoWay, InboundWebhooksNeedTheChannelsOwnPlugin) {
  // file_sink takes no inbound calls; a plugin name that is not the channel's is not found.
  EXPECT_EQ(http_.request("POST", gw_->url("/inbound/line/email"), "{}").status, 404);
  EXPECT_EQ(http_.request("GET", gw_->url("/inbound/file_sink/email")).status, 405);
  EXPECT_EQ(http_.request("POST", gw_->url("/inbound/file_sink/email"), "{}").status, 404);
}


// LINE through tayori-sim's signed webhooks: a postback "later" schedules a follow-up that is delivered after
// its delay; a redelivered event is applied once; a bad signature changes nothing; unfollow suppresses the
// user. Skipped while the LINE plugin takes no inbound calls (channel_secret, on_inbound: the plugins work).
constexpr const char* kLineSecret = "line-channel-secret-for-tests";

class TwoWayLine : public ::testing::Test {
 protected:
  void SetUp() override {
    sim_ = std::make_unique<Sim>(all_providers(), false);
    ::setenv("LINE_TOKEN", kLineToken, 1);
    ::setenv("LINE_SECRET", kLineSecret, 1);
    ::setenv("TAYORI_TEST_LINK_SECRET", kLinkSecret, 1);
    gw_ = std::make_unique<Gateway>(
        dir_, std::string("server:\n  public_url: ") + kPublicUrl +
                  "\n  link_secret_env: TAYORI_TEST_LINK_SECRET\n"
                  "channels:\n  - name: line\n    plugin: line\n    settings:\n"
                  "      base_url: " + sim_->http_base() + "\n      channel_access_token_env: LINE_TOKEN\n"
                  "      channel_secret_env: LINE_SECRET\n"
                  "  - name: email\n    plugin: file_sink\n    contact: email\n    settings:\n"
                  "      path: " + dir_.file("outbox-email.jsonl") + "\n"
                  "policy:\n  consent:\n    defaults:\n      marketing: opted_in\n");
    try {
      gw_->start();
    } catch (const std::exception& e) {
      FAIL() << "the gateway did not start with a LINE channel_secret: " << e.what();
    }
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }

  // A message with response options on `channel`, or without options.
  Json message(const std::string& id, const std::string& channel, bool responses = true) {
    Json m = {{"id", id},
              {"recipient", {{"id", "r-line"}, {"contacts", {{"line", kLineUser}, {"email", "hanako@example.jp"}}}}},
              {"purpose", "marketing"},
              {"category", "news"},
              {"channels", {channel}},
              {"content", {{"subject", "Sale"}, {"text", "Sale"}}}};
    if (responses)
      m["responses"] = {{{"id", "interested"}, {"label", "気になる"}},
                        {{"id", "later"}, {"label", "あとで"}, {"follow_up", {{"after", "PT1S"}}}}};
    return m;
  }
  std::string send(const Json& m) { return send_and_settle(*gw_, http_, m); }
  // Has the simulator POST a signed webhook with `events` to the gateway; returns the gateway's status.
  long webhook(const Json& events, const std::string& secret = kLineSecret) {
    Reply r = call("POST", sim_->url("/_sim/webhooks/line"),
                   Json{{"url", gw_->url("/inbound/line/line")}, {"channel_secret", secret}, {"events", events}}.dump(),
                   {"Content-Type: application/json"});
    return r.json().value("status", -1L);
  }
  Json event(const std::string& type, const std::string& id) {
    return {{"type", type}, {"webhookEventId", id}, {"source", {{"type", "user"}, {"userId", kLineUser}}}};
  }
  size_t pushes() { return sim_->requests("line").size(); }

  TempDir dir_;
  HttpClient http_;
  std::unique_ptr<Sim> sim_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(TwoWayLine, PostbackLaterFollowsUpOnceAndUnfollowSuppresses) {
  ASSERT_EQ(webhook(Json::array()), 200) << "the verification call (no events) must be answered 200";
  // The question goes out by e-mail (file_sink) so that this test does not depend on the dispatcher's
  // minting; the answer comes back as a LINE postback carrying the signed ref.
  ASSERT_EQ(send(message("l-1", "email")), "delivered");
  std::string ref = links::LinkSigner(kPublicUrl, kLinkSecret)
                        .token({links::LinkKind::response, "l-1", "line", "later", now_s() + 3600});
  Json postback = event("postback", "01POSTBACK0001");
  postback["postback"] = {{"data", ref}};
  EXPECT_EQ(webhook(Json::array({postback}), "wrong-secret"), 401);
  EXPECT_EQ(gw_->get(http_, "/v1/messages/l-1~follow_up~later").status, 404);  // nothing changed
  ASSERT_EQ(webhook(Json::array({postback})), 200);
  ASSERT_EQ(webhook(Json::array({postback})), 200);  // redelivered: applied once
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "l-1~follow_up~later") == "delivered"; }));
  EXPECT_EQ(read_jsonl(dir_.file("outbox-email.jsonl")).size(), 2u);
  EXPECT_EQ(gw_->get(http_, "/v1/messages/l-1~follow_up~later~2").status, 404);
  Json m = gw_->get(http_, "/v1/messages/l-1").json();
  int responded = 0;
  for (const auto& e : m["events"]) responded += e["type"] == "responded";
  EXPECT_EQ(responded, 1) << m;

  ASSERT_EQ(send(message("l-2", "line", false)), "delivered");
  ASSERT_EQ(webhook(Json::array({event("unfollow", "01UNFOLLOW0001")})), 200);
  EXPECT_EQ(send(message("l-3", "line", false)), "suppressed");
  ASSERT_EQ(webhook(Json::array({event("follow", "01FOLLOW0001")})), 200);
  EXPECT_EQ(send(message("l-4", "line", false)), "delivered");
}

TEST_F(TwoWayLine, QuickRepliesCarryRefsMintedByTheDispatcher) {
  std::string state = send(message("q-1", "line"));
  std::string reason = gw_->get(http_, "/v1/messages/q-1").json().value("last_reason", Json()).dump();
  ASSERT_EQ(state, "delivered") << "quick-reply refs must be minted by the dispatcher: " << reason;
  Json body = Json::parse(sim_->requests("line").back()["body"].get<std::string>());
  Json items = body["messages"].back()["quickReply"]["items"];
  ASSERT_EQ(items.size(), 2u) << body;
  std::string data = items[1]["action"]["data"];
  auto v = links::LinkSigner(kPublicUrl, kLinkSecret).verify(data, now_s());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.claims.option, "later");
}

// Twilio through tayori-sim's signed form webhooks: a numbered reply answers the latest question sent to the
// number; STOP stops marketing SMS. Twilio signs the URL it calls, so public_url must be the gateway's real
// address: the port is known only after the start, so the config is rewritten and reloaded (SIGHUP).
class TwoWayTwilio : public ::testing::Test {
 protected:
  void SetUp() override {
    sim_ = std::make_unique<Sim>(all_providers(), false);
    ::setenv("TWILIO_TOKEN", kTwilioToken, 1);
    ::setenv("TAYORI_TEST_LINK_SECRET", kLinkSecret, 1);
    channels_ = "channels:\n  - name: sms\n    plugin: sms_twilio\n    settings:\n"
                "      base_url: " + sim_->http_base() + "\n      account_sid: " + kTwilioSid + "\n"
                "      auth_token_env: TWILIO_TOKEN\n      from: \"+15005550006\"\n      status_callback: false\n"
                "policy:\n  consent:\n    defaults:\n      marketing: opted_in\n";
    gw_ = std::make_unique<Gateway>(dir_, "server:\n  public_url: https://placeholder.example\n"
                                          "  link_secret_env: TAYORI_TEST_LINK_SECRET\n" + channels_);
    gw_->start();
    std::string config = read_file(gw_->config_path());
    size_t at = config.find("https://placeholder.example");
    config.replace(at, std::string("https://placeholder.example").size(), gw_->url(""));
    write_file(gw_->config_path(), config);
    gw_->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return gw_->stderr_text().find("reloaded") != std::string::npos; }))
        << gw_->stderr_text();
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }

  Json message(const std::string& id, const std::string& recipient = "r-sms", const std::string& phone = kPhone) {
    return {{"id", id},
            {"recipient", {{"id", recipient}, {"contacts", {{"phone", phone}}}}},
            {"purpose", "marketing"},
            {"category", "news"},
            {"channels", {"sms"}},
            {"content", {{"text", "Sale"}}},
            {"responses",
             {{{"id", "interested"}, {"label", "気になる"}},
              {{"id", "later"}, {"label", "あとで"}, {"follow_up", {{"after", "PT1S"}}}}}}};
  }
  std::string send(const Json& m) { return send_and_settle(*gw_, http_, m); }
  long inbound_sms(const std::string& body, const std::string& sid, const std::string& from = kPhone) {
    Json params = {{"From", from}, {"To", "+15005550006"}, {"Body", body}, {"MessageSid", sid},
                   {"AccountSid", kTwilioSid}, {"NumMedia", "0"}};
    Reply r = call("POST", sim_->url("/_sim/webhooks/twilio"),
                   Json{{"url", gw_->url("/inbound/sms_twilio/sms")}, {"params", params}}.dump(),
                   {"Content-Type: application/json"});
    return r.json().value("status", -1L);
  }

  static constexpr const char* kPhone = "+819012345678";
  TempDir dir_;
  HttpClient http_;
  std::string channels_;
  std::unique_ptr<Sim> sim_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(TwoWayTwilio, ANumberedReplyAnswersTheLatestQuestionAndStopStopsMarketing) {
  std::string state = send(message("s-1"));
  ASSERT_EQ(state, "delivered") << gw_->get(http_, "/v1/messages/s-1").body;
  long status = inbound_sms("2", "SMreply0001");
  ASSERT_NE(status, 404) << "the Twilio plugin must take inbound calls";
  ASSERT_EQ(status, 200);
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "s-1~follow_up~later") == "delivered"; }))
      << gw_->get(http_, "/v1/messages/s-1").body;
  ASSERT_EQ(inbound_sms("STOP", "SMstop0001"), 200);
  EXPECT_EQ(send(message("s-2")), "suppressed");
  Json history = gw_->get(http_, "/v1/recipients/r-sms/consent/history").json()["history"];
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back()["source"], "sms_keyword") << history;
}

// A family shares one number: a STOP from it opts out every recipient who has it, not only the latest. A
// STOP from a number no profile has yet is kept as a suppression of the number, so a profile that later
// gives it is not messaged.
TEST_F(TwoWayTwilio, AStopReachesEveryRecipientOfTheNumberAndAnUnknownNumberStaysStopped) {
  for (const char* id : {"r-sms", "r-family"}) {
    HttpResult put = gw_->put_json(http_, std::string("/v1/recipients/") + id, Json{{"contacts", {{"phone", kPhone}}}});
    ASSERT_EQ(put.status, 200) << put.body;
  }
  ASSERT_EQ(inbound_sms("STOP", "SMstop0002"), 200);
  EXPECT_EQ(send(message("fam-1", "r-sms")), "suppressed");
  EXPECT_EQ(send(message("fam-2", "r-family")), "suppressed");
  for (const char* id : {"r-sms", "r-family"}) {
    Json history = gw_->get(http_, std::string("/v1/recipients/") + id + "/consent/history").json()["history"];
    ASSERT_FALSE(history.empty()) << id;
    EXPECT_EQ(history.back()["source"], "sms_keyword") << id << history;
  }

  const std::string stranger = "+819055555555";
  ASSERT_EQ(inbound_sms("STOP", "SMstop0003", stranger), 200);
  EXPECT_EQ(send(message("new-1", "r-new", stranger)), "suppressed")
      << gw_->get(http_, "/v1/messages/new-1").body;
  EXPECT_EQ(gw_->get(http_, "/v1/suppressions/%2B819055555555").status, 200);
}

// Right to erasure over HTTP (GDPR Art. 17): what the recipient wrote back and the number it wrote from are
// gone from the timeline and the feed; the number's suppression still holds when a new profile brings the
// number back, and is listed by its key only.
TEST_F(TwoWayTwilio, ErasureRemovesRepliesAndTheNumberAndKeepsItsSuppression) {
  const std::string reply = "Call me about the sale tonight";
  ASSERT_EQ(send(message("e-1")), "delivered");
  ASSERT_EQ(inbound_sms(reply, "SMreply0100"), 200);
  ASSERT_TRUE(eventually([&] { return gw_->get(http_, "/v1/messages/e-1").body.find(reply) != std::string::npos; }))
      << gw_->get(http_, "/v1/messages/e-1").body;
  HttpResult suppressed =
      gw_->post_json(http_, "/v1/suppressions", Json{{"contact", kPhone}, {"reason", "complained"}});
  ASSERT_LT(suppressed.status, 300) << suppressed.body;

  HttpResult erased = gw_->del(http_, "/v1/recipients/r-sms");
  ASSERT_LT(erased.status, 300) << erased.body;

  for (const std::string path : {"/v1/messages/e-1", "/v1/events?limit=1000", "/v1/suppressions"}) {
    std::string body = gw_->get(http_, path).body;
    EXPECT_EQ(body.find(reply), std::string::npos) << path << ": " << body;
    EXPECT_EQ(body.find(kPhone), std::string::npos) << path << ": " << body;
  }
  EXPECT_EQ(gw_->get(http_, "/v1/suppressions/%2B819012345678").status, 200);
  EXPECT_EQ(send(message("e-2", "r-returning")), "suppressed") << gw_->get(http_, "/v1/messages/e-2").body;
}

}  // namespace
}  // namespace tayori::testing
