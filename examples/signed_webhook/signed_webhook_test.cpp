// signed_webhook without the gateway: tayori/testing.hpp loads the built plugin into a fake host whose clock
// the test sets, so the request a delivery becomes, its signature and the outcome of each answer are exact.
// Its tests follow the test `tayori new-plugin` writes, as slack_webhook's do, on purpose: an example stands
// alone, in the shape a plugin author's own tests start from.
//
// The expected signatures were computed apart from this code, with Python's hmac module:
//   base64.b64encode(hmac.new(key, f"{id}.{timestamp}.{body}".encode(), hashlib.sha256).digest())
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

namespace {

using tayori::testing::Delivery;
using tayori::testing::Plugin;
using tayori::testing::Response;

const std::string kRawSecret = "a-raw-secret-of-at-least-24-bytes";
// whsec_ + base64 of the 32 bytes 0x00..0x1f, as a Standard Webhooks sender shows a secret to its receivers.
const std::string kWhsecSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const std::string kBody =
    R"({"type":"tayori.message","message_id":"msg-1","recipient_id":"recipient-1","contact":"sub_42",)"
    R"("category":"order","purpose":"transactional","content":{"subject":"Your order","text":"Shipped \"today\""},)"
    R"("metadata":{"order_id":"0001"}})";

Plugin make(const std::string& secret = kRawSecret) {
  return Plugin::load(PLUGIN_PATH, {{"url", "https://hooks.example.com/tayori"}, {"secret", secret}});
}

Delivery order_shipped() {
  Delivery d;  // delivery id 0123456789abcdef0123456789abcdef, message msg-1, recipient recipient-1
  d.contact = "sub_42";
  d.category = "order";
  d.content = {{"subject", "Your order"}, {"text", "Shipped \"today\""}};
  d.metadata_json = R"({"order_id":"0001"})";
  return d;
}

TEST(SignedWebhook, SignsIdTimestampAndBodyAsStandardWebhooksSays) {
  Plugin p = make();
  ASSERT_TRUE(p.ok()) << p.error();
  auto built = p.build(order_shipped());  // the fake clock: 2026-01-01T00:00:00Z = 1767225600
  ASSERT_TRUE(built.ok()) << built.error;
  ASSERT_EQ(built.requests.size(), 1u);
  const auto& r = built.requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, "https://hooks.example.com/tayori");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("webhook-id"), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(r.header("webhook-timestamp"), "1767225600");
  EXPECT_EQ(r.header("webhook-signature"), "v1,DK9GxYRHB3Peu7rLW+8BmxqOMtBfL4HJOPptl00HmPg=");
  EXPECT_EQ(r.body, kBody);
}

