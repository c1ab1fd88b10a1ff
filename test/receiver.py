#!/usr/bin/python3
"""A scriptable webhook receiver for the konvox_webhooks tests.

Binds 127.0.0.1 on an ephemeral port, writes the port to --port-file once it
listens, and appends one JSON line per request to --log:

    {"t": arrival (unix seconds), "method", "path", "query",
     "headers": {lower-case name: value}, "body_b64", "status"}

How it answers is scripted by the query string of the URL the endpoint was
registered with, so every endpoint of a test can behave differently:

    status=N       answer N (default 200)
    fail_first=K   answer 500 to the first K requests to this path, then status
    delay_ms=N     wait N ms before answering
    body_bytes=N   answer with a body of N bytes
    body_hex=HEX   answer with a body of these bytes (e.g. ff00 for bytes
                   that are not UTF-8 text)
    reset=1        close the connection without answering
    location=URL   send a Location header with the answer (e.g. with
                   status=302, to show that a redirect is not followed)
    retry_after=V  send a Retry-After header with the answer (seconds or an
                   HTTP date; with status=429 or 503)
    close=1        answer with Connection: close and close the connection,
                   as a server without keep-alive does

A POST to /_control/<path>?status=... replaces the script of <path>, e.g. to
make a failing receiver recover.

GET /_stats answers a JSON object about the requests so far (not counting
/_control and /_stats themselves):

    {"requests": POSTs received, "in_flight": POSTs being handled now,
     "max_in_flight": most POSTs handled at once,
     "connections": connections open now,
     "max_connections": most connections open at once}

GET /_stats?reset=1 answers the same and then starts the maxima again from
the current values.  GET /_stats?path=/p answers the requests, in_flight and
max_in_flight of path /p alone (with reset=1, then starts its maximum again).

--port N binds that port instead of an ephemeral one, so that a test can
start a receiver where one was down.

--tls-cert FILE --tls-key FILE serve HTTPS instead, with that certificate
(PEM, the chain after it) and key.  Each logged request then has
"tls": {"version", "resumed"} (null over plain HTTP).

/_stats also counts connections, not counting those that carried a
/_stats or /_control request:

    {"accepted": TCP connections accepted,
     "handshakes": TLS handshakes completed,
     "resumed": those of them that resumed an earlier TLS session,
     "tls_failures": handshakes that failed (the client refused the
                     certificate, or spoke no TLS)}
"""

import argparse
import base64
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

lock = threading.Lock()
stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0,
         "connections": 0, "max_connections": 0,
         "accepted": 0, "handshakes": 0, "resumed": 0, "tls_failures": 0}
counts = {}
paths = {}


def path_stats(path):
    """The counters of one path; the caller holds lock."""
    return paths.setdefault(path, {"requests": 0, "in_flight": 0,
                                   "max_in_flight": 0})


overrides = {}
log_file = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: the status line, headers and body go out in separate
    # writes, and with Nagle's algorithm each answer on a kept-alive
    # connection would wait ~40 ms for the client's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        with lock:
            stats["connections"] += 1
            stats["max_connections"] = max(stats["max_connections"],
                                           stats["connections"])

    def finish(self):
        with lock:
            stats["connections"] -= 1
        super().finish()

    def uncount(self):
        """Leave this connection, which serves the test itself, out of the
        connection counters of /_stats."""
        if getattr(self, "uncounted", False):
            return
        self.uncounted = True
        tls = self.tls_info()
        with lock:
            stats["accepted"] -= 1
            if tls is not None:
                stats["handshakes"] -= 1
                stats["resumed"] -= int(tls["resumed"])

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/_stats":
            self.uncount()
            query = parse_qs(url.query)
            with lock:
                if "path" in query:
                    one = path_stats(query["path"][0])
                    body = json.dumps(one).encode()
                    if query.get("reset"):
                        one["max_in_flight"] = one["in_flight"]
                else:
                    body = json.dumps(stats).encode()
                    if query.get("reset"):
                        stats["max_in_flight"] = stats["in_flight"]
                        stats["max_connections"] = stats["connections"]
            self.answer(200, body)
            return
        self.answer(200, b"ok")

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path.startswith("/_control/"):
            self.uncount()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            target = url.path[len("/_control"):]
            with lock:
                overrides[target] = parse_qs(url.query)
            self.answer(200, b"ok")
            return

        with lock:
            for s in (stats, path_stats(url.path)):
                s["requests"] += 1
                s["in_flight"] += 1
                s["max_in_flight"] = max(s["max_in_flight"], s["in_flight"])
        self.counted = url.path
        try:
            self.handle_post(url)
        finally:
            self.done_with_request()

    def done_with_request(self):
        """The request is no longer in flight: called before its answer
        goes out, so that the client, which sends its next request only
        after the answer, cannot be counted twice."""
        if self.counted is None:
            return
        with lock:
            stats["in_flight"] -= 1
            path_stats(self.counted)["in_flight"] -= 1
        self.counted = None

    def handle_post(self, url):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""

        with lock:
            script = overrides.get(url.path) or parse_qs(url.query)
            counts[url.path] = counts.get(url.path, 0) + 1
            nth = counts[url.path]

        def opt(name, default=0):
            return int(script.get(name, [default])[0])

        status = opt("status", 200)
        if nth <= opt("fail_first"):
            status = 500
        if opt("reset"):
            status = 0

        record = {
            "t": time.time(),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_b64": base64.b64encode(body).decode(),
            "status": status,
            "tls": self.tls_info(),
        }
        with lock:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

        if opt("delay_ms"):
            time.sleep(opt("delay_ms") / 1000.0)
        self.done_with_request()
        if status == 0:
            # an abrupt close: RST instead of a response
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        extra = {}
        if "location" in script:
            extra["Location"] = script["location"][0]
        if "retry_after" in script:
            extra["Retry-After"] = script["retry_after"][0]
        if opt("close"):
            extra["Connection"] = "close"
            self.close_connection = True
        if "body_hex" in script:
            answer = bytes.fromhex(script["body_hex"][0])
        else:
            answer = b"x" * opt("body_bytes") or b"ok"
        self.answer(status, answer, extra)

    def tls_info(self):
        """The TLS version and resumption of this connection, or None."""
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        return {"version": self.connection.version(),
                "resumed": self.connection.session_reused}

    def answer(self, status, body, extra_headers=None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    tls = None  # an ssl.SSLContext when serving HTTPS

    def finish_request(self, request, client_address):
        """Count the connection and, over HTTPS, do the TLS handshake here,
        in the connection's own thread, before handling its requests."""
        with lock:
            stats["accepted"] += 1
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with lock:
                stats["tls_failures"] += 1
            return
        with lock:
            stats["handshakes"] += 1
            stats["resumed"] += int(conn.session_reused)
        try:
            super().finish_request(conn, client_address)
        finally:
            # close as TLS servers do, with a close_notify: a client that
            # reads the end of the stream without one may treat it as an
            # error (OpenSSL 3 does) and drop the TLS session
            try:
                conn.settimeout(1)
                conn.unwrap()
            except (ssl.SSLError, OSError):
                pass
            self.shutdown_request(conn)


def main():
    global log_file
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()

    log_file = open(args.log, "a", buffering=1)
    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.tls.load_cert_chain(args.tls_cert, args.tls_key)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
