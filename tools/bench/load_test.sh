#!/usr/bin/env bash
# The ctest of tayori_load (label: bench): against tools/bench/load_server.py, it must send every request once with
# its key and a message id unique to the run, warm-up included; follow a server that closes connections after an
# answer; count a 503, a connection closed without an answer, a request left unanswered past --timeout-ms, and a
# refused connection, each by its own name, and then exit 1. It asserts no speed.
set -uo pipefail
LOAD=${1:?usage: load_test.sh TAYORI_LOAD}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tayori-load-test.XXXXXX")
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT
fail() { echo "load_test.sh: $*" >&2; exit 1; }

# serve MODE: starts load_server.py in MODE; sets PORT, and LOG (one line per request it received).
serve() {
  LOG=$TMP/$1.log
  python3 "$HERE/load_server.py" "$1" "$TMP/$1.port" "$LOG" &
  PIDS+=($!)
  for _ in $(seq 100); do [[ -s $TMP/$1.port ]] && break; sleep 0.1; done
  PORT=$(cat "$TMP/$1.port") || fail "load_server.py $1 did not start"
}

# Every request answered: 10 warm-up and 50 measured, single messages on 4 connections, each id once.
serve ok
out=$(TAYORI_API_KEY=k1 "$LOAD" --url "http://127.0.0.1:$PORT" --concurrency 4 --requests 50 --warmup 10 \
      --id-prefix run1 --channel sms --contact phone 2>&1) || fail "single run failed: $out"
grep -Eq '^tayori_load: requests=50 messages=50 batch=1 concurrency=4 .* failed=0$' <<<"$out" || fail "single: $out"
(( $(wc -l <"$LOG") == 60 )) || fail "single: the server got $(wc -l <"$LOG") requests, not 60"
bad=$(grep -vc '^POST /v1/messages HTTP/1.1 Bearer k1 run1-[wm][0-9]*-0$' "$LOG")
(( bad == 0 )) || fail "single: $bad requests not as sent: $(grep -v '^POST /v1/messages HTTP/1.1 Bearer k1 run1-[wm][0-9]*-0$' "$LOG" | head -3)"
(( $(awk '{print $NF}' "$LOG" | sort -u | wc -l) == 60 )) || fail "single: a message id was sent twice"

# Batches: each answer's "accepted" counts the request's messages; a path prefix in --url is kept.
: >"$LOG"
out=$(TAYORI_API_KEY=k2 "$LOAD" --url "http://127.0.0.1:$PORT/base" --concurrency 3 --requests 7 --batch 20 \
      --id-prefix run2 --contact line --json 2>&1) || fail "batch run failed: $out"
jq -e '.requests == 7 and .messages == 140 and .failed_requests == 0' <<<"$out" >/dev/null || fail "batch: $out"
(( $(cut -d' ' -f6- "$LOG" | tr ' ' '\n' | sort -u | wc -l) == 140 )) || fail "batch: not 140 distinct ids"
grep -q '^POST /base/v1/messages ' "$LOG" || fail "batch: the path prefix was lost: $(head -1 "$LOG")"

# --random-ids: after the prefix, 16 hex digits and a dash, distinct per message and in no order.
: >"$LOG"
out=$(TAYORI_API_KEY=k2 "$LOAD" --url "http://127.0.0.1:$PORT" --concurrency 2 --requests 5 --batch 20 \
      --id-prefix run4 --random-ids 2>&1) || fail "random ids run failed: $out"
ids=$(cut -d' ' -f6- "$LOG" | tr ' ' '\n')
(( $(grep -Ec '^run4-[0-9a-f]{16}-m[0-9]+-[0-9]+$' <<<"$ids") == 100 )) || fail "random ids: $(head -3 <<<"$ids")"
(( $(cut -d- -f2 <<<"$ids" | sort -u | wc -l) == 100 )) || fail "random ids: a hex part repeats"
[[ $(head -20 <<<"$ids") != $(head -20 <<<"$ids" | sort) ]] || fail "random ids: the first batch's ids came in order"

# --rate: paced, no request goes before its time (40 at 100/s: the last is due 0.39 s after the first), and a
# request's latency counts from its time. One connection to a server that answers in 50 ms can send one request
# per 50 ms while they fall due every 10 ms: the last of 20, due at 0.19 s, goes out after 19 answers (0.95 s) and
# waits at least 0.76 s. A closed loop would time each at about 50 ms.
: >"$LOG"
out=$(TAYORI_API_KEY=k1 "$LOAD" --url "http://127.0.0.1:$PORT" --concurrency 4 --requests 40 --rate 100 \
      --id-prefix run5 --json 2>&1) || fail "paced run failed: $out"
jq -e '.requests == 40 and .failed_requests == 0 and .seconds >= 0.39' <<<"$out" >/dev/null || fail "paced: $out"
(( $(wc -l <"$LOG") == 40 )) || fail "paced: the server got $(wc -l <"$LOG") requests, not 40"
serve slow
out=$(TAYORI_API_KEY=k1 "$LOAD" --url "http://127.0.0.1:$PORT" --concurrency 1 --requests 20 --rate 100 \
      --id-prefix run6 --json 2>&1) || fail "paced slow run failed: $out"
jq -e '.requests == 20 and .failed_requests == 0 and .latency_ms.max >= 760 and .latency_ms.p50 >= 300' \
  <<<"$out" >/dev/null || fail "paced slow: the wait for a free connection is not counted: $out"
out=$(TAYORI_API_KEY=k1 "$LOAD" --url "http://127.0.0.1:$PORT" --concurrency 1 --requests 20 --id-prefix run7 \
      --json 2>&1) || fail "closed-loop slow run failed: $out"
jq -e '.latency_ms.p50 >= 50' <<<"$out" >/dev/null || fail "closed-loop slow: $out"
(( $(wc -l <"$LOG") == 40 )) || fail "slow: the server got $(wc -l <"$LOG") requests, not 40"
out=$("$LOAD" --url "http://127.0.0.1:$PORT" --rate 0 2>&1)
(( $? == 64 )) && grep -q -- '--rate needs an integer >= 1' <<<"$out" || fail "--rate 0 was not refused: $out"

# Failures, each counted under its own name: 12 requests, a quarter of each kind.
serve mixed
out=$(TAYORI_API_KEY=k3 "$LOAD" --url "http://127.0.0.1:$PORT" --concurrency 4 --requests 12 --timeout-ms 400 \
      --id-prefix run3 2>&1)
rc=$?
(( rc == 1 )) || fail "mixed: exit $rc, not 1: $out"
for line in '^tayori_load: requests=12 .* failed=9$' '^  503 x3' '^  connection: closed by the server x3' \
    '^  timeout x3'; do
  grep -Eq "$line" <<<"$out" || fail "mixed: no line /$line/ in: $out"
done

# Nothing listens: every request fails as refused, and the run still ends.
python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$TMP/free"
out=$(TAYORI_API_KEY=k4 "$LOAD" --url "http://127.0.0.1:$(cat "$TMP/free")" --concurrency 2 --requests 5 2>&1)
rc=$?
(( rc == 1 )) || fail "refused: exit $rc, not 1: $out"
grep -Eq '^  connection: Connection refused x5$' <<<"$out" || fail "refused: $out"
echo "load_test.sh: OK"
