"""clock: is the local clock synchronised, and how far is it from NTP time?

"Synchronised" is the kernel's word (edgecheck/host/timekeeping.py); the offset comes from this
run's NTP probes (their results, published by the engine), else from chronyd. Offset convention
(as ntplib and chrony): offset = reference time - local time; positive means this host is behind.
Thresholds are the NTP probe's (edgecheck/probes/ntp.py), strict ">":
- |offset| <= warn: fine;  > warn: warn / clock-offset;  > fail: fail / clock-offset, whatever
  the sync state;
- not synchronised, offset small or unknown: warn / clock-unsynchronised (works today, drifts).
"""

from __future__ import annotations

import time
from typing import List, Optional, Sequence, Tuple

from edgecheck.evidence import ClockEvidence, DaemonView, KernelClock, Measurement
from edgecheck.host.distro import DEBIAN
from edgecheck.host.timekeeping import read_daemon_views, read_kernel_clock, running_time_daemons
from edgecheck.model import CheckResult, Evidence, Reason, Status, Target
from edgecheck.probes.ntp import CLOCK_OFFSET_FAIL_S, CLOCK_OFFSET_WARN_S, NtpEvidence
from edgecheck.runcontext import RunContext

DAEMON_TIMEOUT_S = 1.0  # chronyc/timedatectl answer in milliseconds when their daemon is there


def ntp_measurements(ntp_results: Sequence[CheckResult]) -> List[Measurement]:
    """Usable offsets from this run's NTP probes. Unsynchronised servers say nothing about our
    clock (RFC 5905: leap 3, stratum 0 or 16)."""
    out: List[Measurement] = []
    for r in ntp_results:
        evidence = r.evidence.find(NtpEvidence)
        best = evidence.shown if evidence else None
        if best is None or not best.ok or best.offset_s is None or best.unsynchronised:
            continue
        source = best.address
        if r.target.host and r.target.host != source:
            source = f"{r.target.host} ({source})"
        out.append(Measurement(source, best.offset_s, best.stratum, best.delay_s))
    return out


def combined_offset(measurements: Sequence[Measurement]) -> Optional[float]:
    """Median: one wrong server (a falseticker) does not move it much."""
    if not measurements:
        return None
    values = sorted(m.offset_s for m in measurements)  # statistics.median, without importing decimal
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def describe_offset(offset_s: float) -> str:
    direction = "behind" if offset_s > 0 else "ahead"
    if abs(offset_s) < 1:
        return f"{offset_s * 1000:+.1f} ms ({direction})"
    return f"{offset_s:+.2f} s ({direction})"


def decide_clock(synchronised: Optional[bool], offset_s: Optional[float], offset_source: str = "",
                 sync_source: str = "kernel adjtimex status", warn_s: float = CLOCK_OFFSET_WARN_S,
                 fail_s: float = CLOCK_OFFSET_FAIL_S) -> Tuple[Status, Reason, str]:
    """Status from the sync state and the measured offset (pure; thresholds in the module doc)."""
    offset_text = (f"offset {describe_offset(offset_s)} against {offset_source}" if offset_s is not None
                   else "offset not measured")
    sync_text = {True: "synchronised", False: "not synchronised", None: "synchronisation state unknown"}[synchronised]
    if offset_s is not None and abs(offset_s) > fail_s:
        return (Status.FAIL, Reason.CLOCK_OFFSET,
                f"Clock is off by {describe_offset(offset_s)} against {offset_source} (limit {fail_s:g} s; "
                f"{sync_text}: {sync_source}): TLS, tokens and signed downloads will fail.")
    if synchronised is False:
        return (Status.WARN, Reason.CLOCK_UNSYNCHRONISED,
                f"Clock is not synchronised ({sync_source}); {offset_text}. It will drift.")
    if synchronised is None:
        return Status.WARN, Reason.CLOCK_UNSYNCHRONISED, f"Could not tell whether the clock is synchronised; {offset_text}."
    if offset_s is not None and abs(offset_s) > warn_s:
        return (Status.WARN, Reason.CLOCK_OFFSET,
                f"Clock is synchronised ({sync_source}) but off by {describe_offset(offset_s)} against "
                f"{offset_source} (warning above {warn_s:g} s): the time source it follows may be wrong.")
    return Status.PASS, Reason.OK, f"Clock is synchronised ({sync_source}); {offset_text}."


