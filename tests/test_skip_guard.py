"""The suite's skip rule (tests/conftest.py), run on throwaway test files in a child pytest:
under --no-skips (what tests/run passes) or CI a skip fails, except @pytest.mark.skip_allowed,
which is counted; without either a skip stays a skip (a developer's machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PLAIN = "import pytest\n\ndef test_ok():\n    pass\n\ndef test_needs_a_tool():\n    pytest.skip('no such tool')\n"
MARKED = ("import pytest\n\n@pytest.mark.skip_allowed(reason='needs IPv6 on the host')\n"
          "def test_deliberate():\n    pytest.skip('no IPv6 here')\n")
MODULE = "import pytest\npytest.skip('whole module', allow_module_level=True)\n\ndef test_x():\n    pass\n"
FIXTURE = ("import pytest\n\n@pytest.fixture\ndef lab():\n    pytest.skip('lab prerequisites missing')\n\n"
           "def test_in_lab(lab):\n    pass\n")


def child_pytest(tmp_path: Path, source: str, *args: str, ci: str = "") -> subprocess.CompletedProcess:
    (tmp_path / "test_child.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-q", "--rootdir", str(tmp_path), str(tmp_path / "test_child.py"), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


@pytest.mark.parametrize("source", [PLAIN, MODULE, FIXTURE], ids=["in-test", "module", "fixture"])
def test_under_tests_run_a_skip_fails(tmp_path, source):
    proc = child_pytest(tmp_path, source, "--no-skips")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "a skip is a failure here" in proc.stdout.lower(), proc.stdout


def test_the_failure_names_the_reason_and_the_way_out(tmp_path):
    proc = child_pytest(tmp_path, PLAIN, "--no-skips")
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout
    assert "skipped: no such tool" in proc.stdout and "@pytest.mark.skip_allowed(reason=...)" in proc.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_ci_alone_also_fails_a_skip(tmp_path, ci):
    proc = child_pytest(tmp_path, PLAIN, ci=ci)
    assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout, proc.stdout


def test_without_tests_run_or_ci_a_skip_stays_a_skip(tmp_path):
    proc = child_pytest(tmp_path, PLAIN)
    assert proc.returncode == 0 and "1 passed, 1 skipped" in proc.stdout, proc.stdout
    proc = child_pytest(tmp_path, PLAIN, ci="false")
    assert proc.returncode == 0 and "1 passed, 1 skipped" in proc.stdout, proc.stdout


def test_the_marker_allows_a_skip_and_tests_run_reports_the_count(tmp_path):
    proc = child_pytest(tmp_path, MARKED, "--no-skips")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 test(s) skipped deliberately (@pytest.mark.skip_allowed)" in proc.stdout, proc.stdout
    assert "no IPv6 here" in proc.stdout
    proc = child_pytest(tmp_path, PLAIN, "--no-skips")
    assert "0 test(s) skipped deliberately (@pytest.mark.skip_allowed)" in proc.stdout, proc.stdout


def test_tests_run_passes_the_option():
    script = (REPO / "tests" / "run").read_text()
    assert "--no-skips" in script
