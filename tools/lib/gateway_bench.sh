# Shared by the benches (tools/bench/run.sh, channels.sh, throughput.sh): their paths and knobs, their temp
# folder and EXIT trap, the top of their gateway config, starting the gateway and tayori_load, finding the
# gateway's port, reading /metrics, and stopping what a run started. Sourced; GW_PID, LOAD_PID and TMP (gateway.out and gateway.err live there) are
# set by bench_paths, bench_start and serve_gateway; drain() reads DRAIN_TIMEOUT.

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# bench_paths BUILD_DIR: TAYORI_BIN, LOAD_BIN, STANDINS_SIM_BIN (the name tools/lib/standins.sh reads) and
# PLUGIN_DIR in BUILD_DIR, unless TAYORI_BIN, TAYORI_LOAD_BIN, TAYORI_SIM_BIN, TAYORI_PLUGIN_DIR name them.
bench_paths() {
  BUILD=$1
  TAYORI_BIN=${TAYORI_BIN:-$BUILD/bin/tayori}
  LOAD_BIN=${TAYORI_LOAD_BIN:-$BUILD/bin/tayori_load}
  STANDINS_SIM_BIN=${TAYORI_SIM_BIN:-$BUILD/bin/tayori-sim}
  PLUGIN_DIR=${TAYORI_PLUGIN_DIR:-$BUILD/plugins}
}

# bench_knobs NAME=DEFAULT...: sets each NAME from the environment's TAYORI_BENCH_NAME, else DEFAULT. Every knob
# of every bench is spelled this way (each bench's header lists its own and their defaults).
bench_knobs() {
  local knob env
  for knob in "$@"; do
    env=TAYORI_BENCH_${knob%%=*}
    printf -v "${knob%%=*}" '%s' "${!env:-${knob#*=}}"
  done
}

# bench_start NAME [CLEANUP...]: a temp folder TMP (TMPDIR/tayori-NAME.XXXXXX), a fresh API key in
# TAYORI_BENCH_KEY, and the traps of every bench: on exit the commands CLEANUP (the bench's stand-ins, a
# second node, a cluster), then finish_run; SIGINT and SIGTERM exit (130, 143) through that trap.
bench_start() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/tayori-$1.XXXXXX")
  shift
  BENCH_CLEANUP=("$@")
  GW_PID=""
  LOAD_PID=""
  export TAYORI_BENCH_KEY="bench-$RANDOM$RANDOM-$$"
  trap _bench_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
_bench_exit() {
  local rc=$? step
  for step in "${BENCH_CLEANUP[@]}"; do $step; done
  finish_run "$rc"
  exit "$rc"
}

# bench_config_top [SERVER_KEY: VALUE...]: the top of a one-node SQLite bench's gateway config, up to its
# outbound and channels sections: the server on 127.0.0.1:0 taking batches of BATCH (at least 1000) and the
# SERVER_KEY lines given, the store in data/, WORKERS dispatcher workers, the bench's key, PLUGIN_DIR.
bench_config_top() {
  local line
  printf 'server:\n  listen: 127.0.0.1:0\n  max_batch: %s\n' "$(( BATCH > 1000 ? BATCH : 1000 ))"
  for line in "$@"; do printf '  %s\n' "$line"; done
  cat <<EOF
store:
  data_dir: data
dispatcher:
  workers: $WORKERS
api_keys:
  - name: bench
    key_env: TAYORI_BENCH_KEY
plugin_dirs:
  - $PLUGIN_DIR
EOF
}

# bench_policy CHANNELS FROM_HOUR TO_HOUR: the policy of the benches with marketing in the path: recipients in
# Asia/Tokyo, marketing consent opted in by default (no PUT per recipient), and quiet hours for marketing on the
# CHANNELS ("sms, line") from FROM_HOUR:00 to TO_HOUR:00 that defer. A bench adds caps after it.
bench_policy() {
  cat <<EOF
policy:
  default_timezone: Asia/Tokyo
  consent:
    defaults:
      transactional: opted_in
      marketing: opted_in
  quiet_hours:
    - name: marketing_night
      channels: [$1]
      purpose: marketing
      from: "$(printf '%02d' "$2"):00"
      to: "$(printf '%02d' "$3"):00"
      action: defer
EOF
}

# serve_gateway CONFIG DATA_DIR [OUT_DIR]: `tayori serve` on 127.0.0.1:0 in the background (GW_PID), its stdout and
# stderr in OUT_DIR (default TMP)/gateway.out and .err; returns once it listens (PORT, URL).
serve_gateway() {
  local out=${3:-$TMP}
  "$TAYORI_BIN" serve --config "$1" --listen 127.0.0.1:0 --data-dir "$2" >"$out/gateway.out" 2>"$out/gateway.err" &
  GW_PID=$!
  TMP=$out gateway_url
}

