"""The diagnosis layer: from check results to what to do, once for every format.

`diagnose(report)` writes each check's `remediation` (the advice for that check standing alone)
and the report's findings: the failures and then the warnings, grouped by shared root cause
(causes.py) in troubleshooting order, each with the advice for the whole group (advice.py).
Renderers only lay these out; JSON, text and metrics read the same words.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

from edgecheck.diagnosis.advice import Advice, advise
from edgecheck.diagnosis.causes import RANK, Cause, cause_of, detail_of, title_of
from edgecheck.diagnosis.scene import Scene, scene_of
from edgecheck.model import CheckResult, Finding, Report, Status

__all__ = ["Advice", "diagnose", "findings", "remediation"]


def remediation(check: CheckResult, scene: Scene, cause: Optional[Cause] = None) -> str:
    """The advice for this check alone, as for its root cause (a certificate the clock explains:
    the clock's advice)."""
    return advise((cause or cause_of(check, scene)).reason, [check], scene).text()


def findings(report: Report, scene: Scene, causes: Optional[Mapping[int, Cause]] = None) -> List[Finding]:
    """Failures first, then warnings; within each, causes in troubleshooting order (plan order
    breaks ties). `causes`: each check's cause by id(check), when the caller has them."""
    if causes is None:
        causes = {id(c): cause_of(c, scene) for c in report.checks if c.status in (Status.FAIL, Status.WARN)}
    out: List[Finding] = []
    for status in (Status.FAIL, Status.WARN):
        groups: Dict[Tuple[Cause, Status], List[CheckResult]] = {}
        for check in report.checks:
            if check.status is status:
                groups.setdefault((causes[id(check)], status), []).append(check)
        first_seen = {key: i for i, key in enumerate(groups)}
        for key in sorted(groups, key=lambda k: (RANK.get(k[0].reason, len(RANK)), first_seen[k])):
            cause, checks = key[0], groups[key]
            advice = advise(cause.reason, checks, scene)
            out.append(Finding(
                cause=cause.id, status=status, reason=cause.reason, title=title_of(cause, checks),
                checks=tuple(checks), advice=advice.paragraphs, command=advice.command,
                details=tuple(detail_of(c, scene) for c in checks)))
    return out


def diagnose(report: Report) -> Report:
    """Fill every check's remediation and the report's findings (in place; returns the report)."""
    scene = scene_of(report)
    causes = {id(c): cause_of(c, scene) for c in report.checks}
    for check in report.checks:
        check.remediation = remediation(check, scene, causes[id(check)])
    report.findings = findings(report, scene, causes)
    return report
