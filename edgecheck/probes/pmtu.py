"""Path-MTU black holes: prove them with a smaller MSS within the probe budget.

The failure this module names: TCP connects (SYN, SYN-ACK and the ClientHello are small), then the
server's first full-size segments (its certificate flight, or a large HTTP response) are larger
than a link on the way, that link's router sends ICMP "fragmentation needed" (IPv6: "packet too
big"), and a firewall drops that ICMP. The server never learns to send smaller segments, it
retransmits the same large ones, and the handshake stalls until the timeout.

The proof is a retry within the same probe budget whose SYN carries a small MSS (TCP_MAXSEG set
before connect): the server must then send segments no larger than that, so they fit. When a
fresh full-size connection made at the same moment stalls while the small-MSS one completes, the
packet size is the cause, not the server. Sizes (IP packet = MSS + 40 bytes IPv4 / + 60 IPv6):
- IPv4 536 (576-byte packets): the default MSS of RFC 879/RFC 1122 4.2.2.6, from the 576-byte
  datagram every IPv4 host must accept (RFC 791). Smaller paths exist only on broken networks.
- IPv6 1220 (1280-byte packets): IPv6's minimum link MTU (RFC 8200 section 5); every IPv6 path
  must carry 1280, so a smaller MSS would prove nothing more.
- a few steps between that and the full size (1280, 1400 bytes), tried at the same time, bracket
  the path MTU: the evidence gives the largest size that works and the smallest that fails.

Measuring the path MTU itself (egress interface, DF probes): pmtu_measure.py.

TCP_INFO is read with the Linux layout (include/uapi/linux/tcp.h, struct tcp_info); it degrades
to None elsewhere. tcp(7) for TCP_MAXSEG.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import socket
import ssl
import struct
import threading
import time
from dataclasses import field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgecheck.probes import http11
from edgecheck.probes.budget import Budget, elapsed_ms, run_parallel
from edgecheck.records import record

SMALL_MSS_V4 = 536
SMALL_MSS_V6 = 1220
# MSS steps tried together after a stall; packet sizes 576/1280/1400 (IPv4), 1280/1400 (IPv6).
LADDER_V4: Tuple[int, ...] = (536, 1240, 1360)
LADDER_V6: Tuple[int, ...] = (1220, 1340)

# Clamp of the wait before the retry starts: long enough that a healthy handshake over a slow
# path (a few hundred ms RTT) has finished, short enough to leave the retry most of the budget.
STALL_FRACTION = 1.0 / 3.0
STALL_MIN_S, STALL_MAX_S = 0.2, 1.5


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def header_bytes(family: int) -> int:
    """IP + TCP headers without options: packet size = MSS + this."""
    return 60 if family == socket.AF_INET6 else 40


def packet_size(mss: int, family: int) -> int:
    return mss + header_bytes(family)


def default_ladder(family: int) -> Tuple[int, ...]:
    return LADDER_V6 if family == socket.AF_INET6 else LADDER_V4


# --------------------------------------------------------------------------------- TCP_INFO
@record(frozen=True)
class TcpProgress:
    """What the kernel knows about one TCP connection (struct tcp_info, linux/tcp.h).

    Fields a kernel is too old to report are None (bytes_received: 4.1, data_segs_in: 4.6,
    rcv_ooopack: 5.4). out_of_order > 0 with bytes_received == 0 is the black-hole signature:
    later, smaller segments arrived, the large ones before them never did.
    """

    state: int
    snd_mss: int
    rcv_mss: int
    advmss: int
    pmtu: int
    retransmits: int
    total_retrans: int
    bytes_received: Optional[int] = None
    segs_in: Optional[int] = None
    data_segs_in: Optional[int] = None
    out_of_order: Optional[int] = None


def parse_tcp_info(raw: bytes) -> Optional[TcpProgress]:
    """Pure: the fields of struct tcp_info this module uses, by their fixed offsets."""
    if len(raw) < 104:
        return None

    def u32(off: int) -> Optional[int]:
        return struct.unpack_from("=I", raw, off)[0] if len(raw) >= off + 4 else None

    def u64(off: int) -> Optional[int]:
        return struct.unpack_from("=Q", raw, off)[0] if len(raw) >= off + 8 else None

    return TcpProgress(
        state=raw[0], retransmits=raw[2],
        snd_mss=u32(16) or 0, rcv_mss=u32(20) or 0, pmtu=u32(60) or 0, advmss=u32(84) or 0,
        total_retrans=u32(100) or 0, bytes_received=u64(128), segs_in=u32(140),
        data_segs_in=u32(152), out_of_order=u32(224),
    )


def tcp_progress(sock: socket.socket) -> Optional[TcpProgress]:
    try:
        return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256))
    except (OSError, AttributeError):
        return None


# ------------------------------------------------------------------------ small-MSS attempts
@record
class SizeAttempt:
    """One fresh connection with a given MSS. mss None: the system default (the control)."""

    mss: Optional[int]
    family: int
    ok: bool = False
    stage: str = "connect"  # where it ended: connect | tls | http | done
    stalled: bool = False  # connected, then no progress until the budget ran out
    error: str = ""
    ms: int = 0
    advertised_mss: Optional[int] = None  # what the SYN carried (TCP_MAXSEG after connect, + options)
    tls_version: Optional[str] = None
    http_status_line: Optional[str] = None
    progress: Optional[TcpProgress] = None  # TCP_INFO at the end

    @property
    def max_packet(self) -> Optional[int]:
        """Largest IP packet the server may send on this connection."""
        mss = self.mss if self.mss is not None else (self.progress.advmss if self.progress else None)
        return packet_size(mss, self.family) if mss else None

    def evidence(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"mss": self.mss if self.mss is not None else "default",
                              "max_packet": self.max_packet, "ok": self.ok, "stage": self.stage,
                              "stalled": self.stalled, "ms": self.ms}
        if self.error:
            ev["error"] = self.error
        if self.tls_version:
            ev["tls_version"] = self.tls_version
        if self.http_status_line:
            ev["http_status_line"] = self.http_status_line
        if self.progress is not None:
            ev["bytes_received"] = self.progress.bytes_received
            ev["out_of_order_packets"] = self.progress.out_of_order
        return ev


def _http_head(stream: socket.socket, host: str, port: int, scheme: str, budget: Budget) -> str:
    """GET / and read the status line (http11, as the check itself asks): enough to prove the
    response's first segments arrive."""
    stream.sendall(http11.request_bytes(host, port, scheme))
    return http11.read_status_line(stream, budget).decode("latin-1", errors="replace")


