"""Fleet agent: one timer-driven run that keeps the last report for node_exporter and fleet tools.

`edgecheck agent` (normally started by edgecheck.timer) runs the same checks as `edgecheck run`,
then, instead of printing the report:

- keeps it as JSON in the state directory (`report.json`) and as a node_exporter textfile
  (`edgecheck.prom`), both written atomically so readers never see a partial file;
- holds a lock (flock on `agent.lock` in the state directory) so a manual run and a timer run
  never overlap: the second one says so in one line and exits with exitcodes.BUSY;
- prints one line per run (verdict, counts, duration, where the report went) for the journal;
- compares with the previous report and prints one more line only when something changed:
  readiness flipped (naming the checks that started or stopped failing), or the set of failing
  checks changed. The same failure is not repeated every five minutes.

Decisions are pure functions (snapshot, transitions, messages); `run_agent` is the small runner at
the I/O edge. It takes a callable that produces a Report, so it does not depend on the probe engine.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, TextIO, Tuple, Union

from edgecheck import exitcodes
from edgecheck.atomicfile import write_atomic
from edgecheck.errors import UsageError
from edgecheck.model import Report
from edgecheck.records import record

DEFAULT_STATE_DIR = "/var/lib/edgecheck"
DEFAULT_TEXTFILE = "/var/lib/prometheus/node-exporter/edgecheck.prom"
STATE_FILE = "report.json"
LOCK_FILE = "agent.lock"

# How many check ids one journal line names before it says "and N more".
MAX_NAMED = 8

# syslog priorities, used as "<N>" line prefixes when stdout is the journal (sd-daemon(3)).
PRIO_ERR = 3
PRIO_WARNING = 4
PRIO_NOTICE = 5
PRIO_INFO = 6


@record(frozen=True)
class CheckState:
    status: str  # pass | warn | fail | skip
    reason: str


@record(frozen=True)
class Snapshot:
    """What the agent compares between runs: the verdict and each check's status."""

    ready: bool
    checks: Mapping[str, CheckState]  # check id -> state, in report order


@record(frozen=True)
class Transition:
    """One check whose status changed between two runs (None: absent from that run)."""

    id: str
    before: Optional[CheckState]
    after: Optional[CheckState]

    @property
    def started_failing(self) -> bool:
        return _is_fail(self.after) and not _is_fail(self.before)

    @property
    def stopped_failing(self) -> bool:
        return _is_fail(self.before) and not _is_fail(self.after)


@record(frozen=True)
class LogLine:
    priority: int
    text: str


@record(frozen=True)
class Outcome:
    """What one agent run did; `exit_code` is what the command exits with."""

    exit_code: int
    lines: Tuple[LogLine, ...]
    report: Optional[Report] = None  # when the checks ran


def _is_fail(state: Optional[CheckState]) -> bool:
    return state is not None and state.status == "fail"


# ---------------------------------------------------------------------------------------------
# Pure decisions


