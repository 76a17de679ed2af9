#!/usr/bin/env bash
# The demo: set up, build, start the provider simulator (tayori-sim) and a local SMTP server, start the
# gateway on config/demo.yaml (SQLite, five real channel plugins, a policy and a template), play
# config/demo/messages.json scene by scene, and print what happened to each message and why, then what
# each provider received.
#
# messages.json is a list of steps: {"say": ...} starts a scene, {"do": "METHOD /path", "body": ...} calls
# the API, anything else is a message for POST /v1/messages. After each message the script waits until
# the dispatcher has decided (a final state, or scheduled for later), so every scene sees the one before.
# The two-way scenes add what a recipient does, each through the same door as in production:
#   {"tap": LABEL, "line_user": U...}  taps a quick-reply button of the last LINE message to that user
#                                      (tayori-sim sends LINE's signed postback webhook)
#   {"sms_from": +81..., "text": T}    texts T to our number (tayori-sim sends Twilio's signed webhook)
#   {"click": ADDRESS}                 follows the tracked link in the last e-mail to ADDRESS, as a browser
#   {"unsubscribe": ADDRESS}           the mail client's RFC 8058 one-click POST to that e-mail's
#                                      List-Unsubscribe URL
#   {"show": ID}                       what the recipient's reactions recorded on message ID
# At the end it prints each message's timeline, what each provider received, and the funnel per category.
#
# TAYORI_DEMO_PREPARED=1 skips the setup and the build: the test suite's demo_smoke runs it after both.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TAYORI_DEMO_PREPARED:-}" != 1 ]; then
  bash tools/setup.sh
  bash tools/build.sh --target tayori tayori-sim email_smtp sms_twilio line push_fcm push_apns >/dev/null
fi

. tools/lib/standins.sh
random() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export TAYORI_API_KEY="demo-$(random)" DEMO_LINK_SECRET="$(random)" DEMO_LINE_SECRET="$(random)"
rm -rf demo-data && mkdir -p demo-data

# The stand-ins (tools/lib/standins.sh) on the fixed ports config/demo.yaml names: tayori-sim on 8791 (HTTP/1.1)
# and 8792 (HTTP/2 + TLS), the SMTP server on 8725; keys, logs and the mailbox in demo-data/.
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; standins_stop' EXIT
standins_keys demo-data
# tayori-sim signs the LINE webhooks it sends with the channel secret the line channel verifies them with.
standins_start demo-data 8791 8792 8725 --line-channel-secret "$DEMO_LINE_SECRET"
export DEMO_LINE_TOKEN=$STANDINS_LINE_TOKEN DEMO_TWILIO_TOKEN=$STANDINS_TWILIO_TOKEN
build/bin/tayori check-config config/demo.yaml

# The gateway listens where config/demo.yaml says (server.listen), not on a port picked at random: the links it
# signs (one-click unsubscribe, responses, tracked clicks) and the status callbacks it hands Twilio point at
# server.public_url, and Twilio's signature covers that URL, so both must name the port really bound.
build/bin/tayori serve --config config/demo.yaml >demo-data/stdout.log 2>demo-data/gateway.log &
pid=$!
for _ in $(seq 100); do
  grep -q "listening on" demo-data/stdout.log 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat demo-data/gateway.log; exit 1; }
  sleep 0.1
done
base=$(grep -o 'http://[0-9.:]*' demo-data/stdout.log)
public_url=$(sed -n 's|^ *public_url: *\([^ #]*\).*|\1|p' config/demo.yaml)
if [ "$base" != "$public_url" ]; then
  echo "demo: the gateway listens at $base but its links point at $public_url (server.public_url)" >&2
  exit 1
fi
echo "gateway up at $base (data in demo-data/)"
auth=(-H "Authorization: Bearer $TAYORI_API_KEY")

