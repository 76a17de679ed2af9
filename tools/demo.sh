#!/usr/bin/env bash
# The demo: set up, build, start the gateway on config/demo.yaml (SQLite + file_sink channels), submit
# config/demo/messages.json, and print what happened to each message and why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh --target tayori file_sink >/dev/null

export TAYORI_API_KEY="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
rm -rf demo-data && mkdir -p demo-data
build/bin/tayori check-config config/demo.yaml

build/bin/tayori serve --config config/demo.yaml --listen 127.0.0.1:0 >demo-data/stdout.log 2>demo-data/gateway.log &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "listening on" demo-data/stdout.log 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat demo-data/gateway.log; exit 1; }
  sleep 0.1
done
base=$(grep -o 'http://[0-9.:]*' demo-data/stdout.log)
echo "gateway up at $base (data in demo-data/)"
auth=(-H "Authorization: Bearer $TAYORI_API_KEY")

soon=$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%SZ)
messages=$(sed "s/@SOON@/$soon/" config/demo/messages.json)
count=$(jq length <<<"$messages")

echo
echo "== submitting $count messages =="
for i in $(seq 0 $((count - 1))); do
  body=$(jq -c ".[$i]" <<<"$messages")
  answer=$(curl -s -w '\n%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' -d "$body" "$base/v1/messages")
  code=$(tail -n1 <<<"$answer")
  json=$(sed '$d' <<<"$answer")
  id=$(jq -r .id <<<"$body")
  if [ "$code" = 202 ]; then
    printf '  %-15s %s %s\n' "$id" "$code" "$(jq -r .status <<<"$json")"
  else
    printf '  %-15s %s %s\n' "$id" "$code" "$(jq -r .title <<<"$json")"
    jq -r '.errors[] | "      \(.pointer): \(.detail)"' <<<"$json"
  fi
done

echo
echo "== cancelling campaign-7007 (scheduled for 2099) =="
curl -s "${auth[@]}" -X DELETE "$base/v1/messages/campaign-7007" | jq -c .

echo
echo "== waiting for due messages (reminder-4004 is due at $soon) =="
for _ in $(seq 150); do
  state=$(curl -s "${auth[@]}" "$base/v1/messages/reminder-4004" | jq -r .state)
  [ "$state" = delivered ] && break
  sleep 0.1
done

echo
echo "== what happened to each message, and why =="
while IFS= read -r id; do
  status=$(curl -s "${auth[@]}" "$base/v1/messages/$(jq -rn --arg id "$id" '$id|@uri')")
  if [ "$(jq -r '.status // empty' <<<"$status")" = 404 ]; then
    printf '%-15s never stored (refused at intake)\n' "$id"
    continue
  fi
  printf '%-15s %-10s channel=%-6s reason=%s\n' "$id" "$(jq -r .state <<<"$status")" \
    "$(jq -r '.channel // "-"' <<<"$status")" "$(jq -r '.last_reason // "-"' <<<"$status")"
  jq -r '.events[] | "    \(.at)  \(.type)  \(.detail | tostring)"' <<<"$status"
done < <(jq -r '.[].id' <<<"$messages" | awk '!seen[$0]++')

echo
echo "== what the channels received (file_sink outboxes) =="
for f in demo-data/outbox-*.jsonl; do
  [ -e "$f" ] || continue
  echo "$f:"
  jq -c '{message_id, channel, contact, content}' "$f" | sed 's/^/  /'
done
