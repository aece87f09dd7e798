"""Run every check of a plan concurrently, bounded in flight and by a hard overall deadline.

Results come back in plan order whatever happens: a probe that raises becomes fail/internal-error,
a probe still running at the deadline becomes fail/deadline-exceeded and is abandoned on its
daemon thread (concurrent.futures would join it at interpreter exit and hang the run).

Scheduling comes from the registry: local checks first, on workers of their own (they are quick
and must not queue behind hung network probes), alone until they are done or LOCAL_HEAD_START_S
passed (one interpreter lock: their CPU work would otherwise be counted in the network probes'
times); then the network probes, the kinds that need the most round trips first (an HTTPS check:
DNS, TCP, TLS, HTTP). Each such level has the interpreter to itself until its probes are done or
LEVEL_HEAD_START_S passed, then the next level starts. Where CPU is the bottleneck (the in-suite
lab: every probe at once made a 2 ms HTTPS check measure 20 ms) each probe's time then stays
close to its own; on a real network the longest probes bound the run anyway (longest first is
the classic rule for the shortest makespan), and under a black hole the run ends at most one
head start per level later. A probe kind that reads others' results (`after`) runs once they are
published in the run's facts. A kind with a `batch` function gets all its targets at once and
probes them together on one non-blocking loop (raw TCP connects, `reach`): hundreds of sockets
cost less than a thread each, so they never queue behind the bounded workers.

Waiting is never a network result: a worker starts a network probe only while its whole timeout
still fits before the hard deadline; one that waited longer is deadline-exceeded, "did not
start", never a timeout cut short. The deadline itself grows with the work that cannot run at
once (hard_deadline, the one policy).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from edgecheck import registry
from edgecheck.evidence import Crash
from edgecheck.model import CheckResult, Evidence, Reason, Status, Target
from edgecheck.runcontext import RunContext

CheckFn = Callable[[Target, RunContext], CheckResult]
Item = Tuple[int, Target]

MAX_IN_FLIGHT = 32
DEADLINE_SLACK_S = 2.0  # the levels' head starts, the last syscalls returning, results collected
LOCAL_HEAD_START_S = 0.1  # the network probes of a wave start once its local checks are done, or after this
LEVEL_HEAD_START_S = 0.02  # the next level of network probes starts once this one is done, or after this


def hard_deadline(targets: Sequence[Target], timeout: float, max_in_flight: int = MAX_IN_FLIGHT) -> float:
    """Seconds after which a run stops waiting, however many probes hang (SPEC section 6): one
    probe timeout per wave of network probes that cannot run at once (on the bounded workers, or
    in a batched kind's loop: its name lookups and its descriptor window), one for the local
    checks and the kinds that run after others (the clock after NTP), and a little slack."""
    network = [t for t in targets if t.skip is None and registry.get(t.probe).network]
    threaded = [t for t in network if not registry.get(t.probe).batch]
    waves = max(1, math.ceil(len(threaded) / max(1, max_in_flight)))
    batched = [t for t in network if registry.get(t.probe).batch]
    if batched:
        from edgecheck.checks.batch import waves_needed

        waves = max(waves, max(waves_needed([t for t in batched if t.probe == p]) for p in {t.probe for t in batched}))
    return timeout * (waves + 1) + DEADLINE_SLACK_S


_ARENAS_CAPPED = False
M_ARENA_MAX = -8  # glibc malloc.h


def cap_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives every thread that allocates its own malloc arena (up to 8 per core): with the
    engine's workers and the name-lookup threads that is megabytes of peak RSS for threads that
    mostly wait on sockets. Capped once, before the first worker starts (mallopt(3)); nothing
    happens on another C library."""
    global _ARENAS_CAPPED
    if _ARENAS_CAPPED:
        return
    _ARENAS_CAPPED = True
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)
    except (AttributeError, OSError):
        pass


def _skip_result(target: Target) -> CheckResult:
    assert target.skip is not None
    return CheckResult(target, Status.SKIP, target.skip.reason, target.skip.message)


def _internal_error(target: Target, exc: BaseException, started: float) -> CheckResult:
    return CheckResult(target, Status.FAIL, Reason.INTERNAL_ERROR,
                       f"The {target.probe} check crashed: {type(exc).__name__}: {exc}.",
                       evidence=Evidence(Crash(type(exc).__name__, str(exc))),
                       duration_ms=int((time.monotonic() - started) * 1000))