def snapshot_from_document(doc: Any) -> Snapshot:
    """Snapshot of a JSON report document (edgecheck/report/v1). Raises ValueError if malformed.

    The current run is snapshotted from the JSON it is about to write, not from the Report object,
    so both sides of a comparison always come through the same path.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("checks"), list):
        raise ValueError("not an edgecheck report (no 'checks' list)")
    checks: Dict[str, CheckState] = {}
    for item in doc["checks"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError("check without an id")
        checks[item["id"]] = CheckState(str(item.get("status", "")), str(item.get("reason", "")))
    ready = doc.get("ready")
    if not isinstance(ready, bool):
        # Older or foreign documents: derive the verdict the way Report.ready does.
        ready = not any(c.status == "fail" for c in checks.values())
    return Snapshot(ready=ready, checks=checks)


def transitions(prev: Optional[Snapshot], cur: Snapshot) -> List[Transition]:
    """Every check whose status or presence differs between `prev` and `cur` (first run: none).

    A reason change alone (timeout -> refused) is not a transition: the status is what readiness
    and alerting are about, and reasons can flicker between equivalent failures.
    """
    if prev is None:
        return []
    out: List[Transition] = []
    for cid, after in cur.checks.items():
        before = prev.checks.get(cid)
        if before is None or before.status != after.status:
            out.append(Transition(cid, before, after))
    for cid, before in prev.checks.items():
        if cid not in cur.checks:
            out.append(Transition(cid, before, None))
    return out


def _name_checks(items: Sequence[Tuple[str, Optional[CheckState]]]) -> str:
    named = [f"{cid} ({state.reason})" if state is not None and state.reason else cid for cid, state in items]
    if len(named) > MAX_NAMED:
        named = named[:MAX_NAMED] + [f"and {len(items) - MAX_NAMED} more"]
    return ", ".join(named)


def _verdict(ready: bool) -> str:
    return "READY" if ready else "NOT READY"


def change_message(prev: Optional[Snapshot], cur: Snapshot) -> Optional[LogLine]:
    """The journal line announcing a change since the previous run, or None if nothing changed.

    - first run (no previous report): the baseline, naming the failing checks;
    - readiness flipped: which checks started and stopped failing;
    - still not ready but a different set of checks fails: which ones.
    Status changes that do not involve `fail` (pass <-> warn, skip) do not produce a line: they
    are in the report and the metrics, and would make the journal noisy.
    """
    failing_now = [(cid, s) for cid, s in cur.checks.items() if s.status == "fail"]
    if prev is None:
        text = f"first run (no previous report): {_verdict(cur.ready)}"
        if failing_now:
            text += f"; failing: {_name_checks(failing_now)}"
        return LogLine(PRIO_INFO if cur.ready else PRIO_WARNING, text)

    moved = transitions(prev, cur)
    started = [(t.id, t.after) for t in moved if t.started_failing]
    stopped = [(t.id, t.before) for t in moved if t.stopped_failing]
    details = []
    if started:
        details.append(f"now failing: {_name_checks(started)}")
    if stopped:
        details.append(f"no longer failing: {_name_checks(stopped)}")

    if prev.ready != cur.ready:
        text = f"readiness changed: {_verdict(prev.ready)} -> {_verdict(cur.ready)}"
        if details:
            text += "; " + "; ".join(details)
        return LogLine(PRIO_NOTICE if cur.ready else PRIO_WARNING, text)
    if details:
        return LogLine(
            PRIO_WARNING if not cur.ready else PRIO_NOTICE,
            f"failing checks changed (still {_verdict(cur.ready)}): " + "; ".join(details),
        )
    return None


def run_line(doc: Mapping[str, Any], seconds: float, written: Sequence[str]) -> LogLine:
    """The one line every run prints: verdict, counts, duration, where the report went."""
    summary = doc.get("summary") or {}
    counts = ", ".join(f"{k} {int(summary.get(k, 0))}" for k in ("fail", "warn", "pass", "skip"))
    ready = bool(doc.get("ready"))
    text = f"{_verdict(ready)} ({counts}) in {seconds:.1f}s"
    if written:
        text += "; " + "; ".join(written)
    return LogLine(PRIO_INFO, text)


# ---------------------------------------------------------------------------------------------
# I/O edge


@contextlib.contextmanager
def agent_lock(path: Path) -> Iterator[bool]:
    """flock(LOCK_EX|LOCK_NB) on `path`; yields False when another process holds it.

    The file is opened read-only (O_CREAT still creates it): a lock file left by a manual root run
    must not stop the timer's run as the edgecheck user. The kernel drops the lock when the
    process dies, so a crashed run never leaves a stale lock.
    """
    fd = os.open(str(path), os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                yield False
                return
            raise
        yield True
    finally:
        os.close(fd)


def read_previous(path: Path) -> Tuple[Optional[Snapshot], Optional[str]]:
    """(snapshot, note) of the previous report; (None, None) if there is none yet."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"previous report {path} unreadable ({exc.strerror}); treating this as a first run"
    try:
        return snapshot_from_document(json.loads(raw)), None
    except ValueError as exc:
        return None, f"previous report {path} is not a valid report ({exc}); treating this as a first run"


def default_state_dir(environ: Mapping[str, str]) -> str:
    """systemd's StateDirectory= exports STATE_DIRECTORY; otherwise the packaged default."""
    return (environ.get("STATE_DIRECTORY") or "").split(":")[0] or DEFAULT_STATE_DIR


