"""TCP connect to every address at once, with one budget (non-blocking sockets + selectors)."""

from __future__ import annotations

import errno
import selectors
import socket
import time
from typing import Dict, List, Sequence, Tuple

from edgecheck.evidence import ConnectAttempt
from edgecheck.model import Reason
from edgecheck.probes.budget import Budget
from edgecheck.probes.classify import describe_errno, reason_for_errno

_IN_PROGRESS = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class _Connects:
    """Non-blocking connects in flight, and what became of each."""

    def __init__(self, port: int, keep_open: bool) -> None:
        self.port, self.keep_open = port, keep_open
        self.start = time.monotonic()
        self.sel = selectors.DefaultSelector()
        self.results: Dict[str, ConnectAttempt] = {}
        self.socks: Dict[str, socket.socket] = {}
        self.pending: Dict[str, socket.socket] = {}

    def _ms(self) -> int:
        return int(round((time.monotonic() - self.start) * 1000))

    def begin(self, addr: str) -> None:
        try:
            sock = socket.socket(_family(addr), socket.SOCK_STREAM)
        except OSError as exc:  # e.g. IPv6 disabled in this kernel
            self.results[addr] = ConnectAttempt(addr, self.port, False, 0, Reason.UNREACHABLE,
                                                describe_errno(exc.errno), exc.errno)
            return
        sock.setblocking(False)
        code = sock.connect_ex((addr, self.port))
        if code in _IN_PROGRESS:
            self.pending[addr] = sock
            self.sel.register(sock, selectors.EVENT_WRITE, addr)
        else:
            self.done(addr, code, sock)

    def done(self, addr: str, code: int, sock: socket.socket) -> None:
        if code == 0:
            self.results[addr] = ConnectAttempt(addr, self.port, True, self._ms())
            if self.keep_open:
                sock.setblocking(True)
                self.socks[addr] = sock
                return
        else:
            self.results[addr] = ConnectAttempt(addr, self.port, False, self._ms(), reason_for_errno(code),
                                                describe_errno(code), code)
        sock.close()

    def wait(self, budget: Budget) -> None:
        while self.pending:
            left = budget.left()
            if left <= 0:
                break
            for key, _ in self.sel.select(left):
                sock = self.pending.pop(key.data)
                self.sel.unregister(sock)
                self.done(key.data, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), sock)
        for addr, sock in self.pending.items():
            self.sel.unregister(sock)
            sock.close()
            self.results[addr] = ConnectAttempt(addr, self.port, False, self._ms(), Reason.TIMEOUT,
                                                "timed out, no answer to the SYN", None)
        self.sel.close()


def connect_all(addresses: Sequence[str], port: int, budget: Budget,
                keep_open: bool = False) -> Tuple[List[ConnectAttempt], Dict[str, socket.socket]]:
    """Connect to every address concurrently; returns attempts in address order.

    With keep_open the connected sockets are returned (caller closes them) so the TLS layer can
    reuse one instead of paying another handshake round trip.
    """
    connects = _Connects(port, keep_open)
    unique = list(dict.fromkeys(addresses))
    for addr in unique:
        connects.begin(addr)
    connects.wait(budget)
    return [connects.results[a] for a in unique], connects.socks
