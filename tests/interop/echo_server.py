#!/usr/bin/env python3
"""A TCP server that is not HTTP: echoes each connection's first line (up to 100 bytes) and
closes it. It reads until the newline, since a proxy in between may pass the bytes on in
more than one segment (Purser sends the two it sniffed first).

    echo_server.py --host ADDR --port PORT --log FILE

Prints `READY <port>` once listening; appends one line to FILE per connection, so a test
can tell that a connection never reached it.
"""

import argparse
import socket

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--log", required=True)
args = ap.parse_args()
server = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((args.host, args.port))
server.listen()
print("READY", server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    with open(args.log, "a") as log:
        log.write("connection\n")
    received = b""
    while b"\n" not in received and len(received) < 100:
        chunk = conn.recv(100 - len(received))
        if not chunk:
            break
        received += chunk
    conn.sendall(received)
    conn.close()