def parse_textfile(value: Optional[str]) -> Optional[str]:
    """--textfile / EDGECHECK_TEXTFILE: a *.prom path, or off/none/"" to disable the metrics file.

    node_exporter's textfile collector reads only *.prom files, so any other name would be
    written faithfully and never scraped: refuse it up front (exit 2, nothing probed).
    """
    if value is None:
        return DEFAULT_TEXTFILE
    if value.strip().lower() in ("", "off", "none", "no", "false", "0"):
        return None
    if not value.endswith(".prom"):
        raise UsageError(f"--textfile {value!r}: node_exporter only reads files ending in .prom")
    return value


def _prepare_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=False, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"state directory {state_dir}: {exc.strerror}; run as root or the edgecheck user, "
            "or choose another one with --state-dir"
        ) from None
    if not os.access(str(state_dir), os.W_OK | os.X_OK):
        raise UsageError(
            f"state directory {state_dir} is not writable by this user; run as root or the "
            "edgecheck user, or choose another one with --state-dir"
        )


def run_agent(
    execute: Callable[[], Report],
    *,
    state_dir: Union[os.PathLike, str],
    textfile_path: Optional[Union[os.PathLike, str]],
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """One agent run: lock, execute, compare with the previous report, write both files.

    `execute` returns a diagnosed Report (edgecheck.runner.run). Usage errors it raises propagate
    (exit 2, nothing written); so do unexpected errors, after the lock is released: the CLI turns
    them into its one-line internal-error message. The previous files are then left in place, so
    the metrics' last-run timestamp goes stale and alerts. The exit code is the report's verdict
    (--strict included), or 74 when a file could not be written.
    """
    from edgecheck.report import to_json

    state = Path(state_dir)
    _prepare_state_dir(state)
    state_file = state / STATE_FILE
    lines: List[LogLine] = []

    with agent_lock(state / LOCK_FILE) as acquired:
        if not acquired:
            return Outcome(
                exitcodes.BUSY,
                (LogLine(PRIO_NOTICE, f"another edgecheck agent run holds {state / LOCK_FILE}; skipped this run"),),
            )
        started = clock()
        report = execute()
        seconds = clock() - started

        text = to_json(report)
        doc = json.loads(text)
        prev, note = read_previous(state_file)
        if note:
            lines.append(LogLine(PRIO_WARNING, note))
        change = change_message(prev, snapshot_from_document(doc))
        if change is not None:
            lines.append(change)

        written, failed = _write_files(report, text, state_file, textfile_path)
        summary = run_line(doc, seconds, written)
        if failed:
            summary = LogLine(PRIO_ERR, summary.text)
        lines.append(summary)
        exit_code = exitcodes.OUTPUT_ERROR if failed else exitcodes.for_verdict(report.passes)
        return Outcome(exit_code, tuple(lines), report)


def _write_files(report: Report, text: str, state_file: Path,
                 textfile_path: Optional[Union[os.PathLike, str]]) -> Tuple[List[str], bool]:
    """Both files, each atomically; (what each write did, whether one failed)."""
    from edgecheck.report import render_prometheus

    written: List[str] = []
    failed = False
    try:
        write_atomic(state_file, text, mode=0o644)
        written.append(f"report {state_file}")
    except OSError as exc:
        failed = True
        written.append(f"report NOT written to {state_file} ({exc.strerror or exc})")
    if textfile_path:
        prom = Path(textfile_path)
        if not prom.parent.is_dir():
            # node_exporter not installed (yet): not an agent failure, but visible every run.
            written.append(f"metrics not written (no directory {prom.parent})")
        else:
            try:
                write_atomic(prom, render_prometheus(report), mode=0o644)
                written.append(f"metrics {prom}")
            except OSError as exc:
                failed = True
                written.append(f"metrics NOT written to {prom} ({exc.strerror or exc})")
    return written, failed


def stream_is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when `stream` is connected to the journal (systemd sets JOURNAL_STREAM=dev:inode)."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return st.st_dev == dev and st.st_ino == ino


def format_line(line: LogLine, journal: bool) -> str:
    """`<N>` priority prefixes only when the journal reads them; a terminal sees plain text."""
    prefix = f"<{line.priority}>" if journal else ""
    return f"{prefix}edgecheck agent: {line.text}"


def emit(lines: Sequence[LogLine], stream: Optional[TextIO] = None, environ: Optional[Mapping[str, str]] = None) -> None:
    stream = stream if stream is not None else sys.stdout
    journal = stream_is_journal(stream, environ if environ is not None else os.environ)
    for line in lines:
        stream.write(format_line(line, journal) + "\n")
    stream.flush()
