from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgecheck.atomicfile import STALE_TEMP_AGE_S
from edgecheck.errors import OutputError, UsageError
from edgecheck.model import CheckResult, Evidence, Kind, Reason, Status, Target
from edgecheck.report import check_outputs, format_for_output, render, write_outputs
from tests.report.report_fixtures import mixed_report, ready_report
from tests.schema_check import assert_valid_report

ROOT = Path(__file__).resolve().parents[2]


def _temps(d: Path):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


class Blob:
    def to_json(self):
        return {"blob": "x" * 1000}


def _big_report(n: int = 400):
    r = mixed_report()
    for i in range(n):
        host = f"mirror-{i}.example.internal"
        target = Target(f"endpoint:{host}:443/tcp", Kind.ENDPOINT, "https", "user mirror", "", "", "", host=host,
                        port=443, protocol="tcp")
        r.checks.append(CheckResult(target, Status.PASS, Reason.OK, "ok", evidence=Evidence(Blob())))
    return r


def test_format_from_extension_else_default():
    assert format_for_output("/var/lib/prometheus/node-exporter/edgecheck.prom", "text") == "prometheus"
    assert format_for_output("/var/log/edgecheck/report.JSON", "text") == "json"
    assert format_for_output("report.txt", "json") == "text"
    assert format_for_output("/tmp/report", "json") == "json"
    assert format_for_output("/tmp/report.out", "prometheus") == "prometheus"


def test_check_outputs_rejects_before_probing(tmp_path):
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    assert check_outputs([a, str(tmp_path / "m.prom")], "text") == [(a, "json"), (str(tmp_path / "m.prom"), "prometheus")]
    with pytest.raises(UsageError, match="both json"):
        check_outputs([a, b], "text")
    with pytest.raises(UsageError, match="both json"):
        check_outputs([a, str(tmp_path / "report")], "json")  # the default format counts too
    with pytest.raises(UsageError, match="does not exist"):
        check_outputs([str(tmp_path / "nope" / "r.json")], "text")
    with pytest.raises(UsageError, match="is a directory"):
        check_outputs([str(tmp_path)], "text")
    with pytest.raises(UsageError, match="unknown report format"):
        check_outputs([a], "yaml")
    with pytest.raises(UsageError):
        check_outputs([""], "text")
    assert UsageError.exit_code == 2


def test_writes_each_format_with_mode_0644_whatever_the_umask(tmp_path):
    r = mixed_report()
    paths = [tmp_path / "r.json", tmp_path / "r.prom", tmp_path / "r.txt"]
    old = os.umask(0o077)
    try:
        write_outputs(r, [str(p) for p in paths], "text", verbose=True)
    finally:
        os.umask(old)
    assert_valid_report(paths[0].read_text())
    assert paths[1].read_text() == render(r, "prometheus")
    assert paths[2].read_text() == render(r, "text", verbose=True)  # never colour in a file
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert _temps(tmp_path) == []


def test_unwritable_path_is_a_one_line_error_and_the_other_outputs_still_land(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    check_outputs([str(gone / "r.json")], "text")
    gone.rmdir()  # vanished between the pre-check and the write
    prom = tmp_path / "r.prom"
    with pytest.raises(OutputError) as exc:
        write_outputs(ready_report(), [str(gone / "r.json"), str(prom)], "text")
    msg = str(exc.value)
    assert "\n" not in msg and str(gone / "r.json") in msg and "No such file or directory" in msg
    assert exc.value.exit_code == 74
    assert prom.read_text() == render(ready_report(), "prometheus")


@contextlib.contextmanager
def _tmpfs(where: Path, size: str = "64k"):
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_full_disk_leaves_previous_report_and_no_temp_file(tmp_path):
    with _tmpfs(tmp_path / "small") as d:
        target = d / "report.json"
        write_outputs(ready_report(), [str(target)], "text")
        before = target.read_bytes()
        big = _big_report(200)  # ~250 kB of JSON into a 64 kB filesystem
        with pytest.raises(OutputError, match="No space left on device") as exc:
            write_outputs(big, [str(target)], "text")
        assert "\n" not in str(exc.value)
        assert target.read_bytes() == before
        assert_valid_report(before.decode())
        assert _temps(d) == []


def test_read_only_filesystem_leaves_previous_report(tmp_path):
    with _tmpfs(tmp_path / "ro") as d:
        target = d / "edgecheck.prom"
        write_outputs(ready_report(), [str(target)], "text")
        before = target.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        with pytest.raises(OutputError, match="Read-only file system"):
            write_outputs(mixed_report(), [str(target)], "text")
        assert target.read_bytes() == before
        assert _temps(d) == []


_WRITER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from edgecheck.report import write_outputs
    from tests.report.test_report_output import _big_report

    def hang_before_rename(fd):
        # The temp file holds the new report; the rename has not happened yet.
        print("writing", flush=True)
        time.sleep(60)

    os.fsync = hang_before_rename
    write_outputs(_big_report(), [sys.argv[1]], "text")
    """
)


def test_sigkill_mid_write_leaves_previous_report_and_next_run_cleans_up(tmp_path):
    target = tmp_path / "report.json"
    write_outputs(ready_report(), [str(target)], "text")
    before = target.read_bytes()

    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(root=str(ROOT)), str(target)],
                            stdout=subprocess.PIPE, cwd=str(ROOT))
    try:
        assert proc.stdout.readline().strip() == b"writing"
        temps = _temps(tmp_path)
        assert len(temps) == 1 and (tmp_path / temps[0]).stat().st_size > 300_000
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == before  # readers still see the complete previous report
    assert len(_temps(tmp_path)) == 1  # SIGKILL cannot clean up; the next run does

    # A young temp file may belong to a run in progress: left alone.
    write_outputs(mixed_report(), [str(target)], "text")
    assert len(_temps(tmp_path)) == 1
    # Once older than any run can last, it is a leftover: removed.
    stale = tmp_path / _temps(tmp_path)[0]
    old = time.time() - STALE_TEMP_AGE_S - 60
    os.utime(stale, (old, old))
    (tmp_path / ".report.json.notours.tmp").write_text("")  # not write_atomic's shape: kept
    write_outputs(mixed_report(), [str(target)], "text")
    assert _temps(tmp_path) == [".report.json.notours.tmp"]
    assert_valid_report(target.read_text())


_LOOPER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from edgecheck.report import write_outputs
    from tests.report.test_report_output import _big_report
    reports = [_big_report(300), _big_report(1500)]
    print("go", flush=True)
    i = 0
    while True:
        write_outputs(reports[i % 2], [sys.argv[1]], "text")
        i += 1
    """
)


def test_readers_never_see_a_partial_file_while_a_writer_is_killed(tmp_path):
    """A real writer rewriting 0.4-1.7 MB files in a loop, read concurrently, then SIGKILLed."""
    target = tmp_path / "report.json"
    write_outputs(ready_report(), [str(target)], "text")
    proc = subprocess.Popen([sys.executable, "-c", _LOOPER.format(root=str(ROOT)), str(target)],
                            stdout=subprocess.PIPE, cwd=str(ROOT))
    seen = set()
    try:
        assert proc.stdout.readline().strip() == b"go"
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            data = target.read_bytes()
            seen.add(len(json.loads(data)["checks"]))  # must always parse completely
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    sizes = {len(mixed_report().checks) + n for n in (300, 1500)}
    assert len(json.loads(target.read_bytes())["checks"]) in seen | sizes
    assert len(seen) >= 2, "the writer never replaced the file during the test"
    assert all(n in {len(ready_report().checks)} | sizes for n in seen)
