"""The root causes of one report: its own `findings` grouping, or one cause per failing check.

Reports from edgecheck versions that group failures by root cause carry a top-level `findings`
list (cause id, status, reason, count-free title, check ids, advice, command); the fleet groups
nodes by that cause id, so "37 nodes cannot resolve names at 10.0.0.2" is one line. Older reports
have no `findings`: each failing or warning check then becomes its own cause, keyed by
(reason, check id), which still groups identical failures across nodes exactly.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from edgecheck.fleet.model import STATUS_FAIL, STATUS_WARN, NodeCause

# The single-node report's troubleshooting order (edgecheck/diagnosis/causes.py: DNS first, then
# firewalls and routes, TLS once TCP works, then the host itself). Ties between causes on the
# same number of nodes are broken by it, so the likely first fix comes first. Imported on first
# use: edgecheck.diagnosis pulls in the probe libraries, and `edgecheck --help` must not.
@lru_cache(maxsize=1)
def _rank() -> Dict[str, int]:
    from edgecheck.diagnosis.causes import ORDER

    return {reason.value: i for i, reason in enumerate(ORDER)}

# What a reason means for one check, for the titles of fallback causes (count-free, like the
# titles of `findings`).
REASON_PHRASES = {
    "nxdomain": "the name does not exist (NXDOMAIN)",
    "dns-timeout": "DNS lookup times out",
    "dns-error": "DNS lookup fails",
    "address-outside-expected-cidr": "resolves outside the dedicated-connection routes",
    "host-firewall": "blocked by this host's own firewall",
    "proxy-error": "the proxy fails",
    "unreachable": "unreachable (no route)",
    "timeout": "connection times out",
    "refused": "connection refused",
    "path-mtu": "large packets are lost (path-MTU black hole)",
    "no-response": "no answer",
    "tls-handshake-failed": "TLS handshake fails",
    "tls-verify-failed": "TLS certificate not trusted",
    "port-in-use": "port already in use",
    "port-not-listening": "port not listening",
    "loopback-only": "listens on loopback only",
    "kernel-setting": "kernel setting is wrong",
    "tool-missing": "missing",
    "clock-unsynchronised": "not synchronised",
    "clock-offset": "clock is off",
    "deadline-exceeded": "did not finish before the run's deadline",
    "missing-input": "needs an input that was not given",
    "internal-error": "edgecheck could not run this check",
}


def reason_rank(reason: str) -> int:
    rank = _rank()
    return rank.get(reason, len(rank))


def fallback_cause_id(reason: str, check_id: str) -> str:
    return f"{reason}:check={check_id}"


def fallback_title(check: Mapping[str, Any]) -> str:
    """'cs-anony.cn-hangzhou.aliyuncs.com:443/tcp: DNS lookup times out', 'tool socat: missing'."""
    check_id = str(check.get("id") or "")
    kind, _, subject = check_id.partition(":")
    subject = subject or check_id
    if kind in ("tool", "inbound", "clock", "system", "dns"):
        subject = f"{kind} {subject}"
    reason = str(check.get("reason") or "")
    return f"{subject}: {REASON_PHRASES.get(reason, reason)}"


def fallback_cause(check: Mapping[str, Any]) -> NodeCause:
    reason = str(check["reason"])
    remediation = str(check.get("remediation") or "").strip()
    return NodeCause(
        cause=fallback_cause_id(reason, str(check["id"])),
        status=str(check["status"]),
        reason=reason,
        title=fallback_title(check),
        checks=(str(check["id"]),),
        advice=(remediation,) if remediation else (),
        command="",
        source="checks",
    )


def finding_cause(finding: Mapping[str, Any]) -> NodeCause:
    return NodeCause(
        cause=str(finding["cause"]),
        status=str(finding["status"]),
        reason=str(finding["reason"]),
        title=str(finding["title"]),
        checks=tuple(str(c) for c in finding.get("checks") or ()),
        advice=tuple(str(a) for a in finding.get("advice") or ()),
        command=str(finding.get("command") or ""),
        source="findings",
    )


def causes_of(checks: Sequence[Mapping[str, Any]], findings: Any) -> Tuple[List[NodeCause], bool]:
    """(causes, has_findings) of a validated report.

    With `findings`, those are the causes; a failing or warning check that no finding of the same
    status covers still gets its own fallback cause, so nothing that failed is ever dropped.
    """
    out: List[NodeCause] = []
    covered: Dict[str, set] = {STATUS_FAIL: set(), STATUS_WARN: set()}
    has_findings = isinstance(findings, list)
    if has_findings:
        for finding in findings:
            cause = finding_cause(finding)
            out.append(cause)
            covered[cause.status].update(cause.checks)
    for check in checks:
        status = check.get("status")
        if status in covered and check["id"] not in covered[status]:
            out.append(fallback_cause(check))
    return out, has_findings
