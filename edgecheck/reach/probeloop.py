"""Thousands of probes at once on one thread: non-blocking sockets, one selector, one timer heap.

A probe here is a small state machine (a Job) over one socket: TCP connect, then optionally an
exchange (the reach token, an HTTP request, a TLS handshake through memory BIOs), or a UDP
exchange with resends. Every job gets the same per-probe timeout counted from its own start;
the loop has an overall deadline. Results are honest about scheduling: a job that never got a
socket before the deadline is NOT_STARTED, one still running at the deadline is DEADLINE — neither
is ever reported as a network result.

Descriptors: the window of jobs open at once is bounded by RLIMIT_NOFILE. When the soft limit is
too low for the work, the loop raises it up to the hard limit (unprivileged, like Go's runtime
does at start-up), keeping a reserve for the rest of the process; if that is still not enough,
jobs wait for a slot (and may end NOT_STARTED).

ICMP: sockets set IP_RECVERR / IPV6_RECVERR, so a refusal or unreachable carries the ICMP type,
code and the address that sent it (ip(7): the error queue, MSG_ERRQUEUE). That tells a firewall
on the path (offender = a router) from the node itself, and on TCP an ICMP "port unreachable"
(a REJECT rule) from a TCP reset (nothing listening).
"""

from __future__ import annotations

import collections
import enum
import errno
import heapq
import math
import os
import re
import resource
import selectors
import socket
import time
from dataclasses import field
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from edgecheck.netloc import host_port
from edgecheck.probes import icmperr
from edgecheck.reach import protocol as wire
from edgecheck.reach.protocol import Endpoint
from edgecheck.records import record

if TYPE_CHECKING:
    import ssl  # imported where a TLS probe needs it: a token-only run never loads OpenSSL's TLS

DEFAULT_MAX_OPEN = 4096
ADDRESSES_PER_NAME = 4  # room kept for each name a Feed will hand over (beyond it: waves, said as such)
FD_RESERVE = 64  # descriptors left for the rest of the process (logs, resolver, report file)
DEADLINE_SLACK_S = 1.0
UDP_RESEND_S = 1.0  # UDP is lossy: resend within the timeout instead of waiting once
MAX_STREAM_REPLY = 4096  # bytes read from a TCP peer before judging it
USER_AGENT = "edgecheck-reach"


class Outcome(str, enum.Enum):
    OK = "ok"  # the expected answer: token proof / TCP connect / TLS handshake / HTTP status
    CLOCK_SKEW = "clock-skew"  # token: the listener proved the token but our clocks differ too much
    UNPROVEN = "unproven"  # something answered (or accepted the connection) but not what was expected
    REFUSED = "refused"  # TCP reset or ICMP port unreachable
    TIMEOUT = "timeout"  # TCP: no answer to the connection request
    UNREACHABLE = "unreachable"  # ICMP host/network unreachable or prohibited, no route, local EPERM
    NO_RESPONSE = "no-response"  # UDP: silence (a drop and an ignoring peer look the same)
    LOCAL_ERROR = "local-error"  # this host could not make the probe (no descriptor, bad address)
    DEADLINE = "deadline"  # started, still running at the run's overall deadline: abandoned
    NOT_STARTED = "not-started"  # waited for a descriptor slot until the deadline: never sent

    def __str__(self) -> str:
        return self.value


# Outcomes that describe the network; the others describe this run and must not be read as a finding.
NETWORK_OUTCOMES = frozenset({Outcome.OK, Outcome.CLOCK_SKEW, Outcome.UNPROVEN, Outcome.REFUSED,
                              Outcome.TIMEOUT, Outcome.UNREACHABLE, Outcome.NO_RESPONSE})

_ICMP4_UNREACH = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
                  3: "port unreachable", 4: "fragmentation needed", 6: "destination network unknown",
                  7: "destination host unknown", 9: "network administratively prohibited",
                  10: "host administratively prohibited", 13: "communication administratively prohibited"}
_ICMP6_UNREACH = {0: "no route to destination", 1: "communication administratively prohibited",
                  3: "address unreachable", 4: "port unreachable", 5: "source address failed policy",
                  6: "reject route to destination"}


@record(frozen=True)
class IcmpError:
    """An ICMP error the kernel matched to our socket, and who sent it."""

    errno: int
    version: int  # 4 | 6
    type: int
    code: int
    sender: Optional[str]

    @property
    def description(self) -> str:
        if self.version == 4 and self.type == 3:
            return _ICMP4_UNREACH.get(self.code, f"destination unreachable (code {self.code})")
        if self.version == 6 and self.type == 1:
            return _ICMP6_UNREACH.get(self.code, f"destination unreachable (code {self.code})")
        if (self.version, self.type) in ((4, 11), (6, 3)):
            return "time exceeded (a routing loop or too many hops)"
        return f"ICMP type {self.type} code {self.code}"

    @property
    def port_unreachable(self) -> bool:
        return (self.version, self.type, self.code) in ((4, 3, 3), (6, 1, 4))

    def to_json(self, target: str, local: Optional[str] = None) -> Dict[str, Any]:
        return {"type": self.type, "code": self.code, "version": self.version, "description": self.description,
                "from": self.sender, "from_target": self.sender is not None and self.sender == target,
                "from_self": self.sender is not None and self.sender == local}