def _deadline_result(target: Target, started: Optional[float], now: float) -> CheckResult:
    if started is None:
        msg = ("The check did not start: it waited for a free worker until less than its timeout was left "
               "before the run's overall deadline (this is about the run, not the network).")
    else:
        msg = f"The check was still running at the run's overall deadline ({now - started:.1f} s in) and was abandoned."
    return CheckResult(target, Status.FAIL, Reason.DEADLINE_EXCEEDED, msg,
                       duration_ms=int((now - started) * 1000) if started is not None else 0)


class _Batch:
    """A set of targets run on daemon worker threads, handed out in order; collect() returns by the
    deadline. Workers take only the first `opened` items (open() lets more through: the next level
    of network probes), and there are never more workers than opened items, nor than max_in_flight."""

    def __init__(self, items: Sequence[Item], table: Mapping[str, CheckFn], ctx: RunContext,
                 max_in_flight: int, name: str = "check", opened: Optional[int] = None) -> None:
        self.items, self.name = list(items), name
        self.table, self.ctx = table, ctx
        self.results: Dict[int, CheckResult] = {}
        self.started: Dict[int, float] = {}
        lock = threading.Lock()
        self.cond = threading.Condition(lock)  # a result came in, a worker ended
        self.opening = threading.Condition(lock)  # more items opened
        self.next = 0
        self.opened = len(self.items) if opened is None else opened
        self.max_workers = max(1, max_in_flight)
        self.workers = self.running = 0

    def open(self, count: int) -> None:
        with self.cond:
            self.opened = max(self.opened, min(count, len(self.items)))
            self.opening.notify_all()
        self.start()

    def _take(self) -> Optional[Item]:
        with self.cond:
            while self.next >= self.opened and self.next < len(self.items):
                left = self.ctx.deadline - time.monotonic()
                if left <= 0:
                    return None
                self.opening.wait(left)
            now = time.monotonic()
            if self.next >= len(self.items) or now >= self.ctx.deadline:
                return None
            item = self.items[self.next]
            if registry.get(item[1].probe).network and now + self.ctx.timeout > self.ctx.deadline:
                return None  # it would get less than its timeout: left unstarted, not cut short
            self.next += 1
            self.started[item[0]] = now
            return item

    def _work(self) -> None:
        try:
            self._work_items()
        finally:
            with self.cond:
                self.running -= 1
                self.cond.notify_all()

    def _work_items(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            index, target = item
            started = self.started[index]
            try:
                result = self.table[target.probe](target, self.ctx)
                if not isinstance(result, CheckResult):
                    raise TypeError(f"check returned {type(result).__name__}, not CheckResult")
            except BaseException as exc:  # noqa: BLE001 - one broken check never ends the run
                result = _internal_error(target, exc, started)
            with self.cond:
                self.results.setdefault(index, result)
                self.cond.notify_all()

    def start(self, ready: int = 0) -> "_Batch":
        """Workers for the opened items not yet taken, and `ready` more that wait for items still
        to be opened (up to max_in_flight in all)."""
        with self.cond:
            idle = self.running - (self.next - len(self.results))  # workers waiting for an item
            wanted = self.opened - self.next + ready - max(0, idle)
            new = max(0, min(self.max_workers - self.running, wanted, len(self.items) - self.next))
            first = self.workers
            self.workers += new
            self.running += new
        for n in range(first, first + new):
            threading.Thread(target=self._work, daemon=True, name=f"edgecheck-{self.name}-{n}").start()
        return self

    def wait(self, until: float, indexes: Optional[Sequence[int]] = None) -> None:
        """Until every item (of `indexes`) has a result, the workers ended, or `until` (a
        time.monotonic() value)."""
        waited = [i for i, _ in self.items] if indexes is None else indexes
        with self.cond:
            while any(i not in self.results for i in waited) and self.running > 0:
                left = min(until, self.ctx.deadline) - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    def collect(self) -> Dict[int, CheckResult]:
        if not self.items:
            return {}
        self.wait(self.ctx.deadline)
        with self.cond:
            now = time.monotonic()
            for index, target in self.items:
                if index not in self.results:
                    self.results[index] = _deadline_result(target, self.started.get(index), now)
            return dict(self.results)


class _Group:
    """Every target of one batched probe kind, probed together by its batch function on one
    daemon thread. The function ends its own loop shortly before the deadline (each probe it could
    not finish is deadline-exceeded there); collect() never waits past the deadline."""

    def __init__(self, items: Sequence[Item], fn: registry.BatchFn, ctx: RunContext) -> None:
        self.items, self.fn, self.ctx = list(items), fn, ctx
        self.results: Optional[List[CheckResult]] = None
        self.error: Optional[BaseException] = None
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True, name="edgecheck-batch")

    def start(self) -> "_Group":
        self.thread.start()
        return self

    def wait(self, until: float) -> None:
        self.thread.join(max(0.0, min(until, self.ctx.deadline) - time.monotonic()))

    def _run(self) -> None:
        try:
            results = self.fn([t for _, t in self.items], self.ctx)
            if len(results) != len(self.items) or not all(isinstance(r, CheckResult) for r in results):
                raise TypeError("batch check returned a result list that does not match its targets")
            self.results = list(results)
        except BaseException as exc:  # noqa: BLE001 - one broken kind never ends the run
            self.error = exc

    def collect(self) -> Dict[int, CheckResult]:
        self.thread.join(max(0.0, self.ctx.deadline - time.monotonic()))
        now = time.monotonic()
        out: Dict[int, CheckResult] = {}
        for n, (index, target) in enumerate(self.items):
            if self.results is not None:
                out[index] = self.results[n]
            elif self.error is not None:
                out[index] = _internal_error(target, self.error, self.started)
            else:
                out[index] = _deadline_result(target, self.started, now)
        return out


