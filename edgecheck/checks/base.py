"""What every network check shares: one probe budget, the evidence it collects, and the DNS and
TCP layers whose failure ends a check with the first failing layer's reason (SPEC section 3)."""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from edgecheck.evidence import AddressBlocks, ConnectAttempt, Connects, DirectRoute
from edgecheck.model import CheckResult, Evidence, EvidencePart, Reason, Status, Target
from edgecheck.probes.budget import Budget, elapsed_ms, run_parallel
from edgecheck.probes.classify import judge_connects
from edgecheck.probes.resolver import outside_cidrs
from edgecheck.probes.tcp import connect_all
from edgecheck.runcontext import RunContext

O = TypeVar("O")


class Probing:
    """One network check in progress: its budget, its evidence, and how it ends."""

    def __init__(self, target: Target, ctx: RunContext) -> None:
        self.target, self.ctx = target, ctx
        self.start = time.monotonic()
        self.budget = Budget.for_probe(ctx.timeout, ctx.deadline)
        self.evidence = Evidence()
        self.addresses: List[str] = []
        self.outside: Tuple[str, ...] = ()

    def add(self, part: Optional[EvidencePart]) -> None:
        self.evidence.add(part)

    def result(self, status: Status, reason: Reason, message: str) -> CheckResult:
        return CheckResult(self.target, status, reason, message, evidence=self.evidence,
                           duration_ms=elapsed_ms(self.start))

    # -- DNS layer ------------------------------------------------------------------------------
    def resolve(self) -> Optional[CheckResult]:
        """Resolve target.host through the run's resolver: a failure result, or None with the
        addresses in self.addresses (and, in dedicated mode, those outside the routes)."""
        t = self.target
        res = self.ctx.facts.resolver().resolve(t.host or "", self.budget)
        self.add(res)
        self.addresses = list(res.addresses)
        if not res.ok:
            reason = res.reason or Reason.DNS_ERROR
            if reason is Reason.NXDOMAIN and t.optional:
                return self.result(Status.WARN, reason, f"{t.host} does not resolve ({res.error}); the "
                                   "documentation says it may be absent in this region.")
            by = f" (nameserver {res.answered_by})" if res.answered_by else (
                f" (nameservers {', '.join(res.nameservers)})" if res.nameservers else "")
            return self.result(Status.FAIL, reason, f"{t.host} does not resolve: {res.error}{by}.")
        if t.expected_cidrs:
            self.outside = tuple(outside_cidrs(res.addresses, t.expected_cidrs))
            self.add(AddressBlocks(t.expected_cidrs, self.outside))
        return None

    def cidr_failure(self) -> CheckResult:
        t = self.target
        src = f" ({t.cidr_source})" if t.cidr_source else ""
        return self.result(
            Status.FAIL, Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR,
            f"{t.host} resolves to {', '.join(self.outside)}, outside the expected blocks "
            f"{', '.join(t.expected_cidrs)}{src}, so the dedicated connection will not carry it.")

    # -- TCP layer ------------------------------------------------------------------------------
    def connect(self, addresses: Sequence[str], port: int, keep_open: bool = False
                ) -> Tuple[List[ConnectAttempt], Dict[str, Any]]:
        attempts, socks = connect_all(addresses, port, self.budget, keep_open=keep_open)
        self.add(Connects(tuple(attempts)))
        return attempts, socks

    def connect_failure(self, attempts: Sequence[ConnectAttempt]) -> Optional[CheckResult]:
        if any(not a.ok for a in attempts):
            # Only a failed probe asks whether this host's own filter did it (host-firewall).
            from edgecheck.checks.hostfilter import attribute_connects

            self.add(attribute_connects(self.target, self.ctx, attempts))
            self.add(Connects(tuple(attempts)))
        verdict = judge_connects(attempts)
        if verdict.ignored:
            self.add(Connects(tuple(attempts), tuple(a.address for a in verdict.ignored)))
        if verdict.status is Status.PASS:
            return None
        t = self.target
        proto = (t.protocol or "tcp").upper()
        bad = ", ".join(f"{a.address} ({a.error})" for a in verdict.failing)
        if verdict.working:
            good = ", ".join(f"{a.address} ({a.ms} ms)" for a in verdict.working)
            msg = (f"{proto} {t.port} to {t.host} works on {good} but not on {bad}: pulls and calls that "
                   f"pick the blocked address will fail intermittently.")
        else:
            by = " by this host's own packet filter" if verdict.reason is Reason.HOST_FIREWALL else ""
            msg = f"{proto} {t.port} to {t.host} is blocked{by} on every address: {bad}."
        return self.result(Status.FAIL, verdict.reason, msg)


def close_all(socks: Dict[str, Any]) -> None:
    for s in socks.values():
        s.close()


def exchange_all(target: Target, ctx: RunContext, default_port: int,
                 query: Callable[[str, Budget, int], O], missing: Callable[[str], O]
                 ) -> Tuple[Probing, Optional[CheckResult], int, List[O]]:
    """A UDP probe's common part: resolve, then query(address, budget, port) every address at once
    (UDP probes always go direct). Returns (probing, failure, port, outcomes in address order);
    failure is set when the name does not resolve, and outcomes is then empty."""
    probing = Probing(target, ctx)
    probing.add(DirectRoute())
    port = int(target.port or default_port)
    failed = probing.resolve()
    if failed:
        return probing, failed, port, []
    budget = probing.budget
    outcomes = run_parallel([functools.partial(query, a, budget, port) for a in probing.addresses], budget)
    out: List[O] = []
    for addr, outcome in zip(probing.addresses, outcomes):
        if outcome is None:
            out.append(missing(addr))
        elif outcome[0] == "error":
            raise outcome[1]
        else:
            out.append(outcome[1])
    from edgecheck.checks.hostfilter import attribute_exchanges  # reads the filter only when an exchange failed

    probing.add(attribute_exchanges(target, ctx, port, out))
    return probing, None, port, out