@record
class ProbeResult:
    """What one probe found. `evidence()` is the JSON for a check's `evidence`."""

    address: str
    port: int
    protocol: str  # "tcp" | "udp"
    method: str  # "token" | "tcp" | "tls" | "http" | "https" | "udp"
    outcome: Outcome
    detail: str = ""  # one human clause, e.g. "rejected by 10.0.0.1 with ICMP port unreachable"
    ms: int = 0  # from this probe's start to its result
    connect_ms: Optional[int] = None
    queued_ms: int = 0  # waited for a descriptor slot before starting
    errno: Optional[int] = None
    icmp: Optional[IcmpError] = None
    icmp_errors: Tuple[icmperr.ExtendedError, ...] = ()  # everything the error queue held
    local: Optional[Endpoint] = None  # this side's socket address
    seen_source: Optional[Endpoint] = None  # token: the source the listener saw (authenticated)
    seen_destination: Optional[Endpoint] = None  # token: where the listener was reached
    clock_offset_s: Optional[float] = None  # token: listener clock minus ours
    sends: int = 0  # UDP datagrams sent
    reply: Optional[bytes] = None  # generic exchanges: the accepted reply (not in evidence)
    tls: Dict[str, Any] = field(default_factory=dict)
    http: Dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.outcome in (Outcome.OK, Outcome.CLOCK_SKEW)

    @property
    def blocked_locally(self) -> bool:
        """This host's own packet filter stopped the probe: EPERM/EACCES (a DROP in OUTPUT), or an
        ICMP error sent by one of our own addresses (a REJECT in OUTPUT). SPEC 7.1 `host-firewall`."""
        if self.errno in (errno.EPERM, errno.EACCES):
            return True
        return bool(self.icmp and self.icmp.sender and self.local and self.icmp.sender == self.local.address)

    @property
    def nat(self) -> Optional[str]:
        """"none" | "port" | "address" when the listener said what it saw, else None."""
        return wire.nat_kind(self.local, self.seen_source)

    @property
    def destination_rewritten(self) -> Optional[str]:
        return wire.destination_kind(Endpoint(wire.normalise_address(self.address), self.port), self.seen_destination)

    def evidence(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"method": self.method, "address": self.address, "port": self.port,
                              "protocol": self.protocol, "outcome": self.outcome.value, "detail": self.detail,
                              "ms": self.ms}
        if self.connect_ms is not None:
            ev["connect_ms"] = self.connect_ms
        if self.queued_ms:
            ev["queued_ms"] = self.queued_ms
        if self.errno is not None:
            ev["errno"] = errno.errorcode.get(self.errno, str(self.errno))
        if self.icmp is not None:
            ev["icmp"] = self.icmp.to_json(wire.normalise_address(self.address),
                                           self.local.address if self.local else None)
        if self.local is not None:
            ev["local"] = self.local.to_json()
        if self.seen_source is not None:
            ev["seen_source"] = self.seen_source.to_json()
            ev["nat"] = self.nat
        if self.seen_destination is not None:
            ev["seen_destination"] = self.seen_destination.to_json()
            ev["destination_rewritten"] = self.destination_rewritten
        if self.clock_offset_s is not None:
            ev["clock_offset_s"] = self.clock_offset_s
        if self.protocol == "udp":
            ev["datagrams_sent"] = self.sends
        if self.tls:
            ev["tls"] = dict(self.tls)
        if self.http:
            ev["http"] = dict(self.http)
        return ev


def outcome_for_errno(code: Optional[int]) -> Outcome:
    if code in (errno.ECONNREFUSED, errno.ECONNRESET):
        return Outcome.REFUSED
    if code == errno.ETIMEDOUT:
        return Outcome.TIMEOUT
    return Outcome.UNREACHABLE


def describe_failure(code: Optional[int], icmp: Optional[IcmpError], target: str, protocol: str,
                     local: Optional[str] = None) -> str:
    """One clause naming who said no, e.g. "rejected by 10.0.0.1 (not the node) with ICMP port unreachable"."""
    if code in (errno.EPERM, errno.EACCES):
        return f"this host's own packet filter blocked the packet ({errno.errorcode[code]})"
    if icmp is not None and icmp.sender and icmp.sender == local:
        return f"this host's own packet filter rejected the packet (ICMP {icmp.description} from our own address)"
    if icmp is not None and icmp.sender:
        who = "the node itself" if icmp.sender == target else f"{icmp.sender}, on the path (not the node)"
        clause = f"rejected by {who} with ICMP {icmp.description}"
        if protocol == "tcp" and icmp.port_unreachable and icmp.sender == target:
            clause += " (a REJECT rule: a closed TCP port answers with a reset, not ICMP)"
        return clause
    if code == errno.ECONNREFUSED:
        if protocol == "tcp":
            return "connection refused (TCP reset): nothing listens on the port, or a firewall answers with resets"
        return "refused (ICMP port unreachable): nothing listens on the port"
    if code == errno.ECONNRESET:
        return "connection reset"
    if code == errno.ENETUNREACH:
        return "no route to the network from this host (ENETUNREACH)"
    if code is not None:
        return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
    return "failed"


