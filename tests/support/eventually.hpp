// Waiting in real time for something asynchronous to hold, for the tests that need real time (integration/,
// fault/, and the PostgreSQL tests, where a store's own threads keep leases on the system clock): polls the
// condition itself, never a fixed sleep standing in for correctness. Unit tests do not use it (they wait on the
// event itself, or move a manual clock: check_no_sleeps.sh).
#ifndef TAYORI_TESTS_SUPPORT_EVENTUALLY_HPP
#define TAYORI_TESTS_SUPPORT_EVENTUALLY_HPP

#include <chrono>
#include <functional>
#include <thread>

namespace tayori::testing {

// Polls `condition` until it holds or `timeout` passes; whether it held.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

}  // namespace tayori::testing

#endif  // TAYORI_TESTS_SUPPORT_EVENTUALLY_HPP
