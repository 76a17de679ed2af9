// Time for the gateway: an injectable clock (tests pin it), RFC 3339 instants and the durations the
// YAML and the API speak ("250ms", "10s", "5m", "24h", "7d").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tayori {

// Milliseconds since the Unix epoch. Every decision takes "now" from a Clock, never from the system
// directly, so tests can pin it.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t now_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override;
};

// Parses an RFC 3339 date-time (RFC 3339 §5.6): "2026-11-24T08:00:00+09:00", "2026-11-23T23:00:00.250Z".
// A time zone offset is mandatory. Returns nullopt on anything else.
std::optional<int64_t> parse_rfc3339_ms(std::string_view text);

// Formats as UTC with millisecond precision: "2026-11-23T23:00:00.250Z".
std::string format_rfc3339_ms(int64_t unix_ms);

// Parses "<n>ms|s|m|h|d" into milliseconds; nullopt when malformed or negative.
std::optional<int64_t> parse_duration_ms(std::string_view text);

// The shortest exact form: 86400000 -> "1d", 90000 -> "90s", 250 -> "250ms".
std::string format_duration_ms(int64_t ms);

}  // namespace tayori
