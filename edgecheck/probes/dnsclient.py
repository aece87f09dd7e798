"""One DNS question to one nameserver, as glibc's stub resolver asks it: over a connected UDP
socket, and again over TCP when the UDP answer is truncated (TC).

A connected UDP socket sees the ICMP port unreachable a host returns when no DNS service listens
there (ECONNREFUSED at once), where an unconnected one would wait out the timeout: a stopped
forwarder is told apart from a firewall that drops DNS. Replies whose id or source do not match
are ignored, as glibc does (res_send.c), so a stray datagram cannot end the wait early.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from typing import Dict, List, Optional, Sequence

from edgecheck.probes.dnswire import MalformedReply, Reply, build_query, parse_reply
from edgecheck.records import record

TIMEOUT, REFUSED = "timed out", "refused"


@record
class Exchange:
    """What one nameserver did with one question."""

    server: str
    port: int = 53
    reply: Optional[Reply] = None  # a usable reply (over UDP, or over TCP after truncation)
    truncated: bool = False  # the UDP answer had TC set
    tcp: Optional[str] = None  # over TCP (after TC, or use-vc): "ok", TIMEOUT, REFUSED or "error: ..."
    error: Optional[str] = None  # no reply: TIMEOUT, REFUSED or "error: ..."
    ms: int = 0

    @property
    def failure(self) -> Optional[str]:
        """Why there is no reply (None when there is one)."""
        if self.reply is not None:
            return None
        return self.error or self.tcp or TIMEOUT


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _wait(sock: socket.socket, deadline: float, event: int = select.POLLIN) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(TIMEOUT)
    poller = select.poll()
    poller.register(sock.fileno(), event | select.POLLERR)
    if not poller.poll(left * 1000):
        raise TimeoutError(TIMEOUT)


def udp_exchange(address: str, port: int, query: bytes, qid: int, deadline: float) -> Reply:
    """Raises TimeoutError, ConnectionRefusedError (ICMP port unreachable) or OSError."""
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((address.split("%", 1)[0], port))
        sock.send(query)
        while True:
            _wait(sock, deadline)
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                continue
            try:
                reply = parse_reply(data)
            except MalformedReply:
                continue
            if reply.qid == qid:
                return reply


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        _wait(sock, deadline)
        try:
            chunk = sock.recv(n - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            raise ConnectionResetError("the nameserver closed the TCP connection")
        data += chunk
    return data


def _connect_error(code: int) -> OSError:
    import os

    if code == errno.ECONNREFUSED:
        return ConnectionRefusedError(code, os.strerror(code))
    return OSError(code, os.strerror(code))


def tcp_exchange(address: str, port: int, query: bytes, qid: int, deadline: float) -> Reply:
    """RFC 1035 4.2.2: the message behind a two-byte length. Raises like udp_exchange."""
    with socket.socket(_family(address), socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        code = sock.connect_ex((address.split("%", 1)[0], port))
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            raise _connect_error(code)
        _wait(sock, deadline, select.POLLOUT)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise _connect_error(err)
        sock.sendall(struct.pack("!H", len(query)) + query)
        length = struct.unpack("!H", _recv_exact(sock, 2, deadline))[0]
        reply = parse_reply(_recv_exact(sock, length, deadline))
        if reply.qid != qid:
            raise MalformedReply("reply id does not match the query")
        return reply


def _failure(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    if isinstance(exc, OSError):
        return f"error: {exc.strerror or exc}"
    return f"error: {exc}"


def _query_ids(count: int) -> List[int]:
    """Fresh 16-bit query IDs from the kernel's generator (RFC 5452: unpredictable IDs), in one
    call: each call is a syscall, where a thread gives up the interpreter lock."""
    raw = os.urandom(2 * count)
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def ask(address: str, qname: str, qtype: int, deadline: float, *, port: int = 53, edns: bool = False,
        use_vc: bool = False) -> Exchange:
    """One question to one nameserver by `deadline`, UDP first (TCP only with use_vc), TCP again
    after a truncated UDP answer. Never raises for a network failure."""
    start = time.monotonic()
    qid = _query_ids(1)[0]
    query = build_query(qname, qtype, qid, edns=edns)
    out = Exchange(address, port)
    try:
        if not use_vc:
            reply = udp_exchange(address, port, query, qid, deadline)
            if not reply.truncated:
                out.reply = reply
                return out
            out.truncated = True
        try:
            out.reply = tcp_exchange(address, port, query, qid, deadline)
            out.tcp = "ok"
        except (OSError, MalformedReply) as exc:
            out.tcp = _failure(exc)
    except (OSError, MalformedReply) as exc:
        out.error = _failure(exc)
    finally:
        out.ms = int(round((time.monotonic() - start) * 1000))
    return out


def ask_many(address: str, qname: str, qtypes: Sequence[int], deadline: float, *, port: int = 53,
             edns: bool = False, use_vc: bool = False) -> List[Exchange]:
    """Several questions about one name to one nameserver at once, from one thread (as glibc
    sends A and AAAA back to back, RES_SNGLKUP unset): one connected UDP socket each, all polled
    together; a truncated answer is asked again over TCP. Never raises for a network failure."""
    if use_vc or len(qtypes) < 2:
        return [ask(address, qname, t, deadline, port=port, edns=edns, use_vc=use_vc) for t in qtypes]
    start = time.monotonic()
    outs = [Exchange(address, port) for _ in qtypes]
    pending: Dict[int, int] = {}  # fd -> index
    socks: List[socket.socket] = []
    queries: List[bytes] = []
    qids = _query_ids(len(qtypes))
    try:
        for i, qtype in enumerate(qtypes):
            queries.append(build_query(qname, qtype, qids[i], edns=edns))
            sock = socket.socket(_family(address), socket.SOCK_DGRAM)
            socks.append(sock)
            try:
                sock.setblocking(False)
                sock.connect((address.split("%", 1)[0], port))
                sock.send(queries[i])
                pending[sock.fileno()] = i
            except OSError as exc:
                outs[i].error = _failure(exc)
        _collect(socks, pending, outs, qids, deadline)
    finally:
        for sock in socks:
            sock.close()
    for i, out in enumerate(outs):
        if out.truncated:
            try:
                out.reply, out.tcp = tcp_exchange(address, port, queries[i], qids[i], deadline), "ok"
            except (OSError, MalformedReply) as exc:
                out.tcp = _failure(exc)
        out.ms = int(round((time.monotonic() - start) * 1000))
    return outs


def _collect(socks: List[socket.socket], pending: Dict[int, int], outs: List[Exchange], qids: List[int],
             deadline: float) -> None:
    """Read the replies of ask_many's sockets until each has one, or the deadline."""
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN | select.POLLERR)
    by_fd = {s.fileno(): s for s in socks}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _event in poller.poll(left * 1000):
            i = pending.get(fd)
            if i is None:
                continue
            try:
                reply = parse_reply(by_fd[fd].recv(65535))
            except (BlockingIOError, MalformedReply):
                continue
            except OSError as exc:
                outs[i].error = _failure(exc)
            else:
                if reply.qid != qids[i]:
                    continue
                if reply.truncated:
                    outs[i].truncated = True
                else:
                    outs[i].reply = reply
            del pending[fd]
            poller.unregister(fd)
    for i in pending.values():
        outs[i].error = TIMEOUT
