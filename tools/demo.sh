#!/usr/bin/env bash
# The demo: set up, build, start the provider simulator (tayori-sim) and a local SMTP server, start the
# gateway on config/demo.yaml (SQLite, five real channel plugins, a policy and a template), play
# config/demo/messages.json scene by scene, and print what happened to each message and why, then what
# each provider received.
#
# messages.json is a list of steps: {"say": ...} starts a scene, {"do": "METHOD /path", "body": ...} calls
# the API, anything else is a message for POST /v1/messages. After each message the script waits until
# the dispatcher has decided (a final state, or scheduled for later), so every scene sees the one before.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh --target tayori tayori-sim email_smtp sms_twilio line push_fcm push_apns >/dev/null

. tools/lib/standins.sh
random() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export TAYORI_API_KEY="demo-$(random)" DEMO_LINK_SECRET="$(random)"
rm -rf demo-data && mkdir -p demo-data

# The stand-ins (tools/lib/standins.sh) on the fixed ports config/demo.yaml names: tayori-sim on 8791 (HTTP/1.1)
# and 8792 (HTTP/2 + TLS), the SMTP server on 8725; keys, logs and the mailbox in demo-data/.
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; standins_stop' EXIT
standins_keys demo-data
standins_start demo-data 8791 8792 8725
export DEMO_LINE_TOKEN=$STANDINS_LINE_TOKEN DEMO_TWILIO_TOKEN=$STANDINS_TWILIO_TOKEN
build/bin/tayori check-config config/demo.yaml

build/bin/tayori serve --config config/demo.yaml --listen 127.0.0.1:0 >demo-data/stdout.log 2>demo-data/gateway.log &
pid=$!
for _ in $(seq 100); do
  grep -q "listening on" demo-data/stdout.log 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat demo-data/gateway.log; exit 1; }
  sleep 0.1
done
base=$(grep -o 'http://[0-9.:]*' demo-data/stdout.log)
echo "gateway up at $base (data in demo-data/)"
auth=(-H "Authorization: Bearer $TAYORI_API_KEY")

# A recipient for whom it is night right now: a real zone where it is about 01:00, one per UTC offset
# from -11 to +12, chosen by the current UTC hour (summer time moves it an hour at most: still night).
zones=(Pacific/Pago_Pago Pacific/Honolulu America/Anchorage America/Los_Angeles America/Phoenix
       America/Mexico_City America/Bogota America/La_Paz America/Sao_Paulo Atlantic/South_Georgia
       Atlantic/Cape_Verde Atlantic/Reykjavik Africa/Lagos Africa/Johannesburg Africa/Nairobi Asia/Dubai
       Asia/Karachi Asia/Dhaka Asia/Bangkok Asia/Singapore Asia/Tokyo Australia/Brisbane Pacific/Noumea
       Pacific/Auckland)
