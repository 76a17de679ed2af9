# tools/lib/standins.sh — the local stand-ins for the real providers, shared by tools/demo.sh and the benches
# (tools/bench/channels.sh, throughput.sh, scale.sh). Source it (`. tools/lib/standins.sh`), then:
#
#   standins_keys DIR                 makes DIR/keys: a test CA (ca.pem) and a 127.0.0.1 certificate signed by it
#                                     (server.pem/.key) for TLS, an RSA service-account key for FCM (fcm.key/.pub),
#                                     an EC .p8 key for APNs (apns.p8/.pub). Made per run and never committed.
#   standins_start DIR SIM_HTTP_PORT SIM_H2_PORT SMTP_PORT [tayori-sim flags...]
#                                     starts tayori-sim (LINE and Twilio over HTTP/1.1 on SIM_HTTP_PORT; FCM, its
#                                     OAuth /token endpoint and APNs over HTTP/2 + TLS on SIM_H2_PORT) and the SMTP
#                                     server (STARTTLS, mail into DIR/mail) on SMTP_PORT; a port of 0 picks a free
#                                     one. Waits until both listen, then writes DIR/keys/service-account.json (its
#                                     token_uri names the H2 port actually bound). Logs: DIR/sim.log, DIR/smtp.log.
#   standins_stop                     stops both (SIGTERM, then waits); safe to call twice or before a start.
#   standins_sms_channel CONCURRENCY  prints a gateway `channels:` entry for SMS to tayori-sim (see below).
#
# After standins_start these are set: STANDINS_SIM_URL (http://127.0.0.1:P), STANDINS_H2_URL
# (https://127.0.0.1:P), STANDINS_SMTP_URL (smtp://127.0.0.1:P), STANDINS_CA_FILE, STANDINS_SIM_PID,
# STANDINS_SMTP_PID, and the secrets the stand-ins accept: STANDINS_LINE_TOKEN and STANDINS_TWILIO_TOKEN
# (taken from the environment when set, else random). The fixed identities below are what a channel config
# must name; config/demo.yaml spells them out literally, so keep the two in step.
#
# Needs openssl, jq, python3 with aiosmtpd (tests/support/smtp_server.py), and the tayori-sim binary:
# STANDINS_SIM_BIN (default build/bin/tayori-sim, relative to the caller's working directory).

STANDINS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STANDINS_FCM_PROJECT=tayori-demo
STANDINS_FCM_CLIENT_EMAIL=tayori-demo@tayori-demo.iam.gserviceaccount.com
STANDINS_APNS_KEY_ID=DEMOKEY123
STANDINS_APNS_TEAM_ID=DEMOTEAM12
STANDINS_APNS_TOPIC=jp.example.tayori
STANDINS_TWILIO_SID=AC0123456789abcdef0123456789abcdef
STANDINS_TWILIO_FROM=+15005550006   # Twilio's test-credential "valid sender" magic number, which tayori-sim honours
STANDINS_SIM_PID=""
STANDINS_SMTP_PID=""
STANDINS_SMTP_FD=""

_standins_random() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
_standins_die() { echo "standins: $*" >&2; return 1; }

standins_keys() {
  local dir=${1:?usage: standins_keys DIR}
  mkdir -p "$dir/keys"
  (
    cd "$dir/keys" || exit 1
    ssl() { openssl "$@" >/dev/null 2>&1 || { echo "standins: openssl $1 failed" >&2; exit 1; }; }
    ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
      -subj '/CN=Tayori demo CA'
    ssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1'
    echo "subjectAltName=IP:127.0.0.1" >san.cnf
    ssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.cnf
    ssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out fcm.key
    ssl pkey -in fcm.key -pubout -out fcm.pub
    ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apns.p8
    ssl pkey -in apns.p8 -pubout -out apns.pub
  )
}