def attempt_size(address: str, port: int, host: str, context: Optional[ssl.SSLContext], budget: Budget,
                 mss: Optional[int], *, http: bool = False,
                 registry: Optional[List[socket.socket]] = None) -> SizeAttempt:
    """Connect with TCP_MAXSEG=mss set before connect (so the SYN advertises it), complete the
    TLS handshake and optionally read an HTTP status line, all within the budget.
    context None: plain HTTP (no TLS), the status line is then always read."""
    family = family_of(address)
    out = SizeAttempt(mss=mss, family=family)
    start = time.monotonic()
    sock = socket.socket(family, socket.SOCK_STREAM)
    if registry is not None:
        registry.append(sock)
    tls: Optional[ssl.SSLSocket] = None
    watch: Optional[socket.socket] = None  # a dup: TCP_INFO stays readable after a failed handshake
    try:
        if mss is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sock.settimeout(max(0.01, budget.left()))
        sock.connect((address, port))
        watch = sock.dup()
        if registry is not None:
            registry.append(watch)  # StallWatch.finish() may shut the connection down through it
        try:
            out.advertised_mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        except OSError:
            pass
        out.stage = "tls"
        sock.settimeout(max(0.01, budget.left()))
        stream: socket.socket = sock
        if context is not None:
            tls = stream = context.wrap_socket(sock, server_hostname=host.strip("[]"))
            out.tls_version = tls.version()
        if http or context is None:
            out.stage = "http"
            out.http_status_line = _http_head(stream, host, port, "http" if context is None else "https", budget)
        out.stage, out.ok = "done", True
    except (socket.timeout, TimeoutError):
        out.stalled = out.stage != "connect"
        out.error = "no progress until the probe budget ran out" if out.stalled else "connect timed out"
    except ssl.SSLError as exc:
        out.error = f"TLS error: {exc.reason or exc}"
    except OSError as exc:
        out.error = exc.strerror or str(exc)
    finally:
        if watch is not None:
            out.progress = tcp_progress(watch)
            watch.close()
        for holder in (tls, sock):
            if holder is not None:
                try:
                    holder.close()
                except OSError:
                    pass
        out.ms = elapsed_ms(start)
    return out


