"""`edgecheck listen`: open the plan's free inbound ports for a bounded time and answer token probes.

One thread, one selector loop. What it binds and what it never does:
- only the (port, protocol) pairs it is given, on the wildcard addresses: TCP and UDP, IPv4, and
  IPv6 when the host has an IPv6 address. A pair that anything already holds (EADDRINUSE on any
  family) is reported as held and left alone: nothing of ours stays bound on it;
- no SO_REUSEADDR on UDP (it would let us share a port with a process that also set it) and
  V6ONLY on IPv6 sockets, so the IPv4 and IPv6 views of a port are bound separately;
- it answers only probes carrying a valid MAC (protocol.py), at most one reply per request, and a
  reply is never larger than the request; UDP replies go only to unicast sources, from the
  address the probe was sent to (IP_PKTINFO), so multi-homed hosts answer from the right address;
- malformed, oversized and flooding input is counted and logged at a bounded rate, never raised;
  memory is bounded (connections, per-connection buffers, sources per port, the replay cache);
- it stops after the duration, or when stop() is called (safe from a signal handler), and closes
  every socket it opened before serve() returns.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import os
import selectors
import socket
import struct
import time
from dataclasses import field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgecheck.netloc import host_port
from edgecheck.reach import protocol as wire
from edgecheck.reach.protocol import Endpoint, Verdict
from edgecheck.records import record

# Linux values; Python 3.11's socket module lacks IP_PKTINFO (ip(7), linux/in.h).
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_IN_PKTINFO = struct.Struct("@i4s4s")  # ifindex, spec_dst, addr
_IN6_PKTINFO = struct.Struct("@16sI")  # addr, ifindex

MAX_CONNECTIONS = 256  # TCP connections being read at once; beyond it the oldest is closed
CONNECTION_TIMEOUT_S = 5.0  # a prober sends its request right after connecting
MAX_SOURCES_PER_PORT = 64
UDP_BATCH = 64  # datagrams read per wake-up per socket: one flooded port cannot starve the others
ACCEPT_BATCH = 64
HOUSEKEEPING_S = 0.5
STALE_REPLIES_PER_S = 5.0  # STALE answers are for humans fixing clocks, not for bulk traffic

EventSink = Callable[["ListenEvent"], None]


class BindState:
    BOUND = "bound"
    HELD = "held"  # something else already has the port: reported, left alone
    DENIED = "denied"  # a privileged port without the privilege to bind it
    FAILED = "failed"  # any other bind error


@record(frozen=True)
class PortSpec:
    port: int
    protocol: str  # "tcp" | "udp"
    label: str = ""  # what needs the port, e.g. "kubelet" (for people, not logic)

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


@record(frozen=True)
class Binding:
    spec: PortSpec
    state: str  # BindState
    families: Tuple[str, ...] = ()  # "ipv4", "ipv6": what is bound (BOUND only)
    detail: str = ""


@record(frozen=True)
class ListenEvent:
    """One thing the listener saw. `kind` is a protocol Verdict, or one of the listener's own kinds:
    "connect-only" (a TCP connection that sent nothing), "connection-limit", "suppressed"
    (`count` events were not logged in the last second), "socket-error"."""

    at: float  # wall clock (time.time())
    kind: str
    protocol: Optional[str] = None
    port: Optional[int] = None
    source: Optional[Endpoint] = None
    destination: Optional[Endpoint] = None
    detail: str = ""
    count: int = 1
    answered: bool = False  # a reply was sent


@record
class SourceSeen:
    address: str
    last_port: int
    first_seen: float
    last_seen: float
    counts: Dict[str, int] = field(default_factory=dict)  # verdict -> n

    @property
    def valid(self) -> int:
        return self.counts.get(Verdict.VALID, 0)


@record
class PortReport:
    spec: PortSpec
    state: str
    families: Tuple[str, ...]
    detail: str
    counts: Dict[str, int] = field(default_factory=dict)  # verdict/kind -> n, every request on this port
    sources: List[SourceSeen] = field(default_factory=list)
    sources_not_tracked: int = 0  # requests from sources beyond MAX_SOURCES_PER_PORT

    @property
    def reached(self) -> bool:
        return self.counts.get(Verdict.VALID, 0) > 0

    @property
    def reached_from(self) -> List[str]:
        return [s.address for s in self.sources if s.valid]


@record
class ListenSummary:
    started_at: float  # wall clock
    ended_at: float
    duration_s: float  # asked for
    stop_reason: str  # "duration" | whatever stop() was given (e.g. "SIGINT")
    key_fingerprint: str
    ports: List[PortReport]
    log_suppressed: int = 0
    errors: List[str] = field(default_factory=list)

    @property
    def bound(self) -> List[PortReport]:
        return [p for p in self.ports if p.state == BindState.BOUND]


class RateLimiter:
    """Token buckets per category; counts what it refuses. Pure apart from the clock passed in."""

    def __init__(self, rates: Dict[str, Tuple[float, float]]) -> None:
        self.rates = dict(rates)  # category -> (per second, burst)
        self.tokens = {c: burst for c, (_r, burst) in self.rates.items()}
        self.stamp: Dict[str, float] = {}
        self.refused = 0

    def allow(self, category: str, now: float) -> bool:
        rate, burst = self.rates[category]
        last = self.stamp.get(category, now)
        self.tokens[category] = min(burst, self.tokens[category] + (now - last) * rate)
        self.stamp[category] = now
        if self.tokens[category] >= 1.0:
            self.tokens[category] -= 1.0
            return True
        self.refused += 1
        return False


LOG_RATES = {"probe": (50.0, 100.0), "noise": (10.0, 20.0)}


def host_has_ipv6(if_inet6: Optional[str] = None) -> bool:
    """An IPv6 address is configured (with disable_ipv6=1 the file is empty: no ::1 either).

    /proc/thread-self/net: the calling thread's network namespace (/proc/net follows the main
    thread's, which differs when this thread entered another namespace with setns).
    """
    if not socket.has_ipv6:
        return False
    paths = [if_inet6] if if_inet6 else ["/proc/thread-self/net/if_inet6", "/proc/net/if_inet6"]
    for path in paths:
        try:
            with open(path) as fh:
                return any(line.strip() for line in fh)
        except OSError:
            continue
    return False


def local_addresses() -> List[str]:
    """This host's global unicast addresses (candidates for NODE in the printed `reach` command)."""
    from edgecheck.host.ifaddrs import if_addresses

    out: List[str] = []
    for a in if_addresses():
        ip = a.ip
        if not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified) and a.address not in out:
            out.append(a.address)
    return out


