#include <gtest/gtest.h>

#include "common/time.hpp"

namespace tayori {
namespace {

TEST(Rfc3339, ParsesOffsetsToTheSameInstant) {
  auto tokyo = parse_rfc3339_ms("2026-11-24T08:00:00+09:00");
  auto utc = parse_rfc3339_ms("2026-11-23T23:00:00Z");
  ASSERT_TRUE(tokyo && utc);
  EXPECT_EQ(*tokyo, *utc);
  EXPECT_EQ(*utc, 1795474800000);
  // India (+05:30) and Nepal (+05:45) keep their minutes.
  EXPECT_EQ(*parse_rfc3339_ms("2026-11-24T04:30:00+05:30"), *utc);
  EXPECT_EQ(*parse_rfc3339_ms("2026-11-24T04:45:00+05:45"), *utc);
  EXPECT_EQ(*parse_rfc3339_ms("2026-11-23T23:00:00.250Z"), *utc + 250);
}

TEST(Rfc3339, RefusesWhatIsNotRfc3339) {
  for (const char* bad : {"", "2026-11-24", "2026-11-24T08:00:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                          "2026-11-24 08:00:00Z", "2026-11-24T08:00:00+9:00", "2026-11-24T08:00:00Zjunk",
                          "2026-11-24T24:00:00Z", "2026-11-24T08:00:00."})
    EXPECT_FALSE(parse_rfc3339_ms(bad)) << bad;
}

TEST(Rfc3339, FormatsRoundTrip) {
  EXPECT_EQ(format_rfc3339_ms(1795474800250), "2026-11-23T23:00:00.250Z");
  EXPECT_EQ(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(*parse_rfc3339_ms(format_rfc3339_ms(951782400123)), 951782400123);  // 2000-02-29 leap day
}

TEST(Duration, ParsesAndFormats) {
  EXPECT_EQ(*parse_duration_ms("250ms"), 250);
  EXPECT_EQ(*parse_duration_ms("10s"), 10'000);
  EXPECT_EQ(*parse_duration_ms("5m"), 300'000);
  EXPECT_EQ(*parse_duration_ms("24h"), 86'400'000);
  EXPECT_EQ(*parse_duration_ms("7d"), 604'800'000);
  for (const char* bad : {"", "s", "10", "-1s", "1.5s", "10 s", "10y"}) EXPECT_FALSE(parse_duration_ms(bad)) << bad;
  EXPECT_EQ(format_duration_ms(86'400'000), "1d");
  EXPECT_EQ(format_duration_ms(90'000), "90s");
  EXPECT_EQ(format_duration_ms(250), "250ms");
}

}  // namespace
}  // namespace tayori
