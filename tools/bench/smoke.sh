#!/usr/bin/env bash
# The ctest smoke test of the benchmark tools (label: bench): run.sh with tiny counts must exit 0 and print
# both result lines, the ratio and its OK line. It asserts no speed.
set -uo pipefail
BUILD=${1:?usage: smoke.sh BUILD_DIR}
out=$(TAYORI_BENCH_REQUESTS=200 TAYORI_BENCH_BATCH_REQUESTS=10 TAYORI_BENCH_BATCH=100 TAYORI_BENCH_CONCURRENCY=2 \
      TAYORI_BENCH_DRAIN_TIMEOUT=60 bash "$(dirname "$0")/run.sh" "$BUILD" 2>&1)
rc=$?
echo "$out"
if (( rc != 0 )); then echo "smoke.sh: run.sh exited $rc" >&2; exit 1; fi
for pattern in '^tayori_load: requests=200 messages=200 .* failed=0$' \
               '^tayori_load: requests=10 messages=1000 .* failed=0$' \
               '^single  ' '^batch100 ' '^ratio batch/single: ' '^tayori bench: OK$'; do
  grep -Eq "$pattern" <<<"$out" || { echo "smoke.sh: no line matching /$pattern/ in the output" >&2; exit 1; }
done
echo "smoke.sh: OK"
