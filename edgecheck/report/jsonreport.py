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

from edgecheck.model import CheckResult, Report
from edgecheck.report.redact import redact_report

SCHEMA_ID = "edgecheck/report/v1"

HOST_KEYS = ("hostname", "os", "kernel", "arch")
SUMMARY_KEYS = ("pass", "warn", "fail", "skip")


def _plain(value: Any) -> Any:
    """Turn evidence into JSON values; evidence is free-form and probes may hand us anything."""
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
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def _status(value: Any) -> str:
    return value.value if isinstance(value, enum.Enum) else str(value)


def check_to_dict(check: CheckResult) -> Dict[str, Any]:
    target = check.target or {}
    return {
        "id": check.id,
        "kind": _status(check.kind),
        "name": check.name,
        # Only the keys that apply, in a fixed order.
        "target": {k: _plain(target[k]) for k in ("host", "port", "protocol") if target.get(k) is not None},
        "status": _status(check.status),
        "reason": _status(check.reason),
        "message": check.message or "",
        "remediation": check.remediation or "",
        "duration_ms": int(check.duration_ms or 0),
        "evidence": _plain(dict(check.evidence or {})),
    }


def to_dict(report: Report) -> Dict[str, Any]:
    """The report as plain JSON values, secrets removed, keys in contract order."""
    report = redact_report(report)
    host = report.host or {}
    return {
        "schema": SCHEMA_ID,
        "generated_at": report.generated_at,
        "agent": {"version": report.agent_version},
        "host": {k: (str(host[k]) if host.get(k) is not None else "") for k in HOST_KEYS},
        "params": _plain(dict(report.params or {})),
        "ready": report.ready,
        "summary": {k: report.summary.get(k, 0) for k in SUMMARY_KEYS},
        "checks": [check_to_dict(c) for c in report.checks],
        "warnings": [str(w) for w in report.warnings],
        "duration_ms": int(report.duration_ms or 0),
    }


def to_json(report: Report) -> str:
    """Pretty JSON (one key per line diffs well), UTF-8 as is, trailing newline."""
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