# Scenes must not depend on when the demo runs, and quiet hours (21:00-08:00 for marketing on sms and line) are
# read in the recipient's zone. So recipients get a real zone where it is a chosen hour right now: one zone
# per UTC offset from -11 to +12, picked by the current UTC hour (summer time moves it an hour at most).
zones=(Pacific/Pago_Pago Pacific/Honolulu America/Anchorage America/Los_Angeles America/Phoenix
       America/Mexico_City America/Bogota America/La_Paz America/Sao_Paulo Atlantic/South_Georgia
       Atlantic/Cape_Verde Atlantic/Reykjavik Africa/Lagos Africa/Johannesburg Africa/Nairobi Asia/Dubai
       Asia/Karachi Asia/Dhaka Asia/Bangkok Asia/Singapore Asia/Tokyo Australia/Brisbane Pacific/Noumea
       Pacific/Auckland)
zone_where_it_is() {  # HOUR -> a zone where the local time is about HOUR:xx now
  local offset=$((($1 - 10#$(date -u +%H) + 48) % 24))
  if ((offset > 12)); then offset=$((offset - 24)); fi
  echo "${zones[$((offset + 11))]}"
}
night_tz=$(zone_where_it_is 1)    # about 01:00: marketing waits for the morning
day_tz=$(zone_where_it_is 14)     # about 14:00: marketing goes at once
night_local=$(TZ=$night_tz date +%H:%M)
day_local=$(TZ=$day_tz date +%H:%M)
# A follow-up waits a duration after the answer (follow_up.after); "remind me later" here means tomorrow
# at 09:00 for a recipient in day_tz, so the option's duration is the time from now until then.
until_morning="$(($(TZ=$day_tz date -d 'tomorrow 09:00' +%s) - $(date +%s)))s"
minute_ago=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
steps=$(sed -e "s|@NIGHT_TZ@|$night_tz|g" -e "s|@NIGHT_LOCAL@|$night_local|g" -e "s|@A_MINUTE_AGO@|$minute_ago|g" \
            -e "s|@DAY_TZ@|$day_tz|g" -e "s|@DAY_LOCAL@|$day_local|g" -e "s|@UNTIL_MORNING@|$until_morning|g" \
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

# What a recipient does. Each goes in through the door it uses in production: a provider's signed webhook
# (sent by tayori-sim, which signs as LINE and Twilio do), or a link in what a provider delivered.

sim_webhook() {  # PROVIDER JSON -> the gateway's HTTP status, as tayori-sim saw it answer the signed webhook
  curl -s -X POST -H 'Content-Type: application/json' -d "$2" "$STANDINS_SIM_URL/_sim/webhooks/$1" |
    jq -r '.status // "no answer"'
}

line_tap() {  # LABEL USER: the LINE user taps the quick-reply button LABEL of the last message pushed to them
  local ref events
  ref=$(curl -s "$STANDINS_SIM_URL/_sim/requests?provider=line" | jq -r --arg user "$2" --arg button "$1" '
    [.[] | .body | fromjson | select(.to == $user)] | last // {} | .messages[0].quickReply.items // []
    | map(.action | select(.label == $button)) | first // {} | .data // empty')
  [ -n "$ref" ] || { echo "  (no quick-reply button 「$1」 in a LINE message to $2)"; return; }
  # The button's postback data is the option's signed ref; LINE posts it back in a postback event.
  events=$(jq -n --arg user "$2" --arg ref "$ref" \
    '[{type: "postback", replyToken: "demo-reply-token", source: {type: "user", userId: $user}, postback: {data: $ref}}]')
  printf '  LINE %s taps 「%s」 -> postback webhook to /inbound/line/line -> %s\n' "$2" "$1" \
    "$(sim_webhook line "$(jq -n --arg url "$base/inbound/line/line" --argjson events "$events" '{url: $url, events: $events}')")"
}

sms_from() {  # PHONE TEXT: the phone texts TEXT to the demo's Twilio number
  local params hex
  hex=$(random)$(random)
  params=$(jq -n --arg from "$1" --arg body "$2" --arg to "$STANDINS_TWILIO_FROM" --arg sid "$STANDINS_TWILIO_SID" \
    --arg message_sid "SM${hex:0:32}" \
    '{From: $from, To: $to, Body: $body, MessageSid: $message_sid, AccountSid: $sid, NumMedia: "0"}')
  # Twilio signs the URL it calls (public_url + path) with the auth token; $base is public_url (checked above).
  printf '  %s texts "%s" -> Twilio webhook to /inbound/sms_twilio/sms -> %s\n' "$1" "$2" \
    "$(sim_webhook twilio "$(jq -n --arg url "$base/inbound/sms_twilio/sms" --argjson params "$params" '{url: $url, params: $params}')")"
}

mail_link() {  # ADDRESS unsubscribe|tracked -> from the last mail the SMTP server took for ADDRESS, its
               # List-Unsubscribe URL, or the first tracked link (public_url/c/...) in its body
  /usr/bin/python3 - "$1" "$2" "$base/c/" demo-data/mail <<'PY'
import email, glob, re, sys
from email import policy
address, what, tracked, maildir = sys.argv[1:]
last = None
for f in sorted(glob.glob(maildir + "/*.msg")):
    meta, data = open(f, "rb").read().split(b"\n\n", 1)
    if f"rcpt: {address}" in meta.decode().splitlines():
        last = email.message_from_bytes(data, policy=policy.default)
if last is None:
    sys.exit(0)
if what == "unsubscribe":
    print((last["list-unsubscribe"] or "").strip("<>"))
else:
    m = re.search(re.escape(tracked) + r'[^\s<>"]+', last.get_body(("plain", "html")).get_content())
    print(m.group(0) if m else "")
PY
}

click() {  # ADDRESS: the recipient opens the last mail to ADDRESS and clicks its tracked link
  local link
  link=$(mail_link "$1" tracked)
  [ -n "$link" ] || { echo "  (no tracked link in a mail to $1)"; return; }
  # With a browser's User-Agent: a fetch by curl (like any script or link scanner) is not counted as a click.
  printf '  %s clicks %s… -> %s\n' "$1" "${link:0:${#base}+16}" "$(curl -s -o /dev/null -w '%{http_code} Location: %{redirect_url}' \
    -A 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148' "$link")"
}

unsubscribe() {  # ADDRESS: the mail client's one-click unsubscribe from the last mail to ADDRESS (RFC 8058 §3.2)
  local url
  url=$(mail_link "$1" unsubscribe)
  [ -n "$url" ] || { echo "  (no List-Unsubscribe in a mail to $1)"; return; }
  printf '  %s: POST %s… List-Unsubscribe=One-Click -> %s\n' "$1" "${url:0:${#base}+16}" \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data 'List-Unsubscribe=One-Click' "$url")"
}

show() {  # ID: the reactions recorded on message ID, one a line; a follow-up with its due time in the recipient's zone
  local message follow_up due tz
  message=$(curl -s "${auth[@]}" "$base/v1/messages/$1")
  jq -r --arg id "$1" '.events[] | .detail as $d | select(.type | IN("responded", "replied", "clicked", "opened",
      "opted_out", "opted_in", "converted", "follow_up_scheduled", "follow_up_cancelled")) |
    "  \($id | . + " " * ([14 - length, 0] | max)) " + (
      if .type == "responded" then "responded \($d.option) on \($d.channel) (\($d.via))"
      elif .type == "clicked" then "clicked link \($d.link) on \($d.channel) -> \($d.url)" + (if $d.first then " (first click)" else "" end)
      elif .type == "opted_out" then "opted_out of \($d.purpose // "every purpose") on \($d.channel) (source \($d.source))"
      elif .type == "converted" then
        "converted: \($d.event) \($d.value // "") (conversion \($d.conversion_id), via \($d.attributed.via) on \($d.attributed.channel))"
      elif .type == "follow_up_scheduled" then "follow-up \($d.follow_up_id) scheduled (option \($d.option))"
      else "\(.type) \($d | tojson)" end)' <<<"$message"
  for follow_up in $(jq -r '.events[] | select(.type == "follow_up_scheduled") | .detail.follow_up_id' <<<"$message"); do
    read -r due tz < <(curl -s "${auth[@]}" "$base/v1/messages/$follow_up" |
      jq -r '"\(.due_at) \(.message.recipient.timezone // "Asia/Tokyo")"')
    printf '  %s  due %s = %s in %s\n' "$follow_up" "$due" "$(TZ=$tz date -d "$due" '+%a %d %b %H:%M')" "$tz"
    [[ " ${ids[*]} " == *" $follow_up "* ]] || ids+=("$follow_up")
  done
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
      elif has("attributed") then
        "      conversion \(.id) (\(.event)) attributed to "
          + if .message_id then "\(.message_id): \(.attributed.via) on \(.attributed.channel) at \(.attributed.at)"
            else "no message (none delivered or clicked in the window): recorded on \(.recipient) alone" end
      elif .duplicate == true then "      \(.id) again: a duplicate, counted once"
      elif has("consent") then
        (.consent[] | select(.default | not) | "      now \(.channel)/\(.purpose) = \(.state) (source \(.source), \(.at))")
      elif has("contact") then "      \(.contact) suppressed: \(.reason) (source \(.source))"
      else "      \(tojson)" end' <<<"$json"
    ;;
  tap) line_tap "$arg" "$body" ;;
  sms) sms_from "$arg" "$body" ;;
  click) click "$arg" ;;
  unsubscribe) unsubscribe "$arg" ;;
  show) show "$arg" ;;
  esac