def _describe_bind_error(exc: OSError, address: str, spec: PortSpec) -> Tuple[str, str]:
    where = f"{host_port(address, spec.port)}/{spec.protocol}"
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    if exc.errno == errno.EADDRINUSE:
        return BindState.HELD, f"already in use on {where} ({name}); left alone"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BindState.DENIED, (f"not allowed to bind {where} ({name}): ports below 1024 need root or "
                                  "CAP_NET_BIND_SERVICE")
    return BindState.FAILED, f"cannot bind {where}: {exc.strerror or exc} ({name})"


@record
class _Conn:
    sock: socket.socket
    spec: PortSpec
    source: Endpoint
    destination: Endpoint
    deadline: float
    serial: int = 0  # tells a reused descriptor's new connection from the old one
    buf: bytearray = field(default_factory=bytearray)


@record
class _Bound:
    sock: socket.socket
    spec: PortSpec
    family: int


class Listener:
    """Bind with open(), run with serve(duration), end early with stop(). Use as a context manager
    (or call close()) so every socket is closed whatever happens.

    `token` (or an already derived `key`) authenticates probes. `on_event` receives ListenEvents on
    the serving thread, rate-limited (valid probes 50/s, noise 10/s, with "suppressed" counts).
    """

    def __init__(self, specs: Sequence[PortSpec], token: Optional[str] = None, *, key: Optional[bytes] = None,
                 on_event: Optional[EventSink] = None, ipv6: Optional[bool] = None,
                 ipv4_address: str = "0.0.0.0", ipv6_address: str = "::",
                 max_connections: int = MAX_CONNECTIONS, connection_timeout: float = CONNECTION_TIMEOUT_S,
                 replay_window_s: float = wire.REPLAY_WINDOW_S,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if key is None:
            if token is None:
                raise ValueError("a token or a key is required")
            key = wire.derive_key(token)
        self.key = key
        seen = set()
        self.specs: List[PortSpec] = []
        for s in specs:
            if s.protocol not in ("tcp", "udp"):
                raise ValueError(f"unknown protocol {s.protocol!r} for port {s.port}")
            if not 0 < s.port < 65536:
                raise ValueError(f"port out of range: {s.port}")
            if (s.port, s.protocol) not in seen:
                seen.add((s.port, s.protocol))
                self.specs.append(s)
        self.on_event = on_event
        self.ipv6 = host_has_ipv6() if ipv6 is None else ipv6
        self.ipv4_address, self.ipv6_address = ipv4_address, ipv6_address
        self.max_connections = max_connections
        self.connection_timeout = connection_timeout
        self.wall_clock = wall_clock
        self.guard = wire.ReplayGuard(replay_window_s, max_entries=16384)
        self.log_limit = RateLimiter(LOG_RATES)
        self.stale_limit = RateLimiter({"stale": (STALE_REPLIES_PER_S, STALE_REPLIES_PER_S)})
        self.bindings: List[Binding] = []
        self._bound: List[_Bound] = []
        self._reports: Dict[Tuple[int, str], PortReport] = {}
        self._conns: Dict[int, _Conn] = {}
        self._conn_deadlines: List[Tuple[float, int, int]] = []  # (deadline, fd, conn serial)
        self._serial = 0
        self._sel: Optional[selectors.BaseSelector] = None
        self._wake_r, self._wake_w = -1, -1
        self._stop_reason: Optional[str] = None
        self._suppressed_reported = 0
        self._paused_until: Dict[int, float] = {}
        self.errors: List[str] = []
        self.callback_errors = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Listener":
        if not self.bindings:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> List[Binding]:
        """Bind every spec that is free; returns one Binding per spec (also kept in .bindings).
        Idempotent: a second call returns the first call's bindings."""
        if self.bindings:
            return list(self.bindings)
        if self._wake_r < 0:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        self.bindings = [self._bind(spec) for spec in self.specs]
        for b in self.bindings:
            self._reports[(b.spec.port, b.spec.protocol)] = PortReport(b.spec, b.state, b.families, b.detail)
        return list(self.bindings)

    def _bind(self, spec: PortSpec) -> Binding:
        families = [(socket.AF_INET, self.ipv4_address, "ipv4")]
        if self.ipv6:
            families.append((socket.AF_INET6, self.ipv6_address, "ipv6"))
        opened: List[_Bound] = []
        names: List[str] = []
        for family, address, name in families:
            try:
                sock = self._open_socket(family, address, spec)
            except OSError as exc:
                for b in opened:
                    b.sock.close()
                if family == socket.AF_INET6 and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL) and opened:
                    break  # no usable IPv6 after all: IPv4 alone is what this host has
                state, detail = _describe_bind_error(exc, address, spec)
                return Binding(spec, state, (), detail)
            opened.append(_Bound(sock, spec, family))
            names.append(name)
        self._bound.extend(opened)
        return Binding(spec, BindState.BOUND, tuple(names), "")

    @staticmethod
    def _open_socket(family: int, address: str, spec: PortSpec) -> socket.socket:
        kind = socket.SOCK_STREAM if spec.protocol == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_STREAM:
                # Only lets us bind over TIME_WAIT leftovers, never over a live listener.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            elif family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            sock.bind((address, spec.port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
            sock.setblocking(False)
            return sock
        except BaseException:
            sock.close()
            raise

    def stop(self, reason: str = "stopped") -> None:
        """Ask serve() to return. Safe from a signal handler: one flag, one non-blocking write."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass  # pipe full (already woken) or closed (already stopped)

    def close(self) -> None:
        """Close every socket this listener opened. Idempotent."""
        for conn in list(self._conns.values()):
            self._drop_conn(conn)
        for b in self._bound:
            try:
                b.sock.close()
            except OSError:
                pass
        self._bound = []
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1

    @property
    def open_sockets(self) -> int:
        return len(self._bound) + len(self._conns)

    # --- the loop ----------------------------------------------------------------------------

    def serve(self, duration: float) -> ListenSummary:
        """Answer probes until `duration` seconds pass or stop() is called; then close everything."""
        if not self.bindings:
            self.open()
        started_wall, started = self.wall_clock(), time.monotonic()
        end = started + max(0.0, duration)
        next_housekeeping = started + HOUSEKEEPING_S
        sel = self._sel = selectors.DefaultSelector()
        try:
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            for b in self._bound:
                sel.register(b.sock, selectors.EVENT_READ, b)
            while self._stop_reason is None:
                now = time.monotonic()
                if now >= end:
                    self._stop_reason = "duration"
                    break
                wait = min(end, next_housekeeping, self._next_conn_deadline()) - now
                for key, _mask in sel.select(max(0.0, wait)):
                    self._dispatch(key)
                now = time.monotonic()
                self._expire_conns(now)
                if now >= next_housekeeping:
                    next_housekeeping = now + HOUSEKEEPING_S
                    self._housekeeping(now)
            self._housekeeping(time.monotonic())
        finally:
            self.close()
        return ListenSummary(
            started_at=started_wall, ended_at=self.wall_clock(), duration_s=duration,
            stop_reason=self._stop_reason or "stopped", key_fingerprint=wire.key_fingerprint(self.key),
            ports=[self._reports[(s.port, s.protocol)] for s in self.specs],
            log_suppressed=self.log_limit.refused, errors=list(self.errors))

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        data = key.data
        try:
            if data is None:
                try:
                    while os.read(self._wake_r, 64):
                        pass
                except OSError:
                    pass
            elif isinstance(data, _Conn):
                self._read_conn(data)
            elif data.spec.protocol == "tcp":
                self._accept(data)
            else:
                self._read_datagrams(data)
        except Exception as exc:  # noqa: BLE001 - a listener bug on one input must not end the session
            self._note_error(f"{type(exc).__name__}: {exc}")

    def _note_error(self, message: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(message)
        self._emit(ListenEvent(self.wall_clock(), "socket-error", detail=message), "noise")

    def _housekeeping(self, now: float) -> None:
        suppressed = self.log_limit.refused - self._suppressed_reported
        if suppressed:
            self._suppressed_reported = self.log_limit.refused
            self._deliver(ListenEvent(self.wall_clock(), "suppressed", count=suppressed,
                                      detail=f"{suppressed} event(s) not logged (rate limit)"))
        for fd, until in list(self._paused_until.items()):
            if now >= until:
                del self._paused_until[fd]
                for b in self._bound:
                    if b.sock.fileno() == fd and self._sel is not None:
                        self._sel.register(b.sock, selectors.EVENT_READ, b)

    # --- events and accounting ---------------------------------------------------------------

    def _deliver(self, event: ListenEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001 - a broken sink loses log lines, never the session
            self.callback_errors += 1

    def _emit(self, event: ListenEvent, category: str) -> None:
        if self.log_limit.allow(category, time.monotonic()):
            self._deliver(event)

    def _record(self, spec: PortSpec, kind: str, source: Endpoint, destination: Optional[Endpoint],
                detail: str = "", answered: bool = False) -> None:
        report = self._reports[(spec.port, spec.protocol)]
        report.counts[kind] = report.counts.get(kind, 0) + 1
        now = self.wall_clock()
        seen = next((s for s in report.sources if s.address == source.address), None)
        if seen is None and len(report.sources) < MAX_SOURCES_PER_PORT:
            seen = SourceSeen(source.address, source.port, now, now)
            report.sources.append(seen)
        if seen is None:
            report.sources_not_tracked += 1
        else:
            seen.last_port, seen.last_seen = source.port, now
            seen.counts[kind] = seen.counts.get(kind, 0) + 1
        category = "probe" if kind in (Verdict.VALID, Verdict.STALE, Verdict.REPLAY) else "noise"
        self._emit(ListenEvent(now, kind, spec.protocol, spec.port, source, destination, detail,
                               answered=answered), category)

    def _answer(self, data: bytes, spec: PortSpec, source: Endpoint, destination: Endpoint) -> Optional[bytes]:
        """The reply to send (or None), after judging and recording the request."""
        parsed = wire.parse_probe(self.key, data)
        reply: Optional[bytes] = None
        detail = ""
        if isinstance(parsed, str):
            kind = parsed
        elif parsed.protocol != spec.protocol:
            kind, detail = Verdict.WRONG_PROTOCOL, f"probe made for {parsed.protocol}"
        else:
            now_ms = int(self.wall_clock() * 1000)
            kind = self.guard.judge(parsed, now_ms)
            if parsed.aimed_port != spec.port:
                detail = f"sent to port {parsed.aimed_port}, arrived on {spec.port} (port forwarding)"
            if kind == Verdict.VALID:
                reply = wire.build_reply(self.key, parsed, source, destination, spec.protocol, now_ms)
            elif kind == Verdict.STALE:
                skew = (parsed.sent_ms - now_ms) / 1000.0
                detail = f"prober clock {skew:+.0f} s from ours, outside the +-{self.guard.window_ms // 1000} s window"
                if self.stale_limit.allow("stale", time.monotonic()):
                    reply = wire.build_reply(self.key, parsed, source, destination, spec.protocol, now_ms, stale=True)
        if reply is not None:
            assert len(reply) <= len(data)  # never more bytes than received
        self._record(spec, kind, source, destination, detail, answered=reply is not None)
        return reply

    # --- TCP ---------------------------------------------------------------------------------

    def _accept(self, bound: _Bound) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = bound.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting on this socket for a moment instead of
                    # spinning on a listener that stays readable.
                    if self._sel is not None:
                        self._sel.unregister(bound.sock)
                    self._paused_until[bound.sock.fileno()] = time.monotonic() + HOUSEKEEPING_S
                    self._note_error(f"accept on {bound.spec}: {exc.strerror}")
                return  # ECONNABORTED and friends: the peer is gone already
            source = Endpoint(wire.normalise_address(peer[0]), peer[1])
            try:
                local = sock.getsockname()
                destination = Endpoint(wire.normalise_address(local[0]), local[1])
            except OSError:
                sock.close()
                continue
            if len(self._conns) >= self.max_connections:
                # Evict the oldest (dicts keep accept order): idle holders lose their slot, while a
                # prober, which sends its request in the same round trip as the handshake, keeps it.
                oldest = next(iter(self._conns.values()))
                self._finish_conn(oldest, "connection-limit",
                                  f"evicted: more than {self.max_connections} connections open at once")
            sock.setblocking(False)
            self._serial += 1
            conn = _Conn(sock, bound.spec, source, destination, time.monotonic() + self.connection_timeout,
                         self._serial)
            self._conns[sock.fileno()] = conn
            heapq.heappush(self._conn_deadlines, (conn.deadline, sock.fileno(), conn.serial))
            assert self._sel is not None
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _read_conn(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(wire.REQUEST_SIZE - len(conn.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish_conn(conn, Verdict.TRUNCATED, f"connection error after {len(conn.buf)} bytes: {exc.strerror}")
            return
        if not chunk:
            if conn.buf:
                self._finish_conn(conn, Verdict.TRUNCATED, f"closed after {len(conn.buf)} of {wire.REQUEST_SIZE} bytes")
            else:
                self._finish_conn(conn, "connect-only", "connected and closed without sending anything")
            return
        conn.buf += chunk
        problem = wire.header_problem(bytes(conn.buf[:wire.HEADER_SIZE]))
        if problem:
            self._finish_conn(conn, problem, _preview(bytes(conn.buf)))
            return
        if len(conn.buf) >= wire.REQUEST_SIZE:
            reply = self._answer(bytes(conn.buf), conn.spec, conn.source, conn.destination)
            if reply is not None:
                try:
                    conn.sock.send(reply)  # 112 bytes into an empty send buffer: never partial
                except OSError:
                    pass
            self._drop_conn(conn)

    def _finish_conn(self, conn: _Conn, kind: str, detail: str) -> None:
        self._record(conn.spec, kind, conn.source, conn.destination, detail)
        self._drop_conn(conn)

    def _drop_conn(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0 and self._conns.get(fd) is conn:
            del self._conns[fd]
            if self._sel is not None:
                try:
                    self._sel.unregister(conn.sock)
                except (KeyError, ValueError):
                    pass
        try:
            conn.sock.close()
        except OSError:
            pass

    def _next_conn_deadline(self) -> float:
        while self._conn_deadlines:
            deadline, fd, serial = self._conn_deadlines[0]
            conn = self._conns.get(fd)
            if conn is not None and conn.serial == serial:
                return deadline
            heapq.heappop(self._conn_deadlines)
        return float("inf")

    def _expire_conns(self, now: float) -> None:
        while self._conn_deadlines and self._conn_deadlines[0][0] <= now:
            _deadline, fd, serial = heapq.heappop(self._conn_deadlines)
            conn = self._conns.get(fd)
            if conn is not None and conn.serial == serial:
                self._finish_conn(conn, Verdict.TRUNCATED,
                                  f"{len(conn.buf)} of {wire.REQUEST_SIZE} bytes after {self.connection_timeout:g} s")

    # --- UDP ---------------------------------------------------------------------------------

    def _read_datagrams(self, bound: _Bound) -> None:
        sock = bound.sock
        for _ in range(UDP_BATCH):
            try:
                data, ancdata, flags, peer = sock.recvmsg(wire.REQUEST_SIZE + 1, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._note_error(f"recvmsg on {bound.spec}: {exc.strerror}")
                return
            self._datagram(bound, data, ancdata, flags, peer)

    def _datagram(self, bound: _Bound, data: bytes, ancdata: list, flags: int, peer: tuple) -> None:
        source = Endpoint(wire.normalise_address(peer[0]), peer[1])
        local, pktinfo, unicast = _destination(bound, ancdata)
        destination = Endpoint(local, bound.spec.port) if local else None
        if flags & socket.MSG_TRUNC or len(data) > wire.REQUEST_SIZE:
            self._record(bound.spec, Verdict.OVERSIZED, source, destination,
                         f"datagram of more than {wire.REQUEST_SIZE} bytes")
            return
        if len(data) < wire.REQUEST_SIZE:
            problem = wire.header_problem(data[:wire.HEADER_SIZE]) or Verdict.TRUNCATED
            self._record(bound.spec, problem, source, destination,
                         f"{len(data)}-byte datagram" + ("" if problem == Verdict.TRUNCATED else f": {_preview(data)}"))
            return
        if destination is None or not unicast or not _unicast_source(source):
            problem = wire.header_problem(data[:wire.HEADER_SIZE]) or "not-unicast"
            self._record(bound.spec, problem, source, destination, "not a unicast exchange; never answered")
            return
        reply = self._answer(data, bound.spec, source, destination)
        if reply is None:
            return
        try:
            sock_addr = (peer[0], peer[1]) if bound.family == socket.AF_INET else peer
            bound.sock.sendmsg([reply], [pktinfo] if pktinfo else [], 0, sock_addr)
        except OSError as exc:
            self._note_error(f"reply to {source} on {bound.spec}: {exc.strerror}")


def _destination(bound: _Bound, ancdata: list) -> Tuple[Optional[str], Optional[tuple], bool]:
    """(local address the datagram was sent to, the cmsg to reply from it, sent to a unicast address)."""
    for level, ctype, cdata in ancdata:
        if bound.family == socket.AF_INET and level == socket.IPPROTO_IP and ctype == IP_PKTINFO \
                and len(cdata) >= _IN_PKTINFO.size:
            _ifindex, spec_dst, header_dst = _IN_PKTINFO.unpack_from(cdata)
            addr = socket.inet_ntop(socket.AF_INET, header_dst)
            # Broadcast (limited or directed) arrives with the header address differing from the
            # local address the kernel would answer from.
            unicast = header_dst == spec_dst and not ipaddress.ip_address(addr).is_multicast
            reply = (socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, header_dst, b"\0" * 4))
            return addr, reply, unicast
        if bound.family == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO \
                and len(cdata) >= _IN6_PKTINFO.size:
            raw, ifindex = _IN6_PKTINFO.unpack_from(cdata)
            addr = socket.inet_ntop(socket.AF_INET6, raw)
            unicast = not ipaddress.ip_address(addr).is_multicast
            return wire.normalise_address(addr), (socket.IPPROTO_IPV6, IPV6_PKTINFO, _IN6_PKTINFO.pack(raw, ifindex)), unicast
    return None, None, False


def _unicast_source(source: Endpoint) -> bool:
    if source.port == 0:
        return False
    ip = ipaddress.ip_address(source.address)
    return not (ip.is_multicast or ip.is_unspecified or (ip.version == 4 and str(ip) == "255.255.255.255"))


def _preview(data: bytes, limit: int = 24) -> str:
    """What the first bytes look like, for a log line (never more than `limit` bytes shown)."""
    head = data[:limit]
    printable = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
    shown = head.decode("ascii", "replace").replace("\r", "\\r").replace("\n", "\\n") if printable else head.hex()
    more = "..." if len(data) > limit else ""
    return f"starts with {shown!r}{more}" if printable else f"starts with 0x{shown}{more}"


def listen(specs: Sequence[PortSpec], token: str, duration: float, *,
           on_event: Optional[EventSink] = None, on_ready: Optional[Callable[[Listener], None]] = None,
           **options: object) -> ListenSummary:
    """Open, hand the open listener to `on_ready` (print the token and the reach command from its
    .bindings, install signal handlers calling its .stop()), serve, close."""
    with Listener(specs, token, on_event=on_event, **options) as listener:  # type: ignore[arg-type]
        if on_ready is not None:
            on_ready(listener)
        return listener.serve(duration)
