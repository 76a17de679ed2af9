#include <gtest/gtest.h>

#include "common/time.hpp"
#include "policy/timezone.hpp"

namespace tayori::policy {
namespace {

int64_t utc(const char* text) { return *parse_rfc3339_ms(text); }

TEST(TimeZone, LoadsIanaZonesAndRefusesUnknownOnes) {
  EXPECT_TRUE(TimeZone::load("Asia/Tokyo"));
  EXPECT_TRUE(TimeZone::load("UTC"));
  EXPECT_FALSE(TimeZone::load("Mars/Olympus_Mons"));
  EXPECT_FALSE(TimeZone::load(""));
}

TEST(TimeZone, LocalTimeHonoursOddOffsets) {
  int64_t t = utc("2026-11-23T23:00:00Z");
  EXPECT_EQ(TimeZone::load("Asia/Tokyo")->local(t).hour, 8);             // +09:00
  EXPECT_EQ(TimeZone::load("Asia/Kolkata")->local(t).minute_of_day(), 4 * 60 + 30);   // +05:30
  EXPECT_EQ(TimeZone::load("Asia/Kathmandu")->local(t).minute_of_day(), 4 * 60 + 45);  // +05:45
  EXPECT_EQ(TimeZone::load("Asia/Kathmandu")->local(t).utc_offset_seconds, 5 * 3600 + 45 * 60);
}

TEST(TimeZone, SkippedLocalTimesMoveForwardAndRepeatedOnesTakeTheFirst) {
  auto ny = TimeZone::load("America/New_York");
  // 2026-03-08 02:30 does not exist in New York (clocks jump 02:00 -> 03:00 EST->EDT).
  EXPECT_EQ(ny->instant(2026, 3, 8, 2, 30), utc("2026-03-08T07:30:00Z"));  // 03:30 EDT
  EXPECT_EQ(ny->earliest_at(2026, 3, 8, 2, 30), utc("2026-03-08T07:00:00Z"));  // the jump itself
  // 2026-11-01 01:30 happens twice (EDT then EST): the first one.
  EXPECT_EQ(ny->instant(2026, 11, 1, 1, 30), utc("2026-11-01T05:30:00Z"));
}

TEST(TimeZone, ResolvesAbsoluteAndLocalDateTimes) {
  auto tokyo = TimeZone::load("Asia/Tokyo");
  EXPECT_EQ(*resolve_datetime("2026-11-24T10:00:00", *tokyo), utc("2026-11-24T01:00:00Z"));
  EXPECT_EQ(*resolve_datetime("2026-11-24T10:00:00+02:00", *tokyo), utc("2026-11-24T08:00:00Z"));
  EXPECT_FALSE(resolve_datetime("2026-11-24 10:00", *tokyo));
  EXPECT_FALSE(resolve_datetime("tomorrow", *tokyo));
}

TEST(TimeZone, ParsesClockTimes) {
  EXPECT_EQ(*parse_clock("21:00"), 21 * 60);
  EXPECT_EQ(*parse_clock("08:30"), 8 * 60 + 30);
  EXPECT_EQ(*parse_clock("24:00"), 24 * 60);
  for (const char* bad : {"8:00", "25:00", "12:60", "24:01", "noon", ""}) EXPECT_FALSE(parse_clock(bad)) << bad;
}

}  // namespace
}  // namespace tayori::policy