def read_icmp_error(sock: socket.socket) -> Tuple[Optional[IcmpError], Tuple[icmperr.ExtendedError, ...]]:
    """The ICMP errors queued on the socket (it set IP_RECVERR), and the first as IcmpError. Never
    blocks. The queue is read by edgecheck/probes/icmperr.py, as for every other probe."""
    errors = tuple(icmperr.read_error_queue(sock, max_items=4))
    for e in errors:
        if e.origin in (icmperr.SO_EE_ORIGIN_ICMP, icmperr.SO_EE_ORIGIN_ICMP6):
            version = 4 if e.origin == icmperr.SO_EE_ORIGIN_ICMP else 6
            sender = wire.normalise_address(e.offender) if e.offender else None
            return IcmpError(e.errno, version, e.type, e.code, sender), errors
    return None, errors


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _set_recverr(sock: socket.socket) -> None:
    try:
        icmperr.enable_recverr(sock)
    except OSError:
        pass  # details lost, outcomes still right (errno)


def sniff(data: bytes) -> str:
    """What an unexpected answer looks like, in words, from its first bytes."""
    if not data:
        return "nothing"
    if data[:5] == b"HTTP/":
        line = data.split(b"\r\n", 1)[0][:60].decode("latin-1")
        return f"an HTTP answer ({line!r})"
    if data[:4] == b"SSH-":
        return "an SSH server banner"
    if data[0] in (0x15, 0x16) and data[1:2] == b"\x03":
        return "a TLS server (TLS record)"
    head = data[:16]
    if all(32 <= b < 127 for b in head):
        return f"text {head.decode('ascii')!r}"
    return f"bytes 0x{head.hex()}"


# --- jobs ------------------------------------------------------------------------------------------

class _NoDescriptor(Exception):
    """socket() failed with EMFILE/ENFILE: try again when another job has closed its socket."""


class Job:
    """One probe. Subclasses implement begin / on_io / expire; they end with finish()."""

    method = "?"
    protocol = "tcp"

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.target = wire.normalise_address(address)
        self.port = port
        self.family = _family(address)
        self.sock: Optional[socket.socket] = None
        self.loop: Optional["ProbeLoop"] = None
        self.started = 0.0
        self.deadline = math.inf
        self.result: Optional[ProbeResult] = None
        self.local: Optional[Endpoint] = None
        self.connect_ms: Optional[int] = None
        self.queued_ms = 0  # waited for a descriptor slot before starting
        self.timeout: Optional[float] = None  # this job's own timeout; None: the loop's
        self.ready_at: Optional[float] = None  # handed to a running loop (Feed) at this time
        self._gen = 0

    # -- called by the loop --
    def begin(self) -> None:
        raise NotImplementedError

    def on_io(self, mask: int) -> None:
        raise NotImplementedError

    def on_timer(self, now: float) -> None:
        if now >= self.deadline:
            self.expire()

    def expire(self) -> None:
        raise NotImplementedError

    # -- helpers for subclasses --
    @property
    def elapsed_ms(self) -> int:
        return int(round((time.monotonic() - self.started) * 1000))

    @property
    def timeout_s(self) -> float:
        return self.deadline - self.started

    def new_socket(self, kind: int) -> socket.socket:
        try:
            sock = socket.socket(self.family, kind)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise _NoDescriptor() from exc
            raise
        sock.setblocking(False)
        _set_recverr(sock)
        self.sock = sock
        return sock

    def watch(self, events: int) -> None:
        assert self.loop is not None and self.sock is not None
        self.loop.watch(self, events)

    def wake_at(self, when: float) -> None:
        assert self.loop is not None
        self.loop.wake(self, when)

    def finish(self, outcome: Outcome, detail: str = "", **fields: Any) -> None:
        if self.result is not None:
            return
        fields.setdefault("local", self.local)
        fields.setdefault("connect_ms", self.connect_ms)
        fields.setdefault("queued_ms", self.queued_ms)
        self.result = ProbeResult(self.address, self.port, self.protocol, self.method, outcome, detail,
                                  ms=self.elapsed_ms, **fields)
        assert self.loop is not None
        self.loop.release(self)

    def fail_errno(self, code: Optional[int]) -> None:
        icmp, errors = read_icmp_error(self.sock) if self.sock is not None else (None, ())
        if self.local is None:
            self._record_local()
        local = self.local.address if self.local else None
        self.finish(outcome_for_errno(code), describe_failure(code, icmp, self.target, self.protocol, local),
                    errno=code, icmp=icmp, icmp_errors=errors)

    def _record_local(self) -> None:
        try:
            name = self.sock.getsockname() if self.sock is not None else None
        except OSError:
            name = None
        if name:
            self.local = Endpoint(wire.normalise_address(name[0]), name[1])


