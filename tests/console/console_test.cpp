// The operator console in a real browser (ctest -R console_browser). The real gateway, with a file_sink e-mail
// channel and Twilio on the provider simulator (tayori-sim), is given a scene through its API: deliveries in
// two categories, tracked clicks, an answer, a conversion, a one-click unsubscribe and the suppression it
// causes, a suppressed contact point, a capped message deferred by an hour, and a dead letter (Twilio failing
// with 503 until the simulator's fault is lifted). console_check.js then drives Debian's chromium through
// puppeteer-core: each panel must show what the API answers for its route, the lookup the message's
// timeline, keys without read_all or send their 403s, and Replay must bring the dead letter to delivered.
// It saves a screenshot beside this test's binary (console.png).
//
// chromium and the npm packages (installed by the console_npm fixture, tests/console/install.sh) are needed:
// without them the test skips, or fails under CI=true (tests/support/required_tool.hpp).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "harness.hpp"
#include "links/links.hpp"
#include "required_tool.hpp"
#include "sim_harness.hpp"

namespace tayori::testing {
namespace {

constexpr const char* kLinkSecret = "console-link-secret-0123456789";
constexpr const char* kPublicUrl = "https://gw.example.jp";
constexpr const char* kReaderKey = "console-reader-key-0123456789";    // scope read only
constexpr const char* kAuditorKey = "console-auditor-key-0123456789";  // read_all, but not send
constexpr const char* kBrowserAgent = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36";

std::string chromium() {
  const char* configured = std::getenv("TAYORI_CHROMIUM");
  return configured ? configured : "/usr/bin/chromium";
}

class ConsoleBrowser : public ::testing::Test {
 protected:
  void SetUp() override {
    TAYORI_REQUIRE_TOOL(fs::exists(chromium()), "chromium is not installed at " + chromium() +
                                                    " (tools/setup.sh installs Debian's chromium; or set TAYORI_CHROMIUM)");
    TAYORI_REQUIRE_TOOL(std::system("node --version >/dev/null 2>&1") == 0 &&
                            fs::exists(TAYORI_CONSOLE_NODE_DIR "/node_modules/puppeteer-core"),
                        "node or puppeteer-core is missing (the console_npm fixture installs it with npm ci into "
                        TAYORI_CONSOLE_NODE_DIR ")");
    sim_ = std::make_unique<Sim>(all_providers(), false);
    ::setenv("CONSOLE_LINK_SECRET", kLinkSecret, 1);
    ::setenv("CONSOLE_TWILIO_TOKEN", kTwilioToken, 1);
    ::setenv("CONSOLE_READER_KEY", kReaderKey, 1);
    ::setenv("CONSOLE_AUDITOR_KEY", kAuditorKey, 1);
    std::string yaml =
        std::string("server:\n  public_url: ") + kPublicUrl + "\n  link_secret_env: CONSOLE_LINK_SECRET\n"
        "policy:\n"
        "  consent:\n    defaults: {transactional: opted_in, marketing: opted_in}\n"
        "  caps:\n"
        "    - {name: digest_hourly, category: digest, limit: 1, window: 1h, on_exceed: defer}\n"
        "channels:\n"
        "  - name: email\n    plugin: file_sink\n    contact: email\n"
        "    settings:\n      path: " + dir_.file("outbox-email.jsonl") + "\n"
        "  - name: sms\n    plugin: sms_twilio\n    inbound: false\n"
        "    retry: {base: 10ms, cap: 50ms, max_attempts: 2}\n    circuit_breaker: {failures: 0}\n"
        "    settings:\n"
        "      base_url: " + sim_->http_base() + "\n      account_sid: " + kTwilioSid + "\n"
        "      auth_token_env: CONSOLE_TWILIO_TOKEN\n      from: \"+15005550006\"\n      status_callback: false\n";
    gw_ = std::make_unique<Gateway>(dir_, yaml);
    gw_->add_api_keys("  - {name: reader, key_env: CONSOLE_READER_KEY, scopes: [read]}\n"
                      "  - {name: auditor, key_env: CONSOLE_AUDITOR_KEY, scopes: [read, read_all]}\n");
    gw_->start();
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }

  Json message(const std::string& id, const std::string& purpose, const std::string& category,
               const std::string& recipient, const std::string& channel = "email") {
    return {{"id", id},
            {"recipient", {{"id", recipient}, {"contacts", {{"email", recipient + "@example.jp"}, {"phone", "+819012345678"}}}}},
            {"purpose", purpose},
            {"category", category},
            {"channels", {channel}},
            {"content", {{"subject", "Tayori"}, {"text", "See https://shop.example/" + id}}}};
  }
  // Submits `m` and waits until the dispatcher has decided: a final state, or deferred; the state it reached.
  std::string send(const Json& m) {
    HttpResult r = gw_->post_json(http_, "/v1/messages", m);
    EXPECT_EQ(r.status, 202) << r.body;
    std::string state;
    eventually([&] {
      state = state_of(*gw_, http_, m["id"]);
      if (state == "delivered" || state == "suppressed" || state == "dead" || state == "failed") return true;
      std::vector<std::string> events = events_of(m["id"]);
      return state == "scheduled" && !events.empty() && events.back() == "deferred";
    });
    return state;
  }
  std::vector<std::string> events_of(const std::string& id) {
    std::vector<std::string> out;
    Json status = gw_->get(http_, "/v1/messages/" + id).json();  // named: the loop reads into it
    for (const auto& e : status["events"]) out.push_back(e["type"]);
    return out;
  }
  std::string link(links::LinkKind kind, const std::string& id, const std::string& option = "") {
    auto expires = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    return links::LinkSigner(kPublicUrl, kLinkSecret).token({kind, id, "email", option, expires.count() + 3600});
  }
  // The tracked link file_sink wrote for message `id`, as a path on the gateway.
  std::string tracked_link(const std::string& id) {
    for (const Json& line : read_jsonl(dir_.file("outbox-email.jsonl")))
      if (line["message_id"] == id) {
        std::string text = line["content"]["text"];
        return text.substr(text.find("/c/"));
      }
    return "";
  }

  // The scene the panels show. Each step asserts its outcome, so a broken scene fails here, not in the browser.
  void play_scene() {
    Json promo = Json::array();
    for (int i = 1; i <= 4; ++i) {
      Json m = message("promo-" + std::to_string(i), "marketing", "promo", "r-promo-" + std::to_string(i));
      m["track"] = {{"clicks", true}};
      m["responses"] = {{{"id", "interested"}, {"label", "Interested"}}};
      ASSERT_EQ(send(m), "delivered") << m;
    }
    for (const char* id : {"order-1", "order-2"}) ASSERT_EQ(send(message(id, "transactional", "order", "r-order")), "delivered");
    // Two clicks, one answer, one conversion: promo's funnel.
    for (const char* id : {"promo-1", "promo-2"})
      ASSERT_EQ(http_.request("GET", gw_->url(tracked_link(id)), "", {kBrowserAgent}).status, 302) << id;
    ASSERT_EQ(http_.request("POST", gw_->url("/r/" + link(links::LinkKind::response, "promo-3", "interested")), "",
                            {"Content-Type: application/x-www-form-urlencoded"})
                  .status,
              200);
    HttpResult converted = gw_->post_json(http_, "/v1/conversions",
                                          {{"id", "sale-1"}, {"recipient", "r-promo-1"}, {"event", "purchase"}, {"value", 4980}});
    ASSERT_EQ(converted.status, 201) << converted.body;
    // A one-click unsubscribe (a consent change in the feed); the recipient's next promo is suppressed.
    ASSERT_EQ(http_.request("POST", gw_->url("/u/" + link(links::LinkKind::unsubscribe, "promo-4")),
                            "List-Unsubscribe=One-Click", {"Content-Type: application/x-www-form-urlencoded"})
                  .status,
              200);
    ASSERT_EQ(send(message("promo-5", "marketing", "promo", "r-promo-4")), "suppressed");
    // A suppressed contact point, and a message to it.
    HttpResult suppressed = gw_->post_json(http_, "/v1/suppressions",
                                           {{"contact", "r-blocked@example.jp"}, {"reason", "hard_bounce"}, {"source", "console_test"}});
    ASSERT_EQ(suppressed.status, 201) << suppressed.body;
    ASSERT_EQ(send(message("order-3", "transactional", "order", "r-blocked")), "suppressed");
    // The cap lets one digest an hour: the second waits about an hour (the queue panel).
    ASSERT_EQ(send(message("digest-1", "marketing", "digest", "r-digest")), "delivered");
    ASSERT_EQ(send(message("digest-2", "marketing", "digest", "r-digest")), "scheduled");
    ASSERT_EQ(events_of("digest-2").back(), "deferred");
    // Twilio answers 503 until the fault is lifted: two attempts, then a dead letter.
    ASSERT_EQ(sim_->faults({{"provider", "twilio"}, {"error_share", 1.0}, {"error_status", 503}}).status, 200);
    ASSERT_EQ(send(message("alert-1", "transactional", "alert", "r-alert", "sms")), "dead");
    ASSERT_EQ(call("DELETE", sim_->url("/_sim/faults")).status, 200);
  }