@record
class MssRetry:
    """Fresh connections at several sizes, started together after the original stalled."""

    address: str
    port: int
    attempts: List[SizeAttempt] = field(default_factory=list)
    stalled_after_ms: Optional[int] = None  # when the original was declared stalled
    original: Optional[TcpProgress] = None  # the stalled original connection, at that moment

    @property
    def control(self) -> Optional[SizeAttempt]:
        return next((a for a in self.attempts if a.mss is None), None)

    def evidence(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"address": self.address, "port": self.port,
                              "attempts": [a.evidence() for a in self.attempts]}
        if self.stalled_after_ms is not None:
            ev["retry_started_after_ms"] = self.stalled_after_ms
        if self.original is not None:
            ev["original_connection"] = {
                "bytes_received": self.original.bytes_received,
                "out_of_order_packets": self.original.out_of_order,
                "retransmits": self.original.retransmits,
                "advertised_mss": self.original.advmss,
            }
        return ev


def try_sizes(address: str, port: int, host: str, context: Optional[ssl.SSLContext], budget: Budget, *,
              ladder: Optional[Sequence[int]] = None, http: bool = False, control: bool = True,
              registry: Optional[List[socket.socket]] = None, grace: float = 0.25) -> MssRetry:
    """Every size of the ladder (plus a default-MSS control) at once, each bounded by the budget.

    Costs no extra time beyond the budget: the attempts run concurrently and end with it.
    """
    family = family_of(address)
    sizes: List[Optional[int]] = list(ladder if ladder is not None else default_ladder(family))
    if control:
        sizes.append(None)
    outcomes = run_parallel([functools.partial(attempt_size, address, port, host, context, budget, mss, http=http,
                                               registry=registry) for mss in sizes], budget, grace)
    out = MssRetry(address, port)
    for mss, outcome in zip(sizes, outcomes):
        if outcome is not None and outcome[0] == "ok":
            out.attempts.append(outcome[1])
        else:  # still running at the budget's end, or raised (e.g. no socket could be made)
            error = str(outcome[1]) if outcome is not None else "did not finish within the probe budget"
            out.attempts.append(SizeAttempt(mss=mss, family=family, stalled=outcome is None, stage="tls", error=error))
    return out


def stall_delay(budget_left: float) -> float:
    return max(STALL_MIN_S, min(STALL_MAX_S, budget_left * STALL_FRACTION))


