#!/usr/bin/env bash
# tools/bench/channels.sh [BUILD_DIR] — deliveries/s end to end (accept → provider) per real channel, against
# the local stand-ins, with the file_sink channel measured in the same run as the baseline.
#
# Starts the stand-ins of tools/lib/standins.sh on free ports (tayori-sim for LINE, Twilio, FCM + its OAuth
# endpoint and APNs; the SMTP server with STARTTLS) and ONE gateway with six channels: `sink` (file_sink, the
# baseline: no network), `email` (email_smtp), `sms` (sms_twilio), `line` (line, push), `android` (push_fcm)
# and `ios` (push_apns), outbound.ca_file = the stand-ins' CA. Then, one channel at a time: tayori_load posts
# batches with the channel's contact kind, the script polls GET /metrics until the dispatcher has nothing
# scheduled, claimed or in flight, and checks that exactly the messages sent reached `delivered` and that
# the provider received exactly that many requests (tayori-sim's GET /_sim/requests?provider=P, the SMTP
# maildir, the file_sink outbox), none of them twice (tayori-sim's bodies are unique per message) — so a figure
# cannot come from deliveries that went nowhere or went twice. It also checks that the whole run used one FCM
# OAuth grant and one APNs provider token. A failed check fails the run (exit 1) after the table.
#
# Table: channel, plugin, messages, seconds (start of tayori_load → drained), delivered msg/s, that rate ÷
# the sink's, requests the provider received, and the TCP connections the gateway opened to the stand-in
# during the phase (client sockets to its port that were not there before, TIME_WAIT included; from `ss`).
# A handful per phase means keep-alive works; one per message means every delivery paid a new connect and
# handshake. LINE and Twilio share the simulator's HTTP/1.1 port, FCM and APNs its HTTP/2 port, so a later
# phase may reuse an earlier one's connections and show 0.
#
# Knobs (environment):
#   TAYORI_BENCH_REQUESTS        requests per channel                      (default 20)
#   TAYORI_BENCH_BATCH           messages per request (1 = single posts)   (default 50)
#   TAYORI_BENCH_CONCURRENCY     tayori_load connections                   (default 4)
#   TAYORI_BENCH_WARMUP          unmeasured requests per channel first     (default 0: the first OAuth grant,
#                                provider token and connections are part of the figure)
#   TAYORI_BENCH_WORKERS         dispatcher.workers                        (default 16: deliveries wait on
#                                network round trips now, so more of them overlap)
#   TAYORI_BENCH_CHANNELS        which channels, in order                  (default "sink email sms line android ios")
#   TAYORI_BENCH_SIM_THREADS     tayori-sim's HTTP/1.1 server threads      (default 2)
#   TAYORI_BENCH_DRAIN_TIMEOUT   seconds to wait for delivery per channel  (default 120)
#   TAYORI_BENCH_KEEP=1          keep the temp dir (config, db, keys, logs, mail, outbox)
#   TAYORI_BIN, TAYORI_LOAD_BIN, TAYORI_SIM_BIN, TAYORI_PLUGIN_DIR override the paths derived from BUILD_DIR.
# Needs: BUILD/bin/{tayori,tayori_load,tayori-sim}, the six plugins in BUILD/plugins, curl, jq, openssl, ss,
# python3 with aiosmtpd. tayori-sim keeps every request in memory: a few thousand per run are fine.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/standins.sh"
. "$HERE/../lib/gateway_bench.sh"

bench_paths "${1:-./build}"
bench_knobs REQUESTS=20 BATCH=50 CONCURRENCY=4 WARMUP=0 WORKERS=16 CHANNELS="sink email sms line android ios" \
  SIM_THREADS=2 DRAIN_TIMEOUT=120

# Per channel: plugin, tayori_load --contact, and where the receipt is counted (a tayori-sim provider, the
# SMTP maildir, or the file_sink outbox).
declare -A PLUGIN=([sink]=file_sink [email]=email_smtp [sms]=sms_twilio [line]=line [android]=push_fcm [ios]=push_apns)
declare -A CONTACT=([sink]=email [email]=email [sms]=phone [line]=line [android]=push.fcm [ios]=push.apns)
declare -A RECEIVER=([sink]=outbox [email]=smtp [sms]=twilio [line]=line [android]=fcm [ios]=apns)

for f in "$TAYORI_BIN" "$LOAD_BIN" "$STANDINS_SIM_BIN"; do
  [[ -x $f ]] || die "$f is missing: build the tayori, tayori_load and tayori-sim targets"