  // The scene as the stats routes count it, so that the browser compares the page with numbers that mean
  // something (a page and an API both empty would agree).
  void expect_scene_in_stats() {
    HttpResult stats = gw_->get(http_, "/v1/stats?by=category");
    ASSERT_EQ(stats.status, 200) << stats.body;
    std::map<std::string, Json> groups;
    Json body = stats.json();  // named: ranging over stats.json()["groups"] would dangle
    for (const Json& g : body["groups"]) groups[g["key"]] = g;
    EXPECT_EQ(groups["promo"]["delivered"], 4) << stats.body;
    EXPECT_EQ(groups["promo"]["clicked"], 2) << stats.body;
    EXPECT_EQ(groups["promo"]["responded"]["total"], 1) << stats.body;
    EXPECT_EQ(groups["promo"]["converted"], 1) << stats.body;
    EXPECT_EQ(groups["promo"]["suppressed"]["total"], 1) << stats.body;
    EXPECT_EQ(groups["order"]["suppressed"]["total"], 1) << stats.body;
    EXPECT_EQ(groups["digest"]["deferred"]["total"], 1) << stats.body;
    EXPECT_EQ(groups["alert"]["dead"], 1) << stats.body;
    HttpResult queue = gw_->get(http_, "/v1/stats/queue");
    EXPECT_EQ(queue.json()["total"], 1) << queue.body;
    HttpResult flow = gw_->get(http_, "/v1/stats/flow?minutes=60");
    Json channels = flow.json()["channels"];
    EXPECT_TRUE(channels.contains("email") && channels.contains("sms")) << flow.body;
  }

  TempDir dir_;
  HttpClient http_;
  std::unique_ptr<Sim> sim_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(ConsoleBrowser, ShowsWhatTheApiSaysAndReplaysADeadLetter) {
  ASSERT_NO_FATAL_FAILURE(play_scene());
  expect_scene_in_stats();

  const std::string screenshot = TAYORI_CONSOLE_SCREENSHOT;
  fs::remove(screenshot);
  Json options = {{"url", gw_->url("")},       {"key", kApiKey},          {"reader_key", kReaderKey},
                  {"auditor_key", kAuditorKey}, {"dead_id", "alert-1"},    {"modules", TAYORI_CONSOLE_NODE_DIR "/node_modules"},
                  {"chromium", chromium()},     {"screenshot", screenshot}};
  write_file(dir_.file("options.json"), options.dump());
  const std::string output = dir_.file("console_check.log");
  std::string command = "node '" TAYORI_CONSOLE_SCRIPT "' '" + dir_.file("options.json") + "' >'" + output + "' 2>&1";
  int status = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(output);

  EXPECT_EQ(state_of(*gw_, http_, "alert-1"), "delivered");
  EXPECT_TRUE(fs::exists(screenshot) && fs::file_size(screenshot) > 10'000) << screenshot;
}

}  // namespace
}  // namespace tayori::testing
