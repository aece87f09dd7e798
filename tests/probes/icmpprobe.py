"""Standalone TCP and UDP probes with IP_RECVERR, classified by edgecheck/probes/icmperr.py: the
attribution tests drive the classifier through real sockets with these (the product's probes use
icmperr from probes/tcp.py and probes/udp.py)."""

from __future__ import annotations

import errno as errno_mod
import select
import socket
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from edgecheck.probes.icmperr import (NONE, Attribution, ExtendedError, classify, enable_recverr, local_addresses,
                                      read_error_queue)


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool  # connected (TCP) / got a reply (UDP)
    errno: Optional[int]
    errors: Tuple[ExtendedError, ...]
    attribution: Attribution


def tcp_connect(address: str, port: int, timeout: float) -> ProbeOutcome:
    """A TCP connect with IP_RECVERR, classified."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        enable_recverr(s)
        s.setblocking(False)
        code = s.connect_ex((address, port))
        if code in (errno_mod.EINPROGRESS, errno_mod.EALREADY, errno_mod.EWOULDBLOCK):
            _, w, _ = select.select([], [s], [], timeout)
            code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else errno_mod.ETIMEDOUT
        errors = tuple(read_error_queue(s))
        if code == 0:
            return ProbeOutcome(True, None, errors, Attribution(NONE, "connected"))
        return ProbeOutcome(False, code, errors, classify(code, errors, local_addresses()))


def udp_exchange(address: str, port: int, payload: bytes, timeout: float) -> ProbeOutcome:
    """Send one datagram on a connected UDP socket with IP_RECVERR; wait for a reply or an error."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        enable_recverr(s)
        err: Optional[int] = None
        try:
            s.connect((address, port))
            s.send(payload)
        except OSError as exc:
            err = exc.errno
        errors: List[ExtendedError] = []
        if err is None:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    err = errno_mod.ETIMEDOUT
                    break
                r, _, x = select.select([s], [], [s], left)
                if not r and not x:
                    continue
                errors = read_error_queue(s)
                if errors:
                    err = errors[0].errno
                    break
                try:
                    s.recv(65535, socket.MSG_DONTWAIT)
                    return ProbeOutcome(True, None, (), Attribution(NONE, "answered"))
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    err = exc.errno
                    errors = read_error_queue(s)
                    break
        else:
            errors = read_error_queue(s)
        return ProbeOutcome(False, err, tuple(errors), classify(err, errors, local_addresses()))