TEST(SignedWebhook, ARetryKeepsTheIdAndIsSignedAtItsOwnTime) {
  Plugin p = make();
  p.host().now_ms += 5'000;
  Delivery again = order_shipped();
  again.attempt = 2;
  auto built = p.build(again);
  ASSERT_TRUE(built.ok()) << built.error;
  const auto& r = built.requests[0];
  EXPECT_EQ(r.header("webhook-id"), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(r.header("webhook-timestamp"), "1767225605");
  EXPECT_EQ(r.header("webhook-signature"), "v1,Vm4C4apc8tOL2ZGz/7DPtM/pGrn38gxRF1iA2USfeDc=");
  EXPECT_EQ(r.body, kBody);
}

TEST(SignedWebhook, AWhsecSecretIsItsBase64DecodedKey) {
  Plugin p = make(kWhsecSecret);
  ASSERT_TRUE(p.ok()) << p.error();
  auto built = p.build(order_shipped());
  ASSERT_TRUE(built.ok()) << built.error;
  EXPECT_EQ(built.requests[0].header("webhook-signature"), "v1,brCsmABVr1lxsDFcxN747PONy05+zK0X94xBouj6FN4=");
}

TEST(SignedWebhook, DuringARotationBothKeysSign) {
  Plugin p = Plugin::load(
      PLUGIN_PATH,
      {{"url", "https://hooks.example.com/tayori"}, {"secret", kWhsecSecret}, {"previous_secret", kRawSecret}});
  ASSERT_TRUE(p.ok()) << p.error();
  auto built = p.build(order_shipped());
  ASSERT_TRUE(built.ok()) << built.error;
  EXPECT_EQ(built.requests[0].header("webhook-signature"),
            "v1,brCsmABVr1lxsDFcxN747PONy05+zK0X94xBouj6FN4= v1,DK9GxYRHB3Peu7rLW+8BmxqOMtBfL4HJOPptl00HmPg=");
}

TEST(SignedWebhook, ContentIsEscapedAndAbsentMetadataIsAnEmptyObject) {
  Plugin p = make();
  Delivery d = order_shipped();
  d.purpose = TAYORI_PURPOSE_MARKETING;
  d.content = {{"text", "line 1\nline 2\t\\ \x01"}};
  d.metadata_json = "";
  auto built = p.build(d);
  ASSERT_TRUE(built.ok()) << built.error;
  const std::string& body = built.requests[0].body;
  EXPECT_NE(body.find(R"("purpose":"marketing")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("content":{"text":"line 1\nline 2\t\\ \u0001"})"), std::string::npos) << body;
  EXPECT_NE(body.find(R"("metadata":{}})"), std::string::npos) << body;
}

TEST(SignedWebhook, ClassifiesAnswersAsTheSpecSuggests) {
  Plugin p = make();
  auto ok = p.classify(order_shipped(), {204});
  EXPECT_TRUE(ok.delivered());
  EXPECT_EQ(ok.provider_message_id, "0123456789abcdef0123456789abcdef");  // the webhook-id the receiver saw

  auto busy = p.classify(order_shipped(), {503, {{"Retry-After", "7"}}});
  EXPECT_TRUE(busy.retry());
  EXPECT_EQ(busy.reason, "webhook.http_503");
  EXPECT_EQ(busy.retry_after_ms, 7000);
  auto limited = p.classify(order_shipped(), {429});
  EXPECT_TRUE(limited.retry());
  EXPECT_EQ(limited.reason, "webhook.http_429");
  EXPECT_EQ(limited.retry_after_ms, 0);  // no Retry-After: the gateway's backoff decides

  auto gone = p.classify(order_shipped(), {410});
  EXPECT_TRUE(gone.permanent());
  EXPECT_EQ(gone.reason, "webhook.http_410");
  EXPECT_TRUE(gone.deactivate_contact);

  for (int status : {301, 400, 401, 404, 422}) {
    auto refused = p.classify(order_shipped(), {status});
    EXPECT_TRUE(refused.permanent()) << status;
    EXPECT_FALSE(refused.deactivate_contact) << status;
    EXPECT_EQ(refused.reason, "webhook.http_" + std::to_string(status));
  }

  auto down = p.classify(order_shipped(), Response::transport_failure("connection refused"));
  EXPECT_TRUE(down.retry());
  EXPECT_EQ(down.reason, "webhook.transport");
}

TEST(SignedWebhook, SettingsAreChecked) {
  auto error_of = [](std::map<std::string, std::string> settings) {
    return Plugin::load(PLUGIN_PATH, settings).error();
  };
  EXPECT_EQ(error_of({{"secret", kRawSecret}}), "url: is required");
  EXPECT_EQ(error_of({{"url", "https://h.example/x"}}), "secret: is required");
  const std::string plain_http = "url: must be https:// (plain http only to 127.0.0.1, [::1] or localhost), without credentials";
  for (const char* url :
       {"http://hooks.example.com/x", "http://127.0.0.1.example.com/x", "http://127.0.0.1@example.com/",
        "http://localhost.example.com:80/", "http://localhost:1@example.com/", "ftp://127.0.0.1/x"})
    EXPECT_EQ(error_of({{"url", url}, {"secret", kRawSecret}}), plain_http) << url;
  for (const char* url : {"http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/x?a=b"})
    EXPECT_EQ(error_of({{"url", url}, {"secret", kRawSecret}}), "") << url;

  EXPECT_EQ(error_of({{"url", "https://h.example/x"}, {"secret", "too-short"}}),
            "secret: the signing key must have at least 24 bytes");
  EXPECT_EQ(error_of({{"url", "https://h.example/x"}, {"secret", "whsec_AAECAwQFBgcICQoLDA0ODxAREhMU"}}),
            "secret: the signing key must have at least 24 bytes");  // 18 bytes decoded
  EXPECT_EQ(error_of({{"url", "https://h.example/x"}, {"secret", "whsec_not*base64"}}),
            "secret: whsec_ must be followed by base64 (RFC 4648 §4)");
  EXPECT_EQ(error_of({{"url", "https://h.example/x"}, {"secret", kRawSecret}, {"previous_secret", "short"}}),
            "previous_secret: the signing key must have at least 24 bytes");
}

}  // namespace
