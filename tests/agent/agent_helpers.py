"""Helpers for agent tests: build Reports without probing anything."""

from __future__ import annotations

from typing import Dict

from edgecheck.diagnosis import diagnose
from edgecheck.model import CheckResult, Kind, Reason, Report, Status, Target


def make_report(statuses: Dict[str, str]) -> Report:
    """A diagnosed Report whose checks have the given statuses (id -> "pass"|"warn"|"fail"|"skip")."""
    reasons = {"pass": Reason.OK, "warn": Reason.NO_RESPONSE, "fail": Reason.TIMEOUT, "skip": Reason.NOT_APPLICABLE}
    checks = [
        CheckResult(Target(cid, Kind.ENDPOINT, "tcp", f"purpose of {cid}", "", "", ""), Status(st), reasons[st],
                    f"{cid} is {st}")
        for cid, st in statuses.items()
    ]
    return diagnose(Report(
        generated_at="2026-11-21T05:43:18Z",
        agent_version="0.0.0-test",
        host={"hostname": "node-1"},
        params={"phase": "running"},
        checks=checks,
    ))
