"""Minimal TCP/UDP listeners, one process for many ports (Raven 10280-10284, tunnel server
10262/10263 in the cloud; kubelet/node-exporter/flannel ports on the node).

    python3 listener.py tcp:ADDR:PORT [udp:ADDR:PORT ...] [tls-mute:ADDR:PORT:CERT:KEY ...]

TCP connections are accepted and closed; UDP datagrams are read and ignored. A tls-mute port
completes the TLS handshake and then never says a word (an upstream that hangs after TLS).
Runs until SIGTERM.
"""

from __future__ import annotations

import selectors
import signal
import socket
import ssl
import sys
import threading
from typing import Dict, List

MUTE: Dict[socket.socket, ssl.SSLContext] = {}


def _mute(conn: socket.socket, context: ssl.SSLContext) -> None:
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            while tls.recv(4096):
                pass  # read the request, never answer it
    except (OSError, ssl.SSLError):
        pass


def open_sockets(specs: List[str]) -> List[socket.socket]:
    socks = []
    for spec in specs:
        proto, addr, port, *pem = spec.split(":")
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        if proto != "udp":
            s.listen(64)
        if proto == "tls-mute":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pem[0], pem[1])
            MUTE[s] = context
        s.setblocking(False)
        socks.append(s)
    return socks


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sel = selectors.DefaultSelector()
    for s in open_sockets(sys.argv[1:]):
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            try:
                if sock in MUTE:
                    conn, _peer = sock.accept()
                    conn.setblocking(True)
                    threading.Thread(target=_mute, args=(conn, MUTE[sock]), daemon=True).start()
                elif sock.type == socket.SOCK_STREAM:
                    conn, _peer = sock.accept()
                    conn.close()
                else:
                    sock.recv(4096)
            except OSError:
                pass


if __name__ == "__main__":
    main()
