"""Run every check of a plan concurrently, bounded in flight and by a hard overall deadline.

Results come back in plan order whatever happens: a probe that raises becomes fail/internal-error,
a probe still running at the deadline becomes fail/deadline-exceeded and is abandoned on its
daemon thread (concurrent.futures would join it at interpreter exit and hang the run).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from edgecheck.model import CheckResult, Probe, Reason, RunContext, Status, Target
from edgecheck.probes.resolver import SharedResolver

CheckFn = Callable[[Target, RunContext], CheckResult]

NETWORK_PROBES = (Probe.HTTPS, Probe.HTTP, Probe.TCP, Probe.NTP, Probe.IKE)

# Host checks belong to another module; imported only when a plan needs them.
HOST_CHECKS: Mapping[Probe, str] = {
    Probe.INBOUND: "edgecheck.host.ports:check_inbound",
    Probe.TOOL: "edgecheck.host.tools:check_tool",
    Probe.CLOCK: "edgecheck.host.clock:check_clock",
}

# When the caller gives no deadline, one is still imposed: enough for every wave of probes.
DEADLINE_SLACK_S = 2.0


class _LazyCheck:
    """Imports module:function on first call so a missing host module only fails its own checks."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __call__(self, target: Target, ctx: RunContext) -> CheckResult:
        module, _, name = self.spec.partition(":")
        return getattr(importlib.import_module(module), name)(target, ctx)


def registry(resolver: Optional[SharedResolver] = None) -> Dict[Probe, CheckFn]:
    """Probe -> check(target, ctx). Network checks share one resolver (one lookup per name per run)."""
    from edgecheck.probes import checks

    bind = (lambda fn: functools.partial(fn, resolve=resolver.resolve)) if resolver else (lambda fn: fn)
    table: Dict[Probe, CheckFn] = {
        Probe.HTTPS: bind(checks.check_https),
        Probe.HTTP: bind(checks.check_http),
        Probe.TCP: bind(checks.check_tcp),
        Probe.NTP: bind(checks.check_ntp),
        Probe.IKE: bind(checks.check_ike),
    }
    for probe, spec in HOST_CHECKS.items():
        table[probe] = _LazyCheck(spec)
    return table


def _skip_result(target: Target) -> CheckResult:
    assert target.skip is not None
    return CheckResult.of(target, Status.SKIP, target.skip.reason, target.skip.message)


def _internal_error(target: Target, exc: BaseException, started: float) -> CheckResult:
    return CheckResult.of(
        target, Status.FAIL, Reason.INTERNAL_ERROR,
        f"The {target.probe.value} check crashed: {type(exc).__name__}: {exc}.",
        remediation="This is a bug in edgecheck, not a finding about the host: rerun with --debug and report it.",
        evidence={"exception": type(exc).__name__, "error": str(exc)},
        duration_ms=int((time.monotonic() - started) * 1000))


def _deadline_result(target: Target, started: Optional[float], now: float) -> CheckResult:
    if started is None:
        msg = "The check did not start before the run's overall deadline."
    else:
        msg = f"The check was still running at the run's overall deadline ({now - started:.1f} s in) and was abandoned."
    return CheckResult.of(
        target, Status.FAIL, Reason.DEADLINE_EXCEEDED, msg,
        remediation="Rerun with fewer targets or a longer --timeout; a probe that outlives its own timeout is a bug worth reporting.",
        duration_ms=int((now - started) * 1000) if started is not None else 0)


class _Batch:
    """A set of targets run on daemon worker threads; collect() returns by the deadline."""

    def __init__(self, items: Sequence[tuple], table: Mapping[Probe, CheckFn], ctx: RunContext,
                 max_in_flight: int, deadline: float) -> None:
        self.items = list(items)  # (index, target)
        self.table, self.ctx, self.deadline = table, ctx, deadline
        self.results: Dict[int, CheckResult] = {}
        self.started: Dict[int, float] = {}
        self.cond = threading.Condition()
        self.next = 0
        self.workers = max(1, min(max_in_flight, len(self.items)))

    def _take(self) -> Optional[tuple]:
        with self.cond:
            if self.next >= len(self.items) or time.monotonic() >= self.deadline:
                return None
            item = self.items[self.next]
            self.next += 1
            self.started[item[0]] = time.monotonic()
            return item

    def _work(self) -> None:
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

    def collect(self) -> Dict[int, CheckResult]:
        if not self.items:
            return {}
        for n in range(self.workers):
            threading.Thread(target=self._work, daemon=True, name=f"edgecheck-check-{n}").start()
        with self.cond:
            while len(self.results) < len(self.items):
                left = self.deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            now = time.monotonic()
            for index, target in self.items:
                if index not in self.results:
                    self.results[index] = _deadline_result(target, self.started.get(index), now)
            return dict(self.results)


def _effective_deadline(targets: Sequence[Target], ctx: RunContext, max_in_flight: int) -> float:
    if math.isfinite(ctx.deadline):
        return ctx.deadline
    waves = max(1, math.ceil(len(targets) / max(1, max_in_flight)))
    return time.monotonic() + ctx.timeout * (waves + 1) + DEADLINE_SLACK_S


def run_checks(targets: Sequence[Target], ctx: RunContext, *, max_in_flight: int = 32,
               table: Optional[Mapping[Probe, CheckFn]] = None) -> List[CheckResult]:
    """Every target's CheckResult, in plan order, by ctx.deadline at the latest.

    Targets with `skip` produce their skip result without a probe. CLOCK targets run last, with the
    NTP results of this run in ctx.ntp_results. `table` replaces the registry (tests).
    """
    targets = list(targets)
    deadline = _effective_deadline(targets, ctx, max_in_flight)
    ctx = dataclasses.replace(ctx, deadline=deadline, targets=tuple(ctx.targets or targets))
    table = table if table is not None else registry(SharedResolver(ctx.resolv_conf))

    results: Dict[int, CheckResult] = {}
    first: List[tuple] = []
    clock: List[tuple] = []
    for index, target in enumerate(targets):
        if target.skip is not None:
            results[index] = _skip_result(target)
        elif target.probe is Probe.CLOCK:
            clock.append((index, target))
        else:
            first.append((index, target))
    # Local checks first: they are quick and must not queue behind hung network probes.
    first.sort(key=lambda item: item[1].probe in NETWORK_PROBES)
    results.update(_Batch(first, table, ctx, max_in_flight, deadline).collect())

    if clock:
        ntp_results = tuple(results[i] for i, t in enumerate(targets)
                            if t.probe is Probe.NTP and i in results)
        clock_ctx = dataclasses.replace(ctx, ntp_results=ntp_results)
        results.update(_Batch(clock, table, clock_ctx, max_in_flight, deadline).collect())
    return [results[i] for i in range(len(targets))]
