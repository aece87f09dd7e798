"""What the batched checks share (registry `batch`): every target's name on the run's shared
resolver, a bounded number at once, then every socket of every target in one non-blocking loop
(edgecheck/reach/probeloop.py) instead of one worker thread per check.

Each target keeps the budget a single check has: its timeout starts with its own DNS lookup, and
its sockets get what is left of it, counted from when they start. A target that waited for a
lookup slot (or a descriptor) until its timeout no longer fits before the run's deadline is not
started and says so: deadline-exceeded, never a network result.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from edgecheck.checks.base import Probing
from edgecheck.evidence import Resolution
from edgecheck.model import CheckResult, Reason, Status, Target
from edgecheck.runcontext import RunContext

if TYPE_CHECKING:
    from edgecheck.reach.probeloop import Job, ProbeResult

RESOLVE_IN_FLIGHT = 32  # name lookups at once (each is a blocking dnspython call on its own thread)
COLLECT_MARGIN_S = 0.3  # the loop ends this long before the run's deadline: the engine gets every result
NOT_STARTED = ("The check did not start: it waited for a name-lookup slot until less than its timeout was "
               "left before the run's overall deadline (this is about the run, not the network).")


def literal_address(host: str) -> Optional[str]:
    """The address when host is an IP literal (no DNS, and no dnspython import), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def waves_needed(targets: Sequence[Target]) -> int:
    """Probe timeouts one batched kind needs back to back: its waves of name lookups, then its
    waves of sockets (the descriptor window this process can reach). For engine.hard_deadline."""
    from edgecheck.reach.probeloop import reachable_window

    names = {t.host.lower() for t in targets if t.host and literal_address(t.host) is None}
    lookups = math.ceil(len(names) / RESOLVE_IN_FLIGHT)
    return lookups + max(1, math.ceil(len(targets) / reachable_window(len(targets))))


@dataclass
class Named:
    """One target after its DNS layer: the probing (budget, evidence, addresses), or its result."""

    target: Target
    probing: Optional[Probing] = None
    failure: Optional[CheckResult] = None
    dns_ms: int = 0

    def job_timeout(self) -> float:
        """What is left of this target's own budget for its sockets."""
        assert self.probing is not None
        return self.probing.budget.left()


def _not_started(target: Target) -> CheckResult:
    return CheckResult(target, Status.FAIL, Reason.DEADLINE_EXCEEDED, NOT_STARTED)


def _resolve(named: Named, ctx: RunContext, deadline: float) -> None:
    if time.monotonic() + ctx.timeout > deadline:
        named.failure = _not_started(named.target)
        return
    probing = named.probing = Probing(named.target, ctx)
    host = named.target.host or ""
    literal = literal_address(host)
    if literal is not None and not named.target.expected_cidrs:
        probing.add(Resolution(host=host, addresses=[literal], literal=True))
        probing.addresses = [literal]
        return
    named.failure = probing.resolve()
    named.dns_ms = int((time.monotonic() - probing.start) * 1000)


def resolve_all(targets: Sequence[Target], ctx: RunContext, deadline: float) -> List[Named]:
    """Every target's DNS layer; literals at once, names RESOLVE_IN_FLIGHT at a time (the shared
    resolver asks for a name once however many targets share it)."""
    out = [Named(t) for t in targets]
    names = [n for n in out if literal_address(n.target.host or "") is None or n.target.expected_cidrs]
    for n in out:
        if n not in names:
            _resolve(n, ctx, deadline)
    _in_parallel(names, lambda n: _resolve(n, ctx, deadline), deadline)
    for n in names:
        if n.probing is None and n.failure is None:  # its worker did not finish by the deadline
            n.failure = _not_started(n.target)
    return out


def _in_parallel(items: Sequence[Named], call: Callable[[Named], None], deadline: float) -> None:
    pending = list(reversed(items))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not pending:
                    return
                item = pending.pop()
            call(item)

    threads = [threading.Thread(target=work, daemon=True, name="edgecheck-resolve")
               for _ in range(min(RESOLVE_IN_FLIGHT, len(items)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))


def run_jobs(jobs: Sequence["Job"], ctx: RunContext) -> List["ProbeResult"]:
    """Every job on one loop, ending COLLECT_MARGIN_S before the run's deadline."""
    from edgecheck.reach.probeloop import ProbeLoop

    loop = ProbeLoop(ctx.timeout, deadline=ctx.deadline - COLLECT_MARGIN_S)
    return loop.run(jobs)


def cut_short(target: Target, probing: Probing, results: Sequence["ProbeResult"]) -> Optional[CheckResult]:
    """deadline-exceeded when a probe of this target never started or was abandoned by the loop:
    what it found is about this run, not the network."""
    from edgecheck.reach.probeloop import Outcome

    waited = [r for r in results if r.outcome in (Outcome.DEADLINE, Outcome.NOT_STARTED)]
    if not waited:
        return None
    detail = waited[0].detail
    return CheckResult(target, Status.FAIL, Reason.DEADLINE_EXCEEDED,
                       f"{detail[:1].upper()}{detail[1:]} (this is about the run, not the network).",
                       evidence=probing.evidence, duration_ms=max(r.ms for r in results))
