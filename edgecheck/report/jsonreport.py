"""The JSON report, schema edgecheck/report/v1 (SPEC section 4).

Key order is part of the contract: people diff these files and fleet tooling sometimes reads
them with line tools, so the order below never changes and new keys are only appended.
"""

from __future__ import annotations

import enum
import json
import math
from pathlib import PurePath
from typing import Any, Callable, Dict, Iterator, Sequence

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
    return _document(report, redact_value([check_to_dict(c) for c in report.checks]),
                     redact_value([finding_to_dict(f) for f in report.findings]))


def _document(report: Report, checks: Any, findings: Any) -> Dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "generated_at": report.generated_at,
        "agent": {"version": report.agent_version},
        "host": {k: str(report.host.get(k) or "") for k in HOST_KEYS},
        "params": redact_value(_plain(report.params)),
        "ready": report.ready,
        "summary": {k: report.summary[k] for k in SUMMARY_KEYS},
        "checks": checks,
        "warnings": redact_value(list(report.warnings)),
        "duration_ms": int(report.duration_ms),
        "findings": findings,
    }


# Strings no report value can hold: where the streamed lists go in the document's text.
_CHECKS, _FINDINGS = "\x00checks\x00", "\x00findings\x00"


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def to_json(report: Report) -> str:
    """Pretty JSON (one key per line diffs well), UTF-8 as is, trailing newline."""
    return "".join(iter_json(report))


def iter_json(report: Report) -> Iterator[str]:
    """to_json's text in pieces, one check and one finding at a time: the same text as
    json.dumps(to_dict(report), indent=2), but a reach of a thousand node ports never holds every
    check's dictionary, nor the whole text, at once when the pieces are written as they come."""
    text = _dumps(_document(report, _CHECKS, _FINDINGS))
    head, _, rest = text.partition(_dumps(_CHECKS))
    middle, _, tail = rest.partition(_dumps(_FINDINGS))
    yield head
    yield from _items(report.checks, check_to_dict)
    yield middle
    yield from _items(report.findings, finding_to_dict)
    yield tail + "\n"


def _items(values: Sequence[Any], as_dict: Callable[[Any], Dict[str, Any]]) -> Iterator[str]:
    """A list at the document's second level, as json.dumps(indent=2) lays it out."""
    if not values:
        yield "[]"
        return
    for n, value in enumerate(values):
        yield ("[\n    " if n == 0 else ",\n    ") + _dumps(redact_value(as_dict(value))).replace("\n", "\n    ")
    yield "\n  ]"
