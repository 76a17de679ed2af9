// Hostile input, driven over HTTP against the real binary: requests that once terminated the gateway get a
// clear 4xx naming the problem, and the process keeps serving (and keeps what it had accepted).
#include <gtest/gtest.h>

#include "harness.hpp"

namespace tayori::testing {
namespace {

constexpr char kAppKey[] = "hostile-app-key-0123456789";

class HostileInput : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("TAYORI_TEST_APP_KEY", kAppKey, 1);
    gw_ = std::make_unique<Gateway>(dir_, "inbound:\n  app_keys:\n    - name: app\n      key_env: TAYORI_TEST_APP_KEY\n" +
                                              default_channels(dir_));
    gw_->start();
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }
  HttpResult send(const std::string& method, const std::string& path, const std::string& body,
                  const std::string& key = kApiKey) {
    return http_.request(method, gw_->url(path), body,
                         {"Authorization: Bearer " + key, "Content-Type: application/json"});
  }

  TempDir dir_;
  std::unique_ptr<Gateway> gw_;
  HttpClient http_;
};

// nlohmann reports a number beyond a double as out_of_range (406), not parse_error: the handler caught only
// the latter, the exception left the Asio thread, and the process ended (one in 330 random mutations of a
// valid message hit it). Every JSON route, including the app-key route whose key ships inside apps.
TEST_F(HostileInput, NumbersBeyondADoubleGet400OnEveryJsonRouteAndTheGatewayStaysUp) {
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("kept-1")).status, 202);
  std::string inside_message = sample_message("m-1").dump();
  inside_message.insert(inside_message.rfind('}'), R"(,"metadata":{"n":-1e400})");
  struct Case {
    std::string method, path, body, key;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/messages", R"({"a":1e400})", kApiKey},
      {"POST", "/v1/messages", inside_message, kApiKey},
      {"POST", "/v1/messages", R"([{"id":"b-1","n":1E+99999}])", kApiKey},
      {"POST", "/v1/messages:simulate", R"({"a":1e400})", kApiKey},
      {"POST", "/v1/messages:retry", R"({"limit":1e400})", kApiKey},
      {"PUT", "/v1/recipients/r-1", R"({"timezone":1e400})", kApiKey},
      {"PUT", "/v1/recipients/r-1/consent", R"({"consent":[1e400]})", kApiKey},
      {"POST", "/v1/suppressions", R"({"contact":"x","at":1e400})", kApiKey},
      {"POST", "/v1/inbound/app", R"({"ref":"x","n":1e400})", kAppKey},
  };
  for (const auto& c : cases) {
    HttpResult r = send(c.method, c.path, c.body, c.key);
    ASSERT_EQ(r.status, 400) << c.method << " " << c.path << " " << c.body << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/problem+json") << c.path;
    EXPECT_NE(r.body.find("number overflow"), std::string::npos) << c.path << ": " << r.body;
    ASSERT_EQ(gw_->get(http_, "/healthz").status, 200) << "the gateway died on " << c.method << " " << c.path;
  }
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("kept-2")).status, 202);
  ASSERT_TRUE(eventually([&] {
    return state_of(*gw_, http_, "kept-1") == "delivered" && state_of(*gw_, http_, "kept-2") == "delivered";
  }));
}

