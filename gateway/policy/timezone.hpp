// Time zones for policy: the recipient's local wall clock, through cctz and the system tzdata (IANA).
// Correct across DST changes and for half-hour and 45-minute offsets, because every conversion asks the
// zone's own rules rather than assuming a fixed offset.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace tayori::policy {

struct LocalTime {
  int year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0;
  int utc_offset_seconds = 0;
  int minute_of_day() const { return hour * 60 + minute; }
};

class TimeZone {
 public:
  // Loads an IANA zone ("Asia/Tokyo", "UTC"); nullopt when the system tzdata does not know it.
  static std::optional<TimeZone> load(const std::string& name);

  const std::string& name() const { return name_; }
  LocalTime local(int64_t unix_ms) const;

  // The instant a local wall-clock time names. A time skipped by a DST change moves forward by the gap
  // (02:30 on a spring-forward night is 03:30); a repeated one takes its first occurrence.
  int64_t instant(int year, int month, int day, int hour, int minute, int second = 0) const;

  // The first instant at or after which the local clock reads at least hh:mm on that day: for a skipped
  // time, the moment of the transition. Used for the end of a quiet-hours window.
  int64_t earliest_at(int year, int month, int day, int hour, int minute) const;

  // The last instant the local clock reads hh:mm that day: for a time repeated by a DST change, its
  // second occurrence; otherwise the same as earliest_at.
  int64_t latest_at(int year, int month, int day, int hour, int minute) const;

 private:
  std::string name_;
  std::shared_ptr<const void> zone_;  // cctz::time_zone, kept out of this header
};

// Parses an RFC 3339 local date-time without offset ("2026-11-24T10:00:00") into its fields.
std::optional<LocalTime> parse_local_datetime(std::string_view text);

// "HH:MM" -> minute of the day.
std::optional<int> parse_clock(std::string_view text);

// The instant with a (possibly local) RFC 3339 date-time: with an offset it is absolute; without one it
// is a wall-clock time in `zone`.
std::optional<int64_t> resolve_datetime(std::string_view text, const TimeZone& zone);

}  // namespace tayori::policy
