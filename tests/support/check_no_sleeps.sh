#!/bin/sh
# The unit tests are hermetic: they do not sleep in real time. A test that waits for something waits on the
# event itself (a promise, a latch, a condition variable the code under test signals), time moves by the
# manual clock (plugin_test_support.hpp's ManualClock), and what needs a real server or process and real
# time is an integration test (tests/integration; check_no_servers.sh keeps servers out). This check, a CTest
# test, fails naming every line of tests/unit that sleeps.
#
# Usage: check_no_sleeps.sh <tests/unit folder>
dir=${1:?usage: check_no_sleeps.sh <tests/unit folder>}
offenders=$(grep -rnE 'sleep_for|sleep_until|sleep[[:space:]]*\(' "$dir" --include='*.cpp' --include='*.hpp' --include='*.h')
if [ -n "$offenders" ]; then
  echo "Unit tests must not sleep in real time (wait on the event, or move the manual clock; a test that needs"
  echo "a real server or process belongs in tests/integration). Offenders:"
  echo "$offenders"
  exit 1
fi
echo "No sleeps in $dir"
