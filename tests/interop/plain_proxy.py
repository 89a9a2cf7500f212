#!/usr/bin/env python3
"""Minimal x402-unaware forward proxy (stdlib only) — a control for interop tests.

Handles absolute-form HTTP requests (GET http://host/... via HTTP_PROXY) and
CONNECT tunnels (HTTPS_PROXY). Every request is forwarded unchanged except for
hop-by-hop headers; one JSON line per proxied request goes to --log FILE (or
stderr) with method, url, status and which x402 headers were seen, so a test
can compare "dumb proxy" behaviour with Purser's. Not for production.

  plain_proxy.py --port 0 [--log FILE]     prints "READY <port>"
"""

import argparse
import http.client
import json
import select
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authorization",
       "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"}
X402 = ("payment-signature", "x-payment", "payment-required", "payment-response",
        "x-payment-response")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_lock = threading.Lock()
    log_path = None

    def log_message(self, fmt, *a):  # silence default access log
        pass

    def _log(self, rec):
        line = json.dumps(rec) + "\n"
        with self.log_lock:
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(line)
            else:
                sys.stderr.write(line)

    def do_CONNECT(self):  # noqa: N802
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError as e:
            self.send_error(502, str(e))
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self._log({"ts": time.time(), "method": "CONNECT", "url": self.path, "status": 200})
        conns = [self.connection, upstream]
        try:
            while True:
                r, _, x = select.select(conns, [], conns, 60)
                if x or not r:
                    break
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True

    def _forward(self):
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self.send_error(400, "absolute http:// URL required")
            return
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        try:
            conn.request(self.command, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            self.send_error(502, str(e))
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        seen = {h: True for h in X402 if self.headers.get(h)}
        seen.update({h: True for h in X402 if resp.getheader(h)})
        self._log({"ts": time.time(), "method": self.command, "url": self.path,
                   "status": resp.status, "x402_headers": sorted(seen)})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    Handler.log_path = args.log
    ThreadingHTTPServer.daemon_threads = True
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"READY {httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