def _sync_state(kernel_synchronised: Optional[bool], daemons: Sequence[DaemonView]) -> Tuple[Optional[bool], str]:
    if kernel_synchronised is not None:
        return kernel_synchronised, "kernel adjtimex status"
    for d in daemons:  # no kernel view: the daemons' word is the best left
        if d.synchronised is not None:
            return d.synchronised, d.name
    return None, "kernel adjtimex status"


HostClock = Tuple[KernelClock, Tuple[DaemonView, ...], Tuple[str, ...]]
_FACT = "clock-host-views"


def _running(daemons: Sequence[DaemonView]) -> Tuple[str, ...]:
    """Time daemons seen in the process table, and chronyd when `chronyc tracking` answered: a
    hardened unit (ProtectProc=invisible) cannot see other users' processes."""
    running = list(running_time_daemons())
    if "chronyd" not in running and any(d.name == "chronyd" and d.error is None for d in daemons):
        running.append("chronyd")
    return tuple(running)


def _host_clock(timeout: float) -> HostClock:
    """What this host says about its clock: the kernel, the time daemons, which of them run."""
    daemons = tuple(read_daemon_views(timeout))
    return read_kernel_clock(), daemons, _running(daemons)


def warm(targets: Sequence[Target], ctx: RunContext) -> None:
    """The host's own views (a chronyc and a timedatectl query) are read while the NTP probes run:
    the clock check runs after those, and would otherwise add their time to the run's."""
    if any(t.probe == "clock" and t.skip is None for t in targets):
        timeout = min(DAEMON_TIMEOUT_S, ctx.remaining())
        ctx.facts.prefetch(_FACT, lambda: _host_clock(timeout))


def check_clock(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    timeout = min(DAEMON_TIMEOUT_S, ctx.remaining())
    kernel, daemons, running = ctx.facts.fetched(_FACT, lambda: _host_clock(timeout), timeout + 0.5)
    ntp_results = ctx.facts.results_of("ntp")
    measurements = tuple(ntp_measurements(ntp_results))
    synchronised, sync_source = _sync_state(kernel.synchronised, daemons)

    offset = combined_offset(measurements)
    offset_source = ", ".join(m.source for m in measurements)
    if offset is None:
        chrony = next((d for d in daemons if d.name == "chronyd" and d.offset_s is not None), None)
        if chrony is not None:
            offset, offset_source = chrony.offset_s, "chronyd's time sources"
    status, reason, message = decide_clock(synchronised, offset, offset_source, sync_source)
    if offset is None and ntp_results and all(r.status is Status.SKIP for r in ntp_results):
        message += " NTP endpoint checks were skipped (--self-host-ntp)."
    elif offset is None and ntp_results:
        message += " No NTP server answered usably."

    disagree = [v.name for v in daemons if None not in (v.synchronised, synchronised) and v.synchronised != synchronised]
    evidence = ClockEvidence(
        kernel=kernel, daemons=daemons, running_time_daemons=running,
        measurements=measurements, offset_s=offset, offset_source=offset_source or None,
        warn_s=CLOCK_OFFSET_WARN_S, fail_s=CLOCK_OFFSET_FAIL_S,
        service="chrony" if ctx.facts.os_release().family == DEBIAN else "chronyd",
        ntp_servers=tuple(t.host for t in ctx.targets if t.probe == "ntp" and t.host),
        disagreement=f"{', '.join(disagree)} disagree with the kernel; the kernel's view is used" if disagree else "")
    return CheckResult(target, status, reason, message, evidence=Evidence(evidence),
                       duration_ms=int((time.monotonic() - started) * 1000))
