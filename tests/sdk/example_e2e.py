#!/usr/bin/env python3
"""example_e2e.py PLUGIN TAYORI PLUGIN_DIR WORK: an out-of-tree plugin delivering end to end.

Starts a local HTTP receiver (real HTTP on 127.0.0.1, a port the kernel picks), then the real gateway binary
TAYORI (`tayori serve`, port 0) with a YAML config in WORK whose `plugin_dirs` is PLUGIN_DIR, the example's
out-of-tree build folder, and one channel of the example pointed at the receiver. It submits messages over the
gateway's HTTP API and checks what the receiver got and what the gateway made of each answer.

  signed_webhook  the receiver verifies every Standard Webhooks signature itself (hmac, a whsec_ secret); a
                  503 with Retry-After: 1, then 200, is retried with the same webhook-id after >= 1 s; a 410
                  fails the message, suppresses the contact, and a later message to it is never sent.
  slack_webhook   the receiver gets the exact JSON body (mention, escaping, blocks) at the webhook's path; a
                  429 with Retry-After is retried; 410 channel_is_archived fails and suppresses the member.
  acme_push       the scaffold of `tayori new-plugin acme_push`, unchanged: delivered with the receiver's
                  X-Message-Id and the bearer token; a 410 fails the message and suppresses the contact.

Standard library only. Every wait has a deadline; nothing sleeps for a fixed time to stand in for an event.
Exit status 0 when every check holds; otherwise 1, with the gateway's log.
"""

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import secrets
import selectors
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

API_KEY = "e2e-" + secrets.token_hex(12)
FINAL_STATES = {"delivered", "failed", "dead", "suppressed", "cancelled"}


class Receiver:
    """An HTTP server on 127.0.0.1:0 that records every POST and answers it with answer(request, earlier)."""

    def __init__(self, answer):
        self.requests = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = {"path": self.path, "at": time.monotonic(), "body": body,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}
                with receiver.lock:
                    earlier = list(receiver.requests)
                    receiver.requests.append(request)
                status, headers, text = answer(request, earlier)
                data = text.encode()
                self.send_response(status)
                for name, value in list(headers.items()) + [("Content-Type", "text/plain"),
                                                            ("Content-Length", str(len(data)))]:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def matching(self, predicate):
        with self.lock:
            return [r for r in self.requests if predicate(r)]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Gateway:
    """`tayori serve` on 127.0.0.1:0 with `yaml`, its base URL read from the line it prints on stdout."""

    def __init__(self, binary, work, yaml, env):
        self.config = os.path.join(work, "gateway.yaml")
        with open(self.config, "w") as f:
            f.write(yaml)
        self.log_path = os.path.join(work, "gateway.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", self.config, "--listen", "127.0.0.1:0", "--data-dir",
             os.path.join(work, "data")],
            stdout=subprocess.PIPE, stderr=self.log, env={**os.environ, "TAYORI_E2E_KEY": API_KEY, **env})
        self.base = self._await_listening(deadline=time.monotonic() + 20)

    def _await_listening(self, deadline):
        marker, seen = "listening on ", b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=deadline - time.monotonic()):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        break  # it exited
                    seen += chunk
                    for line in seen.decode(errors="replace").splitlines(keepends=True):
                        if marker in line and line.endswith("\n"):
                            return line.split(marker, 1)[1].strip()
        raise AssertionError("the gateway did not start:\n" + self.log_text())

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Authorization": "Bearer " + API_KEY,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def submit(self, message):
        status, answer = self.call("POST", "/v1/messages", message)
        check(status == 202, f"POST /v1/messages {message['id']}: {status} {answer}")

    def settled(self, message_id, timeout=30):
        """The message's status once it is final (delivered, failed, ...), polled until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            status, message = self.call("GET", "/v1/messages/" + message_id)
            if status == 200 and message.get("state") in FINAL_STATES:
                return message
            check(time.monotonic() < deadline, f"{message_id} did not settle in {timeout} s: {status} {message}")
            time.sleep(0.05)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def events(message, kind):
    return [e for e in message.get("events", []) if e.get("type") == kind]


def message(id, channel, kind, contact, content, **extra):
    return {"id": id, "recipient": {"id": "r-" + id, "contacts": {kind: contact}}, "purpose": "transactional",
            "category": "order", "channels": [channel], "content": content, **extra}


def expect_suppressed(gw, contact, channel):
    status, suppression = gw.call("GET", "/v1/suppressions/" + contact)
    check(status == 200 and suppression.get("source") == "channel." + channel,
          f"{contact} is not suppressed by channel.{channel}: {status} {suppression}")


@contextlib.contextmanager
def running(binary, plugin_dir, work, answer, channels, env):
    """A receiver answering with `answer`, and the gateway loading plugins from `plugin_dir` with `channels` (the
    YAML of its channel list) and `env`, in both of which {port} is the receiver's port; both stopped on the way
    out."""
    receiver = Receiver(answer)
    gw = None
    try:
        gw = Gateway(binary, work, f"""\
