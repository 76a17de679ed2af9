// The pure parts of the upstream webhooks (gateway/feed/webhooks.hpp) and the feed's event JSON
// (gateway/feed/feed.hpp). The senders themselves run against a real receiver in
// tests/integration/feed_test.cpp.
#include "feed/webhooks.hpp"

#include <gtest/gtest.h>

#include "crypto/crypto.hpp"
#include "feed/feed.hpp"

namespace tayori::feed {
namespace {

using crypto::hex;

TEST(WebhookSignature, IsHmacSha256OfTimestampDotBodyInLowerHex) {
  // RFC 4231 test case 2 key and data, reached through the "t.body" construction.
  std::string header = signature_header("Jefe", 1700000000, "what do ya want for nothing?");
  auto mac = crypto::hmac_sha256("Jefe", "1700000000.what do ya want for nothing?");
  ASSERT_TRUE(mac);
  EXPECT_EQ(header, "t=1700000000,v1=" + hex(mac.value()));
  EXPECT_EQ(header.size(), std::string("t=1700000000,v1=").size() + 64);
  // A different timestamp or body gives a different signature (a replayed body with a new t is refused).
  EXPECT_NE(header, signature_header("Jefe", 1700000001, "what do ya want for nothing?"));
  EXPECT_NE(header, signature_header("Jefe", 1700000000, "what do ya want for nothing!"));
  EXPECT_NE(header, signature_header("jefe", 1700000000, "what do ya want for nothing?"));
}

TEST(WebhookSignature, KnownVector) {
  // HMAC-SHA256(key "key", "The quick brown fox jumps over the lazy dog") is the well-known Wikipedia vector;
  // here the signed text is "<t>.<body>", so build the body to make the whole text that sentence.
  std::string header = signature_header("key", 0, "The quick brown fox jumps over the lazy dog");
  auto mac = crypto::hmac_sha256("key", "0.The quick brown fox jumps over the lazy dog");
  ASSERT_TRUE(mac);
  EXPECT_EQ(header, "t=0,v1=" + hex(mac.value()));
  // The host's HMAC itself, against the published vector.
  EXPECT_EQ(hex(crypto::hmac_sha256("key", "The quick brown fox jumps over the lazy dog").value()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
}

TEST(WebhookBackoff, FullJitterUnderADoublingCeilingCappedAtFiveMinutes) {
  EXPECT_EQ(backoff_ms(1, 0.0), 0);
  EXPECT_EQ(backoff_ms(1, 0.5), 500);     // ceiling 1 s
  EXPECT_EQ(backoff_ms(2, 0.5), 1'000);   // 2 s
  EXPECT_EQ(backoff_ms(3, 0.5), 2'000);   // 4 s
  EXPECT_EQ(backoff_ms(9, 0.999), 255'744);  // 256 s
  EXPECT_EQ(backoff_ms(10, 0.5), 150'000);   // 512 s capped at 300 s
  EXPECT_EQ(backoff_ms(1000, 0.5), 150'000);  // no overflow however many failures
  EXPECT_LT(backoff_ms(1000, 0.999999), 300'000);
  EXPECT_EQ(backoff_ms(0, 0.5), 500);  // treated as the first failure
  EXPECT_EQ(backoff_ms(3, 0.5, 10, 30), 15);  // custom base and cap
}

TEST(WebhookFilter, EmptyListTakesEverythingElseOnlyTheNamedTypes) {
  config::WebhookConfig all;
  EXPECT_TRUE(subscribed(all, "delivered"));
  EXPECT_TRUE(subscribed(all, "opted_out"));
  config::WebhookConfig some;
  some.events = {"delivered", "responded"};
  EXPECT_TRUE(subscribed(some, "delivered"));
  EXPECT_TRUE(subscribed(some, "responded"));
  EXPECT_FALSE(subscribed(some, "dispatched"));
  EXPECT_FALSE(subscribed(some, "deliver"));
}

TEST(EventJson, HasTheFeedShape) {
  store::TimelineEvent e{42, "m-1", "delivered", 1700000000123, R"({"channel":"line"})", "r-9"};
  core::Json j = event_json(e);
  EXPECT_EQ(j, core::Json::parse(R"({"id":"evt_42","seq":42,"type":"delivered","at":"2023-11-14T22:13:20.123Z",
                                    "message_id":"m-1","recipient_id":"r-9","detail":{"channel":"line"}})"));
}

TEST(EventJson, EventsWithoutMessageOrRecipientUseNullAndBadDetailBecomesAnObject) {
  store::TimelineEvent e{7, "", "opted_out", 0, "not json", ""};
  core::Json j = event_json(e);
  EXPECT_TRUE(j["message_id"].is_null());
  EXPECT_TRUE(j["recipient_id"].is_null());
  EXPECT_EQ(j["detail"], core::Json::object());
  EXPECT_EQ(j["id"], "evt_7");
}

TEST(WebhookRequest, SignedPostOfTheEventInItsOwnPool) {
  config::WebhookConfig w;
  w.name = "crm";
  w.url = "https://crm.example/hooks/tayori";
  w.secret = "s3cret";
  w.timeout_ms = 2'500;
  store::TimelineEvent e{5, "m-1", "delivered", 1700000000000, "{}", "r-1"};
  transport::Request r = webhook_request(w, e, 1700000001);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, w.url);
  EXPECT_EQ(r.pool_key, "webhook:crm");
  EXPECT_EQ(r.timeout_ms, 2'500);
  EXPECT_EQ(core::Json::parse(r.body), event_json(e));
  auto header = [&](const std::string& name) {
    for (const auto& [k, v] : r.headers)
      if (k == name) return v;
    return std::string();
  };
  EXPECT_EQ(header("Content-Type"), "application/json");
  EXPECT_EQ(header("Tayori-Event-Id"), "evt_5");
  EXPECT_EQ(header("Tayori-Signature"), signature_header("s3cret", 1700000001, r.body));
}

}  // namespace
}  // namespace tayori::feed
