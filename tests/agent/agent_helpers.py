"""Helpers for agent tests: build Reports without probing anything."""

from __future__ import annotations

import json
from typing import Dict


from edgecheck.model import CheckResult, Kind, Reason, Report, Status


def make_report(statuses: Dict[str, str]) -> Report:
    """A Report whose checks have the given statuses (id -> "pass"|"warn"|"fail"|"skip")."""
    reasons = {"pass": Reason.OK, "warn": Reason.NO_RESPONSE, "fail": Reason.TIMEOUT, "skip": Reason.NOT_APPLICABLE}
    checks = [
        CheckResult(
            id=cid,
            kind=Kind.ENDPOINT,
            name=f"purpose of {cid}",
            target={},
            status=Status(st),
            reason=reasons[st],
            message=f"{cid} is {st}",
        )
        for cid, st in statuses.items()
    ]
    return Report(
        generated_at="2026-11-21T05:43:18Z",
        agent_version="0.0.0-test",
        host={"hostname": "node-1"},
        params={"phase": "running"},
        checks=checks,
    )


def render_json(report: Report) -> str:
    """Stand-in for edgecheck.report.to_json with the fields the agent relies on."""
    return json.dumps(
        {
            "schema": "edgecheck/report/v1",
            "generated_at": report.generated_at,
            "ready": report.ready,
            "summary": report.summary,
            "checks": [{"id": c.id, "status": c.status.value, "reason": c.reason.value} for c in report.checks],
        },
        indent=2,
    )


def render_prometheus(report: Report) -> str:
    return f"edgecheck_ready {int(report.ready)}\nedgecheck_last_run_timestamp_seconds 1.0\n"