api_keys:
  - name: e2e
    key_env: TAYORI_E2E_KEY
plugin_dirs: [{plugin_dir}]
dispatcher:
  poll_interval: 50ms
channels:
""" + channels.format(port=receiver.port), {k: v.format(port=receiver.port) for k, v in env.items()})
        yield gw, receiver
    finally:
        if gw:
            gw.stop()
        receiver.stop()


# ---- signed_webhook ----------------------------------------------------------------------------------------

def verifies(secret, request):
    """The receiver's side of Standard Webhooks: HMAC-SHA256 over "id.timestamp.body" with the base64-decoded
    whsec_ key, compared in constant time with each space-separated v1 signature."""
    h = request["headers"]
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request["body"]
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(s.startswith("v1,") and hmac.compare_digest(s[3:], expected) for s in h["webhook-signature"].split())


def run_signed_webhook(binary, plugin_dir, work):
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

    def answer(request, earlier):
        contact = json.loads(request["body"])["contact"]
        if contact == "sub_gone":
            return 410, {}, "unsubscribed"
        seen_before = any(json.loads(r["body"])["contact"] == contact for r in earlier)
        if contact == "sub_flaky" and not seen_before:
            return 503, {"Retry-After": "1"}, "busy"
        return 200, {}, ""

    with running(binary, plugin_dir, work, answer, """\
  - name: hooks
    plugin: signed_webhook
    settings:
      url: http://127.0.0.1:{port}/tayori/hooks
      secret_env: E2E_WEBHOOK_SECRET
    retry: {{base: 100ms, max_attempts: 3}}
