// Conversions' pure parts (gateway/core/conversion.hpp): what a report must say, last-touch attribution
// within each category's window, and the event a conversion writes. End to end: twoway_test.cpp.
#include <gtest/gtest.h>

#include "common/time.hpp"
#include "core/conversion.hpp"

namespace tayori::core {
namespace {

constexpr int64_t kNow = 1'790'000'000'000;  // 2026-09-21
constexpr int64_t kHour = 3'600'000, kDay = 24 * kHour;

std::vector<std::string> pointers(const ParsedConversion& p) {
  std::vector<std::string> out;
  for (const auto& e : p.errors) out.push_back(e.pointer + ": " + e.detail);
  return out;
}

TEST(ConversionParse, AReportNamesItsIdRecipientAndEventAndMayCarryMore) {
  ParsedConversion ok = parse_conversion(
      Json{{"id", "order-77"}, {"recipient", "cust-1"}, {"event", "purchase"}, {"value", 1200.5},
           {"at", "2026-06-01T10:00:00+09:00"}, {"message_id", "m-1"}},
      kNow);
  ASSERT_TRUE(ok.conversion) << pointers(ok)[0];
  EXPECT_EQ(ok.conversion->value, 1200.5);
  EXPECT_EQ(ok.conversion->at_ms, *parse_rfc3339_ms("2026-06-01T01:00:00Z"));
  EXPECT_EQ(ok.conversion->message_id, "m-1");
  ParsedConversion bare = parse_conversion(Json{{"id", "o"}, {"recipient", "c"}, {"event", "signup"}}, kNow);
  ASSERT_TRUE(bare.conversion);
  EXPECT_EQ(bare.conversion->at_ms, kNow);
  EXPECT_FALSE(bare.conversion->value);

  ParsedConversion bad = parse_conversion(
      Json{{"id", "a b"}, {"event", "Purchase!"}, {"value", "1200"}, {"at", format_rfc3339_ms(kNow + kHour)},
           {"coupon", "X"}},
      kNow);
  EXPECT_FALSE(bad.conversion);
  EXPECT_EQ(pointers(bad), (std::vector<std::string>{
                               "/coupon: is not a known field (id, recipient, event, value, at, message_id)",
                               "/id: must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ : -",
                               "/recipient: is required: the recipient's id, 1 to 256 bytes",
                               "/event: must be a name of 1 to 64 of a-z 0-9 _ . -, like \"purchase\"",
                               "/value: must be a number", "/at: is in the future"}));
  EXPECT_EQ(pointers(parse_conversion(Json::array(), kNow)).size(), 1u);
}

TEST(ConversionAttribution, TheLatestTouchWithinItsCategorysWindowWins) {
  config::AttributionConfig windows;  // 7 days, and a flash sale's single day
  windows.category_window_ms["flash_sale"] = kDay;
  Conversion c;
  c.at_ms = kNow;
  const std::vector<Touch> touches = {
      {"news-1", "news", "", "email", "delivered", kNow - 6 * kDay},
      {"sale-1", "flash_sale", "", "line", "delivered", kNow - 2 * kDay},  // latest, but outside its category's day
      {"later", "news", "", "email", "delivered", kNow + kHour},           // after the conversion
  };
  auto t = attribute(c, touches, windows);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->message_id, "news-1");
  // A click is a later touch than its message's delivery; at the same instant it still wins.
  std::vector<Touch> with_click = touches;
  with_click.push_back({"news-2", "news", "", "email", "delivered", kNow - kDay});
  with_click.push_back({"news-1", "news", "", "email", "clicked", kNow - kDay});
  t = attribute(c, with_click, windows);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->message_id, "news-1");
  EXPECT_EQ(t->kind, "clicked");
  // Nothing within a window: no message.
  c.at_ms = kNow + 30 * kDay;
  EXPECT_FALSE(attribute(c, touches, windows));
}

TEST(ConversionDecision, TheEventNamesTheConversionAndHowItWasAttributed) {
  Conversion c{"order-77", "cust-1", "purchase", 1200.0, kNow, ""};
  auto w = decide_conversion(c, Touch{"m-1", "news", "", "email", "clicked", kNow - kHour}, kNow);
  EXPECT_EQ(w.seen_source, "conversion");
  EXPECT_EQ(w.seen_report_id, "order-77");
  ASSERT_EQ(w.events.size(), 1u);
  EXPECT_EQ(w.events[0].message_id, "m-1");
  EXPECT_EQ(w.events[0].recipient_id, "cust-1");
  EXPECT_EQ(w.events[0].event.type, "converted");
  EXPECT_EQ(Json::parse(w.events[0].event.detail_json),
            (Json{{"conversion_id", "order-77"}, {"event", "purchase"}, {"value", 1200.0}, {"at", format_rfc3339_ms(kNow)},
                  {"attributed", {{"via", "clicked"}, {"channel", "email"}, {"at", format_rfc3339_ms(kNow - kHour)}}}}));
  auto unattributed = decide_conversion(c, std::nullopt, kNow);
  EXPECT_EQ(unattributed.events[0].message_id, "");
  EXPECT_TRUE(Json::parse(unattributed.events[0].event.detail_json)["attributed"].is_null());
}

}  // namespace
}  // namespace tayori::core
