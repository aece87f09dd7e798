"""Validate a report against the JSON Schema shipped in the package, plus the invariants a
schema cannot express (summary matches checks, ready matches fails, ids unique).

Usage from any test:  from tests.schema_check import assert_valid_report
Accepts a Report, the dict from edgecheck.report.to_dict, or the JSON text.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import jsonschema

from edgecheck.model import Report
from edgecheck.report import schema, to_dict

_VALIDATOR = None


def _validator() -> "jsonschema.Draft202012Validator":
    global _VALIDATOR
    if _VALIDATOR is None:
        s = schema()
        jsonschema.Draft202012Validator.check_schema(s)
        _VALIDATOR = jsonschema.Draft202012Validator(
            s, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
    return _VALIDATOR


def schema_errors(obj: Any) -> List[str]:
    """The shipped schema's own complaints only ('checks/0/id: ... does not match ...'), without
    the cross-checks below: what a test asserts when the schema itself must reject something."""
    if isinstance(obj, Report):
        obj = to_dict(obj)
    elif isinstance(obj, (str, bytes)):
        obj = json.loads(obj)
    errors = sorted(_validator().iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


def assert_valid_report(obj: Any) -> Dict[str, Any]:
    """Raise AssertionError listing every problem; return the report as a dict."""
    if isinstance(obj, Report):
        obj = to_dict(obj)
    elif isinstance(obj, (str, bytes)):
        obj = json.loads(obj)
    problems = schema_errors(obj)
    if not problems:
        checks = obj["checks"]
        counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", "warn", "fail", "skip")}
        if obj["summary"] != counts:
            problems.append(f"summary {obj['summary']} does not match the checks {counts}")
        if obj["ready"] != (counts["fail"] == 0):
            problems.append(f"ready is {obj['ready']} with {counts['fail']} failed checks")
        ids = [c["id"] for c in checks]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            problems.append(f"duplicate check ids: {dupes}")
    assert not problems, "report does not match edgecheck/report/v1:\n  " + "\n  ".join(problems)
    return obj
