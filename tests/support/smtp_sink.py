"""A real SMTP server on loopback (aiosmtpd) that keeps every message it accepts.

    python3 tests/support/smtp_sink.py OUT.jsonl [--user U --password P]
                                                 [--tls starttls|implicit --cert C --key K]
                                                 [--no-pipelining]

Prints the port it listens on, then appends one JSON line per accepted message
({"mail_from", "rcpt_tos", "data"}) to OUT.jsonl, flushed at once. Recipients whose local
part starts with "bounce" are refused at RCPT with 550; those starting with "tempfail" get a
451 the first time. It offers PIPELINING (RFC 2920; aiosmtpd reads commands in order, so a
pipelined group works) unless --no-pipelining. Stops on SIGTERM or SIGINT.
"""

import argparse
import json
import signal
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out, pipelining):
        self.out = out
        self.pipelining = pipelining
        self.lock = threading.Lock()
        self.tries = {}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 No such user"
        if local.startswith("tempfail"):
            n = self.tries.get(address, 0)
            self.tries[address] = n + 1
            if n == 0:
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        line = json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        })
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()
        return "250 Message accepted"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--tls", choices=["starttls", "implicit"])
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--no-pipelining", action="store_true")
    a = p.parse_args()
    out = open(a.out, "a", encoding="utf-8")
    kwargs = {}
    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    if a.user:
        def check(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == a.user \
                and auth_data.password.decode() == a.password
            return AuthResult(success=ok)
        kwargs = {"authenticator": check, "auth_required": True, "auth_require_tls": False}
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    extra = {}
    if a.tls == "starttls":
        kwargs.update({"tls_context": ctx, "require_starttls": True})
    elif a.tls == "implicit":
        extra["ssl_context"] = ctx
    c = Controller(Sink(out, not a.no_pipelining), hostname="127.0.0.1", port=port, server_kwargs=kwargs, ready_timeout=10, **extra)
    c.start()
    print(port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    c.stop()


if __name__ == "__main__":
    sys.exit(main())
