"""tcp: DNS, then a TCP connect to every address (Raven, tunnel server, user targets)."""

from __future__ import annotations

from edgecheck.checks.base import Probing
from edgecheck.evidence import DirectRoute
from edgecheck.model import CheckResult, Reason, Status, Target
from edgecheck.probes.classify import plural
from edgecheck.runcontext import RunContext


def check_tcp(target: Target, ctx: RunContext) -> CheckResult:
    probing = Probing(target, ctx)
    probing.add(DirectRoute())
    failed = probing.resolve()
    if failed:
        return failed
    attempts, _ = probing.connect(probing.addresses, int(target.port or 0))
    if probing.outside:
        return probing.cidr_failure()
    failed = probing.connect_failure(attempts)
    if failed:
        return failed
    ok = [a for a in attempts if a.ok]
    return probing.result(Status.PASS, Reason.OK,
                          f"TCP {target.port} to {target.host} connects on {plural(len(ok), 'address')} "
                          f"({', '.join(f'{a.address} {a.ms} ms' for a in ok)}), directly.")
