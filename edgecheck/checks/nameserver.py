"""dns:nameserver:ADDR (SPEC 7.2): does this nameserver of the resolver configuration answer?

Every nameserver is asked directly, all at once, once per run (RunFacts.nameserver_health): a
verdict needs the others' answers (warn when another one answers, fail when none does), so the
first check of the run probes them all within its budget and the others read the same report.
The query is for the plan's first endpoint name, the kind of name the node's components resolve.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from edgecheck.model import CheckResult, Evidence, Reason, Status, Target
from edgecheck.probes.budget import Budget, elapsed_ms
from edgecheck.runcontext import RunContext

_STATUS = {"pass": Status.PASS, "warn": Status.WARN, "fail": Status.FAIL}
_REASON = {"ok": Reason.OK, "dns-timeout": Reason.DNS_TIMEOUT, "dns-error": Reason.DNS_ERROR}


class NameserverEvidence:
    """The evidence of one dns:nameserver check (read by its adviser: rcode, wait, stub)."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data

    @property
    def rcode(self) -> Optional[str]:
        probe = self.data.get("probe") or {}
        return probe.get("rcode") if probe.get("outcome") == "rcode" else None

    @property
    def outcome(self) -> str:
        return str((self.data.get("probe") or {}).get("outcome") or "")

    @property
    def wait_s(self) -> Optional[float]:
        return self.data.get("lookup_wait_s")

    @property
    def resolv_conf(self) -> str:
        return str(self.data.get("resolv_conf") or "/etc/resolv.conf")

    def to_json(self) -> Dict[str, Any]:
        return dict(self.data)


def check_nameserver(target: Target, ctx: RunContext) -> CheckResult:
    start = time.monotonic()
    address = target.host or ""
    report = ctx.facts.nameserver_health(Budget.for_probe(ctx.timeout, ctx.deadline))
    verdict = next((v for v in report.verdicts if v.address == address and v.upstream_of == target.upstream_of),
                   None)
    evidence = Evidence(NameserverEvidence(report.evidence_for(address, target.upstream_of)))
    if verdict is None:  # the plan read it, then the probe set lost it: never expected
        return CheckResult(target, Status.FAIL, Reason.INTERNAL_ERROR, f"Nameserver {address} was not probed.",
                           evidence=evidence, duration_ms=elapsed_ms(start))
    message = verdict.message
    stub = next((s for s in report.stubs if s.address == address), None)
    if stub is not None and report.note:
        message += f" It is a local stub ({stub.kind}): {report.note}."
    return CheckResult(target, _STATUS[verdict.status], _REASON[verdict.reason], message, evidence=evidence,
                       duration_ms=elapsed_ms(start))
