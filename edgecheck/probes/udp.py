"""A connected UDP exchange: send, resend, wait for an answer, see ICMP errors as errno.

A connected socket is what makes "refused" (ICMP port unreachable -> ECONNREFUSED) and
"unreachable" visible; an unconnected one (ntplib's) only ever sees silence.
"""

from __future__ import annotations

import socket
import time
from typing import Callable, Optional, Tuple

from edgecheck.evidence import IcmpError
from edgecheck.model import Reason
from edgecheck.probes import icmperr
from edgecheck.probes.budget import Budget
from edgecheck.probes.classify import describe_errno, reason_for_errno
from edgecheck.records import record

RESEND_INTERVAL_S = 1.0  # UDP is lossy: resend within the budget instead of waiting once


@record
class UdpExchange:
    address: str
    port: int
    reply: Optional[bytes] = None
    reason: Optional[Reason] = None  # None when a reply came
    error: str = ""
    sends: int = 0
    ms: int = 0
    local: Optional[Tuple[str, int]] = None
    icmp: Optional[IcmpError] = None  # the ICMP error that ended it, and who sent it


def exchange(address: str, port: int, make_request: Callable[[Optional[Tuple[str, int]]], bytes], budget: Budget,
             accept: Callable[[bytes], bool] = lambda data: True) -> UdpExchange:
    """Send make_request(local_address) (again every RESEND_INTERVAL_S) until an accepted reply or the budget ends."""
    start = time.monotonic()
    out = UdpExchange(address, port)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # Without IP_RECVERR Linux reports only "hard" ICMP errors (port unreachable) to a UDP
        # socket; host/network unreachable would look like silence.
        icmperr.enable_recverr(sock)
        sock.connect((address, port))
        out.local = sock.getsockname()[:2]
        next_send = 0.0
        while True:
            now = time.monotonic()
            left = budget.left()
            if left <= 0:
                out.reason, out.error = Reason.NO_RESPONSE, f"no answer after {out.sends} datagram(s)"
                break
            if now >= next_send:
                sock.send(make_request(out.local))
                out.sends += 1
                next_send = now + RESEND_INTERVAL_S
            sock.settimeout(max(0.01, min(left, next_send - time.monotonic())))
            try:
                data = sock.recv(65535)
            except (socket.timeout, TimeoutError):
                continue
            if accept(data):
                out.reply = data
                break
    except OSError as exc:
        # The ICMP error stays on the error queue after recv/send reported it: who sent it decides
        # between this host's own filter, a firewall elsewhere and the network.
        reason, words, out.icmp = icmperr.attribute_failure(exc.errno, icmperr.read_error_queue(sock),
                                                            icmperr.local_addresses)
        out.reason = reason or reason_for_errno(exc.errno)
        out.error = describe_errno(exc.errno) + (f": {words}" if words else "")
    finally:
        sock.close()
    out.ms = int(round((time.monotonic() - start) * 1000))
    return out
