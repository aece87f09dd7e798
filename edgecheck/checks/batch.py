"""What the batched checks share (registry `batch`): every target's name on the run's shared
resolver, a bounded number at once, then every socket of every target in one non-blocking loop
(edgecheck/reach/probeloop.py) instead of one worker thread per check.

Each target keeps the budget a single check has: its timeout starts with its own DNS lookup, and
its sockets get what is left of it, counted from when they start. A target that waited for a
lookup slot (or a descriptor) until its timeout no longer fits before the run's deadline is not
started and says so: deadline-exceeded, never a network result.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import field
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from edgecheck.evidence import Resolution
from edgecheck.model import CheckResult, Evidence, Reason, Status, Target
from edgecheck.netloc import ip_literal
from edgecheck.records import record
from edgecheck.runcontext import RunContext

if TYPE_CHECKING:
    from edgecheck.checks.base import Probing
    from edgecheck.reach.probeloop import Feed, Job, ProbeResult

RESOLVE_IN_FLIGHT = 32  # name lookups at once (each a blocking lookup on its own thread)
COLLECT_MARGIN_S = 0.3  # the loop ends this long before the run's deadline: the engine gets every result
NOT_STARTED = ("The check did not start: it waited for a name-lookup slot until less than its timeout was "
               "left before the run's overall deadline (this is about the run, not the network).")


def waves_needed(targets: Sequence[Target]) -> int:
    """Probe timeouts one batched kind needs back to back: its waves of name lookups, then its
    waves of sockets (the descriptor window this process can reach). For engine.hard_deadline."""
    from edgecheck.reach.probeloop import reachable_window

    names = {t.host.lower() for t in targets if t.host and ip_literal(t.host) is None}
    lookups = math.ceil(len(names) / RESOLVE_IN_FLIGHT)
    return lookups + max(1, math.ceil(len(targets) / reachable_window(len(targets))))


@record
class Named:
    """One target after its DNS layer: its addresses and evidence so far, or its result.

    `probing` (checks/base.py: the budget and the DNS layer of a single check) exists for names,
    and for every target when the caller asked for it; an IP literal needs none, so a run of IP
    targets never imports the resolver."""

    target: Target
    start: float = 0.0
    addresses: List[str] = field(default_factory=list)
    evidence: Evidence = field(default_factory=Evidence)
    probing: Optional["Probing"] = None
    failure: Optional[CheckResult] = None
    dns_ms: int = 0
    jobs: Optional[List["Job"]] = None  # its sockets on the loop (results on job.result)

    def job_timeout(self, timeout: float) -> float:
        """What is left of this target's own timeout for its sockets once its DNS lookup is done
        (time spent waiting for a slot or for other targets is not taken from it)."""
        return max(0.01, timeout - self.dns_ms / 1000.0)


def _not_started(target: Target) -> CheckResult:
    return CheckResult(target, Status.FAIL, Reason.DEADLINE_EXCEEDED, NOT_STARTED)


def _resolve(named: Named, ctx: RunContext, deadline: float, probing: bool) -> None:
    now = time.monotonic()
    if now + ctx.timeout > deadline:
        named.failure = _not_started(named.target)
        return
    named.start = now
    host = named.target.host or ""
    literal = ip_literal(host)
    if literal is not None and not named.target.expected_cidrs:
        named.evidence.add(Resolution(host=host, addresses=[literal], literal=True))
        named.addresses = [literal]
        if probing:
            named.probing = _probing(named.target, ctx)
            named.probing.evidence, named.probing.addresses = named.evidence, named.addresses
        return
    p = named.probing = _probing(named.target, ctx)
    named.failure = p.resolve()
    named.evidence, named.addresses = p.evidence, p.addresses
    named.dns_ms = int((time.monotonic() - p.start) * 1000)


def _probing(target: Target, ctx: RunContext) -> "Probing":
    from edgecheck.checks.base import Probing

    return Probing(target, ctx)


JobMaker = Callable[[Named], List["Job"]]


def _needs_lookup(target: Target) -> bool:
    return ip_literal(target.host or "") is None or bool(target.expected_cidrs)


def probe_all(targets: Sequence[Target], ctx: RunContext, make_jobs: JobMaker, *,
              probing: bool = False) -> List[Named]:
    """Every target's DNS layer, then its sockets, all on one loop: IP literals' jobs start at
    once; a name's jobs join the running loop as soon as its own lookup ends (names
    RESOLVE_IN_FLIGHT at a time; the shared resolver asks once per name). Each Named ends with
    .jobs (their results on job.result) or .failure. `probing`: give every target a checks/base.py
    Probing (the tcp check ends through it). The loop ends COLLECT_MARGIN_S before the deadline."""
    from edgecheck.reach.probeloop import Feed, ProbeLoop

    deadline = ctx.deadline - COLLECT_MARGIN_S
    named = [Named(t) for t in targets]
    names = [n for n in named if _needs_lookup(n.target)]
    first: List["Job"] = []
    for n in named:
        if not _needs_lookup(n.target):
            _resolve(n, ctx, deadline, probing)
            n.jobs = make_jobs(n) if n.failure is None else []
            first.extend(n.jobs)
    feed = Feed(expected=len(names)) if names else None
    lookups = _Lookups(names, ctx, deadline, probing, make_jobs, feed)
    try:
        ProbeLoop(ctx.timeout, deadline=deadline).run(first, feed)
    finally:
        lookups.end()
        if feed is not None:
            feed.release()
    return named


class _Lookups:
    """The name targets' lookups on worker threads; each publishes its result (and hands its jobs
    to the running loop) unless the loop has already ended (end()): then it was not started."""

    def __init__(self, names: List[Named], ctx: RunContext, deadline: float, probing: bool,
                 make_jobs: JobMaker, feed: Optional["Feed"]) -> None:
        self.names, self.ctx, self.deadline, self.probing = names, ctx, deadline, probing
        self.make_jobs, self.feed = make_jobs, feed
        self.lock = threading.Lock()
        self.over = False
        if names:
            threading.Thread(target=self._run, daemon=True, name="edgecheck-lookups").start()

    def _run(self) -> None:
        _in_parallel(self.names, self._one, self.deadline)
        if self.feed is not None:
            self.feed.close()

    def _one(self, n: Named) -> None:
        scratch = Named(n.target)
        _resolve(scratch, self.ctx, self.deadline, self.probing)
        scratch.jobs = self.make_jobs(scratch) if scratch.failure is None else []
        with self.lock:
            if self.over:
                return
            n.__dict__.update(scratch.__dict__)
        if self.feed is not None:
            self.feed.put(scratch.jobs)

    def end(self) -> None:
        with self.lock:
            self.over = True
            for n in self.names:
                if n.jobs is None and n.failure is None:
                    n.failure = _not_started(n.target)


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


def cut_short(target: Target, evidence: Evidence, results: Sequence["ProbeResult"]) -> Optional[CheckResult]:
    """deadline-exceeded when a probe of this target never started or was abandoned by the loop:
    what it found is about this run, not the network."""
    from edgecheck.reach.probeloop import Outcome

    waited = [r for r in results if r.outcome in (Outcome.DEADLINE, Outcome.NOT_STARTED)]
    if not waited:
        return None
    detail = waited[0].detail
    return CheckResult(target, Status.FAIL, Reason.DEADLINE_EXCEEDED,
                       f"{detail[:1].upper()}{detail[1:]} (this is about the run, not the network).",
                       evidence=evidence, duration_ms=max(r.ms for r in results))