// Copying and printing a JSON value recurse once per level: 100,000 brackets in `data` (200 KB) overflowed
// the stack. Bodies nesting deeper than 64 levels are refused by name; brackets inside strings do not count.
TEST_F(HostileInput, DeepNestingGets400AndTheGatewayStaysUp) {
  Json m = sample_message("deep-1");
  std::string body = m.dump();
  std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  body.insert(body.rfind('}'), R"(,"data":{"x":)" + deep + "}");
  HttpResult r = send("POST", "/v1/messages", body);
  ASSERT_EQ(r.status, 400) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("more than 64 levels deep"), std::string::npos) << r.body.substr(0, 300);
  HttpResult app = send("POST", "/v1/inbound/app", R"({"ref":)" + deep + "}", kAppKey);
  EXPECT_EQ(app.status, 400);
  ASSERT_EQ(gw_->get(http_, "/healthz").status, 200);

  // Brackets in strings are text; 60 levels of real nesting are fine.
  Json fine = sample_message("deep-2");
  fine["content"]["text"] = std::string(500, '[') + " [[ not nesting {";
  Json nested = Json::object();
  for (int i = 0; i < 60; ++i) nested = Json{{"n", nested}};
  fine["metadata"] = nested;
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages", fine).status, 202);

  // The limit is exact, whichever reader meets the body: the message's own object, metadata's and 62 more are
  // 64 levels (accepted); one more is 65 (refused).
  auto nesting = [this](const std::string& id, int levels_in_metadata) {
    Json m = sample_message(id);
    Json inner = Json::object();
    for (int i = 1; i < levels_in_metadata; ++i) inner = Json{{"n", inner}};
    m["metadata"] = inner;
    return gw_->post_json(http_, "/v1/messages", m);
  };
  EXPECT_EQ(nesting("deep-64", 63).status, 202);
  HttpResult too_deep = nesting("deep-65", 64);
  EXPECT_EQ(too_deep.status, 400);
  EXPECT_NE(too_deep.body.find("more than 64 levels deep"), std::string::npos) << too_deep.body.substr(0, 300);
}

// Stored data the gateway cannot use (here a profile whose push token is a number, written behind its back)
// made the dispatcher's worker throw, which ended the process, and again at every restart. Now it is the
// message's failed attempt: retried within the budget, then a dead letter that says why; the gateway stays up
// and other messages are delivered.
TEST(HostileStoredData, AnExceptionInADispatcherWorkerEndsTheMessageNotTheGateway) {
  TempDir dir;
  Gateway gw(dir, default_channels(dir), "", "max_attempts: 2\nretry_base: 10ms\nretry_cap: 20ms");
  gw.start();
  HttpClient http;
  Json first = sample_message("poison-1");
  first["recipient"]["id"] = "r-poison";
  ASSERT_EQ(gw.post_json(http, "/v1/messages", first).status, 202);
  ASSERT_TRUE(eventually([&] { return state_of(gw, http, "poison-1") == "delivered"; }));
  write_file(dir.file("poison.sql"), ".timeout 5000\nUPDATE recipients SET contacts = "
                                     "'{\"push\":[{\"platform\":1,\"token\":2}]}' WHERE id = 'r-poison';\n");
  ASSERT_EQ(std::system(("sqlite3 '" + gw.data_dir() + "/tayori.db' < '" + dir.file("poison.sql") + "'").c_str()), 0);

  Json second = sample_message("poison-2");
  second["recipient"]["id"] = "r-poison";
  ASSERT_EQ(gw.post_json(http, "/v1/messages", second).status, 202);
  ASSERT_EQ(gw.post_json(http, "/v1/messages", sample_message("healthy-1")).status, 202);
  ASSERT_TRUE(eventually([&] { return state_of(gw, http, "poison-2") == "dead"; }))
      << gw.get(http, "/v1/messages/poison-2").body << "\n" << gw.get(http, "/v1/recipients/r-poison").body;
  Json status = gw.get(http, "/v1/messages/poison-2").json();
  EXPECT_NE(status["last_reason"].get<std::string>().find("internal_error: "), std::string::npos) << status.dump();
  EXPECT_EQ(status["attempts"], 2);
  EXPECT_TRUE(eventually([&] { return state_of(gw, http, "healthy-1") == "delivered"; }));
  EXPECT_EQ(gw.get(http, "/healthz").status, 200);
}

