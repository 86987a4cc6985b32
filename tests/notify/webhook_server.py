#!/usr/bin/env python3
"""A real HTTPS server for keywarden-policyd's webhook tests (Python's ssl + http.server).
Listens on 127.0.0.1:PORT with the certificate and key given and records every POST as
DIR/NNNN.json ({"path", "headers" (names in lower case), "body"}; written to a temporary name, then renamed). While
the file DIR/fail exists it answers 500 and records nothing. Prints "ready" once listening."""

import argparse
import itertools
import json
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True)
    a = p.parse_args()
    counter = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if os.path.exists(os.path.join(a.dir, "fail")):
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            n = next(counter)
            record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                      "body": body.decode("utf-8")}
            tmp = os.path.join(a.dir, f".{n:04}.tmp")
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.rename(tmp, os.path.join(a.dir, f"{n:04}.json"))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(a.cert, a.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