class TcpConnectJob(Job):
    """TCP connect only (what `run` needs for raw TCP targets)."""

    method = "tcp"
    CONNECTING, EXCHANGING = "connecting", "exchanging"

    def begin(self) -> None:
        sock = self.new_socket(socket.SOCK_STREAM)
        self.state = self.CONNECTING
        code = sock.connect_ex((self.address, self.port))
        self._record_local()  # bound by connect: names us in "rejected by our own address"
        if code == 0:
            self._connected()
        elif code in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            self.watch(selectors.EVENT_WRITE)
            self.wake_at(self.deadline)
        else:
            self.fail_errno(code)

    def on_io(self, mask: int) -> None:
        assert self.sock is not None
        if self.state == self.CONNECTING:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.fail_errno(code)
                return
            self._connected()
        else:
            self.on_stream(mask)

    def _connected(self) -> None:
        self.connect_ms = self.elapsed_ms
        self._record_local()
        self.state = self.EXCHANGING
        self.connected()

    def connected(self) -> None:
        self.finish(Outcome.OK, f"TCP connection established in {self.connect_ms} ms")

    def on_stream(self, mask: int) -> None:
        raise NotImplementedError

    def expire(self) -> None:
        if self.state == self.CONNECTING:
            self.finish(Outcome.TIMEOUT, f"no answer to the connection request (SYN) within {self.timeout_s:g} s: "
                                         "packets are dropped on the way or by the node")
        else:
            self.silence()

    def silence(self) -> None:
        self.finish(Outcome.UNPROVEN, "connected, then no answer in time")


