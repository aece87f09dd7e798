"""The product's own verdict, evidence and advice for one probe result, as the tests read them.

A ProbeResult becomes the CheckResult `edgecheck reach` would report for it (edgecheck/checks/reach.py,
against a real plan target of the catalog), its evidence is validated against the report schema's
reach evidence, and its remediation is what the diagnosis layer writes for it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Optional

import jsonschema

from edgecheck.catalog import load_catalog
from edgecheck.checks.reach import judge, probe_evidence
from edgecheck.diagnosis import diagnose
from edgecheck.model import CheckResult, Evidence, Mode, Phase, Report, Target
from edgecheck.plan import Selection, build_plan
from edgecheck.reach.probeloop import ProbeResult
from edgecheck.reach.targets import reach_targets
from edgecheck.report import schema


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str
    message: str


@lru_cache(maxsize=None)
def plan_target(node: str, port: int, protocol: str, mode: str = "public", phase: str = "join") -> Target:
    """The reach target of the real catalog for this port (its component, sources, notes)."""
    sel = Selection(region="cn-hangzhou", mode=Mode(mode), phase=Phase(phase))
    plan = build_plan(load_catalog(), sel)
    targets = reach_targets(plan.targets, [node], sel.phase, mode)
    return next(t for t in targets if (t.port, t.protocol) == (port, protocol))


def evidence_schema() -> Dict[str, Any]:
    full = schema()
    return {"$ref": "#/$defs/reach_evidence", "$defs": full["$defs"]}


def reach_evidence(r: ProbeResult, key_fingerprint: Optional[str] = None) -> Dict[str, Any]:
    ev = probe_evidence(r, key_fingerprint).to_json()
    jsonschema.validate(ev, evidence_schema())
    return ev


def check_result(r: ProbeResult, *, node: str = "node", mode: str = "public",
                 listener_proven_on_node: bool = False) -> CheckResult:
    target = plan_target(node, r.port, r.protocol, mode)
    status, reason, message = judge(target, r, listener_on_node=listener_proven_on_node)
    return CheckResult(target, status, reason, message, evidence=Evidence(probe_evidence(r, None)))


def suggest_verdict(r: ProbeResult, *, listener_proven_on_node: bool = False) -> Verdict:
    c = check_result(r, listener_proven_on_node=listener_proven_on_node)
    return Verdict(c.status.value, c.reason.value, c.message)


def remediation(r: ProbeResult, *, mode: str, node: str = "node") -> str:
    c = check_result(r, node=node, mode=mode)
    report = diagnose(Report("2026-01-01T00:00:00Z", "test", {}, {"mode": mode, "phase": "join"}, [c]))
    return report.checks[0].remediation
