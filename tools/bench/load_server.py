#!/usr/bin/env python3
"""A stand-in for POST /v1/messages that tools/bench/load_test.sh points tayori_load at.

usage: load_server.py MODE PORT_FILE LOG_FILE
  ok     answers every request 202 as the gateway does ({"status":"accepted"} for one message,
         {"accepted": N} for a batch), and closes the connection after every fifth answer ("Connection: close").
  mixed  request k (counted from 0) by k % 4: 0 answered 202, 1 answered 503, 2 closed without an answer,
         3 never answered.
  slow   as ok, but each answer 50 ms after its request, and no connection closed.
Writes its port to PORT_FILE once it listens, and one line per request to LOG_FILE: the Authorization header,
then each message id of the body (which must be JSON).
"""
import json
import os
import socket
import sys
import threading

mode, port_file, log_file = sys.argv[1:4]
count = 0
lock = threading.Lock()
log = open(log_file, "a", buffering=1)


def read_request(conn, buffered):
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffered += chunk
    head, rest = buffered.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return (lines[0], headers, rest[:length]), rest[length:]


def serve(conn):
    global count
    buffered = b""
    while True:
        request, buffered = read_request(conn, buffered)
        if request is None:
            break
        line, headers, body = request
        doc = json.loads(body)
        messages = doc["messages"] if "messages" in doc else [doc]
        with lock:
            k = count
            count += 1
            log.write(" ".join([line, headers.get("authorization", "-")] + [m["id"] for m in messages]) + "\n")
        kind = k % 4 if mode == "mixed" else 0
        if mode == "slow":
            threading.Event().wait(0.05)
        if kind == 2:
            break
        if kind == 3:
            threading.Event().wait(5)
            break
        close = mode == "ok" and k % 5 == 4
        status = "503 Service Unavailable" if kind == 1 else "202 Accepted"
        answer = json.dumps({"accepted": len(messages)} if "messages" in doc else {"status": "accepted"},
                            separators=(",", ":")).encode()  # the gateway writes compact JSON
        conn.sendall(
            ("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
             % (status, len(answer), "Connection: close\r\n" if close else "")).encode() + answer)
        if close:
            break
    conn.close()


listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
with open(port_file + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
