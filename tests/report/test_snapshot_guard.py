"""UPDATE_SNAPSHOTS=1 rewrites the text-report snapshots and then passes against what it wrote:
it is refused under tests/run (--no-skips) and CI, and the snapshots stay byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).parent / "snapshots"


def _snapshot_files():
    files = {p.name: p.read_bytes() for p in sorted(SNAPSHOTS.glob("*.txt"))}
    assert files, f"no snapshots in {SNAPSHOTS}"
    return files


@pytest.mark.parametrize("how", ["tests-run", "ci"])
def test_update_snapshots_is_refused(how):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["UPDATE_SNAPSHOTS"] = "1"
    args = ["--no-skips"] if how == "tests-run" else []
    if how == "ci":
        env["CI"] = "true"
    before = _snapshot_files()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args,
                           "tests/report/test_report_text.py::test_snapshot"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "UPDATE_SNAPSHOTS=1 is refused under tests/run and CI" in proc.stdout, proc.stdout
    assert "4 failed" in proc.stdout, proc.stdout
    assert _snapshot_files() == before
