// The logger (log.hpp): one line per event on stderr, written under a lock so lines from threads never
// interleave.
#include "common/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "common/time.hpp"

namespace tayori::log {
namespace {
std::atomic<int> g_min_level{static_cast<int>(Level::info)};
std::mutex g_mutex;
const char* name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}
}  // namespace

void set_min_level(Level level) { g_min_level = static_cast<int>(level); }

void write(Level level, std::string_view component, std::string_view message) {
  if (static_cast<int>(level) < g_min_level) return;
  std::string line = format_rfc3339_ms(SystemClock().now_ms()) + " " + name(level) + " " + std::string(component) +
                     ": " + std::string(message) + "\n";
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace tayori::log
