"""The JSON report, schema edgecheck/report/v1 (SPEC section 4).

Key order is part of the contract: people diff these files and fleet tooling sometimes reads
them with line tools, so the order below never changes and new keys are only appended.
"""

from __future__ import annotations

import enum
import json
import math
from pathlib import PurePath
from typing import Any, Dict

from edgecheck.model import CheckResult, Finding, Report
from edgecheck.report.redact import redact_value

SCHEMA_ID = "edgecheck/report/v1"

HOST_KEYS = ("hostname", "os", "kernel", "arch")
SUMMARY_KEYS = ("pass", "warn", "fail", "skip")


def _plain(value: Any) -> Any:
    """JSON values only: evidence parts hand over their own JSON, params are plain already."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # NaN/Infinity are not JSON; a clock offset that could not be measured is "unknown".
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def check_to_dict(check: CheckResult) -> Dict[str, Any]:
    return {
        "id": check.id,
        "kind": check.kind.value,
        "name": check.name,
        "target": _plain(check.target.target_fields()),
        "status": check.status.value,
        "reason": check.reason.value,
        "message": check.message,
        "remediation": check.remediation,
        "duration_ms": int(check.duration_ms),
        "evidence": _plain(check.evidence.to_json()),
    }


def finding_to_dict(finding: Finding) -> Dict[str, Any]:
    return {
        "cause": finding.cause,
        "status": finding.status.value,
        "reason": finding.reason.value,
        "title": finding.title,
        "checks": [c.id for c in finding.checks],
        "advice": list(finding.advice),
        "command": finding.command,
    }


def to_dict(report: Report) -> Dict[str, Any]:
    """The report as plain JSON values, secrets removed, keys in contract order."""
    return {
        "schema": SCHEMA_ID,
        "generated_at": report.generated_at,
        "agent": {"version": report.agent_version},
        "host": {k: str(report.host.get(k) or "") for k in HOST_KEYS},
        "params": redact_value(_plain(report.params)),
        "ready": report.ready,
        "summary": {k: report.summary[k] for k in SUMMARY_KEYS},
        "checks": redact_value([check_to_dict(c) for c in report.checks]),
        "warnings": redact_value(list(report.warnings)),
        "duration_ms": int(report.duration_ms),
        "findings": redact_value([finding_to_dict(f) for f in report.findings]),
    }


def to_json(report: Report) -> str:
    """Pretty JSON (one key per line diffs well), UTF-8 as is, trailing newline."""
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