// A poison message: content whose sections over its own data multiply (20^6 copies). The message is stored
// before it is rendered, so an unbounded render took the dispatcher's time and memory, and again at every
// restart. Now the render stops at its work limit: the message fails (render_error, no retry), the others of
// its batch are delivered, the gateway stays up, and :simulate answers 422 naming the same error.
TEST_F(HostileInput, APoisonMessageFailsWithARenderErrorAndItsBatchIsDelivered) {
  std::string sections, closing;
  for (int i = 0; i < 6; ++i) sections += "{{#a}}", closing += "{{/a}}";
  Json poison = sample_message("poison-render");
  poison["content"]["text"] = sections + "x" + closing;
  poison["data"] = {{"a", Json(std::vector<Json>(20, Json::object()))}};
  const std::string limit = "field text of inline takes more than ";

  HttpResult sim = send("POST", "/v1/messages:simulate", poison.dump());
  EXPECT_EQ(sim.status, 422) << sim.body;
  EXPECT_NE(sim.body.find("render_error on channel email: " + limit), std::string::npos) << sim.body;

  Json batch = {{"messages", {sample_message("batch-before"), poison, sample_message("batch-after")}}};
  HttpResult r = gw_->post_json(http_, "/v1/messages", batch);
  ASSERT_EQ(r.status, 202) << r.body;
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "poison-render") == "failed"; }))
      << gw_->get(http_, "/v1/messages/poison-render").body;
  Json status = gw_->get(http_, "/v1/messages/poison-render").json();
  EXPECT_EQ(status["last_reason"].get<std::string>().rfind("render_error: " + limit, 0), 0u) << status.dump();
  EXPECT_EQ(status["attempts"], 1) << status.dump();
  EXPECT_TRUE(eventually([&] { return state_of(*gw_, http_, "batch-before") == "delivered"; }));
  EXPECT_TRUE(eventually([&] { return state_of(*gw_, http_, "batch-after") == "delivered"; }));
  EXPECT_EQ(gw_->get(http_, "/healthz").status, 200);
}

}  // namespace
}  // namespace tayori::testing

// ---- The hostile set: one table of requests a careless or malicious client sends ------------------------

