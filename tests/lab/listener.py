"""Minimal TCP/UDP listeners, one process for many ports (Raven 10280-10284, tunnel server
10262/10263 in the cloud; kubelet/node-exporter/flannel ports on the node).

    python3 listener.py tcp:ADDR:PORT [udp:ADDR:PORT ...]

TCP connections are accepted and closed; UDP datagrams are read and ignored. Runs until SIGTERM.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys
from typing import List


def open_sockets(specs: List[str]) -> List[socket.socket]:
    socks = []
    for spec in specs:
        proto, addr, port = spec.split(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        if proto == "tcp":
            s.listen(64)
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
                if sock.type == socket.SOCK_STREAM:
                    conn, _peer = sock.accept()
                    conn.close()
                else:
                    sock.recv(4096)
            except OSError:
                pass


if __name__ == "__main__":
    main()