""", {"E2E_WEBHOOK_SECRET": secret}) as (gw, receiver):

        # 503 + Retry-After: 1, then 200: delivered on the second attempt, the same webhook-id on both.
        gw.submit(message("e2e-flaky", "hooks", "webhook", "sub_flaky",
                          {"subject": "Your order", "text": "Shipped \"today\""}, metadata={"order_id": "0001"}))
        flaky = gw.settled("e2e-flaky")
        check(flaky["state"] == "delivered", f"e2e-flaky: {flaky}")
        got = receiver.matching(lambda r: json.loads(r["body"])["contact"] == "sub_flaky")
        check(len(got) == 2, f"sub_flaky: {len(got)} requests, expected 503 then 200")
        for r in got:
            h = r["headers"]
            check(r["path"] == "/tayori/hooks", f"path {r['path']}")
            check(h.get("content-type") == "application/json", f"content-type {h.get('content-type')}")
            check(verifies(secret, r), f"the signature does not verify: {h}")
            check(abs(int(h["webhook-timestamp"]) - time.time()) < 120, f"webhook-timestamp {h['webhook-timestamp']}")
        check(got[0]["headers"]["webhook-id"] == got[1]["headers"]["webhook-id"], "the retry changed webhook-id")
        check(got[1]["at"] - got[0]["at"] >= 0.95, f"retried {got[1]['at'] - got[0]['at']:.2f} s after a Retry-After: 1")
        body = json.loads(got[1]["body"])
        check(body == {"type": "tayori.message", "message_id": "e2e-flaky", "recipient_id": "r-e2e-flaky",
                       "contact": "sub_flaky", "category": "order", "purpose": "transactional",
                       "content": {"subject": "Your order", "text": "Shipped \"today\""},
                       "metadata": {"order_id": "0001"}}, f"body {body}")
        check([e["detail"].get("provider_message_id") for e in events(flaky, "delivered")] ==
              [got[1]["headers"]["webhook-id"]], f"delivered events {events(flaky, 'delivered')}")

        # 410: failed, the contact suppressed, and the next message to it never reaches the receiver.
        gw.submit(message("e2e-gone", "hooks", "webhook", "sub_gone", {"text": "Are you there?"}))
        gone = gw.settled("e2e-gone")
        check(gone["state"] == "failed" and gone["last_reason"] == "webhook.http_410", f"e2e-gone: {gone}")
        check(len(events(gone, "contact_deactivated")) == 1, f"e2e-gone events: {gone['events']}")
        expect_suppressed(gw, "sub_gone", "hooks")
        gw.submit(message("e2e-gone-again", "hooks", "webhook", "sub_gone", {"text": "Still there?"}))
        again = gw.settled("e2e-gone-again")
        skipped = [s for e in events(again, "suppressed") for s in e["detail"].get("skipped", [])]
        check(again["state"] == "suppressed" and [s["reason"] for s in skipped] == ["suppressed_contact"],
              f"e2e-gone-again: {again}")
        sent_to_gone = receiver.matching(lambda r: json.loads(r["body"])["contact"] == "sub_gone")
        check(len(sent_to_gone) == 1, f"sub_gone was sent {len(sent_to_gone)} requests after its 410")


# ---- slack_webhook -----------------------------------------------------------------------------------------

def run_slack_webhook(binary, plugin_dir, work):
    path = "/services/T000E2E/B000E2E/" + secrets.token_hex(12)

    def answer(request, earlier):
        text = json.loads(request["body"])["text"]
        if text.startswith("<@U0ARCHIVED>"):
            return 410, {}, "channel_is_archived"
        if text.startswith("<@U0BUSY>") and not any(json.loads(r["body"])["text"] == text for r in earlier):
            return 429, {"Retry-After": "1"}, "rate_limited"
        return 200, {}, "ok"

    with running(binary, plugin_dir, work, answer, """\
  - name: slack
    plugin: slack_webhook
    rate_limit: 1/s
    settings:
      webhook_url_env: E2E_SLACK_WEBHOOK_URL
    retry: {{base: 100ms, max_attempts: 3}}