# run_load WHAT ARGS...: tayori_load with ARGS and the bench's key, its result line into TMP/load.out; WHAT ends
# the message when it fails ("in the single phase"). In the background, so that a signal to the script is handled
# at once (bash defers traps during a foreground job).
run_load() {
  local what=$1
  shift
  TAYORI_API_KEY=$TAYORI_BENCH_KEY "$LOAD_BIN" "$@" >"$TMP/load.out" &
  LOAD_PID=$!
  wait "$LOAD_PID" || die "tayori_load failed $what"
  LOAD_PID=""
}

# gateway_url: waits for `tayori serve` to print its port; sets PORT and URL.
gateway_url() {
  PORT=""
  for _ in $(seq 200); do
    # The file appears when the background child has run its redirection, which may come after this first
    # look (sed's exit 2 on a missing file ended a smoke run under set -e).
    PORT=$(sed -n 's|^tayori: listening on http://[^:]*:\([0-9][0-9]*\)$|\1|p' "$TMP/gateway.out" 2>/dev/null || true)
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
# cpu_ms PID...: CPU time (user + system) the processes have used so far, in ms (/proc/PID/stat fields 14 and 15,
# in clock ticks). Unlike a rate, CPU per message barely moves when other work shares the machine.
cpu_ms() {
  local pid total=0 ticks
  ticks=$(getconf CLK_TCK)
  for pid in "$@"; do
    [[ -n $pid && -r /proc/$pid/stat ]] || continue
    total=$(( total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat") ))
  done
  echo $(( total * 1000 / ticks ))
}
# thread_cpu_ms PID...: CPU time (ms) the processes' threads have used so far, summed per thread name, one "name ms"
# line each. The gateway names its threads (tayori-writer, tayori-transp, tayori-worker, tayori-http, ...): one
# thread that is the ceiling shows here when the process's total does not.
thread_cpu_ms() {
  local pid ticks
  ticks=$(getconf CLK_TCK)
  for pid in "$@"; do
    [[ -n $pid && -d /proc/$pid/task ]] || continue
    # The name is between the first '(' and the last ')'; utime and stime are the 12th and 13th fields after it.
    cat /proc/"$pid"/task/*/stat 2>/dev/null
  done | awk -v t="$ticks" '{
      lp = index($0, "("); rp = 0
      for (i = length($0); i > 0; i--) if (substr($0, i, 1) == ")") { rp = i; break }
      name = substr($0, lp + 1, rp - lp - 1); gsub(/ /, "_", name)
      split(substr($0, rp + 2), f, " "); a[name] += f[12] + f[13]
    } END { for (k in a) printf "%s %d\n", k, a[k] * 1000 / t }'
}
# thread_us_per_message BEFORE AFTER MESSAGES: from two thread_cpu_ms readings, "name us" per message for each
# thread name that used at least 0.5 us per message, the largest first.
thread_us_per_message() {
  join -a1 -a2 -e0 -o 0,1.2,2.2 <(sort <<<"$1") <(sort <<<"$2") |
    awk -v m="$3" 'm > 0 { d = ($3 - $2) * 1000 / m; if (d >= 0.5) printf "%.1f %s\n", d, $1 }' | sort -rn |
    awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 } END { print "" }'
}
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

# stop_gateway: SIGTERM, and SIGKILL when it is still running 10 s later; reaps it.
stop_gateway() {
  [[ -n ${GW_PID:-} ]] || return 0
  if kill -0 "$GW_PID" 2>/dev/null; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$GW_PID" 2>/dev/null; then
      echo "$(basename "$0"): the gateway ignored SIGTERM for 10 s; killing it" >&2
      kill -KILL "$GW_PID" 2>/dev/null || true
    fi
  fi
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=""
}

# finish_run RC: the end of every bench's EXIT trap: stops tayori_load and the gateway, shows the gateway's last
# log lines when the run failed, and removes TMP (TAYORI_BENCH_KEEP=1 keeps it). Stand-ins are the caller's.
finish_run() {
  local rc=$1
  if [[ -n ${LOAD_PID:-} ]]; then kill -TERM "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; fi
  stop_gateway
  if (( rc != 0 )) && [[ -s $TMP/gateway.err ]]; then
    echo "$(basename "$0"): last lines of the gateway log:" >&2
    tail -n 20 "$TMP/gateway.err" >&2
  fi
  if [[ ${TAYORI_BENCH_KEEP:-0} == 1 ]]; then echo "$(basename "$0"): kept $TMP" >&2; else rm -rf "$TMP"; fi
}
