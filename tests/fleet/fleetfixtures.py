"""Helpers for the fleet tests: write generated reports into a directory, validate summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import jsonschema

from bench.fleet_reports import make_report
from edgecheck.fleet.summarise import schema as fleet_schema
from edgecheck.report import schema as report_schema

NOW = 1_800_000_000.0  # a fixed "now" (2027-01-15T08:00:00Z) so staleness is deterministic


def write(directory: Path, hostname: str, faults: Sequence[str] = (), *, name: Optional[str] = None,
          age: float = 0.0, base: float = NOW, **kwargs: Any) -> Path:
    """One generated report, `age` seconds older than `base` (NOW), as <name or hostname>.json."""
    report = make_report(hostname, faults, generated_at=base - age, **kwargs)
    return write_doc(directory, name or hostname, report)


def write_doc(directory: Path, name: str, doc: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def validate_report(doc: Dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(report_schema(),
                                                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors


def validate_summary(doc: Dict[str, Any]) -> Dict[str, Any]:
    s = fleet_schema()
    jsonschema.Draft202012Validator.check_schema(s)
    validator = jsonschema.Draft202012Validator(s, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, "fleet summary does not match edgecheck/fleet/v1:\n  " + "\n  ".join(errors)
    return doc


def cause_nodes(doc: Dict[str, Any], key: str = "causes") -> Dict[str, List[str]]:
    """cause id -> hostnames, from a JSON summary."""
    return {c["cause"]: c["nodes"] for c in doc[key]}
