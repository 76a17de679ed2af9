#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang into ./build-fuzz (TAYORI_FUZZ=ON: everything
# instrumented, ASan+UBSan), replays each target's seed corpus and past crashes, then fuzzes each for
# FUZZ_SECONDS (default 30). Arguments name targets (json message config render line_inbound twilio_inbound mime
# links http_head http1_response); none: all. A crash stops the script with the input saved in build-fuzz/artifacts/TARGET/;
# check it into tests/fuzz/regressions/TARGET/ with the fix. README "Fuzzing" says how to run them for hours.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh clang-14 libfuzzer-14-dev
seconds="${FUZZ_SECONDS:-30}"
targets=("$@")
((${#targets[@]})) || targets=(json message config render line_inbound twilio_inbound mime links http_head http1_response)

source tools/lib/clang_build.sh
clang_configure build-fuzz -DTAYORI_FUZZ=ON
cmake --build build-fuzz --target $(printf 'fuzz_%s ' "${targets[@]}")

# Any sanitizer report fails the run; leak checking stays on (LeakSanitizer runs at exit of each input set).
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
for t in "${targets[@]}"; do
  bin="build-fuzz/bin/fuzz_$t"
  seeds="tests/fuzz/corpus/$t"
  regressions="tests/fuzz/regressions/$t"
  work="build-fuzz/corpus/$t"
  artifacts="build-fuzz/artifacts/$t/"
  mkdir -p "$work" "$artifacts" "$regressions"
  echo "fuzz: $t: replaying $(ls "$seeds" | wc -l) seeds and $(ls "$regressions" | wc -l) regressions" >&2
  "$bin" -runs=0 "$seeds" "$regressions" 2>"build-fuzz/$t.replay.log" || { cat "build-fuzz/$t.replay.log" >&2; exit 1; }
  echo "fuzz: $t: fuzzing for ${seconds}s" >&2
  # New inputs go to the work folder, so the checked-in seeds stay a handful of files.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$artifacts" "$work" "$seeds" 2>"build-fuzz/$t.log" || { tail -60 "build-fuzz/$t.log" >&2; exit 1; }
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "build-fuzz/$t.log" \
    | sed "s/^/fuzz: $t: /" >&2 || true
  grep -E "cov: [0-9]+" "build-fuzz/$t.log" | tail -1 | sed "s/^/fuzz: $t: /" >&2 || true
done
