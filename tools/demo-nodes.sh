#!/usr/bin/env bash
# Two gateway nodes on one PostgreSQL (docs/operator-guide.md §16): set up, build, start a throw-away
# PostgreSQL cluster (initdb into demo-nodes/, a unix socket, no TCP), the provider simulator, and two
# `tayori serve` nodes with the same configuration but their node id. Then:
#   1. marketing SMS for four people, sent alternately to node 1 and node 2 at once: the cap of 3 per person
#      per 24 hours holds across the nodes (the fourth and later are suppressed by it, whichever node decided);
#   2. one message id sent to both nodes at the same moment: one message, one `duplicate`;
#   3. node 1 killed (SIGKILL) with messages it had claimed: node 2 sends them once node 1's lease passes.
# Each message is printed with the node it was sent to and what became of it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh --target tayori tayori-sim sms_twilio >/dev/null

. tools/lib/standins.sh
. tools/lib/pg.sh
. tools/lib/demo_policy.sh
random() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export TAYORI_API_KEY="demo-$(random)"
dir=$PWD/demo-nodes
rm -rf "$dir" && mkdir -p "$dir"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pg_stop
  standins_stop
}
trap cleanup EXIT
pg_start "$dir/pg"
export TAYORI_PG_URL=$PG_URL
echo "PostgreSQL up (socket in $dir/pg)"

standins_keys "$dir"
standins_start "$dir" 8791 8792 8725
export DEMO_TWILIO_TOKEN=$STANDINS_TWILIO_TOKEN

# One configuration; only the node id differs. A short lease, so that scene 3 takes seconds.
# Written out whole, cap and all, though tools/bench/throughput.sh has the same cap: a reader of the demo
# sees its whole configuration here, and the bench may change its own for what it measures.
for n in 1 2; do
  cat >"$dir/node$n.yaml" <<EOF
server:
  listen: 127.0.0.1:0
store:
  backend: postgres
  url_env: TAYORI_PG_URL
  node_id: node-$n
  lease: 3s
dispatcher:
  workers: 8
  poll_interval: 200ms
api_keys:
  - name: demo
    key_env: TAYORI_API_KEY
plugin_dirs:
  - ../build/plugins
channels:
  - name: sms
    plugin: sms_twilio
    inbound: false
    settings:
      base_url: http://127.0.0.1:8791
      account_sid: AC0123456789abcdef0123456789abcdef
      auth_token_env: DEMO_TWILIO_TOKEN
      from: "+15005550006"
policy:
  default_timezone: UTC
  consent:
    defaults: {transactional: opted_in, marketing: opted_in}
$(demo_caps)
EOF
  build/bin/tayori check-config "$dir/node$n.yaml" >/dev/null
done

start_node() {  # N -> base URL in node_url[N]
  local n=$1
  build/bin/tayori serve --config "$dir/node$n.yaml" >"$dir/node$n.out" 2>"$dir/node$n.log" &
  pids+=($!)
  node_pid[$n]=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$dir/node$n.out" 2>/dev/null && break
    kill -0 "${node_pid[$n]}" 2>/dev/null || { cat "$dir/node$n.log"; exit 1; }
    sleep 0.1
  done
  node_url[$n]=$(grep -o 'http://[0-9.:]*' "$dir/node$n.out")
  echo "node-$n up at ${node_url[$n]}"
}
declare -a node_pid node_url
start_node 1
start_node 2
auth=(-H "Authorization: Bearer $TAYORI_API_KEY" -H 'Content-Type: application/json')

message() {  # ID RECIPIENT [SEND_AT]
  printf '{"id":"%s","purpose":"marketing","channels":["sms"],"recipient":{"id":"%s","contacts":{"phone":"+8190%08d"}},"content":{"text":"Spring sale, %s"}%s}' \
    "$1" "$2" "$((${2#p} + 1000))" "$1" "${3:+,\"send_at\":\"$3\"}"
}
submit() { curl -s "${auth[@]}" -d "$2" "${node_url[$1]}/v1/messages"; }
# Waits until the message is final, then prints: id, the node it was sent to, who decided, the outcome.
show() {  # ID SENT_TO
  local json
  for _ in $(seq 100); do
    json=$(curl -s "${auth[@]}" "${node_url[2]}/v1/messages/$1")
    case $(jq -r .state <<<"$json") in scheduled | dispatched) sleep 0.1 ;; *) break ;; esac
  done
  jq -r --arg to "node-$2" '"  \(.id)  sent to \($to)  →  \(.state)" +
    (if .state == "suppressed" then " (\(.last_reason))" else "" end)' <<<"$json"
}

echo
echo "== 1. Four people, five marketing SMS each, alternately to node-1 and node-2 at once (cap: 3 per 24h)"
ids=() senders=()
for r in 1 2 3 4; do
  for i in 1 2 3 4 5; do
    n=$(((i % 2) + 1))
    submit $n "$(message "sale-p$r-$i" "p$r")" >/dev/null &
    senders+=($!)
    ids+=("sale-p$r-$i:$n")
  done
done
wait "${senders[@]}"
for entry in "${ids[@]}"; do show "${entry%%:*}" "${entry##*:}"; done
echo "  SMS received per phone (the simulator's record):"
curl -s "http://127.0.0.1:8791/_sim/requests?provider=twilio" |
  jq -r '[.[] | .body | capture("To=(?<to>[^&]*)").to | sub("%2B"; "+")] | group_by(.) | map("    \(.[0]): \(length)") | .[]'

echo
echo "== 2. One id sent to both nodes at the same moment"
body=$(message "same-id-1" "p9")
submit 1 "$body" >"$dir/same-1.json" &
sender=$!
submit 2 "$body" >"$dir/same-2.json"
wait $sender
for n in 1 2; do echo "  node-$n answered: $(jq -r '.status // .results[0].status' "$dir/same-$n.json")"; done

echo
echo "== 3. node-1 is killed while the provider holds its deliveries; node-2 sends them after node-1's lease (3s)"
curl -s -X POST -d '{"provider":"twilio","latency_ms":5000}' http://127.0.0.1:8791/_sim/faults >/dev/null
for i in 1 2 3; do submit 1 "$(message "after-kill-$i" "p$((10 + i))")" >/dev/null; done
sleep 1
{ kill -9 "${node_pid[1]}" && wait "${node_pid[1]}"; } 2>/dev/null || true
curl -s -X DELETE http://127.0.0.1:8791/_sim/faults >/dev/null
echo "  node-1 killed at $(date -u +%H:%M:%S) with after-kill-1..3 in flight"
for i in 1 2 3; do show "after-kill-$i" 1; done
curl -s "${auth[@]}" "${node_url[2]}/v1/messages/after-kill-1" |
  jq -r '.events[] | select(.type == "requeued") | "  after-kill-1 requeued at \(.at): \(.detail.reason)"'
echo "  (a provider that had already taken node-1's request may send that SMS twice: the at-least-once window)"