done < <(jq -r '.[] | if .say then "say\t\(.say)\t{}" elif .do then "do\t\(.do)\t\(.body // null | tojson)"
                      elif .tap then "tap\t\(.tap)\t\(.line_user)" elif .sms_from then "sms\t\(.sms_from)\t\(.text)"
                      elif .click then "click\t\(.click)\t" elif .unsubscribe then "unsubscribe\t\(.unsubscribe)\t"
                      elif .show then "show\t\(.show)\t"
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
   elif .provider == "line" then (.body | fromjson | .messages[0] | "      \(.text)"
     + (.quickReply.items // [] | map(.action.label) | if length > 0 then "  [quick reply: \(join(" / "))]" else "" end))
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

# The funnel per category from the gateway's own counters (GET /v1/stats?by=category), not from the timelines
# above: what an operator's dashboard would show. Clicks count a message's first click only; responded, the
# answers (by option); converted, the conversions attributed to a message of the category.
funnel() {
  echo
  echo "== the funnel per category, last 24 hours (GET /v1/stats?by=category) =="
  call GET '/v1/stats?by=category'
  if [ "$code" != 200 ]; then echo "  GET /v1/stats?by=category -> $code: $json"; return; fi
  jq -r 'def left(n): tostring | . + " " * ([n - length, 0] | max);
         def right(n): tostring | " " * ([n - length, 0] | max) + .;
    "  \("category" | left(12)) \("delivered" | right(9)) → \("clicked" | right(7)) / \("responded" | right(9)) → converted",
    (.groups[] | select(.accepted > 0) |
      "  \(if .key == "" then "(none)" else .key end | left(12)) \(.delivered | right(9)) → \(.clicked | right(7)) / "
      + "\(.responded.total | right(9)) → \(.converted | right(9))"
      + (if .responded.total > 0 then "   answers \(.responded.by_option | to_entries | map("\(.key) \(.value)") | join(", "))" else "" end)
      + (if .converted > 0 then "   value \(.conversion_value)" else "" end))' <<<"$json"
}
funnel

echo
echo "console: $base/console (sign in with the API key $TAYORI_API_KEY)"
if [ "${DEMO_WAIT:-}" = 1 ]; then
  echo "DEMO_WAIT=1: the gateway and the stand-ins stay up until Ctrl-C"
  wait "$pid" || true
else
  echo "(the gateway stops when this script ends; DEMO_WAIT=1 bash tools/demo.sh keeps it up until Ctrl-C)"
fi
