// Clocks, RFC 3339 formatting and parsing, and the durations of the YAML and the API (time.hpp). The bottom
// layer: every part of the flow takes "now" from a Clock, the config and the API parse durations and
// instants here, and the API and the feed format their times here.
#include "common/time.hpp"

#include <charconv>
#include <chrono>
#include <cstdio>

namespace tayori {

int64_t SystemClock::now_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

}  // namespace

std::optional<int64_t> parse_rfc3339_ms(std::string_view s) {
  // full-date "T" partial-time time-offset; 'T'/'Z' case-insensitive per RFC 3339 §5.6 NOTE.
  int year, month, day, hour, minute, second;
  if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, month) || s[7] != '-' ||
      !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') || !digits(s, 11, 2, hour) || s[13] != ':' ||
      !digits(s, 14, 2, minute) || s[16] != ':' || !digits(s, 17, 2, second))
    return std::nullopt;
  using namespace std::chrono;
  year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                     std::chrono::day{static_cast<unsigned>(day)}};
  // Seconds may be 60 only for a leap second; we fold it into the next second like most systems do.
  if (!ymd.ok() || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  size_t pos = 19;
  int64_t millis = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    int64_t scale = 100;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      millis += (s[pos] - '0') * scale;  // digits past milliseconds are truncated
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  if (pos >= s.size()) return std::nullopt;
  int64_t offset_minutes = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om) ||
        oh > 23 || om > 59)
      return std::nullopt;
    offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  int64_t days = sys_days{ymd}.time_since_epoch().count();
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  return secs * 1000 + millis;
}

std::string format_rfc3339_ms(int64_t unix_ms) {
  using namespace std::chrono;
  int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : -((-unix_ms + 999) / 1000);
  int64_t ms = unix_ms - secs * 1000;
  int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
  int64_t rem = secs - days * 86400;
  year_month_day ymd{sys_days{std::chrono::days{days}}};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), static_cast<int>(rem / 3600),
                static_cast<int>(rem % 3600 / 60), static_cast<int>(rem % 60), static_cast<int>(ms));
  return buf;
}

std::optional<int64_t> parse_duration_ms(std::string_view s) {
  size_t unit_at = 0;
  while (unit_at < s.size() && s[unit_at] >= '0' && s[unit_at] <= '9') ++unit_at;
  if (unit_at == 0 || unit_at > 12) return std::nullopt;
  int64_t n = 0;
  std::from_chars(s.data(), s.data() + unit_at, n);
  std::string_view unit = s.substr(unit_at);
  int64_t size = 0;
  if (unit == "ms") size = 1;
  else if (unit == "s") size = 1000;
  else if (unit == "m") size = 60'000;
  else if (unit == "h") size = 3'600'000;
  else if (unit == "d") size = 86'400'000;
  else return std::nullopt;
  // Twelve digits of days (999999999999d) is past int64_t's milliseconds: refuse it rather than wrap.
  int64_t ms = 0;
  if (__builtin_mul_overflow(n, size, &ms)) return std::nullopt;
  return ms;
}

std::string format_duration_ms(int64_t ms) {
  struct Unit {
    int64_t size;
    const char* name;
  };
  for (Unit u : {Unit{86'400'000, "d"}, Unit{3'600'000, "h"}, Unit{60'000, "m"}, Unit{1000, "s"}})
    if (ms != 0 && ms % u.size == 0) return std::to_string(ms / u.size) + u.name;
  return std::to_string(ms) + "ms";
}

}  // namespace tayori
