"""TCP accept-and-close and UDP echo on many ports, one process: `python3 echo.py tcp:PORT udp:PORT ...`.

The kernel oracle needs an answer for every allowed packet: a completed TCP handshake, or a UDP
reply. Runs until SIGTERM; prints "ready" once every socket is bound.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sel = selectors.DefaultSelector()
    for spec in sys.argv[1:]:
        proto, port = spec.split(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        if proto == "tcp":
            s.listen(64)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, proto)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            try:
                if key.data == "tcp":
                    c, _ = s.accept()
                    c.close()
                else:
                    data, peer = s.recvfrom(2048)
                    s.sendto(data, peer)
            except OSError:
                pass


if __name__ == "__main__":
    main()
