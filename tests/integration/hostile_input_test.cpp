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