namespace tayori::testing {
namespace {

struct HostileCase {
  const char* name;
  std::string method, path, body;
  std::vector<std::string> headers;  // replaces the default API key and JSON content type when not empty
  long expected;                     // the status a well-behaved gateway answers
  // A page for a person (the signed links open in a browser) rather than problem+json.
  bool html = false;
};

// Each answer is the expected 4xx with a problem+json body (a clear error, never a 5xx or a dropped
// connection), and after the whole set the gateway still serves and still has what it accepted before.
TEST_F(HostileInput, TheHostileSetGetsClearErrorsAndLosesNothing) {
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("before-the-set")).status, 202);
  const std::string key = "Authorization: Bearer " + std::string(kApiKey);
  const std::string json = "Content-Type: application/json";
  std::string huge_string = "\"" + std::string(70'000, 'x') + "\"";
  Json long_id = sample_message("x");
  long_id["id"] = std::string(10'000, 'i');
  Json bad_utf8 = sample_message("utf8-1");
  std::string bad_utf8_body = bad_utf8.dump();
  bad_utf8_body.replace(bad_utf8_body.find("注文"), 3, "\xff\xfe\xfd");
  Json nul = sample_message("nul-1");
  nul["content"]["text"] = std::string("a\0b", 3);
  Json bad_time = sample_message("time-1");
  bad_time["send_at"] = "2026-13-45T99:99:99Z";
  Json far_past = sample_message("time-2");
  far_past["send_at"] = "0001-01-01T00:00:00Z";
  Json bad_tz = sample_message("tz-1");
  bad_tz["recipient"]["timezone"] = "../../../../etc/passwd";
  Json many_channels = sample_message("ch-1");
  many_channels["channels"] = Json::array();
  for (int i = 0; i < 10'000; ++i) many_channels["channels"].push_back("email");
  Json no_object = Json::array({1, 2, 3});
  Json big_batch = {{"messages", Json::array()}};
  for (int i = 0; i < 1001; ++i) big_batch["messages"].push_back(sample_message("bb-" + std::to_string(i)));

  const std::vector<HostileCase> cases = {
      {"empty body", "POST", "/v1/messages", "", {}, 400},
      {"not JSON", "POST", "/v1/messages", "hello", {}, 400},
      {"truncated JSON", "POST", "/v1/messages", R"({"id":"t-1","recipient":{)", {}, 400},
      {"a JSON array", "POST", "/v1/messages", no_object.dump(), {}, 400},
      {"a JSON string", "POST", "/v1/messages", "\"message\"", {}, 400},
      {"number beyond a double", "POST", "/v1/messages", R"({"a":1e400})", {}, 400},
      {"integer beyond int64", "POST", "/v1/messages", R"({"id":"i-1","priority":99999999999999999999999})", {}, 400},
      {"invalid UTF-8 in a string", "POST", "/v1/messages", bad_utf8_body, {}, 400},
      {"NUL inside content", "POST", "/v1/messages", nul.dump(), {}, 400},
      {"a 10,000-character id", "POST", "/v1/messages", long_id.dump(), {}, 400},
      {"an impossible date", "POST", "/v1/messages", bad_time.dump(), {}, 400},
      // Go's zero time from an upstream bug is still an instant: a past send_at means "now".
      {"a date in year 1", "POST", "/v1/messages", far_past.dump(), {}, 202},
      {"a time zone that is a path", "POST", "/v1/messages", bad_tz.dump(), {}, 400},
      {"10,000 channels", "POST", "/v1/messages", many_channels.dump(), {}, 400},
      {"a batch over max_batch", "POST", "/v1/messages", big_batch.dump(), {}, 400},
      {"a body over max_body_bytes", "POST", "/v1/messages", "{\"x\":" + std::string(5 << 20, '1') + "}", {}, 413},
      {"text/plain", "POST", "/v1/messages", sample_message("ct-1").dump(), {key, "Content-Type: text/plain"}, 415},
      {"no key", "POST", "/v1/messages", sample_message("k-1").dump(), {json}, 401},
      {"Basic auth", "POST", "/v1/messages", sample_message("k-2").dump(), {"Authorization: Basic aXQ6aXQ=", json}, 401},
      {"the app key on the API", "POST", "/v1/messages", sample_message("k-3").dump(),
       {"Authorization: Bearer " + std::string(kAppKey), json}, 401},
      {"the API key on the app route", "POST", "/v1/inbound/app", R"({"ref":"x"})", {key, json}, 401},
      {"a forged response link", "GET", "/r/eyJ4IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA", "", {}, 400, true},
      {"an unsubscribe link of garbage", "POST", "/u/%00%ff..%2f", "", {}, 400, true},
      {"a path with ..", "GET", "/v1/messages/..%2F..%2Fetc%2Fpasswd", "", {}, 404},
      {"an unknown route", "GET", "/v1/../../etc/passwd", "", {}, 404},
      {"a method nobody knows", "BREW", "/v1/messages", "", {}, 405},
      {"limit=-1", "GET", "/v1/messages?limit=-1", "", {}, 400},
      {"limit beyond int64", "GET", "/v1/messages?limit=99999999999999999999", "", {}, 400},
      {"a repeated parameter", "GET", "/v1/messages?state=dead&state=failed", "", {}, 400},
      {"after=-5 on the feed", "GET", "/v1/events?after=-5", "", {}, 400},
      {"a huge string in consent", "PUT", "/v1/recipients/r-h/consent", "{\"channel\":" + huge_string + "}", {}, 400},
      {"a recipient id of 10,000 bytes", "PUT", "/v1/recipients/" + std::string(10'000, 'r'), R"({"timezone":"Asia/Tokyo"})",
       {}, 400},
      {"a retry of everything", "POST", "/v1/messages:retry", R"({"state":"delivered","limit":100000000})", {}, 400},
      {"an app report without a ref", "POST", "/v1/inbound/app", R"({"message_id":"before-the-set","action":"open"})",
       {"Authorization: Bearer " + std::string(kAppKey), json}, 400},
      {"a webhook for an unknown channel", "POST", "/inbound/file_sink/nope", "x=1", {"Content-Type: application/x-www-form-urlencoded"},
       404},
  };
  for (const auto& c : cases) {
    std::vector<std::string> headers = c.headers.empty() ? std::vector<std::string>{key, json} : c.headers;
    HttpResult r = http_.request(c.method, gw_->url(c.path), c.body, headers);
    std::cout << "hostile set: " << c.name << " -> " << r.status << " " << r.body.substr(0, 160) << "\n";
    EXPECT_EQ(r.status, c.expected) << c.name << ": " << r.body.substr(0, 300);
    if (r.status >= 400)
      EXPECT_EQ(r.headers["content-type"], c.html ? "text/html; charset=utf-8" : "application/problem+json") << c.name;
    ASSERT_EQ(gw_->get(http_, "/healthz").status, 200) << "the gateway died on: " << c.name;
  }
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("after-the-set")).status, 202);
  ASSERT_TRUE(eventually([&] {
    return state_of(*gw_, http_, "before-the-set") == "delivered" && state_of(*gw_, http_, "after-the-set") == "delivered";
  }));
}

}  // namespace
}  // namespace tayori::testing
