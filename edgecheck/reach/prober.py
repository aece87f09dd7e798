"""`edgecheck reach`: the probes, single or many at once, over one non-blocking loop (probeloop.py).

Which probe applies to a port is the caller's decision, from the catalog (the inbound entries'
`answers`, edgecheck/reach/targets.py):
- `edgecheck listen` on the node (before the join): the token probe, TCP or UDP;
- a joined node: a TLS handshake with verification off (reachability, not trust, and the evidence
  says so), or an HTTP answer. A TLS probe to a plain-HTTP port reports "the port speaks plain
  HTTP, not TLS".

Targets are IP literals: resolving NODE names is the caller's job (the run's resolver).
"""

from __future__ import annotations

import time
from typing import List, Optional, Sequence, Union

from edgecheck.reach import protocol as wire
from edgecheck.reach.probeloop import (DEFAULT_MAX_OPEN, HttpJob, Job, LoopStats, ProbeLoop, ProbeResult,
                                       TcpConnectJob, TlsJob, TokenTcpJob, TokenUdpJob, UdpExchangeJob)
from edgecheck.reach.targets import reach_id
from edgecheck.records import record

@record(frozen=True)
class ReachTarget:
    """One probe to make. `node` is NODE as the user wrote it (for check ids), `address` its IP."""

    address: str
    port: int
    protocol: str  # "tcp" | "udp"
    method: str = "token"  # "token" | "tls" | "http" | "https" | "tcp"
    node: str = ""
    server_name: Optional[str] = None  # TLS SNI; None for an IP (RFC 6066: no IP literals in SNI)

    @property
    def check_id(self) -> str:
        return reach_id(self.node or self.address, self.port, self.protocol)


def make_job(target: ReachTarget, key: Optional[bytes]) -> Job:
    if target.method == "token":
        if key is None:
            raise ValueError("the token probe needs a token")
        if target.protocol == "udp":
            return TokenUdpJob(target.address, target.port, key)
        return TokenTcpJob(target.address, target.port, key)
    if target.protocol != "tcp":
        raise ValueError(f"{target.method} probes run over TCP, not {target.protocol}")
    if target.method == "tls":
        return TlsJob(target.address, target.port, server_name=target.server_name)
    if target.method == "https":
        return TlsJob(target.address, target.port, server_name=target.server_name, then_http=True)
    if target.method == "http":
        return HttpJob(target.address, target.port)
    if target.method == "tcp":
        return TcpConnectJob(target.address, target.port)
    raise ValueError(f"unknown probe method {target.method!r}")


def reach_many(targets: Sequence[ReachTarget], token: Optional[str], timeout: float, *,
               deadline: Optional[float] = None, max_open: int = DEFAULT_MAX_OPEN,
               stats: Optional[List[LoopStats]] = None) -> List[ProbeResult]:
    """Every target probed concurrently on this thread; results in target order.

    Each probe gets `timeout` seconds from its own start; `deadline` (a time.monotonic() value)
    bounds the whole call. A probe that never got a socket in time is NOT_STARTED, one cut off is
    DEADLINE: neither is a network finding. `stats`, when given, receives the loop's LoopStats.
    """
    key = wire.derive_key(token) if token else None
    loop = ProbeLoop(timeout, deadline=deadline, max_open=max_open)
    results = loop.run([make_job(t, key) for t in targets])
    if stats is not None:
        stats.append(loop.stats)
    return results


def _seconds(budget: Union[float, "object"]) -> float:
    """A float in seconds, or anything with .left() (edgecheck.probes.budget.Budget)."""
    left = getattr(budget, "left", None)
    return max(0.0, float(left() if callable(left) else budget))  # type: ignore[arg-type]


def _one(job: Job, budget: Union[float, object]) -> ProbeResult:
    seconds = _seconds(budget)
    return ProbeLoop(seconds, deadline=time.monotonic() + seconds + 0.05).run([job])[0]


def tls_reachable(address: str, port: int, budget: Union[float, object], server_name: Optional[str] = None) -> ProbeResult:
    """A TLS handshake with verification off (reachability, not trust); OK when it completes."""
    return _one(TlsJob(address, port, server_name=server_name), budget)


def http_answers(address: str, port: int, budget: Union[float, object], *, tls: bool = False,
                 path: str = "/") -> ProbeResult:
    """One GET (over unverified TLS when `tls`); OK on any HTTP status line."""
    job: Job = TlsJob(address, port, then_http=True, path=path) if tls else HttpJob(address, port, path)
    return _one(job, budget)


def tcp_connect_many(endpoints: Sequence[tuple], timeout: float, *, deadline: Optional[float] = None,
                     max_open: int = DEFAULT_MAX_OPEN) -> List[ProbeResult]:
    """Plain TCP connects to (address, port) pairs, all at once (for the engine's raw TCP targets)."""
    return ProbeLoop(timeout, deadline=deadline, max_open=max_open).run(
        [TcpConnectJob(a, p) for a, p in endpoints])


__all__ = ["ReachTarget", "reach_many", "tls_reachable", "http_answers", "tcp_connect_many",
           "make_job", "UdpExchangeJob"]