def _load_batches(items: Sequence[Item], table: Optional[Mapping[str, CheckFn]]) -> Dict[str, registry.BatchFn]:
    """The batch function of each batched kind among items (none for kinds a test table replaces)."""
    out: Dict[str, registry.BatchFn] = {}
    for probe in dict.fromkeys(t.probe for _, t in items):
        kind = registry.get(probe)
        if kind.batch and not (table and probe in table):
            out[probe] = _LoadedBatch(kind)
    return out


class _LoadedBatch:
    def __init__(self, probe: registry.ProbeKind) -> None:
        self.probe = probe

    def __call__(self, targets: Sequence[Target], ctx: RunContext) -> List[CheckResult]:
        return self.probe.load_batch()(targets, ctx)


class _Loaded:
    """The registry's check for a probe kind, imported before the checks start (prepare) or on
    first call: a broken module only fails its own checks (as internal errors), never the run."""

    def __init__(self, probe: registry.ProbeKind) -> None:
        self.probe = probe
        self._fn: Optional[CheckFn] = None

    def prepare(self, targets: Sequence[Target], ctx: RunContext) -> None:
        """Import the check now, and let its module warm what the run's checks share
        (`warm(targets, ctx)`, e.g. the TLS contexts, built on a background thread)."""
        self._fn = self.probe.load()
        warm = getattr(importlib.import_module(self.probe.check.partition(":")[0]), "warm", None)
        if warm is not None:
            warm(targets, ctx)

    def __call__(self, target: Target, ctx: RunContext) -> CheckResult:
        return (self._fn or self.probe.load())(target, ctx)


def warm(targets: Sequence[Target], ctx: RunContext, table: Optional[Mapping[str, CheckFn]] = None) -> None:
    """Every check the plan runs is imported before any starts (an import inside a check would be
    counted in its time and hold the other checks at the import lock), and each check module's
    warm() starts what the run's checks share (RunFacts.prefetch). The runner calls this as soon as
    the plan is known, so that work overlaps the rest of the start-up; run_checks calls it too,
    for callers that did not (once per run: the second call returns at once). The local kinds' first: what they prefetch waits on
    other processes (nft, chronyc, `--version`), the longer it has to overlap the better."""
    if not ctx.facts.first_time("warm"):
        return
    table = table if table is not None else {p.name: _Loaded(p) for p in registry.PROBES}
    kinds = sorted(dict.fromkeys(t.probe for t in targets if t.skip is None), key=lambda n: registry.get(n).network)
    for name in kinds:
        check = table.get(name)
        if isinstance(check, _Loaded):
            try:
                check.prepare(targets, ctx)
            except Exception:  # noqa: BLE001 - the check then fails on its own, as an internal error
                pass