""", {"E2E_SLACK_WEBHOOK_URL": "http://127.0.0.1:{port}" + path}) as (gw, receiver):

        gw.submit(message("e2e-deploy", "slack", "slack", "U0E2E0001",
                          {"title": "Deploys", "text": "Deploy <42> & *done*"}))
        deploy = gw.settled("e2e-deploy")
        check(deploy["state"] == "delivered", f"e2e-deploy: {deploy}")
        got = receiver.matching(lambda r: "U0E2E0001" in r["body"].decode())
        check(len(got) == 1, f"U0E2E0001: {len(got)} requests")
        check(got[0]["path"] == path, f"path {got[0]['path']}")
        check(got[0]["headers"].get("content-type") == "application/json; charset=utf-8", f"{got[0]['headers']}")
        text = "<@U0E2E0001> Deploy &lt;42&gt; &amp; *done*"
        body = json.loads(got[0]["body"])
        check(body == {"text": text, "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Deploys"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}]}, f"body {body}")

        # 429 with Retry-After: 1, then ok.
        gw.submit(message("e2e-busy", "slack", "slack", "U0BUSY", {"text": "Build green"}))
        busy = gw.settled("e2e-busy")
        check(busy["state"] == "delivered", f"e2e-busy: {busy}")
        tries = receiver.matching(lambda r: "U0BUSY" in r["body"].decode())
        check(len(tries) == 2 and tries[1]["at"] - tries[0]["at"] >= 0.95, f"U0BUSY: {len(tries)} requests")

        # 410 channel_is_archived: failed, and the member suppressed.
        gw.submit(message("e2e-archived", "slack", "slack", "U0ARCHIVED", {"text": "Anyone?"}))
        archived = gw.settled("e2e-archived")
        check(archived["state"] == "failed" and archived["last_reason"] == "slack.channel_is_archived",
              f"e2e-archived: {archived}")
        expect_suppressed(gw, "U0ARCHIVED", "slack")


# ---- the scaffold, as `tayori new-plugin acme_push` writes it ---------------------------------------------

def run_acme_push(binary, plugin_dir, work):
    """The walkthrough's step 6 (docs/plugin-author-guide.md) with the scaffold unchanged: delivered with the
    provider's X-Message-Id, and a 410 fails the message and suppresses the contact."""

    def answer(request, earlier):
        if json.loads(request["body"])["to"] == "+819000000410":
            return 410, {}, "gone"
        return 202, {"X-Message-Id": "acme-" + str(len(earlier) + 1)}, ""

    with running(binary, plugin_dir, work, answer, """\
  - name: acme
    plugin: acme_push
    contact: phone
    settings:
      url: http://127.0.0.1:{port}/v1/messages
      token_env: E2E_ACME_TOKEN
""", {"E2E_ACME_TOKEN": "tok-e2e"}) as (gw, receiver):
        gw.submit(message("e2e-hello", "acme", "phone", "+819012345678", {"text": "こんにちは"}))
        hello = gw.settled("e2e-hello")
        check(hello["state"] == "delivered", f"e2e-hello: {hello}")
        check([e["detail"].get("provider_message_id") for e in events(hello, "delivered")] == ["acme-1"],
              f"delivered events {events(hello, 'delivered')}")
        got = receiver.matching(lambda r: True)
        check(len(got) == 1 and got[0]["path"] == "/v1/messages", f"{len(got)} requests")
        check(got[0]["headers"].get("authorization") == "Bearer tok-e2e", f"headers {got[0]['headers']}")
        check(json.loads(got[0]["body"]) == {"to": "+819012345678", "text": "こんにちは", "message_id": "e2e-hello"},
              f"body {got[0]['body']}")

        gw.submit(message("e2e-gone", "acme", "phone", "+819000000410", {"text": "Are you there?"}))
        gone = gw.settled("e2e-gone")
        check(gone["state"] == "failed" and gone["last_reason"] == "acme_push.http_410", f"e2e-gone: {gone}")
        expect_suppressed(gw, "+819000000410", "acme")


SCENARIOS = {"signed_webhook": run_signed_webhook, "slack_webhook": run_slack_webhook, "acme_push": run_acme_push}


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in SCENARIOS:
        sys.exit(__doc__)
    example, binary, plugin_dir, work = sys.argv[1:]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    check(os.path.isfile(os.path.join(plugin_dir, example + ".so")), f"no {example}.so in {plugin_dir}")
    started = time.monotonic()
    try:
        SCENARIOS[example](binary, plugin_dir, work)
    except AssertionError as e:
        print(f"example_e2e {example}: FAILED: {e}", file=sys.stderr)
        log = os.path.join(work, "gateway.log")
        if os.path.exists(log):
            with open(log) as f:
                print("---- gateway log (" + log + ")\n" + f.read()[-8000:], file=sys.stderr)
        sys.exit(1)
    print(f"example_e2e {example}: OK in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
