"""ntp: DNS, then one NTP exchange with every address (UDP 123); the clock offset is evidence,
and the clock check reads it."""

from __future__ import annotations

from edgecheck.checks.base import exchange_all
from edgecheck.model import CheckResult, Reason, Status, Target
from edgecheck.probes import ntp
from edgecheck.runcontext import RunContext


def check_ntp(target: Target, ctx: RunContext) -> CheckResult:
    probing, failed, port, outcomes = exchange_all(
        target, ctx, ntp.NTP_PORT, ntp.query,
        lambda a: ntp.NtpOutcome(a, False, reason=Reason.TIMEOUT, error="no answer in time"))
    if failed:
        return failed
    verdict = ntp.judge_ntp(outcomes)
    probing.add(ntp.NtpEvidence(verdict.best, tuple(outcomes)))
    if probing.outside:
        return probing.cidr_failure()
    host = target.host
    silent = ", ".join(f"{o.address} ({o.error})" for o in verdict.silent)
    if not verdict.answered:
        if verdict.reason is Reason.TIMEOUT:
            return probing.result(Status.FAIL, verdict.reason, f"NTP (UDP {port}) to {host} got no answer from {silent}.")
        return probing.result(Status.FAIL, verdict.reason, f"NTP (UDP {port}) to {host} fails: {silent}.")
    best = verdict.best
    assert best is not None
    summary = (f"offset {best.offset_s:+.3f} s, stratum {best.stratum}, round trip "
               f"{(best.delay_s or 0) * 1000:.0f} ms from {best.address}")
    if verdict.reason is Reason.CLOCK_OFFSET:
        limit = ntp.CLOCK_OFFSET_FAIL_S if verdict.status is Status.FAIL else ntp.CLOCK_OFFSET_WARN_S
        return probing.result(verdict.status, verdict.reason,
                              f"This host's clock differs from {host} by {best.offset_s:+.3f} s "
                              f"(more than {limit:g} s): {summary}.")
    if verdict.reason is Reason.CLOCK_UNSYNCHRONISED:
        bad = verdict.unsynchronised[0]
        return probing.result(Status.WARN, verdict.reason,
                              f"{host} ({bad.address}) answers but reports itself unsynchronised "
                              f"(stratum {bad.stratum}, leap indicator {bad.leap}), so its time cannot be trusted.")
    if verdict.silent:
        return probing.result(Status.WARN, verdict.reason,
                              f"NTP to {host} answers from {', '.join(o.address for o in verdict.answered)} "
                              f"({summary}) but not from {silent}.")
    return probing.result(Status.PASS, Reason.OK, f"NTP (UDP {port}) to {host} answers: {summary}.")