def run_checks(targets: Sequence[Target], ctx: RunContext, *, max_in_flight: int = MAX_IN_FLIGHT,
               table: Optional[Mapping[str, CheckFn]] = None) -> List[CheckResult]:
    """Every target's CheckResult, in plan order, by ctx.deadline at the latest.

    Targets with `skip` produce their skip result without a probe. `table` replaces the
    registry's checks (tests). Without a finite ctx.deadline the engine sets hard_deadline().
    """
    targets = list(targets)
    cap_malloc_arenas()
    if not math.isfinite(ctx.deadline):
        ctx = dataclasses.replace(ctx, deadline=time.monotonic() + hard_deadline(targets, ctx.timeout, max_in_flight))
    if not ctx.targets:
        ctx = dataclasses.replace(ctx, targets=tuple(targets))
    checks = {p.name: table[p.name] if table and p.name in table else _Loaded(p) for p in registry.PROBES}
    checks.update(table or {})
    warm(targets, ctx, checks)
    return _run_waves(targets, ctx, checks, max_in_flight, table)


class _Levels:
    """The network probes of a wave, level by level (most round trips first): the threaded ones on
    one set of bounded workers that take them in that order, each batched kind on its loop from its
    level on. The first level's workers start at once and wait: a thread start costs the others'
    time while they hold the interpreter."""

    def __init__(self, network: List[Item], ctx: RunContext, checks: Mapping[str, CheckFn], max_in_flight: int,
                 table: Optional[Mapping[str, CheckFn]]) -> None:
        self.network, self.ctx = network, ctx
        self.trips = {t.probe: registry.get(t.probe).round_trips for _, t in network}
        self.levels = sorted(set(self.trips.values()), reverse=True)
        self.batches = _load_batches(network, table)
        self.threaded = sorted((i for i in network if i[1].probe not in self.batches),
                               key=lambda i: self.trips[i[1].probe], reverse=True)
        self.probes = _Batch(self.threaded, checks, ctx, max_in_flight, opened=0)
        self.probes.start(ready=self._upto(self.levels[0]) if self.levels else 0)
        self.groups: List[_Group] = []

    def _upto(self, level: int) -> int:
        return sum(1 for _, t in self.threaded if self.trips[t.probe] >= level)

    def start(self) -> "_Levels":
        """Opens each level once the one before is done or LEVEL_HEAD_START_S has passed; returns
        when the last has started."""
        for n, level in enumerate(self.levels):
            if n:
                until = time.monotonic() + LEVEL_HEAD_START_S
                self.probes.wait(until, [index for index, t in self.threaded if self.trips[t.probe] > level])
                for group in self.groups:
                    group.wait(until)
            self.probes.open(self._upto(level))
            self.groups += [_Group([i for i in self.network if i[1].probe == probe], fn, self.ctx).start()
                            for probe, fn in self.batches.items() if self.trips[probe] == level]
        return self

    def collect(self) -> Dict[int, CheckResult]:
        results = self.probes.collect()
        for group in self.groups:
            results.update(group.collect())
        return results


def _run_waves(targets: List[Target], ctx: RunContext, checks: Mapping[str, CheckFn], max_in_flight: int,
               table: Optional[Mapping[str, CheckFn]]) -> List[CheckResult]:
    results: Dict[int, CheckResult] = {}
    waves: List[List[Item]] = [[], []]  # kinds with no dependency, then kinds that read others' results
    for index, target in enumerate(targets):
        if target.skip is not None:
            results[index] = _skip_result(target)
        else:
            waves[1 if registry.get(target.probe).after else 0].append((index, target))
    for wave in waves:
        local = [i for i in wave if not registry.get(i[1].probe).network]
        network = [i for i in wave if registry.get(i[1].probe).network]
        # The local checks first, alone for a moment: on one interpreter lock, their CPU work would
        # otherwise stretch every network probe's time (and they never queue behind hung probes).
        levels = _Levels(network, ctx, checks, max_in_flight, table)
        quick = _Batch(local, checks, ctx, max_in_flight, "local").start()
        quick.wait(time.monotonic() + LOCAL_HEAD_START_S)
        levels.start()
        results.update(quick.collect())
        results.update(levels.collect())
        for probe in {t.probe for t in targets}:
            ctx.facts.publish(probe, [results[i] for i, t in enumerate(targets) if t.probe == probe and i in results])
    return [results[i] for i in range(len(targets))]