done
for ch in $CHANNELS; do
  [[ -n ${PLUGIN[$ch]:-} ]] || die "TAYORI_BENCH_CHANNELS: unknown channel \"$ch\" (sink email sms line android ios)"
  [[ -f $PLUGIN_DIR/${PLUGIN[$ch]}.so ]] || die "$PLUGIN_DIR/${PLUGIN[$ch]}.so is missing: build the ${PLUGIN[$ch]} target"
done
for c in curl jq openssl ss; do command -v "$c" >/dev/null || die "the $c command is needed"; done
PLUGIN_DIR=$(cd "$PLUGIN_DIR" && pwd)
STANDINS_SIM_BIN=$(cd "$(dirname "$STANDINS_SIM_BIN")" && pwd)/$(basename "$STANDINS_SIM_BIN")

bench_start channels standins_stop

standins_keys "$TMP/standins"
standins_start "$TMP/standins" 0 0 0 --threads "$SIM_THREADS"

{
  bench_config_top
  cat <<EOF
outbound:
  ca_file: $STANDINS_CA_FILE
channels:
EOF
  for ch in $CHANNELS; do
    case $ch in
    sink) cat <<EOF
  - name: sink
    plugin: file_sink
    contact: email
    settings:
      path: $TMP/outbox.jsonl
EOF
    ;;
    email) cat <<EOF
  - name: email
    plugin: email_smtp
    settings:
      url: $STANDINS_SMTP_URL
      from: "Tayori bench <bench@tayori.example>"
EOF
    ;;
    sms) cat <<EOF
  - name: sms
    plugin: sms_twilio
    inbound: false
    settings:
      base_url: $STANDINS_SIM_URL
      account_sid: $STANDINS_TWILIO_SID
      auth_token_env: STANDINS_TWILIO_TOKEN
      from: "$STANDINS_TWILIO_FROM"
EOF
    ;;
    line) cat <<EOF
  - name: line
    plugin: line
    contact: line
    settings:
      base_url: $STANDINS_SIM_URL
      channel_access_token_env: STANDINS_LINE_TOKEN
EOF
    ;;
    android) cat <<EOF
  - name: android
    plugin: push_fcm
    settings:
      base_url: $STANDINS_H2_URL
      service_account: $TMP/standins/keys/service-account.json
EOF
    ;;
    ios) cat <<EOF
  - name: ios
    plugin: push_apns
    settings:
      base_url: $STANDINS_H2_URL
      key_file: $TMP/standins/keys/apns.p8
      key_id: $STANDINS_APNS_KEY_ID
      team_id: $STANDINS_APNS_TEAM_ID
      topic: $STANDINS_APNS_TOPIC
EOF
    ;;
    esac
  done
} >"$TMP/bench.yaml"

serve_gateway "$TMP/bench.yaml" "$TMP/data"

sim_requests() { curl -fsS --max-time 30 "$STANDINS_SIM_URL/_sim/requests${1:+?provider=$1}" || die "GET /_sim/requests failed"; }
# received RECEIVER: how many requests (mails, outbox lines) that receiver has had so far, and for tayori-sim
# how many distinct bodies among them: every message's body is unique (its contact or message id), so a
# difference means the provider got some message twice.
received() {
  case $1 in
  outbox) if [[ -f $TMP/outbox.jsonl ]]; then wc -l <"$TMP/outbox.jsonl" | tr -d ' '; else echo 0; fi ;;
  smtp) find "$TMP/standins/mail" -name '*.msg' | wc -l | tr -d ' ' ;;
  *) sim_requests "$1" | jq -r '"\(length) \([.[].body] | unique | length)"' ;;
  esac
}
# stand_in_port CHANNEL: the port the channel's deliveries connect to (empty for the sink).
stand_in_port() {
  case $1 in
  email) echo "${STANDINS_SMTP_URL##*:}" ;;
  sms | line) echo "${STANDINS_SIM_URL##*:}" ;;
  android | ios) echo "${STANDINS_H2_URL##*:}" ;;
  esac
}
# client_sockets PORT: the local ports of every TCP socket (any state, TIME_WAIT too) connected to 127.0.0.1:PORT.
client_sockets() { ss -Htan dst "127.0.0.1:$1" | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u; }

