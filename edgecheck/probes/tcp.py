"""TCP connect to every address at once, with one budget (non-blocking sockets + selectors)."""

from __future__ import annotations

import errno
import selectors
import socket
import time
from typing import Dict, List, Sequence, Tuple

from edgecheck.model import Reason
from edgecheck.probes.budget import Budget
from edgecheck.probes.classify import ConnectAttempt, describe_errno, reason_for_errno


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def connect_all(addresses: Sequence[str], port: int, budget: Budget,
                keep_open: bool = False) -> Tuple[List[ConnectAttempt], Dict[str, socket.socket]]:
    """Connect to every address concurrently; returns attempts in address order.

    With keep_open the connected sockets are returned (caller closes them) so the TLS layer can
    reuse one instead of paying another handshake round trip.
    """
    start = time.monotonic()
    sel = selectors.DefaultSelector()
    results: Dict[str, ConnectAttempt] = {}
    socks: Dict[str, socket.socket] = {}
    pending: Dict[str, socket.socket] = {}

    def done(addr: str, code: int, sock: socket.socket) -> None:
        ms = int(round((time.monotonic() - start) * 1000))
        if code == 0:
            results[addr] = ConnectAttempt(addr, port, True, ms)
            if keep_open:
                socks[addr] = sock
                return
        else:
            results[addr] = ConnectAttempt(addr, port, False, ms, reason_for_errno(code),
                                           describe_errno(code), code)
        sock.close()

    for addr in addresses:
        if addr in results or addr in pending:
            continue
        try:
            sock = socket.socket(_family(addr), socket.SOCK_STREAM)
        except OSError as exc:  # e.g. IPv6 disabled in this kernel
            results[addr] = ConnectAttempt(addr, port, False, 0, Reason.UNREACHABLE,
                                           describe_errno(exc.errno), exc.errno)
            continue
        sock.setblocking(False)
        code = sock.connect_ex((addr, port))
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            pending[addr] = sock
            sel.register(sock, selectors.EVENT_WRITE, addr)
        else:
            done(addr, code, sock)

    while pending:
        left = budget.left()
        if left <= 0:
            break
        for key, _ in sel.select(left):
            addr = key.data
            sock = pending.pop(addr)
            sel.unregister(sock)
            done(addr, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), sock)
    for addr, sock in pending.items():
        sel.unregister(sock)
        sock.close()
        results[addr] = ConnectAttempt(addr, port, False, int(round((time.monotonic() - start) * 1000)),
                                       Reason.TIMEOUT, "timed out, no answer to the SYN", None)
    sel.close()
    ordered = []
    seen = set()
    for addr in addresses:
        if addr not in seen:
            seen.add(addr)
            ordered.append(results[addr])
    for s in socks.values():
        s.setblocking(True)
    return ordered, socks
