"""Bad input of every kind is named, skipped and never a traceback; directories are walked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict

import pytest

from bench.fleet_reports import make_report
from edgecheck.fleet.summarise import summarise
from edgecheck.fleet.model import InvalidInput
from edgecheck.fleet.reportfile import iter_inputs, load_node

from tests.fleet.fleetfixtures import NOW, write


def _report_text() -> str:
    return json.dumps(make_report("edge-1", ["clock-off"], generated_at=NOW), indent=2)


def _mutated(change: Callable[[Dict], None]) -> str:
    doc = make_report("edge-1", ["clock-off"], generated_at=NOW)
    change(doc)
    return json.dumps(doc)


BAD_FILES = {
    "truncated": (lambda: _report_text()[: len(_report_text()) // 2], "truncated JSON"),
    "truncated-in-string": (lambda: _report_text()[:_report_text().index('"edgecheck/report/v1"') + 5],
                            "truncated JSON"),
    "truncated-after-value": (lambda: _report_text().rstrip()[:-1], "truncated JSON"),
    "not-json": (lambda: "hostname: edge-1\nready: yes\n", "not JSON (Expecting value: line 1 column 1)"),
    "garbage-after": (lambda: _report_text() + "\n}", "not JSON (Extra data: line"),
    "empty": (lambda: "  \n", "empty file"),
    "array": (lambda: "[1, 2]", "not a report: the JSON document is an array, not an object"),
    "wrong-schema": (lambda: _mutated(lambda d: d.update(schema="edgecheck/report/v2")),
                     "not an edgecheck/report/v1 report (schema 'edgecheck/report/v2')"),
    "plan-not-report": (lambda: json.dumps({"schema": "edgecheck/plan/v1", "targets": []}),
                        "not an edgecheck/report/v1 report (schema 'edgecheck/plan/v1')"),
    "no-schema": (lambda: json.dumps({"checks": []}), "not an edgecheck/report/v1 report (no schema key)"),
    "no-checks": (lambda: _mutated(lambda d: d.pop("checks")), "checks: missing"),
    "bad-status": (lambda: _mutated(lambda d: d["checks"][3].update(status="broken")),
                   "checks[3].status: 'broken' is not one of pass, warn, fail, skip"),
    "ready-string": (lambda: _mutated(lambda d: d.update(ready="no")), "ready: expected true/false, got a string"),
    "bad-time": (lambda: _mutated(lambda d: d.update(generated_at="yesterday")),
                 "generated_at: not an RFC 3339 timestamp: 'yesterday'"),
    "count-negative": (lambda: _mutated(lambda d: d["summary"].update(fail=-1)), "summary.fail: negative"),
    "bad-finding": (lambda: _mutated(lambda d: d["findings"][0].update(status="pass")),
                    "findings[0].status: 'pass' is not fail or warn"),
    "findings-object": (lambda: _mutated(lambda d: d.update(findings={})), "findings: expected an array, got an object"),
    "deeply-nested": (lambda: "[" * 200_000 + "]" * 200_000, "not a report: JSON nested too deeply"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_is_named_with_its_problem(tmp_path: Path, kind: str) -> None:
    make, problem = BAD_FILES[kind]
    path = tmp_path / f"{kind}.json"
    path.write_text(make())
    result = load_node(str(path))
    assert isinstance(result, InvalidInput), result
    assert result.path == str(path)
    assert result.problem.startswith(problem), result.problem


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"schema": "edgecheck/report/v1", "host": {"hostname": "k\xf6ln"}}'.encode("latin-1"))
    assert load_node(str(path)).problem.startswith("not UTF-8 text")


def test_huge_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024 * 1024)  # 64 GiB, sparse: reading it would take minutes
    result = load_node(str(path))
    assert result.problem == f"too large: {64 * 1024 ** 3} bytes (limit {16 * 1024 * 1024}; --max-report-size)"


def test_size_cap_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path, "edge-1")
    size = path.stat().st_size
    assert not isinstance(load_node(str(path), max_bytes=size), InvalidInput)
    assert load_node(str(path), max_bytes=size - 1).problem.startswith("too large")


def test_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert load_node(str(fifo)).problem == "not a regular file"


def test_missing_path_and_empty_directory_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    items = list(iter_inputs([str(tmp_path / "missing.json"), str(tmp_path / "empty")]))
    assert items == [
        InvalidInput(str(tmp_path / "missing.json"), "no such file or directory"),
        InvalidInput(str(tmp_path / "empty"), "directory holds no *.json report file"),
    ]


def test_directories_are_walked_recursively_skipping_hidden_and_other_files(tmp_path: Path) -> None:
    a = write(tmp_path / "site" / "rack-1", "edge-1")
    b = write(tmp_path / "site" / "rack-2", "edge-2")
    write(tmp_path / "site" / ".old", "edge-3")  # hidden directory
    (tmp_path / "site" / "rack-1" / ".edge-1.json.x1y2.tmp").write_text("{")  # an atomic writer's temp file
    (tmp_path / "site" / "rack-1" / ".partial.json").write_text("{")
    (tmp_path / "site" / "notes.txt").write_text("not a report")
    items = list(iter_inputs([str(tmp_path / "site"), str(a)]))  # a given twice: read once
    assert sorted(items) == [str(a), str(b)]


def test_explicit_file_of_any_name_is_read(tmp_path: Path) -> None:
    path = tmp_path / "report.out"
    path.write_text(_report_text())
    assert list(iter_inputs([str(path)])) == [str(path)]
    assert not isinstance(load_node(str(path)), InvalidInput)


def test_every_bad_kind_together_is_skipped_and_good_reports_still_counted(tmp_path: Path) -> None:
    for kind, (make, _problem) in BAD_FILES.items():
        (tmp_path / f"{kind}.json").write_text(make())
    write(tmp_path, "edge-good")
    skipped = []
    summary = summarise([str(tmp_path)], now=NOW, on_invalid=skipped.append)
    assert [n.hostname for n in summary.nodes()] == ["edge-good"]
    assert sorted(os.path.basename(s.path) for s in skipped) == sorted(f"{k}.json" for k in BAD_FILES)
    assert list(summary.invalid()) == skipped and summary.invalid_count == len(BAD_FILES)
    assert summary.exit_code == 1
