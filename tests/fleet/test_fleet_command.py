"""`edgecheck fleet` end to end through click: formats, outputs, schema, exit codes, stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import click
import pytest
from click.testing import CliRunner

from edgecheck.fleet.command import fleet_command, parse_duration, parse_size

from tests.fleet import fleetfixtures
from tests.fleet.fleetfixtures import cause_nodes, validate_summary, write_doc

STARTED = time.time()  # the command measures from the real clock: reports are dated around it


def write(directory: Path, hostname: str, faults=(), **kwargs):  # type: ignore[no-untyped-def]
    return fleetfixtures.write(directory, hostname, faults, base=STARTED, **kwargs)

REPO = Path(__file__).resolve().parents[2]


def run(args: List[str]):
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()
    result = runner.invoke(fleet_command, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    write(site, "edge-1", ["dns-forwarder-down"], age=10)
    write(site, "edge-2", ["dns-forwarder-down", "tools-missing"], age=20)
    write(site, "edge-3", ["ntp-blocked"], age=5)
    write(site, "edge-4", ["tools-missing"], findings=False, version="0.1.0", age=30)
    return site


def test_json_summary_validates_against_the_shipped_schema(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (site / "broken.json").write_text('{"schema": "edgecheck/report/v1", ')
    result = run([str(site), "--format", "json", "--site", "shop 12"])
    assert result.exit_code == 1, result.output
    doc = validate_summary(json.loads(result.stdout))
    assert doc["schema"] == "edgecheck/fleet/v1" and doc["site"] == "shop 12"
    assert doc["counts"] == {"nodes": 4, "ready": 1, "not_ready": 3, "files_read": 5, "invalid": 1, "stale": 0,
                             "failing_causes": 4, "warning_causes": 1}
    assert cause_nodes(doc) == {
        "dns-timeout:nameservers=10.20.0.53": ["edge-1", "edge-2"],
        "tool-missing": ["edge-2"],
        "tool-missing:check=tool:socat": ["edge-4"],
        "tool-missing:check=tool:conntrack-tools": ["edge-4"],
    }
    assert cause_nodes(doc, "warnings") == {"no-response:protocol=udp,port=123": ["edge-3"]}
    assert [n["hostname"] for n in doc["nodes"]] == ["edge-1", "edge-2", "edge-4", "edge-3"]
    assert doc["nodes"][1]["failing"] == ["F1", "F2"]
    assert doc["invalid"] == [{"file": str(site / "broken.json"), "problem": doc["invalid"][0]["problem"]}]
    assert doc["flags"]["mixed_versions"] and doc["flags"]["without_findings"] == 1
    assert doc["exit_code"] == 1 and doc["ready"] is False
    # One node or cause per line: line tools work on it.
    assert sum(1 for line in result.stdout.splitlines() if line.lstrip().startswith('{"hostname"')) == 4
    assert f"edgecheck fleet: skipped {site / 'broken.json'}: truncated JSON" in result.stderr


def test_schema_rejects_a_wrong_summary() -> None:
    doc = {"schema": "edgecheck/fleet/v1"}
    with pytest.raises(AssertionError, match="required property"):
        validate_summary(doc)


def test_schema_option_prints_the_shipped_schema() -> None:
    result = run(["--schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["$id"] == "urn:edgecheck:fleet:v1"


def test_text_summary(tmp_path: Path) -> None:
    result = run([str(_site(tmp_path))])
    assert result.exit_code == 1
    out = result.stdout
    assert out.startswith("edgecheck fleet: 4 nodes, 1 ready, 3 NOT READY\n")
    assert re.search(r"^  edge-2 +NOT READY +fail \d+ +warn 0 +pass \d+ +skip 0 +F1 F2$", out, re.M), out
    assert re.search(r"^  edge-3 +ready .* W1$", out, re.M), out
    assert "F1  DNS lookups time out at nameserver 10.20.0.53 -- 2 nodes\n" in out
    assert "    nodes: edge-1, edge-2\n" in out
    assert "mixed edgecheck versions: 0.2.0 (3 nodes), 0.1.0 (1 node)" in out
    assert out.rstrip().endswith("(exit 1)")


def test_every_node_ready_exits_0(tmp_path: Path) -> None:
    write(tmp_path, "edge-1")
    write(tmp_path, "edge-2", ["ntp-blocked"])
    result = run([str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "every node READY" in result.stdout.splitlines()[0]


def test_no_valid_report_exits_2_and_names_each_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("not json")
    (tmp_path / "b.json").write_text("{}")
    result = run([str(tmp_path), str(tmp_path / "missing.json"), "--format", "json"])
    assert result.exit_code == 2
    for name in ("a.json", "b.json", "missing.json"):
        assert f"skipped {tmp_path / name}:" in result.stderr
    assert "no valid report among 3 input(s)" in result.stderr
    doc = validate_summary(json.loads(result.stdout))
    assert doc["exit_code"] == 2 and doc["nodes"] == [] and doc["staleness"]["reference_time"] is None


def test_outputs_by_extension_written_atomically(tmp_path: Path) -> None:
    site = _site(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = run([str(site), "--format", "text", "--output", str(out / "fleet.html"),
                  "--output", str(out / "fleet.json"), "--output", str(out / "fleet.txt")])
    assert result.exit_code == 1
    assert sorted(os.listdir(out)) == ["fleet.html", "fleet.json", "fleet.txt"]  # no temp file left
    assert (out / "fleet.html").read_text().startswith("<!DOCTYPE html>")
    validate_summary(json.loads((out / "fleet.json").read_text()))
    assert (out / "fleet.txt").read_text() == result.stdout


def test_output_in_a_missing_directory_is_a_usage_error_before_reading(tmp_path: Path) -> None:
    result = run([str(_site(tmp_path)), "--output", str(tmp_path / "nope" / "fleet.html")])
    assert result.exit_code == 2
    assert "cannot write in" in result.stderr and "skipped" not in result.stderr


@pytest.mark.parametrize("args", [[], ["--stale-after", "soon", "x"], ["--max-report-size", "big", "x"],
                                  ["--format", "pdf", "x"]])
def test_usage_errors_exit_2(args: List[str]) -> None:
    assert run(args).exit_code == 2


def test_stale_after_option(tmp_path: Path) -> None:
    write(tmp_path, "new", age=0)
    write(tmp_path, "old", age=7200)
    assert json.loads(run([str(tmp_path), "--format", "json"]).stdout)["flags"]["stale"] == ["old"]
    assert json.loads(run([str(tmp_path), "--format", "json", "--stale-after", "3h"]).stdout)["flags"]["stale"] == []
    assert json.loads(run([str(tmp_path), "--format", "json", "--stale-after", "0"]).stdout)["flags"]["stale"] == []


def test_duration_and_size_parsing() -> None:
    assert [parse_duration(x) for x in ("90", "90s", "30m", "6h", "2d", "0", "1.5h")] == [90, 90, 1800, 21600, 172800, 0, 5400]
    assert [parse_size(x) for x in ("20000", "512K", "16M", "1G", "16MiB")] == [20000, 524288, 16 << 20, 1 << 30, 16 << 20]
    for bad in ("", "-1h", "1w", "soon"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_hostile_hostname_is_escaped_in_html(tmp_path: Path) -> None:
    from bench.fleet_reports import make_report

    doc = make_report("<script>alert(1)</script>", ["clock-off"], generated_at=STARTED)
    write_doc(tmp_path, "evil", doc)
    result = run([str(tmp_path), "--format", "html"])
    assert "<script>" not in result.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in result.stdout


def test_registered_in_a_click_group_like_cli_py_does(tmp_path: Path) -> None:
    """What the lead's one line in cli.py does: main.add_command(fleet_command)."""
    write(tmp_path, "edge-1")

    @click.group()
    def main() -> None:
        pass

    main.add_command(fleet_command)
    result = CliRunner().invoke(main, ["fleet", str(tmp_path)])
    assert result.exit_code == 0 and "every node READY" in result.output


def test_stand_alone_module_entry_never_shows_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe\x00garbage")
    proc = subprocess.run([sys.executable, "-m", "edgecheck.fleet.command", str(tmp_path)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"skipped {tmp_path / 'bad.json'}: not UTF-8 text" in proc.stderr
