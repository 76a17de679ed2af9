// The top of a background thread's loop (docs/architecture.md §6.8: no exception leaves the top of a thread).
// A store read throws on SQLITE_BUSY, an I/O error or a process out of file descriptors; left alone, the
// exception ends the process (std::terminate). A guarded round logs it with what the thread was doing, counts
// it by thread for /metrics (tayori_thread_errors_total), and lets the loop pause and go on.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace tayori {

// Runs one round of `thread`'s loop. True when it returned; false when it threw: the exception was logged
// ("<thread>: <doing> failed: <what>") and counted, and the caller pauses (failure_pause_ms) before the next.
bool run_guarded(std::string_view thread, std::string_view doing, const std::function<void()>& round);

// A round that failed without an exception (a store write that answered an Error): logged and counted as
// run_guarded does a throw, and the caller pauses the same way.
void report_failed_round(std::string_view thread, std::string_view doing, std::string_view why);

// How long a loop pauses after its `failures`-th failure in a row: 100 ms, doubling, at most 5 s, so a store
// that stays down costs a line every few seconds instead of a spinning core.
int64_t failure_pause_ms(int failures);

// Failures caught by run_guarded since the process started, by thread.
std::map<std::string, int64_t> thread_errors();

}  // namespace tayori
