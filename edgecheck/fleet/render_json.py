"""The fleet summary as JSON, schema edgecheck/fleet/v1 (edgecheck/fleet/schema.json).

One top-level key per line and one array item (node, cause, skipped file) per line: the document
is written as a stream, never built whole, and line tools (grep, jq -c) work on it directly. Key
order is part of the contract; new keys are only appended.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator

from edgecheck import __version__
from edgecheck.fleet.model import CauseLine, NodeLine
from edgecheck.fleet.summary import FleetSummary

SCHEMA_ID = "edgecheck/fleet/v1"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def cause_to_dict(summary: FleetSummary, cause: CauseLine) -> Dict[str, Any]:
    return {
        "id": cause.number,
        "cause": cause.cause,
        "status": cause.status,
        "reason": cause.reason,
        "title": cause.title,
        "advice": list(cause.advice),
        "command": cause.command,
        "grouping": cause.source,
        "node_count": cause.node_count,
        "nodes": list(summary.cause_nodes(cause)),  # one cause's hostnames; the document streams per cause
        "check_count": cause.check_count,
        "example_checks": list(cause.example_checks),
        "on_every_failing_node": cause.on_every_failing_node,
    }


def node_to_dict(summary: FleetSummary, node: NodeLine) -> Dict[str, Any]:
    p, w, f, s = node.summary
    return {
        "hostname": node.hostname,
        "file": node.path,
        "ready": node.ready,
        "summary": {"pass": p, "warn": w, "fail": f, "skip": s},
        "generated_at": node.generated_at,
        "agent_version": node.version,
        "params": dict(node.params),
        "failing": [summary.failing[i].number for i in node.failing],
        "warnings": [summary.warnings[i].number for i in node.warning],
        "stale": node.stale,
        "clock_ahead": node.clock_ahead,
        "has_findings": node.has_findings,
    }


def _head(summary: FleetSummary) -> Dict[str, Any]:
    flags = summary.flags
    return {
        "schema": SCHEMA_ID,
        "generated_at": summary.generated_at,
        "agent": {"version": __version__},
        "site": summary.site,
        "ready": summary.all_ready,
        "exit_code": summary.exit_code,
        "counts": {
            "nodes": summary.node_count,
            "ready": summary.ready_count,
            "not_ready": summary.not_ready_count,
            "files_read": summary.files_read,
            "invalid": summary.invalid_count,
            "stale": flags.stale,
            "failing_causes": len(summary.failing),
            "warning_causes": len(summary.warnings),
        },
        "staleness": {
            "reference_time": summary.reference_time,
            "stale_after_seconds": summary.stale_after_seconds,
            "measured_from": summary.stale_from,
        },
        "flags": {
            "stale": [n.hostname for n in summary.nodes(stale=True)],
            "clock_ahead": [n.hostname for n in summary.nodes(clock_ahead=True)],
            "versions": flags.versions,
            "mixed_versions": flags.mixed_versions,
            "mixed": flags.mixed,
            "duplicates": [{"hostname": d.hostname, "kept": d.kept, "ignored": list(d.ignored)}
                           for d in summary.duplicates()],
            "without_findings": flags.without_findings,
        },
    }


def _array(key: str, items: Iterable[Dict[str, Any]], last: bool = False) -> Iterator[str]:
    yield f'  "{key}": ['
    first = True
    for item in items:
        yield ("\n    " if first else ",\n    ") + _dump(item)
        first = False
    yield ("\n  ]" if not first else "]") + ("\n" if last else ",\n")


def render_json(summary: FleetSummary) -> Iterator[str]:
    yield "{\n"
    for key, value in _head(summary).items():
        yield f"  {_dump(key)}: {_dump(value)},\n"
    yield from _array("causes", (cause_to_dict(summary, c) for c in summary.failing))
    yield from _array("warnings", (cause_to_dict(summary, c) for c in summary.warnings))
    yield from _array("nodes", (node_to_dict(summary, n) for n in summary.nodes()))
    yield from _array("invalid", ({"file": b.path, "problem": b.problem} for b in summary.invalid()), last=True)
    yield "}\n"