class StreamExchangeJob(TcpConnectJob):
    """Connect, send `first_bytes()`, read until `judge()` decides (or EOF / reset / timeout)."""

    def connected(self) -> None:
        self.inbuf = bytearray()
        self.out = self.first_bytes()
        self.flush()

    def first_bytes(self) -> bytes:
        return b""

    def flush(self) -> None:
        assert self.sock is not None
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.on_reset(exc)
                return
            self.out = self.out[n:]
        if self.result is None:
            self.watch(selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0))

    def on_stream(self, mask: int) -> None:
        assert self.sock is not None
        if mask & selectors.EVENT_WRITE and self.out:
            self.flush()
            if self.result is not None:
                return
        if not mask & selectors.EVENT_READ:
            return
        try:
            chunk = self.sock.recv(max(1, MAX_STREAM_REPLY - len(self.inbuf)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.on_reset(exc)
            return
        if not chunk:
            self.on_eof()
        else:
            self.on_chunk(chunk)

    def on_chunk(self, chunk: bytes) -> None:
        self.inbuf += chunk
        self.judge()
        if self.result is None and len(self.inbuf) >= MAX_STREAM_REPLY:
            self.finish(Outcome.UNPROVEN, f"answered with {sniff(bytes(self.inbuf))}, not what was expected")

    def judge(self) -> None:
        raise NotImplementedError

    def on_eof(self) -> None:
        what = f"after sending {sniff(bytes(self.inbuf))}" if self.inbuf else "without sending anything"
        self.finish(Outcome.UNPROVEN, f"accepted the connection, then closed it {what}")

    def on_reset(self, exc: OSError) -> None:
        self.finish(Outcome.UNPROVEN, f"accepted the connection, then reset it ({exc.strerror or exc})",
                    errno=exc.errno)


class TokenTcpJob(StreamExchangeJob):
    """The reach challenge over TCP: a middlebox that completes the handshake cannot pass."""

    method = "token"

    def __init__(self, address: str, port: int, key: bytes) -> None:
        super().__init__(address, port)
        self.key = key
        self.probe: Optional[wire.Probe] = None

    def first_bytes(self) -> bytes:
        self.probe = wire.build_probe(self.key, self.port, "tcp", int(time.time() * 1000))
        return self.probe.wire

    def judge(self) -> None:
        data = bytes(self.inbuf)
        if data[:len(wire.MAGIC)] != wire.MAGIC[:len(data)]:
            self.finish(Outcome.UNPROVEN, f"the port answered with {sniff(data)}: another service, "
                                          "not `edgecheck listen`")
            return
        if len(data) < wire.REPLY_SIZE:
            return
        _finish_token(self, data[:wire.REPLY_SIZE], {self.probe.nonce: self.probe} if self.probe else {})

    def on_eof(self) -> None:
        if not self.inbuf:
            self.finish(Outcome.UNPROVEN, "accepted the connection, then closed it without a proof: "
                                          "`edgecheck listen` with another token (it answers nothing to a "
                                          "wrong one), or another service on the port")
        else:
            super().on_eof()

    def silence(self) -> None:
        self.finish(Outcome.UNPROVEN, f"accepted the connection but sent no proof within {self.timeout_s:g} s: "
                                      "something other than `edgecheck listen` holds or answers for the port "
                                      "(another service, or a middlebox completing TCP handshakes)")


def _finish_token(job: Job, data: bytes, sent: Dict[bytes, wire.Probe]) -> bool:
    """Judge a token reply; finish the job unless it was no proof on UDP (keep waiting there)."""
    parsed = wire.parse_reply(job.key, data, sent.get)  # type: ignore[attr-defined]
    if isinstance(parsed, str):
        job.finish(Outcome.UNPROVEN, f"answered without a valid proof: {parsed}")
        return True
    received_ms = int(time.time() * 1000)
    probe = sent[parsed.nonce]
    offset = wire.clock_offset_s(probe.sent_ms, received_ms, parsed.listener_ms)
    fields = dict(seen_source=parsed.seen_source, seen_destination=parsed.seen_destination, clock_offset_s=offset)
    if job.protocol == "udp":
        fields["sends"] = job.sends  # type: ignore[attr-defined]
    if parsed.stale:
        job.finish(Outcome.CLOCK_SKEW, f"the listener proved the token but refused our timestamp: its clock is "
                                       f"{offset:+.0f} s from ours (more than {wire.REPLAY_WINDOW_S:g} s)", **fields)
    else:
        job.finish(Outcome.OK, f"`edgecheck listen` answered with a valid proof, saw us as {parsed.seen_source}",
                   **fields)
    return True


_STATUS_LINE = re.compile(rb"^HTTP/(\d(?:\.\d)?) (\d{3})(?: ([^\r\n]*))?\r?\n")


class HttpJob(StreamExchangeJob):
    """One plain HTTP GET; any status line proves an HTTP server answers (node-exporter)."""

    method = "http"

    def __init__(self, address: str, port: int, path: str = "/", host_header: Optional[str] = None) -> None:
        super().__init__(address, port)
        self.path = path
        self.host_header = host_header or host_port(address, port)

    def request_bytes(self) -> bytes:
        return (f"GET {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
                "Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")

    def first_bytes(self) -> bytes:
        return self.request_bytes()

    def judge(self) -> None:
        _judge_http(self, bytes(self.inbuf))


def _judge_http(job: Job, data: bytes) -> None:
    if data[:5] != b"HTTP/"[:len(data[:5])]:
        job.finish(Outcome.UNPROVEN, f"the port answered with {sniff(data)}, not HTTP")
        return
    m = _STATUS_LINE.match(data)
    if m is None:
        if b"\n" in data:
            first = data.split(b"\n", 1)[0][:60]
            job.finish(Outcome.UNPROVEN, f"malformed HTTP status line {first!r}")
        return
    status = int(m.group(2))
    http = {"status": status, "status_line": m.group(0).decode("latin-1").strip()}
    if getattr(job, "tls_info", None):
        job.finish(Outcome.OK, f"HTTPS answered with status {status}", http=http, tls=job.tls_info)  # type: ignore[attr-defined]
    else:
        job.finish(Outcome.OK, f"HTTP answered with status {status}", http=http)


_UNVERIFIED: Optional["ssl.SSLContext"] = None


def unverified_context() -> "ssl.SSLContext":
    """Reachability only: the kubelet's certificate is from the cluster CA, which `reach` need not have."""
    import ssl

    global _UNVERIFIED
    if _UNVERIFIED is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _UNVERIFIED = ctx
    return _UNVERIFIED


TLS_NOT_VERIFIED = "not verified: this checks reachability, not trust (the certificate is the cluster's own)"


class TlsJob(StreamExchangeJob):
    """TLS handshake through memory BIOs (no extra descriptors, no blocking), verification off.

    With `then_http`, one GET over the TLS session (HTTPS). A server answering in plain HTTP is
    recognised from its first bytes and named.
    """

    method = "tls"

    def __init__(self, address: str, port: int, server_name: Optional[str] = None, then_http: bool = False,
                 path: str = "/") -> None:
        super().__init__(address, port)
        self.server_name = server_name
        self.then_http = then_http
        if then_http:
            self.method = "https"
            self.http = HttpJob(address, port, path)
        self.tls_info: Dict[str, Any] = {}
        self.raw_seen = 0

    def connected(self) -> None:
        import ssl

        self.inbuf = bytearray()
        self.out = b""
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = unverified_context().wrap_bio(self.incoming, self.outgoing, server_side=False,
                                                 server_hostname=self.server_name)
        self.handshaken = False
        self.step()

    def _pump(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.out += pending
        self.flush()

    def step(self) -> None:
        import ssl

        if not self.handshaken:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._pump()
                return
            except ssl.SSLError as exc:
                self.finish(Outcome.UNPROVEN, f"TLS handshake failed: {exc.reason or exc}",
                            tls={"verified": False, "verification": TLS_NOT_VERIFIED, "error": str(exc.reason or exc)})
                return
            self.handshaken = True
            self.tls_info = self._describe()
            if not self.then_http:
                self._pump()
                self.finish(Outcome.OK, f"TLS handshake completed ({self.tls_info.get('version')}); "
                                        "certificate not verified", tls=self.tls_info)
                return
            self.tls.write(self.http.request_bytes())
        if self.then_http:
            try:
                while True:
                    data = self.tls.read(MAX_STREAM_REPLY)
                    if not data:
                        break
                    self.inbuf += data
                    _judge_http(self, bytes(self.inbuf))
                    if self.result is not None:
                        return
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                self.finish(Outcome.UNPROVEN, f"TLS error after the handshake: {exc.reason or exc}", tls=self.tls_info)
                return
        self._pump()

    def _describe(self) -> Dict[str, Any]:
        import ssl

        info: Dict[str, Any] = {"version": self.tls.version(), "verified": False, "verification": TLS_NOT_VERIFIED}
        cipher = self.tls.cipher()
        if cipher:
            info["cipher"] = cipher[0]
        try:
            der = self.tls.getpeercert(binary_form=True)
        except (ValueError, ssl.SSLError):
            der = None
        if der:
            try:
                from edgecheck.probes.x509 import describe_certificate
                cert = describe_certificate(der)
                info["peer_certificate"] = cert.to_json() if cert is not None else {}
            except Exception:  # noqa: BLE001 - a certificate we cannot parse is still a handshake
                info["peer_certificate"] = {}
        return info

    def on_chunk(self, chunk: bytes) -> None:
        if self.raw_seen == 0 and not self.handshaken and chunk[:1] not in (b"\x14", b"\x15", b"\x16", b"\x17"):
            if chunk[:5] == b"HTTP/":
                m = _STATUS_LINE.match(chunk)
                http = {"status": int(m.group(2)), "status_line": m.group(0).decode("latin-1").strip()} if m else {}
                self.finish(Outcome.UNPROVEN, "the port speaks plain HTTP, not TLS"
                            + (f" (it answered our TLS hello with status {http['status']})" if http else ""), http=http)
            else:
                self.finish(Outcome.UNPROVEN, f"the port answered with {sniff(chunk)}, not TLS")
            return
        self.raw_seen += len(chunk)
        self.incoming.write(chunk)
        self.step()

    def on_eof(self) -> None:
        if not self.handshaken:
            self.finish(Outcome.UNPROVEN, "the connection closed during the TLS handshake",
                        tls={"verified": False, "verification": TLS_NOT_VERIFIED})
        else:
            self.finish(Outcome.UNPROVEN, "TLS handshake completed, then the connection closed without an HTTP answer",
                        tls=self.tls_info)

    def silence(self) -> None:
        stage = "an HTTP answer" if self.handshaken else "a TLS handshake answer"
        self.finish(Outcome.UNPROVEN, f"connected, but no {stage} within {self.timeout_s:g} s",
                    tls=self.tls_info or {"verified": False, "verification": TLS_NOT_VERIFIED})


class DatagramJob(Job):
    """Connected UDP socket: send, resend every UDP_RESEND_S, until an accepted reply or the timeout."""

    protocol = "udp"
    method = "udp"

    def __init__(self, address: str, port: int) -> None:
        super().__init__(address, port)
        self.sends = 0
        self.next_send = 0.0
        self.unproven: Optional[str] = None

    def begin(self) -> None:
        sock = self.new_socket(socket.SOCK_DGRAM)
        try:
            sock.connect((self.address, self.port))
        except OSError as exc:
            self.fail_errno(exc.errno)
            return
        self._record_local()
        self.watch(selectors.EVENT_READ)
        self._send()
        if self.result is None:
            self.wake_at(min(self.next_send, self.deadline))

    def next_datagram(self) -> bytes:
        raise NotImplementedError

    def accept(self, data: bytes) -> bool:
        """True when `data` ends the job (the job has called finish); may set self.unproven."""
        raise NotImplementedError

    def _send(self) -> None:
        assert self.sock is not None
        self.next_send = time.monotonic() + UDP_RESEND_S
        try:
            self.sock.send(self.next_datagram())
            self.sends += 1
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # an ICMP error from an earlier datagram surfaces here too
            self.fail_errno(exc.errno)

    def on_io(self, mask: int) -> None:
        assert self.sock is not None
        for _ in range(16):
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.fail_errno(exc.errno)
                return
            if self.accept(data):
                return

    def on_timer(self, now: float) -> None:
        if now >= self.deadline:
            self.expire()
            return
        if now >= self.next_send:
            self._send()
            if self.result is not None:
                return
        self.wake_at(min(self.next_send, self.deadline))

    def expire(self) -> None:
        if self.unproven:
            self.finish(Outcome.UNPROVEN, self.unproven, sends=self.sends)
        else:
            self.finish(Outcome.NO_RESPONSE, f"no answer to {self.sends} datagram(s) within {self.timeout_s:g} s "
                                             "and no ICMP error: over UDP a drop and a silent peer look the same",
                        sends=self.sends)

    def finish(self, outcome: Outcome, detail: str = "", **fields: Any) -> None:
        fields.setdefault("sends", self.sends)
        super().finish(outcome, detail, **fields)


class UdpExchangeJob(DatagramJob):
    """Generic UDP request/answer (NTP, IKE, ...): `make_request(local)` each send, `accept(reply)`."""

    def __init__(self, address: str, port: int, make_request: Callable[[Optional[Endpoint]], bytes],
                 accept: Callable[[bytes], bool] = lambda data: True) -> None:
        super().__init__(address, port)
        self._make, self._accept = make_request, accept

    def next_datagram(self) -> bytes:
        return self._make(self.local)

    def accept(self, data: bytes) -> bool:
        if self._accept(data):
            self.finish(Outcome.OK, f"answered ({len(data)} bytes)", reply=data)
            return True
        self.unproven = f"answered with {sniff(data)}, not an expected reply"
        return False


class TokenUdpJob(DatagramJob):
    """The reach challenge over UDP; every (re)send is a fresh probe (the listener drops replays)."""

    method = "token"

    def __init__(self, address: str, port: int, key: bytes) -> None:
        super().__init__(address, port)
        self.key = key
        self.sent: Dict[bytes, wire.Probe] = {}

    def next_datagram(self) -> bytes:
        probe = wire.build_probe(self.key, self.port, "udp", int(time.time() * 1000))
        self.sent[probe.nonce] = probe
        return probe.wire

    def accept(self, data: bytes) -> bool:
        parsed = wire.parse_reply(self.key, data, self.sent.get)
        if isinstance(parsed, str):
            self.unproven = f"answered without a valid proof ({parsed}; {sniff(data)})"
            return False
        return _finish_token(self, data, self.sent)

    def expire(self) -> None:
        if self.unproven is None:
            self.finish(Outcome.NO_RESPONSE, f"no answer to {self.sends} probe(s) within {self.timeout_s:g} s and no "
                                             "ICMP error: dropped on the way, or the listener does not have this token "
                                             "(over UDP it stays silent to a wrong one)")
        else:
            super().expire()


# --- the loop --------------------------------------------------------------------------------------

@record
class LoopStats:
    jobs: int = 0
    started: int = 0
    window: int = 0  # jobs allowed open at once
    peak_open: int = 0
    fd_soft_limit: int = 0
    fd_limit_raised_from: Optional[int] = None
    not_started: int = 0
    abandoned: int = 0
    wall_s: float = 0.0


def open_descriptor_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16


def reachable_window(wanted: int, reserve: int = FD_RESERVE) -> int:
    """Jobs a loop could hold open at once once it has raised RLIMIT_NOFILE to the hard limit (for
    planning a run's deadline before any socket is opened; nothing is changed)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (1 << 30) if hard == resource.RLIM_INFINITY else hard - open_descriptor_count() - reserve
    return max(1, min(wanted, DEFAULT_MAX_OPEN, room))


def descriptor_window(wanted: int, *, raise_limit: bool = True, reserve: int = FD_RESERVE) -> Tuple[int, int, Optional[int]]:
    """(jobs that may be open at once, soft limit now, soft limit before raising or None)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = open_descriptor_count()
    need = in_use + wanted + reserve
    raised_from = None
    if raise_limit and soft != resource.RLIM_INFINITY and need > soft:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                raised_from, soft = soft, target
            except (ValueError, OSError):
                pass
    room = (1 << 30) if soft == resource.RLIM_INFINITY else soft - in_use - reserve
    return max(1, min(wanted, room)), soft, raised_from


class Feed:
    """Jobs handed to a running loop from other threads (the name-lookup workers of a batched
    check): put() as soon as a target's addresses are known, close() once every lookup is done.
    A socketpair wakes the loop; deque appends and pops are atomic."""

    def __init__(self, expected: int = 0) -> None:
        self.expected = expected  # jobs likely to come (sizes the descriptor window)
        self.closed = False
        self._jobs: Deque[Job] = collections.deque()
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def put(self, jobs: Sequence[Job]) -> None:
        now = time.monotonic()
        for job in jobs:
            job.ready_at = now
        self._jobs.extend(jobs)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._w.send(b"\0")
        except OSError:
            pass  # full (already woken) or released

    def take(self) -> List[Job]:
        try:
            while self._r.recv(4096):
                pass
        except OSError:
            pass
        out = []
        while self._jobs:
            out.append(self._jobs.popleft())
        return out

    @property
    def done(self) -> bool:
        return self.closed and not self._jobs

    def release(self) -> None:
        self._r.close()
        self._w.close()


class ProbeLoop:
    """Run jobs concurrently: each gets `timeout` (or its own job.timeout) from its own start;
    nothing runs past `deadline`. More jobs may arrive while it runs (a Feed).

    Without a deadline the loop sets one: enough for every wave the descriptor window forces,
    plus DEADLINE_SLACK_S.
    """

    def __init__(self, timeout: float, *, deadline: Optional[float] = None, max_open: int = DEFAULT_MAX_OPEN,
                 raise_fd_limit: bool = True) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.max_open = max(1, max_open)
        self.raise_fd_limit = raise_fd_limit
        self.stats = LoopStats()
        self._sel: Optional[selectors.BaseSelector] = None
        self._timers: List[Tuple[float, int, int, Job]] = []
        self._seq = 0
        self._active: Dict[int, Job] = {}
        self._registered: Dict[int, int] = {}  # id(job) -> events

    # -- job-facing --
    def watch(self, job: Job, events: int) -> None:
        assert self._sel is not None and job.sock is not None
        key = id(job)
        if key in self._registered:
            if self._registered[key] != events:
                self._sel.modify(job.sock, events, job)
        else:
            self._sel.register(job.sock, events, job)
        self._registered[key] = events

    def wake(self, job: Job, when: float) -> None:
        job._gen += 1
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, job._gen, job))

    def release(self, job: Job) -> None:
        """Called by Job.finish: unregister, close, free the slot."""
        if job.sock is not None:
            if self._registered.pop(id(job), None) is not None and self._sel is not None:
                try:
                    self._sel.unregister(job.sock)
                except (KeyError, ValueError):
                    pass
            try:
                job.sock.close()
            except OSError:
                pass
        self._active.pop(id(job), None)

    # -- running --
    def run(self, jobs: Sequence[Job], feed: Optional[Feed] = None) -> List[ProbeResult]:
        """The results of `jobs` in order; jobs from `feed` end with their .result set too."""
        t0 = time.monotonic()
        jobs = list(jobs)
        wanted = len(jobs) + (feed.expected * ADDRESSES_PER_NAME if feed else 0)
        window, soft, raised_from = descriptor_window(min(wanted, self.max_open) or 1, raise_limit=self.raise_fd_limit)
        window = min(window, self.max_open)
        waves = max(1, math.ceil(wanted / window)) if wanted else 1
        deadline = self.deadline if self.deadline is not None else t0 + self.timeout * waves + DEADLINE_SLACK_S
        self.stats = LoopStats(jobs=len(jobs), window=window, fd_soft_limit=soft, fd_limit_raised_from=raised_from)
        pending: Deque[Job] = collections.deque(jobs)
        self._sel = selectors.DefaultSelector()
        if feed is not None:
            self._sel.register(feed._r, selectors.EVENT_READ, None)
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                if feed is not None:
                    arrived = feed.take()
                    self.stats.jobs += len(arrived)
                    pending.extend(arrived)
                window = self._start_jobs(pending, window, t0, now, deadline)
                if not pending and not self._active and (feed is None or feed.done):
                    break
                wait = deadline - now
                if self._timers:
                    wait = min(wait, self._timers[0][0] - now)
                for key, mask in self._sel.select(max(0.0, wait)):
                    job = key.data
                    if job is not None and job.result is None:
                        self._guard(job, job.on_io, mask)
                self._fire_timers(time.monotonic())
        finally:
            self._close_out(list(pending) + (feed.take() if feed is not None else []), t0)
        return [job.result for job in jobs]  # type: ignore[misc]

    def _close_out(self, pending: Sequence[Job], t0: float) -> None:
        """At the end: what still runs is abandoned (DEADLINE), what never got a socket NOT_STARTED."""
        now = time.monotonic()
        for job in list(self._active.values()):
            job.finish(Outcome.DEADLINE, f"still running at the run's overall deadline, "
                                         f"{now - job.started:.1f} s after it started; abandoned")
            self.stats.abandoned += 1
        for job in pending:
            job.loop = self
            job.started = now
            job.result = ProbeResult(job.address, job.port, job.protocol, job.method, Outcome.NOT_STARTED,
                                     "never started: it waited for a free descriptor until the run's deadline",
                                     queued_ms=int((now - t0) * 1000))
            self.stats.not_started += 1
        if self._sel is not None:
            self._sel.close()
        self._sel = None
        self.stats.wall_s = round(time.monotonic() - t0, 3)

    def _start_jobs(self, pending: Deque[Job], window: int, t0: float, now: float, deadline: float) -> int:
        while pending and len(self._active) < window:
            job = pending.popleft()
            job.loop = self
            job.started = time.monotonic()
            job.queued_ms = int((job.started - (job.ready_at or t0)) * 1000)
            # Not capped by the run's deadline: a probe cut short there is DEADLINE, never a
            # "timeout" that did not get its full time.
            job.deadline = job.started + (self.timeout if job.timeout is None else job.timeout)
            self._active[id(job)] = job
            try:
                job.begin()
            except _NoDescriptor:
                self._active.pop(id(job), None)
                if not self._active:
                    job.finish(Outcome.LOCAL_ERROR, "no file descriptor available for the probe socket (EMFILE)")
                    continue
                pending.appendleft(job)
                return max(1, len(self._active))  # shrink the window to what this process can hold
            except Exception as exc:  # noqa: BLE001 - one bad target never ends the run
                job.finish(Outcome.LOCAL_ERROR, f"could not start the probe: {type(exc).__name__}: {exc}")
                continue
            if job.sock is not None:
                self.stats.started += 1
            self.stats.peak_open = max(self.stats.peak_open, len(self._active))
        return window

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _when, _seq, gen, job = heapq.heappop(self._timers)
            if job.result is None and gen == job._gen:
                self._guard(job, job.on_timer, now)

    @staticmethod
    def _guard(job: Job, call: Callable[[Any], None], arg: Any) -> None:
        try:
            call(arg)
        except Exception as exc:  # noqa: BLE001 - a bug in one job is that job's result, not a crash
            job.finish(Outcome.LOCAL_ERROR, f"internal error in the {job.method} probe: {type(exc).__name__}: {exc}")
