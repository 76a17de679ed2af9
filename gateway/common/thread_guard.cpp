// Guarded rounds for background threads (thread_guard.hpp): the catch at the top of each loop, the log line
// and the per-thread error count /metrics reads.
#include "common/thread_guard.hpp"

#include <algorithm>
#include <exception>
#include <mutex>

#include "common/log.hpp"

namespace tayori {

namespace {
std::mutex errors_mutex;
std::map<std::string, int64_t>& errors() {
  static std::map<std::string, int64_t> counts;
  return counts;
}
}  // namespace

bool run_guarded(std::string_view thread, std::string_view doing, const std::function<void()>& round) {
  std::string what;
  try {
    round();
    return true;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "an exception that is not a std::exception";
  }
  report_failed_round(thread, doing, what);
  return false;
}

void report_failed_round(std::string_view thread, std::string_view doing, std::string_view why) {
  {
    std::lock_guard lock(errors_mutex);
    ++errors()[std::string(thread)];
  }
  log::error(thread, std::string(doing) + " failed: " + std::string(why));
}

int64_t failure_pause_ms(int failures) {
  int doublings = std::clamp(failures - 1, 0, 6);
  return std::min<int64_t>(int64_t{100} << doublings, 5'000);
}

std::map<std::string, int64_t> thread_errors() {
  std::lock_guard lock(errors_mutex);
  return errors();
}

}  // namespace tayori
