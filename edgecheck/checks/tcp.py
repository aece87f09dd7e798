"""tcp: DNS, then a TCP connect to every address (Raven, tunnel server, user targets).

check_tcp probes one target on its own thread; check_tcp_many (the registry's batch) probes every
tcp target of a run at once on one non-blocking loop (checks/batch.py): five hundred hanging
endpoints cost five hundred sockets, not sixteen waves of worker threads. Both end the same way
(_conclude), so a target gets the same verdict, message and evidence either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence

from edgecheck.checks.base import Probing
from edgecheck.evidence import ConnectAttempt, Connects, DirectRoute
from edgecheck.model import CheckResult, Reason, Status, Target
from edgecheck.probes.classify import plural
from edgecheck.runcontext import RunContext

if TYPE_CHECKING:
    from edgecheck.reach.probeloop import ProbeResult


def check_tcp(target: Target, ctx: RunContext) -> CheckResult:
    probing = Probing(target, ctx)
    probing.add(DirectRoute())
    failed = probing.resolve()
    if failed:
        return failed
    attempts, _ = probing.connect(probing.addresses, int(target.port or 0))
    return _conclude(probing, attempts)


def _conclude(probing: Probing, attempts: List[ConnectAttempt]) -> CheckResult:
    target = probing.target
    if probing.outside:
        return probing.cidr_failure()
    failed = probing.connect_failure(attempts)
    if failed:
        return failed
    ok = [a for a in attempts if a.ok]
    return probing.result(Status.PASS, Reason.OK,
                          f"TCP {target.port} to {target.host} connects on {plural(len(ok), 'address')} "
                          f"({', '.join(f'{a.address} {a.ms} ms' for a in ok)}), directly.")


def attempt_of(result: "ProbeResult") -> ConnectAttempt:
    """The loop's connect result in the words probes/tcp.py uses for the same outcome (and the same
    attribution of an ICMP error or EPERM to this host's own filter)."""
    from edgecheck.probes.tcp import failed_attempt
    from edgecheck.reach.probeloop import Outcome

    ms = result.connect_ms if result.connect_ms is not None else result.ms
    if result.outcome is Outcome.OK:
        return ConnectAttempt(result.address, result.port, True, ms)
    if result.outcome is Outcome.TIMEOUT:
        return ConnectAttempt(result.address, result.port, False, ms, Reason.TIMEOUT,
                              "timed out, no answer to the SYN", None)
    if result.errno is None:
        reason = Reason.REFUSED if result.outcome is Outcome.REFUSED else Reason.UNREACHABLE
        return ConnectAttempt(result.address, result.port, False, ms, reason, result.detail, None)
    return failed_attempt(result.address, result.port, ms, result.errno, result.icmp_errors)


def check_tcp_many(targets: Sequence[Target], ctx: RunContext) -> List[CheckResult]:
    """Every tcp target at once: names on the shared resolver, every connect on one loop."""
    from edgecheck.checks.batch import Named, cut_short, probe_all
    from edgecheck.reach.probeloop import TcpConnectJob

    def connects(n: Named) -> list:
        assert n.probing is not None
        n.probing.add(DirectRoute())
        jobs = [TcpConnectJob(address, int(n.target.port or 0)) for address in dict.fromkeys(n.addresses)]
        for job in jobs:
            job.timeout = n.job_timeout(ctx.timeout)
        return jobs

    out: List[CheckResult] = []
    for n in probe_all(targets, ctx, connects, probing=True):
        if n.failure is not None or n.probing is None or n.jobs is None:
            assert n.failure is not None
            out.append(n.failure)
            continue
        results = [job.result for job in n.jobs if job.result is not None]
        result = cut_short(n.target, n.probing.evidence, results) or _concluded(n.probing, results)
        # Its own time (lookup, then its connects), not the time the batch took around it.
        result.duration_ms = n.dns_ms + max((r.ms for r in results), default=0)
        out.append(result)
    return out


def _concluded(probing: Probing, results: Sequence["ProbeResult"]) -> CheckResult:
    attempts = [attempt_of(r) for r in results]
    probing.add(Connects(tuple(attempts)))
    return _conclude(probing, attempts)