standins_start() {
  local dir=${1:?usage: standins_start DIR SIM_HTTP_PORT SIM_H2_PORT SMTP_PORT [tayori-sim flags...]}
  local http_port=${2:?SIM_HTTP_PORT} h2_port=${3:?SIM_H2_PORT} smtp_port=${4:?SMTP_PORT}
  shift 4
  local sim_bin=${STANDINS_SIM_BIN:-build/bin/tayori-sim} keys=$dir/keys
  [[ -x $sim_bin ]] || { _standins_die "$sim_bin is missing: build the tayori-sim target"; return 1; }
  [[ -f $keys/server.pem && -f $keys/fcm.pub && -f $keys/apns.pub ]] ||
    { _standins_die "no keys in $keys: run standins_keys $dir first"; return 1; }
  export STANDINS_LINE_TOKEN=${STANDINS_LINE_TOKEN:-line-$(_standins_random)}
  export STANDINS_TWILIO_TOKEN=${STANDINS_TWILIO_TOKEN:-twilio-$(_standins_random)}
  mkdir -p "$dir/mail"
  rm -f "$dir/sim.log" "$dir/smtp.log"

  "$sim_bin" --listen "127.0.0.1:$http_port" --listen-h2 "127.0.0.1:$h2_port" \
    --tls-cert "$keys/server.pem" --tls-key "$keys/server.key" \
    --line-token "$STANDINS_LINE_TOKEN" --fcm-public-key "$keys/fcm.pub" \
    --fcm-client-email "$STANDINS_FCM_CLIENT_EMAIL" \
    --apns-public-key "$keys/apns.pub" --apns-key-id "$STANDINS_APNS_KEY_ID" --apns-team-id "$STANDINS_APNS_TEAM_ID" \
    --apns-topic "$STANDINS_APNS_TOPIC" --twilio-account-sid "$STANDINS_TWILIO_SID" \
    --twilio-auth-token "$STANDINS_TWILIO_TOKEN" "$@" >"$dir/sim.log" 2>&1 &
  STANDINS_SIM_PID=$!

  # The SMTP server serves until its stdin reaches end of file. Its stdin is a FIFO whose only writer is this
  # shell, so it also stops when the shell dies without running its traps (no holder process to find and kill).
  local fifo=$dir/smtp.stdin
  rm -f "$fifo" && mkfifo "$fifo"
  /usr/bin/python3 "$STANDINS_ROOT/tests/support/smtp_server.py" --port "$smtp_port" --maildir "$dir/mail" \
    --starttls "$keys/server.pem" "$keys/server.key" <"$fifo" >"$dir/smtp.log" 2>&1 &
  STANDINS_SMTP_PID=$!
  exec {STANDINS_SMTP_FD}>"$fifo"

  local sim_http="" sim_h2="" smtp=""
  for _ in $(seq 100); do
    sim_http=$(sed -n 's|^tayori-sim: listening on \(http://[0-9.]*:[0-9]*\)$|\1|p' "$dir/sim.log" 2>/dev/null)
    sim_h2=$(sed -n 's|^tayori-sim: listening on \(https://[0-9.]*:[0-9]*\) (h2)$|\1|p' "$dir/sim.log" 2>/dev/null)
    smtp=$(grep -m1 -E '^[0-9]+$' "$dir/smtp.log" 2>/dev/null || true)
    [[ -n $sim_http && -n $sim_h2 && -n $smtp ]] && break
    kill -0 "$STANDINS_SIM_PID" 2>/dev/null || { _standins_die "tayori-sim exited: $(tail -n 5 "$dir/sim.log")"; return 1; }
    kill -0 "$STANDINS_SMTP_PID" 2>/dev/null ||
      { _standins_die "the SMTP server exited: $(tail -n 5 "$dir/smtp.log")"; return 1; }
    sleep 0.1
  done
  [[ -n $sim_http && -n $sim_h2 ]] || { _standins_die "tayori-sim did not listen within 10 s (see $dir/sim.log)"; return 1; }
  [[ -n $smtp ]] || { _standins_die "the SMTP server did not listen within 10 s (see $dir/smtp.log)"; return 1; }
  STANDINS_SIM_URL=$sim_http
  STANDINS_H2_URL=$sim_h2
  STANDINS_SMTP_URL=smtp://127.0.0.1:$smtp
  STANDINS_CA_FILE=$keys/ca.pem

  # The service account's token_uri is where the FCM plugin gets its OAuth grant, and the assertion's aud
  # (RFC 7523 §3): it must name the port bound just now, so the file is written only after the start.
  jq -n --rawfile key "$keys/fcm.key" --arg project "$STANDINS_FCM_PROJECT" --arg email "$STANDINS_FCM_CLIENT_EMAIL" \
    --arg uri "$STANDINS_H2_URL/token" '{type: "service_account", project_id: $project, private_key_id: "demo-key-1",
    private_key: $key, client_email: $email, token_uri: $uri}' >"$keys/service-account.json"
}

standins_stop() {
  local pid
  for pid in $STANDINS_SIM_PID $STANDINS_SMTP_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  if [[ -n $STANDINS_SMTP_FD ]]; then exec {STANDINS_SMTP_FD}>&-; STANDINS_SMTP_FD=""; fi
  for pid in $STANDINS_SIM_PID $STANDINS_SMTP_PID; do wait "$pid" 2>/dev/null || true; done
  STANDINS_SIM_PID=""
  STANDINS_SMTP_PID=""
}

# standins_sms_channel CONCURRENCY: a `channels:` entry (YAML, indented for the list) for SMS through the sms_twilio
# plugin to tayori-sim's Twilio endpoint, its auth token read from BENCH_TWILIO_TOKEN; the benches' e2e channel.
standins_sms_channel() {
  cat <<YAML
  - name: sms
    plugin: sms_twilio
    inbound: false
    concurrency: ${1:?usage: standins_sms_channel CONCURRENCY}
    settings:
      base_url: $STANDINS_SIM_URL
      account_sid: $STANDINS_TWILIO_SID
      auth_token_env: BENCH_TWILIO_TOKEN
      from: "$STANDINS_TWILIO_FROM"
YAML
}