offset=$(((1 - 10#$(date -u +%H) + 48) % 24))
if ((offset > 12)); then offset=$((offset - 24)); fi
night_tz=${zones[$((offset + 11))]}
night_local=$(TZ=$night_tz date +%H:%M)
minute_ago=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
steps=$(sed -e "s|@NIGHT_TZ@|$night_tz|g" -e "s|@NIGHT_LOCAL@|$night_local|g" -e "s|@A_MINUTE_AGO@|$minute_ago|g" \
            config/demo/messages.json)
soon_local=""  # @SOON_LOCAL@: a wall-clock time in New York 3 seconds after the step that first names it

# jq helpers: a message's decision in one line, and the settled test.
defs='
def last_with(f): [.events[] | select(.detail | f)] | last | .detail;
def skipped: (last_with(has("skipped")) // {}) | .skipped // [] | map("\(.channel): \(.reason)") | join(", ");
def outcome:
  if .state == "delivered" then "delivered via \(.channel)"
  elif .state == "scheduled" and (.events | map(.type) | index("deferred")) then
    "deferred until \(last_with(has("until")).until) by \(last_with(has("rule")).rule)"
  elif .state == "scheduled" then "scheduled for \(.due_at)"
  elif .state == "suppressed" or .state == "failed" then
    "\(.state): \(.last_reason)" + ((last_with(has("rule")) // {}).rule // "" | if . == "" then "" else " (\(.))" end)
  else .state end
  + (skipped | if . == "" then "" else "  [skipped \(.)]" end);
def settled:
  .state as $s | ($s != "scheduled" and $s != "dispatched")
  or ($s == "scheduled" and ((.due_at[0:19] + "Z" | fromdate) + (.due_at[20:23] | tonumber) / 1000 > now));
'

call() {  # METHOD PATH [BODY] -> $code, $json
  local out
  if [ $# -ge 3 ]; then
    out=$(curl -s -w '\n%{http_code}' "${auth[@]}" -X "$1" -H 'Content-Type: application/json' -d "$3" "$base$2")
  else
    out=$(curl -s -w '\n%{http_code}' "${auth[@]}" -X "$1" "$base$2")
  fi
  code=${out##*$'\n'}
  json=${out%$'\n'*}
}

settle() {  # ID -> prints the decision once the dispatcher has made it
  local line
  for ((i = 0; i < 100; i++)); do
    line=$(curl -s "${auth[@]}" "$base/v1/messages/$1" | jq -r "$defs"' if settled then outcome else empty end')
    [ -n "$line" ] && { echo "$line"; return; }
    sleep 0.05
  done
  echo "(still undecided)"
}

ids=() refused=()
while IFS=$'\t' read -r kind arg body; do
  if [[ $arg$body == *@SOON_LOCAL@* ]]; then
    [ -n "$soon_local" ] || soon_local=$(TZ=America/New_York date -d '+3 seconds' +%Y-%m-%dT%H:%M:%S)
    arg=${arg//@SOON_LOCAL@/$soon_local}
    body=${body//@SOON_LOCAL@/$soon_local}
  fi
  case $kind in
  say)
    printf '\n== %s ==\n' "$arg"
    ;;
  message)
    call POST /v1/messages "$body"
    if [ "$code" = 202 ]; then
      status=$(jq -r .status <<<"$json")
      [[ " ${ids[*]} " == *" $arg "* ]] || ids+=("$arg")
      if [ "$status" = accepted ]; then
        printf '  %-14s 202 accepted   -> %s\n' "$arg" "$(settle "$arg")"
      else
        printf '  %-14s 202 %s (state %s): nothing sent again\n' "$arg" "$status" "$(jq -r .state <<<"$json")"
      fi
    else
      refused+=("$arg")
      printf '  %-14s %s %s\n' "$arg" "$code" "$(jq -r '.title + ": " + .detail' <<<"$json")"
      jq -r '.errors[] | "      \(.pointer): \(.detail)"' <<<"$json"
    fi
    ;;
  do)
    read -r method path <<<"$arg"
    if [ "$body" = null ]; then call "$method" "$path"; else call "$method" "$path" "$body"; fi
    printf '  %s %s -> %s\n' "$method" "$path" "$code"
    jq -r '
      if has("decision") then
        "      decision=\(.decision)" + (if .channel then " channel=\(.channel) contact=\(.contact)" else "" end)
          + (if .reason then " reason=\(.reason)" else "" end) + (if .rule then " rule=\(.rule)" else "" end)
          + (if .until then " until=\(.until)" else "" end) + "   (evaluated at \(.evaluated_at))",
        (.skipped // [] | .[] | "      skipped \(.channel): \(.reason)"),
        (.trace[] | "      trace  " + ([.stage, .channel, .result, .rule, (.detail // empty | tojson)] | map(select(. != null)) | join(" "))),
        (.rendered // empty | "      rendered from \(.source):", (.content // {} | to_entries[] | "        \(.key): \(.value | gsub("\n"; "⏎"))"),
                                (.error // empty | "        error: \(.)"))
      elif has("consent") then
        (.consent[] | select(.default | not) | "      now \(.channel)/\(.purpose) = \(.state) (source \(.source), \(.at))")
      elif has("contact") then "      \(.contact) suppressed: \(.reason) (source \(.source))"
      else "      \(tojson)" end' <<<"$json"
    ;;
  esac
done < <(jq -r '.[] | if .say then "say\t\(.say)\t{}" elif .do then "do\t\(.do)\t\(.body // null | tojson)"
                      else "message\t\(.id)\t\(tojson)" end' <<<"$steps")

echo
echo "== waiting for reminder-9009 (due at $soon_local America/New_York) =="
for _ in $(seq 100); do
  [ "$(curl -s "${auth[@]}" "$base/v1/messages/reminder-9009" | jq -r .state)" = delivered ] && break
  sleep 0.1
done

echo
echo "== what happened to each message, and why (timeline times are UTC) =="
for id in "${ids[@]}"; do curl -s "${auth[@]}" "$base/v1/messages/$id"; echo; done | jq -rs "$defs"'
  .[] | "\(.id | . + " " * ([14 - length, 0] | max)) \(.state | . + " " * ([10 - length, 0] | max)) \(outcome)",
        (.events[] | "    \(.at[11:23])  \(.type | . + " " * ([10 - length, 0] | max))  \(.detail | tojson)")'
for id in "${refused[@]}"; do printf '%-14s never stored (refused at intake)\n' "$id"; done

echo
echo "== what the providers received (tayori-sim's record, and the SMTP server's mailbox) =="
curl -s "$STANDINS_SIM_URL/_sim/requests" | jq -r '.[] |
  "  \(.provider | . + " " * ([7 - length, 0] | max)) HTTP/\(.http_version) \(.method) \(.path)",
  (if .provider == "twilio" then (.body | split("&") | map(select(test("^(To|Body|StatusCallback)="))) | "      " + join("&"))
   elif .provider == "oauth" then "      grant_type=jwt-bearer, assertion signed RS256 by the service account"
   else "      " + (.body | .[0:160]) end)'
for f in demo-data/mail/*.msg; do
  [ -e "$f" ] || { echo "  smtp    (no mail yet)"; break; }
  /usr/bin/python3 - "$f" <<'PY'
import email, sys
from email import policy
meta, data = open(sys.argv[1], "rb").read().split(b"\n\n", 1)
m = email.message_from_bytes(data, policy=policy.default)
rcpt = [l[6:] for l in meta.decode().splitlines() if l.startswith("rcpt: ")]
tls = [l[5:] for l in meta.decode().splitlines() if l.startswith("tls: ")]
print(f"  smtp    {','.join(rcpt)} over {tls[0] if tls else '?'}: {m['subject']} ({m.get_content_type()})")
if m["list-unsubscribe"]:
    print(f"      List-Unsubscribe: {m['list-unsubscribe']}  List-Unsubscribe-Post: {m['list-unsubscribe-post']}")
PY
done
