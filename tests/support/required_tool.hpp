// A test that needs a program from outside the build (python3-aiosmtpd's SMTP server, nghttpd, nm) skips
// where that program is missing on a developer's machine, and fails in CI (CI=true), where tools/setup.sh
// has installed it: a suite must not turn green there by skipping what it was meant to run.
#pragma once

#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

namespace tayori::testing {

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::strcmp(ci, "true") == 0;
}

}  // namespace tayori::testing

// Returns from the calling test (or SetUp) unless `available`: skipped, or failed under CI=true. `why` names
// the program and how to install it.
// `why` is a stream chain ("... " << path << " ..."), which parentheses would break.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define TAYORI_REQUIRE_TOOL(available, why)                                       \
  do {                                                                            \
    if (!(available)) {                                                           \
      if (::tayori::testing::in_ci()) GTEST_FAIL() << why << " (CI=true: required)"; \
      GTEST_SKIP() << why;                                                        \
    }                                                                             \
  } while (0)
// NOLINTEND(bugprone-macro-parentheses)
