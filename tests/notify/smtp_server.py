#!/usr/bin/env python3
"""A real SMTP server for keywarden-policyd's notification tests (aiosmtpd, Debian's
python3-aiosmtpd). Listens on 127.0.0.1:PORT with STARTTLS required (--mode starttls) or TLS from
the first byte (--mode tls), using the certificate and key given, and requires AUTH (PLAIN or
LOGIN) with --user and --password. Every message received is
written to DIR as NNNN.eml (written to a temporary name, then renamed). Recipients
refused@... are refused (550). Prints "ready" on stdout
once it accepts connections; runs until killed."""

import argparse
import itertools
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Saver:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refused@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        tmp = os.path.join(self.directory, f".{n:04}.tmp")
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.directory, f"{n:04}.eml"))
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--mode", choices=["starttls", "tls"], default="starttls")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    a = p.parse_args()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == a.user.encode()
              and auth_data.password == a.password.encode())
        return AuthResult(success=ok)

    auth = dict(authenticator=authenticator, auth_required=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(a.cert, a.key)
    handler = Saver(a.dir)
    if a.mode == "starttls":
        controller = Controller(handler, hostname="127.0.0.1", port=a.port,
                                tls_context=context, require_starttls=True,
                                server_hostname="localhost", **auth)
    else:
        controller = Controller(handler, hostname="127.0.0.1", port=a.port,
                                ssl_context=context, server_hostname="localhost",
                                auth_require_tls=False, **auth)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
