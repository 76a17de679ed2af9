#!/usr/bin/env python3
"""A real SMTP server (Debian's python3-aiosmtpd) for testing the transport's SMTP submission.

Listens on 127.0.0.1 on a free port (bound to port 0 by the kernel, so tests never collide), prints the
port number and a newline on stdout once it accepts connections, and serves until SIGTERM/SIGINT or until
its stdin reaches end of file -- so a test process that dies without cleaning up does not leave it behind.

Options:
  --starttls CERT KEY      offer STARTTLS (RFC 3207) and refuse mail until the client has used it
  --implicit-tls CERT KEY  TLS from the first byte (smtps, RFC 8314 §3.3)
  --auth USER:PASS         require SMTP AUTH (RFC 4954; PLAIN and LOGIN) with these credentials. With
                           --starttls AUTH is offered only after STARTTLS, as a real submission server does
  --reject-rcpt ADDR:CODE  answer RCPT TO:<ADDR> with CODE (550 -> "550 5.1.1 ... user unknown",
                           451 -> "451 4.3.0 ... try again later", other codes a generic text); repeatable
  --reject-data CODE       answer the end of DATA with CODE (554 -> "554 5.7.1 Message rejected as spam")
                           instead of accepting the message
  --port N                 listen on port N instead of a free one (the demo uses a fixed port)
  --maildir DIR            write each accepted message to DIR/NNNNNN.msg (renamed into place when complete):
                             from: <envelope sender>
                             rcpt: <recipient>            (one line per accepted recipient)
                             ehlo: <the domain the client gave in EHLO>
                             auth: <user>                 (only when the session authenticated)
                             tls: starttls|implicit|none
                             <empty line>
                             <the DATA bytes exactly as received, dot-stuffing removed, CRLF kept>
"""

import argparse
import asyncio
import os
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

REJECT_TEXT = {
    550: "5.1.1 <{addr}>: Recipient address rejected: user unknown",
    451: "4.3.0 <{addr}>: Temporary failure, try again later",
    554: "5.7.1 Message rejected as spam",
}


class Recorder:
    """The aiosmtpd handler: refuses the configured recipients and stores each accepted message."""

    def __init__(self, rejects, reject_data, maildir):
        self.rejects = rejects
        self.reject_data = reject_data
        self.maildir = maildir
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.rejects.get(address.lower())
        if code is not None:
            text = REJECT_TEXT.get(code, f"{code // 100}.0.0 <{{addr}}>: rejected").format(addr=address)
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.reject_data:
            code = self.reject_data
            return f"{code} " + REJECT_TEXT.get(code, f"{code // 100}.0.0 rejected")
        self.count += 1
        if self.maildir:
            if server.transport.get_extra_info("ssl_object") is None:
                tls = "none"
            else:
                tls = "starttls" if server._tls_protocol is not None else "implicit"
            head = f"from: {envelope.mail_from}\n"
            head += "".join(f"rcpt: {r}\n" for r in envelope.rcpt_tos)
            head += f"ehlo: {session.host_name}\n"
            if session.authenticated:
                head += f"auth: {session.auth_data.login.decode()}\n"
            head += f"tls: {tls}\n\n"
            final = os.path.join(self.maildir, f"{self.count:06d}.msg")
            with open(final + ".tmp", "wb") as f:
                f.write(head.encode() + envelope.original_content)
            os.rename(final + ".tmp", final)
        return f"250 2.0.0 Ok: queued as T{self.count:06d}"


def tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    # aiosmtpd 1.4 sets its own deprecated Session.login_data on every AUTH and warns about it.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    tls.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--reject-rcpt", action="append", default=[], metavar="ADDR:CODE")
    p.add_argument("--reject-data", type=int, metavar="CODE")
    p.add_argument("--maildir", metavar="DIR")
    p.add_argument("--port", type=int, default=0, help="listen on this port (default 0: a free one)")
    args = p.parse_args()

    rejects = {}
    for item in args.reject_rcpt:
        addr, _, code = item.rpartition(":")
        rejects[addr.lower()] = int(code)

    smtp_kwargs = {"hostname": "smtp.test", "enable_SMTPUTF8": True}
    if args.starttls:
        smtp_kwargs.update(tls_context=tls_context(*args.starttls), require_starttls=True)
    if args.auth:
        user, _, password = args.auth.partition(":")

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
                  and auth_data.password == password.encode())
            # handled=False: let aiosmtpd send its "535 5.7.8" rather than leave the client waiting.
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        # aiosmtpd counts only STARTTLS as "TLS": insist on it there; on implicit TLS the whole
        # connection is already encrypted, and on a plaintext server there is nothing to insist on.
        smtp_kwargs.update(authenticator=authenticator, auth_required=True,
                           auth_require_tls=bool(args.starttls))
    handler = Recorder(rejects, args.reject_data, args.maildir)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(handler, loop=loop, **smtp_kwargs), host="127.0.0.1", port=args.port,
        ssl=tls_context(*args.implicit_tls) if args.implicit_tls else None))

    def on_stdin():
        if not os.read(sys.stdin.fileno(), 4096):
            loop.stop()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    print(server.sockets[0].getsockname()[1], flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
