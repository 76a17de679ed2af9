# Shared by tools/bench/run.sh and tools/bench/channels.sh: finding the gateway's port and reading /metrics.
# Sourced; the caller defines die() and sets GW_PID, TMP (gateway.out lives there) and DRAIN_TIMEOUT.

# gateway_url: waits for `tayori serve` to print its port; sets PORT and URL.
gateway_url() {
  PORT=""
  for _ in $(seq 200); do
    PORT=$(sed -n 's|^tayori: listening on http://[^:]*:\([0-9][0-9]*\)$|\1|p' "$TMP/gateway.out")
    [[ -n $PORT ]] && break
    kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited before listening"
    sleep 0.1
  done
  [[ -n $PORT ]] || die "the gateway did not print its port within 20 s"
  URL="http://127.0.0.1:$PORT"
}

now() { date +%s.%N; }
# metric NAME: the value of one sample (NAME includes its labels) from the last /metrics scrape.
metric() { awk -v n="$1" '$1 == n { v = $2 + 0 } END { printf "%.0f\n", v }' <<<"$METRICS"; }
scrape() { METRICS=$(curl -fsS --max-time 10 "$URL/metrics") || die "GET /metrics failed"; }
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# drain: waits until nothing is scheduled, claimed or in flight; sets DONE_AT to the time it happened.
# One curl and one awk per poll, ten polls a second: the polling shares the cores with what it measures (at 20
# polls a second it took ~15% of the CPU of a 2-core run), and a phase lasts seconds.
drain() {
  local started=$SECONDS busy
  while :; do
    scrape
    busy=$(awk '$1 == "tayori_queue_depth" || $1 == "tayori_dispatch_in_flight" ||
                $1 == "tayori_messages{state=\"dispatched\"}" { n += $2 } END { printf "%.0f\n", n }' <<<"$METRICS")
    if [[ $busy == 0 ]]; then
      DONE_AT=$(now)
      return
    fi
    (( SECONDS < started + DRAIN_TIMEOUT )) || die "not drained after ${DRAIN_TIMEOUT} s:
$(grep -E '^tayori_(queue_depth|dispatch_in_flight|messages)' <<<"$METRICS")"
    sleep 0.1
  done
}
