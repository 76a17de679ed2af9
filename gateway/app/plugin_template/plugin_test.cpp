// {{name}} without the gateway: tayori/testing.hpp loads the built plugin into a fake host, so each test
// says what a delivery becomes and what each answer means.
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

namespace {

using tayori::testing::Delivery;
using tayori::testing::Plugin;
using tayori::testing::Response;

Plugin make() { return Plugin::load(PLUGIN_PATH, {{"url", "https://api.example.com/messages"}, {"token", "s3cret"}}); }

Delivery hello() {
  Delivery d;
  d.contact = "user-42";
  d.content = {{"text", "Hello \"you\""}};
  return d;
}

TEST({{Class}}, BuildsOneJsonPostWithAnIdempotencyKey) {
  Plugin p = make();
  ASSERT_TRUE(p.ok()) << p.error();
  auto built = p.build(hello());
  ASSERT_TRUE(built.ok()) << built.error;
  ASSERT_EQ(built.requests.size(), 1u);
  const auto& r = built.requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, "https://api.example.com/messages");
  EXPECT_EQ(r.header("authorization"), "Bearer s3cret");
  EXPECT_EQ(r.header("idempotency-key"), hello().delivery_id);
  EXPECT_EQ(r.body, R"({"to":"user-42","text":"Hello \"you\"","message_id":"msg-1"})");
}

TEST({{Class}}, RefusesADeliveryWithoutText) {
  Plugin p = make();
  Delivery d = hello();
  d.content = {};
  auto built = p.build(d);
  EXPECT_FALSE(built.ok());
  EXPECT_NE(built.error.find("text"), std::string::npos) << built.error;
}

TEST({{Class}}, ClassifiesAnswers) {
  Plugin p = make();
  EXPECT_TRUE(p.classify(hello(), {202, {{"X-Message-Id", "p-1"}}}).delivered());
  EXPECT_EQ(p.classify(hello(), {202, {{"X-Message-Id", "p-1"}}}).provider_message_id, "p-1");

  auto busy = p.classify(hello(), {503, {{"Retry-After", "7"}}});
  EXPECT_TRUE(busy.retry());
  EXPECT_EQ(busy.reason, "{{name}}.http_503");
  EXPECT_EQ(busy.retry_after_ms, 7000);

  auto gone = p.classify(hello(), {410});
  EXPECT_TRUE(gone.permanent());
  EXPECT_TRUE(gone.deactivate_contact);

  auto bad = p.classify(hello(), {400});
  EXPECT_TRUE(bad.permanent());
  EXPECT_FALSE(bad.deactivate_contact);

  EXPECT_TRUE(p.classify(hello(), Response::transport_failure("connection refused")).retry());
}

TEST({{Class}}, SettingsAreCheckedLikeTheGatewayChecksThem) {
  EXPECT_NE(Plugin::load(PLUGIN_PATH, {}).error().find("url: is required"), std::string::npos);
  EXPECT_NE(Plugin::load(PLUGIN_PATH, {{"url", "http://example.com/x"}}).error().find("url: must be https"),
            std::string::npos);
  EXPECT_TRUE(Plugin::load(PLUGIN_PATH, {{"url", "http://127.0.0.1:9000/x"}}).ok());
}

}  // namespace
