"""run_agent: lock, state files, journal lines across consecutive runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading

import pytest

from edgecheck import agent, exitcodes
from edgecheck.errors import UsageError

from tests.agent.agent_helpers import make_report
from tests.privdrop import run_as_nobody, world_readable_dir


def run(tmp_path, statuses, **kw):
    kw.setdefault("textfile_path", tmp_path / "textfile" / "edgecheck.prom")
    (tmp_path / "textfile").mkdir(exist_ok=True)
    return agent.run_agent(
        lambda: make_report(statuses),
        state_dir=tmp_path / "state",
        **kw,
    )


def texts(outcome):
    return [line.text for line in outcome.lines]


def test_writes_state_and_metrics(tmp_path):
    out = run(tmp_path, {"a": "pass", "b": "warn"})
    assert out.exit_code == 0
    doc = json.loads((tmp_path / "state" / "report.json").read_text())
    assert doc["ready"] is True
    assert "\nedgecheck_ready 1\n" in (tmp_path / "textfile" / "edgecheck.prom").read_text()
    assert oct((tmp_path / "state" / "report.json").stat().st_mode & 0o777) == "0o644"
    assert re.fullmatch(
        rf"READY \(fail 0, warn 1, pass 1, skip 0\) in \d+\.\ds; report {re.escape(str(tmp_path))}/state/report\.json; "
        rf"metrics {re.escape(str(tmp_path))}/textfile/edgecheck\.prom", texts(out)[-1]), texts(out)[-1]


def test_readiness_change_is_logged_once(tmp_path):
    first = run(tmp_path, {"a": "pass", "b": "pass"})
    assert texts(first)[0] == "first run (no previous report): READY"
    down = run(tmp_path, {"a": "fail", "b": "pass"})
    assert down.exit_code == 1
    assert texts(down)[0] == "readiness changed: READY -> NOT READY; now failing: a (timeout)"
    assert len(down.lines) == 2
    again = run(tmp_path, {"a": "fail", "b": "pass"})
    assert len(again.lines) == 1 and texts(again)[0].startswith("NOT READY (fail 1")
    up = run(tmp_path, {"a": "pass", "b": "pass"})
    assert texts(up)[0] == "readiness changed: NOT READY -> READY; no longer failing: a (timeout)"
    steady = run(tmp_path, {"a": "pass", "b": "pass"})
    assert len(steady.lines) == 1


def test_corrupt_previous_report_is_a_first_run(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "report.json").write_text("{not json")
    out = run(tmp_path, {"a": "fail"})
    assert "not a valid report" in texts(out)[0]
    assert texts(out)[1].startswith("first run (no previous report): NOT READY")


def test_missing_textfile_dir_is_noted_not_fatal(tmp_path):
    out = run(tmp_path, {"a": "pass"}, textfile_path=tmp_path / "nope" / "edgecheck.prom")
    assert out.exit_code == 0
    assert f"metrics not written (no directory {tmp_path}/nope)" in texts(out)[-1]


def test_textfile_disabled(tmp_path):
    out = run(tmp_path, {"a": "pass"}, textfile_path=None)
    assert "metrics" not in texts(out)[-1]


def test_unwritable_textfile_is_an_io_error(tmp_path):
    (tmp_path / "textfile").mkdir()
    target = tmp_path / "textfile" / "edgecheck.prom"
    target.mkdir()  # rename over a directory fails: the write itself errors
    out = run(tmp_path, {"a": "pass"}, textfile_path=target)
    assert out.exit_code == exitcodes.OUTPUT_ERROR
    assert out.lines[-1].priority == agent.PRIO_ERR and "metrics NOT written" in texts(out)[-1]
    assert (tmp_path / "state" / "report.json").exists()


def test_missing_state_parent_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--state-dir"):
        agent.run_agent(lambda: make_report({}), state_dir=tmp_path / "a" / "b", textfile_path=None)


def test_crashing_run_keeps_previous_files(tmp_path):
    run(tmp_path, {"a": "pass"})
    before = (tmp_path / "state" / "report.json").read_bytes()
    prom = (tmp_path / "textfile" / "edgecheck.prom").read_bytes()

    def boom():
        raise RuntimeError("engine exploded")

    with pytest.raises(RuntimeError):
        agent.run_agent(boom, state_dir=tmp_path / "state", textfile_path=tmp_path / "textfile" / "edgecheck.prom")
    assert (tmp_path / "state" / "report.json").read_bytes() == before
    assert (tmp_path / "textfile" / "edgecheck.prom").read_bytes() == prom
    # the lock was released: the next run goes ahead
    assert run(tmp_path, {"a": "pass"}).exit_code == 0


def test_failed_write_leaves_previous_state_and_no_temp_files(tmp_path, monkeypatch):
    run(tmp_path, {"a": "pass"})
    before = (tmp_path / "state" / "report.json").read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    out = run(tmp_path, {"a": "fail"})
    monkeypatch.undo()
    assert out.exit_code == exitcodes.OUTPUT_ERROR
    assert "report NOT written" in texts(out)[-1] and "No space left on device" in texts(out)[-1]
    assert (tmp_path / "state" / "report.json").read_bytes() == before
    leftovers = [p.name for d in ("state", "textfile") for p in (tmp_path / d).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_readers_never_see_a_partial_report(tmp_path):
    """A reader polling the state file during many runs always parses a whole report."""
    big = {f"endpoint:host{i}.example:443/tcp": ("fail" if i % 2 else "pass") for i in range(400)}
    run(tmp_path, big)
    path = tmp_path / "state" / "report.json"
    stop = threading.Event()
    seen = []
    errors = []

    def reader():
        while not stop.is_set():
            try:
                seen.append(len(json.loads(path.read_text())["checks"]))
            except Exception as exc:  # pragma: no cover - the failure being tested for
                errors.append(repr(exc))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(30):
            run(tmp_path, big if i % 2 else {"a": "pass"})
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert set(seen) <= {1, 400} and seen


def _hold_run(state_dir, started, release):
    def execute():
        started.set()
        release.wait(30)
        return make_report({"a": "pass"})

    out = agent.run_agent(execute, state_dir=state_dir, textfile_path=None)
    os._exit(out.exit_code)


def test_overlapping_run_is_refused(tmp_path):
    state = tmp_path / "state"
    run(tmp_path, {"a": "fail"})
    before = (state / "report.json").read_bytes()
    ctx = multiprocessing.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_run, args=(state, started, release))
    holder.start()
    try:
        assert started.wait(30)
        called = []
        out = agent.run_agent(lambda: called.append(1), state_dir=state, textfile_path=None)
        assert out.exit_code == exitcodes.BUSY == 75
        assert texts(out) == [f"another edgecheck agent run holds {state}/agent.lock; skipped this run"]
        assert called == []  # nothing was probed
        assert (state / "report.json").read_bytes() == before  # nor written
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0
    # once the holder is done, the lock is free again
    assert run(tmp_path, {"a": "pass"}).exit_code == 0


def test_lock_file_left_by_root_still_locks_for_the_agent_user():
    """A manual root run leaves agent.lock owned by root, 0644, in a directory the agent user
    cannot write: the timer's run (here: nobody) must open it read-only and still flock it.
    Run unprivileged on purpose: as root, opening it O_RDWR would succeed too."""
    with world_readable_dir("edgecheck-lock-") as d:
        lock = d / "agent.lock"
        lock.touch()
        os.chmod(lock, 0o644)

        def as_agent_user():
            with agent.agent_lock(lock) as first:
                with agent.agent_lock(lock) as second:
                    return [first, second, os.access(lock, os.W_OK)]

        assert run_as_nobody(as_agent_user) == [True, False, False]
        assert lock.stat().st_uid == 0  # still root's file: nothing was re-created
