// Time zones (timezone.hpp) through cctz: a recipient's local wall clock, local send times, and the instant
// of a local date and time, earliest or latest where DST repeats or skips it.
#include "policy/timezone.hpp"

#include <cctz/civil_time.h>
#include <cctz/time_zone.h>

#include <chrono>
#include <map>
#include <mutex>

#include "common/time.hpp"

namespace tayori::policy {

namespace {

const cctz::time_zone& zone_of(const std::shared_ptr<const void>& p) { return *static_cast<const cctz::time_zone*>(p.get()); }

int64_t to_ms(const std::chrono::time_point<std::chrono::system_clock, cctz::seconds>& tp) {
  return static_cast<int64_t>(tp.time_since_epoch().count()) * 1000;
}

}  // namespace

std::optional<TimeZone> TimeZone::load(const std::string& name) {
  // Loading parses a tzdata file: cache every zone for the life of the process.
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const void>> cache;
  std::lock_guard lock(mutex);
  auto it = cache.find(name);
  if (it == cache.end()) {
    auto tz = std::make_shared<cctz::time_zone>();
    if (name.empty() || !cctz::load_time_zone(name, tz.get())) return std::nullopt;
    it = cache.emplace(name, std::shared_ptr<const void>(tz, tz.get())).first;
  }
  TimeZone z;
  z.name_ = name;
  z.zone_ = it->second;
  return z;
}

LocalTime TimeZone::local(int64_t unix_ms) const {
  int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : -((-unix_ms + 999) / 1000);
  std::chrono::time_point<std::chrono::system_clock, cctz::seconds> tp{cctz::seconds(secs)};
  auto al = zone_of(zone_).lookup(tp);
  return {static_cast<int>(al.cs.year()), al.cs.month(), al.cs.day(), al.cs.hour(), al.cs.minute(),
          al.cs.second(), al.offset};
}

int64_t TimeZone::instant(int year, int month, int day, int hour, int minute, int second) const {
  auto cl = zone_of(zone_).lookup(cctz::civil_second(year, month, day, hour, minute, second));
  // SKIPPED: `pre` applies the offset before the gap, landing after it (forward by the gap);
  // REPEATED: `pre` is the first occurrence.
  return to_ms(cl.pre);
}

int64_t TimeZone::earliest_at(int year, int month, int day, int hour, int minute) const {
  auto cl = zone_of(zone_).lookup(cctz::civil_second(year, month, day, hour, minute, 0));
  if (cl.kind == cctz::time_zone::civil_lookup::SKIPPED) return to_ms(cl.trans);
  return to_ms(cl.pre);
}

int64_t TimeZone::latest_at(int year, int month, int day, int hour, int minute) const {
  auto cl = zone_of(zone_).lookup(cctz::civil_second(year, month, day, hour, minute, 0));
  if (cl.kind == cctz::time_zone::civil_lookup::REPEATED) return to_ms(cl.post);
  return earliest_at(year, month, day, hour, minute);
}

std::optional<LocalTime> parse_local_datetime(std::string_view s) {
  // Reuse the RFC 3339 parser by pinning the local fields to UTC, then read them back.
  if (s.size() < 19 || s.size() > 23) return std::nullopt;
  auto ms = parse_rfc3339_ms(std::string(s) + "Z");
  if (!ms) return std::nullopt;
  std::string utc = format_rfc3339_ms(*ms);  // YYYY-MM-DDTHH:MM:SS.mmmZ
  LocalTime t;
  t.year = std::stoi(utc.substr(0, 4));
  t.month = std::stoi(utc.substr(5, 2));
  t.day = std::stoi(utc.substr(8, 2));
  t.hour = std::stoi(utc.substr(11, 2));
  t.minute = std::stoi(utc.substr(14, 2));
  t.second = std::stoi(utc.substr(17, 2));
  return t;
}

std::optional<int> parse_clock(std::string_view s) {
  if (s.size() != 5 || s[2] != ':') return std::nullopt;
  for (int i : {0, 1, 3, 4})
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 24 || m > 59 || (h == 24 && m != 0)) return std::nullopt;
  return h * 60 + m;
}

std::optional<int64_t> resolve_datetime(std::string_view text, const TimeZone& zone) {
  if (auto absolute = parse_rfc3339_ms(text)) return absolute;
  auto local = parse_local_datetime(text);
  if (!local) return std::nullopt;
  return zone.instant(local->year, local->month, local->day, local->hour, local->minute, local->second);
}

}  // namespace tayori::policy