class _Alarms:
    """One daemon thread runs the alarms of every stall watch of the process: arming a watch
    costs a heap entry, not a thread (a healthy run arms two per HTTPS check, and cancels them)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: List[List[Any]] = []  # [when, sequence, callback or None when cancelled]
        self._sequence = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()

    def add(self, when: float, callback: Callable[[], None]) -> List[Any]:
        entry: List[Any] = [when, next(self._sequence), callback]
        self.start()
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()  # only an alarm due before the one it waits for wakes the thread
        return entry

    def start(self) -> None:
        """Start the alarm thread (once). Outside the heap's lock: watches never queue behind a
        thread start."""
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, daemon=True, name="edgecheck-stall-alarms")
                thread.start()
                self._thread = thread

    def cancel(self, entry: List[Any]) -> None:
        with self._cond:
            entry[2] = None

    def _next(self) -> Callable[[], None]:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                left = self._heap[0][0] - time.monotonic()
                if left <= 0:
                    callback: Callable[[], None] = heapq.heappop(self._heap)[2]
                    return callback
                self._cond.wait(left)

    def _run(self) -> None:
        while True:
            callback = self._next()
            try:
                callback()
            except Exception:  # noqa: BLE001 - one watch's failure never stops the others' alarms
                pass


_ALARMS: Dict[int, _Alarms] = {}
_ALARMS_LOCK = threading.Lock()


def start_alarms() -> None:
    """Start the caller's namespace's alarm thread now (the web checks' warm-up), so the run's first
    watch does not wait for a thread to start while the other checks hold the interpreter."""
    _alarms().start()


_THREAD = threading.local()


def _alarms() -> _Alarms:
    """The alarms of the caller's network namespace: a retry's connections must leave from the
    namespace the watched connection is in, and a thread starts in its creator's namespace (one
    namespace, one alarm thread, on a node; tests probe from several). A thread's namespace is
    read once: the engine's workers never change theirs (a test enters one on a fresh thread)."""
    key = getattr(_THREAD, "netns", None)
    if key is None:
        try:
            key = _THREAD.netns = os.stat("/proc/thread-self/ns/net").st_ino
        except OSError:
            key = _THREAD.netns = 0
    with _ALARMS_LOCK:
        alarms = _ALARMS.get(key)
        if alarms is None:
            alarms = _ALARMS[key] = _Alarms()
        return alarms


class StallWatch:
    """Arms a small-MSS retry next to an operation that may stall (a TLS handshake or an HTTP
    request on a connection to address:port; context None for plain HTTP).

        watch = StallWatch(address, port, host, context, budget, sock=sock)
        outcome = handshake(sock, ...)                 # whatever the caller's TLS layer does
        retry = watch.finish(stalled=<outcome timed out>)
        verdict = judge_retry(retry) if retry else None

    If the operation has not finished after stall_delay(), fresh connections at the ladder's
    sizes and one at the default size start in the background and run until the budget ends, so
    a stalled probe still ends with its budget (the retry adds no time). A healthy operation
    finishes before the delay and costs nothing; if it finishes later, the retry is aborted.
    With sock given, the kernel's view of that connection (TCP_INFO) is recorded at the stall;
    the watch holds a dup of its fd until finish(), so always call finish() right after the
    operation (the connection only closes once both fds are closed).
    """

    def __init__(self, address: str, port: int, host: str, context: Optional[ssl.SSLContext], budget: Budget, *,
                 sock: Optional[socket.socket] = None, http: bool = False,
                 delay: Optional[float] = None, ladder: Optional[Sequence[int]] = None) -> None:
        self.address, self.port, self.host, self.context, self.budget = address, port, host, context, budget
        self.http, self.ladder = http, ladder
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._result: Optional[MssRetry] = None
        self._thread: Optional[threading.Thread] = None
        self._finished = False
        self._aborted = False
        # A dup keeps the connection's TCP_INFO readable even after the TLS layer took the fd.
        self._dup = sock.dup() if sock is not None else None
        wait = delay if delay is not None else stall_delay(budget.left())
        self._alarms = _alarms()
        self._alarm = self._alarms.add(self.start + wait, self._fire)

    @property
    def fired(self) -> bool:
        return self._thread is not None

    def _fire(self) -> None:
        with self._lock:
            if self._finished or self._thread is not None or self.budget.left() <= 0:
                return
            stalled_ms = elapsed_ms(self.start)
            original = tcp_progress(self._dup) if self._dup is not None else None

            def run() -> None:
                if self._aborted:  # the operation finished while this thread was starting
                    return
                retry = try_sizes(self.address, self.port, self.host, self.context, self.budget,
                                  ladder=self.ladder, http=self.http, registry=self._sockets)
                retry.stalled_after_ms, retry.original = stalled_ms, original
                self._result = retry

            self._thread = threading.Thread(target=run, daemon=True, name="edgecheck-mss-retry")
            self._thread.start()

    def finish(self, stalled: bool, grace: float = 0.5) -> Optional[MssRetry]:
        """stalled: the caller's operation ended without progress (its timeout). Returns the
        retry when there is one to judge, else None (and aborts a retry still running)."""
        self._alarms.cancel(self._alarm)
        if stalled:
            self._fire()  # the operation may have stalled before the timer (tiny budgets)
        with self._lock:
            self._finished = True
            thread = self._thread
        if self._dup is not None:
            self._dup.close()
        if not stalled:
            self._aborted = True
            for s in list(self._sockets):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return None
        if thread is not None:
            thread.join(max(0.0, self.budget.end + grace - time.monotonic()))
        return self._result


