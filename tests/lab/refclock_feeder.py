"""Feed a chronyd SOCK reference clock with samples that say "true time is OFFSET seconds ahead".

A chronyd started with -x (no control of the system clock) tracks that offset itself and serves
the skewed time over NTP, so the lab has a real NTP server whose time is wrong without touching
the host clock.

    python3 refclock_feeder.py SOCKET_PATH OFFSET_SECONDS
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
import time

SOCK_MAGIC = 0x534F434B  # chrony refclock_sock.c: struct sock_sample.magic


def sample(offset: float) -> bytes:
    # struct sock_sample { struct timeval tv; double offset; int pulse; int leap; int _pad; int magic; }
    # offset = reference time - system time at tv.
    now = time.time()
    sec = int(now)
    return struct.pack("=qqdiiii", sec, int((now - sec) * 1e6), offset, 0, 0, 0, SOCK_MAGIC)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    path, offset = sys.argv[1], float(sys.argv[2])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    while True:
        try:
            sock.sendto(sample(offset), path)
        except OSError:
            pass  # chronyd not up yet (or restarting): keep trying
        time.sleep(0.25)


if __name__ == "__main__":
    main()