declare -A R
ERRORS=()
phase() {
  local ch=$1 before_delivered before_failed before_received start line expected port sockets_before=""
  local delivered failed got distinct before_distinct=""
  port=$(stand_in_port "$ch")
  scrape
  before_delivered=$(metric 'tayori_messages{state="delivered"}')
  before_failed=$(metric 'tayori_messages{state="failed"}')
  read -r before_received before_distinct <<<"$(received "${RECEIVER[$ch]}")"
  [[ -n $port ]] && sockets_before=$(client_sockets "$port")
  start=$(now)
  run_load "on channel $ch" --url "$URL" --concurrency "$CONCURRENCY" --requests "$REQUESTS" --batch "$BATCH" \
    --warmup "$WARMUP" --channel "$ch" --contact "${CONTACT[$ch]}" --id-prefix "chbench-$$-$ch"
  line=$(<"$TMP/load.out")
  echo "$ch: $line"
  drain
  # Sockets first: the curl calls below open connections of their own to the simulator.
  if [[ -n $port ]]; then
    R[$ch.conns]=$(comm -13 <(echo "$sockets_before") <(client_sockets "$port") | grep -c . || true)
  else
    R[$ch.conns]=-
  fi
  expected=$(( (REQUESTS + WARMUP) * BATCH ))
  delivered=$(( $(metric 'tayori_messages{state="delivered"}') - before_delivered ))
  failed=$(( $(metric 'tayori_messages{state="failed"}') - before_failed ))
  read -r got distinct <<<"$(received "${RECEIVER[$ch]}")"
  got=$(( got - before_received ))
  R[$ch.messages]=$expected
  R[$ch.received]=$got
  R[$ch.intake]=$(kv "$line" msg_per_s)
  R[$ch.seconds]=$(awk -v a="$start" -v b="$DONE_AT" 'BEGIN { printf "%.3f", b - a }')
  R[$ch.rate]=$(div "$delivered" "${R[$ch.seconds]}")
  (( delivered == expected )) || ERRORS+=("$ch: $expected messages sent, $delivered delivered, $failed failed")
  if [[ -n $distinct ]]; then distinct=$(( distinct - before_distinct )); else distinct=$got; fi
  (( distinct == expected )) ||
    ERRORS+=("$ch: $expected messages sent, the provider (${RECEIVER[$ch]}) received $distinct of them")
  (( got == distinct )) || ERRORS+=("$ch: the provider (${RECEIVER[$ch]}) received $got requests for $distinct\
 messages: $(( got - distinct )) repeated one it had already received")
}

echo "tayori channels bench: gateway $URL (pid $GW_PID), $REQUESTS requests x $BATCH messages per channel," \
     "concurrency $CONCURRENCY, dispatcher workers $WORKERS, $(nproc) cores"
echo "stand-ins: tayori-sim $STANDINS_SIM_URL + $STANDINS_H2_URL (h2), SMTP $STANDINS_SMTP_URL"
for ch in $CHANNELS; do phase "$ch"; done

# One grant / one provider token for the whole run: a cache that missed would re-mint per delivery.
if [[ " $CHANNELS " == *" android "* ]]; then
  grants=$(sim_requests oauth | jq length)
  (( grants == 1 )) || ERRORS+=("android: $grants OAuth grants in the run (expected 1: the token is cached)")
fi
if [[ " $CHANNELS " == *" ios "* ]]; then
  tokens=$(sim_requests apns | jq '[.[].headers.authorization] | unique | length')
  (( tokens == 1 )) || ERRORS+=("ios: $tokens distinct APNs provider tokens in the run (expected 1)")
fi

echo
printf '%-8s %-11s %8s %8s %10s %8s %10s %9s %11s\n' \
  channel plugin messages seconds 'msg/s' 'vs sink' received 'new conns' 'intake/s'
base=${R[sink.rate]:-}
for ch in $CHANNELS; do
  printf '%-8s %-11s %8s %8s %10s %8s %10s %9s %11s\n' "$ch" "${PLUGIN[$ch]}" "${R[$ch.messages]}" \
    "${R[$ch.seconds]}" "${R[$ch.rate]}" "$( [[ -n $base ]] && div "${R[$ch.rate]}" "$base" || echo n/a)" \
    "${R[$ch.received]}" "${R[$ch.conns]}" "${R[$ch.intake]}"
done
echo
[[ " $CHANNELS " == *" android "* ]] && echo "android: $grants OAuth grant(s) for the run"
[[ " $CHANNELS " == *" ios "* ]] && echo "ios: $tokens APNs provider token(s) for the run"
if (( ${#ERRORS[@]} )); then
  printf 'channels.sh: %s\n' "${ERRORS[@]}" >&2
  exit 1
fi
echo "tayori channels bench: OK"