@record(frozen=True)
class PathMtuVerdict:
    """The retry judged. black_hole True is the `path-mtu` reason (SPEC 7.1)."""

    black_hole: bool
    why: str
    working_sizes: Tuple[int, ...] = ()  # IP packet sizes that completed
    failing_sizes: Tuple[int, ...] = ()  # IP packet sizes that stalled

    @property
    def largest_working(self) -> Optional[int]:
        return max(self.working_sizes) if self.working_sizes else None

    @property
    def smallest_failing(self) -> Optional[int]:
        return min(self.failing_sizes) if self.failing_sizes else None

    def evidence(self) -> Dict[str, Any]:
        return {"black_hole": self.black_hole, "why": self.why,
                "working_packet_sizes": list(self.working_sizes), "failing_packet_sizes": list(self.failing_sizes),
                "largest_working": self.largest_working, "smallest_failing": self.smallest_failing}


def judge_retry(retry: MssRetry) -> PathMtuVerdict:
    """Pure. A black hole needs: the default-size control connected and stalled like the
    original, and at least one smaller size completed. Anything else is not about size."""
    working = tuple(sorted({a.max_packet for a in retry.attempts if a.ok and a.max_packet}))
    failing = tuple(sorted({a.max_packet for a in retry.attempts if a.stalled and a.max_packet}))
    control = retry.control
    if control is not None and control.ok:
        return PathMtuVerdict(False, "a fresh connection at the default size completed: the stall was "
                                     "not caused by packet size", working, failing)
    if control is not None and control.stage == "connect":
        return PathMtuVerdict(False, f"a fresh connection could not be made ({control.error})", working, failing)
    small = [a for a in retry.attempts if a.mss is not None]
    if not any(a.ok for a in small):
        if all(a.stage == "connect" for a in small):
            return PathMtuVerdict(False, "the retries could not connect", working, failing)
        return PathMtuVerdict(False, "smaller packets stall too: the server or the path stops answering "
                                     "whatever the size", working, failing)
    return PathMtuVerdict(True, "large packets from the server are lost on the path while smaller ones "
                                "arrive, and no ICMP reports it (a path-MTU black hole)", working, failing)


def message(verdict: PathMtuVerdict, host: str, port: int, stage: str = "tls") -> str:
    """Pure: what a black hole found at stage "tls" or "http" looks like, with the sizes."""
    what = "the TLS handshake" if stage == "tls" else "the HTTP response"
    work, fail = verdict.largest_working, verdict.smallest_failing
    sizes = f"packets of up to {work} bytes arrive" if work else "smaller packets arrive"
    if fail:
        sizes += f", packets of {fail} bytes and more are lost"
    return (f"TCP {port} to {host} connects but {what} stalls: {sizes}, and nothing reports it "
            f"(a path-MTU black hole). A retry with a smaller TCP MSS completes.")

