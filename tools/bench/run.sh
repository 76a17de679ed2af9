#!/usr/bin/env bash
# tools/bench/run.sh [BUILD_DIR] — end-to-end throughput of a local gateway: single-message submissions
# against batches, measured in one run so the ratio is meaningful on a shared, noisy machine.
#
# Starts `tayori serve` on 127.0.0.1:0 with a throw-away config and data dir (file_sink channel), then per
# phase: runs tayori_load, waits until the dispatcher has delivered everything (GET /metrics), and prints
# a table plus the batch ÷ single ratios. The gateway is stopped (SIGTERM) and the temp dir removed on
# every exit path. Needs: BUILD/bin/tayori, BUILD/bin/tayori_load, BUILD/plugins/file_sink.so, curl.
#
# Knobs (environment):
#   TAYORI_BENCH_REQUESTS        single-message requests            (default 3000)
#   TAYORI_BENCH_BATCH_REQUESTS  batch requests                     (default 200)
#   TAYORI_BENCH_BATCH           messages per batch request         (default 100)
#   TAYORI_BENCH_CONCURRENCY     tayori_load threads = connections  (default 4)
#   TAYORI_BENCH_WARMUP          warm-up requests per phase         (default 20 single, 2 batch)
#   TAYORI_BENCH_WORKERS         dispatcher.workers                 (default 4, the gateway default)
#   TAYORI_BENCH_SERVER_THREADS  server.threads, 0 = one per core   (default 0)
#   TAYORI_BENCH_DRAIN_TIMEOUT   seconds to wait for delivery       (default 120)
#   TAYORI_BENCH_KEEP=1          keep the temp dir (config, db, outbox, gateway log)
#   TAYORI_BIN, TAYORI_LOAD_BIN, TAYORI_PLUGIN_DIR override the paths derived from BUILD_DIR.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/gateway_bench.sh"
bench_paths "${1:-./build}"
bench_knobs REQUESTS=3000 BATCH_REQUESTS=200 BATCH=100 CONCURRENCY=4 WORKERS=4 SERVER_THREADS=0 DRAIN_TIMEOUT=120
SINGLE_WARMUP=${TAYORI_BENCH_WARMUP:-20}
BATCH_WARMUP=${TAYORI_BENCH_WARMUP:-2}

for f in "$TAYORI_BIN" "$LOAD_BIN"; do [[ -x $f ]] || die "$f is missing: build the tayori and tayori_load targets"; done
[[ -f $PLUGIN_DIR/file_sink.so ]] || die "$PLUGIN_DIR/file_sink.so is missing: build the file_sink target"
command -v curl >/dev/null || die "the curl command is needed to read /metrics"
(( BATCH > 1 )) || die "TAYORI_BENCH_BATCH must be > 1"
PLUGIN_DIR=$(cd "$PLUGIN_DIR" && pwd)

bench_start bench

{
  bench_config_top "threads: $SERVER_THREADS"
  cat <<EOF
channels:
  - name: email
    plugin: file_sink
    contact: email
    settings:
      path: $TMP/outbox-email.jsonl
EOF
} >"$TMP/bench.yaml"

serve_gateway "$TMP/bench.yaml" "$TMP/data"

declare -A R
# phase NAME REQUESTS BATCH WARMUP
phase() {
  local name=$1 requests=$2 batch=$3 warmup=$4 before start line after expected
  scrape
  before=$(metric 'tayori_messages{state="delivered"}')
  start=$(now)
  run_load "in the $name phase" --url "$URL" --concurrency "$CONCURRENCY" --requests "$requests" --batch "$batch" \
    --warmup "$warmup" --id-prefix "bench-$$-$name"
  line=$(<"$TMP/load.out")
  echo "$line"
  drain
  after=$(metric 'tayori_messages{state="delivered"}')
  expected=$(( (requests + warmup) * batch ))
  (( after - before == expected )) ||
    die "$name: expected $expected deliveries, saw $(( after - before )) (failed: $(metric 'tayori_messages{state="failed"}'))"
  R[$name.line]=$line
  R[$name.e2e_s]=$(awk -v a="$start" -v b="$DONE_AT" 'BEGIN { printf "%.3f", b - a }')
  R[$name.e2e]=$(div "$expected" "${R[$name.e2e_s]}")
}

echo "tayori bench: gateway $URL (pid $GW_PID), concurrency $CONCURRENCY, dispatcher workers $WORKERS," \
     "server threads $SERVER_THREADS, $(nproc) cores"
phase single "$REQUESTS" 1 "$SINGLE_WARMUP"
phase batch "$BATCH_REQUESTS" "$BATCH" "$BATCH_WARMUP"

echo
printf '%-10s %9s %9s %8s %9s %10s %8s %8s %8s %8s %10s\n' \
  run requests messages seconds 'req/s' 'msg/s' 'p50 ms' 'p90 ms' 'p99 ms' 'max ms' 'e2e msg/s'
for name in single batch; do
  l=${R[$name.line]}
  label=$name; [[ $name == batch ]] && label="batch$BATCH"
  printf '%-10s %9s %9s %8s %9s %10s %8s %8s %8s %8s %10s\n' "$label" \
    "$(kv "$l" requests)" "$(kv "$l" messages)" "$(kv "$l" seconds)" "$(kv "$l" req_per_s)" "$(kv "$l" msg_per_s)" \
    "$(kv "$l" p50_ms)" "$(kv "$l" p90_ms)" "$(kv "$l" p99_ms)" "$(kv "$l" max_ms)" "${R[$name.e2e]}"
done
s=${R[single.line]} b=${R[batch.line]}
echo
echo "ratio batch/single: intake msg/s $(div "$(kv "$b" msg_per_s)" "$(kv "$s" msg_per_s)")x," \
     "end-to-end msg/s $(div "${R[batch.e2e]}" "${R[single.e2e]}")x," \
     "req/s $(div "$(kv "$b" req_per_s)" "$(kv "$s" req_per_s)")x," \
     "p50 latency $(div "$(kv "$b" p50_ms)" "$(kv "$s" p50_ms)")x"
echo "tayori bench: OK"
