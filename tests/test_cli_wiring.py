"""The CLI's wiring end to end: the real `edgecheck run` and `edgecheck agent` as subprocesses in an
empty network namespace (tests/emptyns.py: every probe fails locally, nothing leaves the host).

Exit codes are compared with numbers, not with edgecheck.exitcodes: a changed constant must fail
here, because systemd units and fleet scripts depend on the numbers (README, "Agent exit codes").
(--strict needs a run with warnings and no failure: tests/lab/test_cli_wiring_lab.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests import emptyns
from tests.schema_check import assert_valid_report

RUN = ("run", "--region", "cn-hangzhou", "--timeout", "1")
AGENT = ("agent", "--region", "cn-hangzhou", "--phase", "join", "--timeout", "1")
# Stands in for a bug outside the engine (the engine turns a crashing check into a result, so a
# crash there cannot reach the exit code): the real entry point, with diagnosis broken.
INJECTED = ("-c", "import edgecheck.diagnosis as d\n"
                  "def boom(report):\n    raise RuntimeError('injected fault')\n"
                  "d.diagnose = boom\n"
                  "from edgecheck.cli import cli_entry\ncli_entry()\n")
INTERNAL_LINE = "edgecheck: internal error: RuntimeError: injected fault (run again with --debug for a traceback)"


@contextlib.contextmanager
def full_filesystem(where: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs, filled: the directory is writable, every new file's data hits ENOSPC."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0755", "edgecheck-full", str(where)], check=True)
    try:
        (where / "previous.json").write_text("previous report\n")
        with open(where / "filler", "wb") as f:
            with contextlib.suppress(OSError):
                f.write(b"\0" * (64 * 1024))
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ---------------------------------------------------------------------------------------- --output

def test_output_several_paths_each_in_its_format(tmp_path):
    outputs = [tmp_path / "r.json", tmp_path / "r.prom", tmp_path / "r.txt"]
    args = [a for p in outputs for a in ("--output", str(p))]
    proc = emptyns.cli(*RUN, "--format", "json", *args)
    assert proc.returncode == 1, proc.stderr  # nothing is reachable in the empty namespace
    stdout = assert_valid_report(proc.stdout)
    written = assert_valid_report(outputs[0].read_text())
    assert written["checks"] == stdout["checks"]
    assert "\nedgecheck_ready 0\n" in outputs[1].read_text()
    assert outputs[2].read_text().startswith("NOT READY  ")
    assert {p.stat().st_mode & 0o777 for p in outputs} == {0o644}


def test_edgecheck_output_takes_several_paths_like_path(tmp_path):
    """EDGECHECK_OUTPUT is a list separated like PATH (click's list splitting for paths)."""
    json_path, prom_path = tmp_path / "env.json", tmp_path / "env.prom"
    proc = emptyns.cli(*RUN, env={"EDGECHECK_OUTPUT": f"{json_path}{os.pathsep}{prom_path}"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("NOT READY  ")  # stdout keeps the default text format
    assert_valid_report(json_path.read_text())
    assert "\nedgecheck_ready 0\n" in prom_path.read_text()


def test_output_that_cannot_be_written_is_one_line_and_exit_74(tmp_path):
    with full_filesystem(tmp_path / "full") as full:
        target = full / "previous.json"
        prom = tmp_path / "r.prom"
        proc = emptyns.cli(*RUN, "--format", "json", "--output", str(target), "--output", str(prom))
        assert target.read_text() == "previous report\n"  # the previous file is untouched
        assert [p.name for p in full.iterdir() if p.name not in ("previous.json", "filler")] == []
    assert proc.returncode == 74, (proc.returncode, proc.stderr)
    assert one_line(proc.stderr) == (f"edgecheck: error: cannot write the report to {target}: No space left on "
                                     "device (any previous report there is unchanged)")
    assert_valid_report(proc.stdout)  # the report itself still reached stdout
    assert "\nedgecheck_ready 0\n" in prom.read_text()  # and the other output still landed


def test_output_into_a_missing_directory_is_exit_2_before_probing(tmp_path):
    proc = emptyns.cli(*RUN, "--output", str(tmp_path / "nope" / "r.json"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_line(proc.stderr) == f"edgecheck: error: --output {tmp_path / 'nope' / 'r.json'}: directory " \
                                    f"{tmp_path / 'nope'} does not exist"


def test_agent_that_cannot_write_its_metrics_exits_74(tmp_path):
    state = tmp_path / "state"
    with full_filesystem(tmp_path / "full") as full:
        prom = full / "edgecheck.prom"
        proc = emptyns.cli(*AGENT, "--state-dir", str(state), "--textfile", str(prom))
        assert not prom.exists()
    assert proc.returncode == 74, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.splitlines()[-1].endswith(f"; metrics NOT written to {prom} (No space left on device)"), proc.stdout
    assert_valid_report((state / "report.json").read_text())  # the report still landed


# ------------------------------------------------------------------------------------ exit 70

def test_run_internal_error_is_one_line_and_exit_70():
    proc = emptyns.cli(*RUN, python=INJECTED)
    assert proc.returncode == 70, (proc.returncode, proc.stderr)
    assert one_line(proc.stderr) == INTERNAL_LINE
    assert proc.stdout == ""
    debug = emptyns.cli(*RUN, python=INJECTED, env={"EDGECHECK_DEBUG": "1"})
    assert debug.returncode == 70 and "Traceback" in debug.stderr and "injected fault" in debug.stderr


def test_agent_internal_error_exits_70_keeps_the_previous_report_and_releases_the_lock(tmp_path):
    state, prom = tmp_path / "state", tmp_path / "edgecheck.prom"
    first = emptyns.cli(*AGENT, "--state-dir", str(state), "--textfile", str(prom))
    assert first.returncode == 1, first.stderr
    before = (state / "report.json").read_bytes(), prom.read_bytes()
    broken = emptyns.cli(*AGENT, "--state-dir", str(state), "--textfile", str(prom), python=INJECTED)
    assert broken.returncode == 70, (broken.returncode, broken.stdout, broken.stderr)
    assert one_line(broken.stderr) == INTERNAL_LINE
    assert ((state / "report.json").read_bytes(), prom.read_bytes()) == before
    again = emptyns.cli(*AGENT, "--state-dir", str(state), "--textfile", str(prom))
    assert again.returncode == 1, again.stderr  # not 75: the crashed run did not keep the lock


@pytest.mark.parametrize("command", ["run", "agent"])
def test_usage_error_is_exit_2_and_names_the_option(tmp_path, command):
    args = [*RUN, "--output", str(tmp_path / "r.json")] if command == "run" else [*AGENT, "--state-dir", str(tmp_path)]
    proc = emptyns.cli(*args, "--k8s-version", "latest")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "invalid --k8s-version 'latest'" in one_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_report_on_stdout_is_complete_json():
    proc = emptyns.cli(*RUN, "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["params"]["timeout"] == 1.0 and doc["ready"] is False
