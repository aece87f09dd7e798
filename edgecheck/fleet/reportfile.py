"""Find report files, read one (bounded), and reduce it to a NodeReport or name what is wrong.

Everything a bad file can do ends here as an `InvalidInput` with a one-line problem: missing,
unreadable, not a regular file (a FIFO would block), larger than the cap (read stops at the cap),
not UTF-8, not JSON or truncated, too deeply nested, or not an edgecheck/report/v1 document.
The checks below are the parts of the report schema (edgecheck/report/schema.json) the fleet
relies on; unknown keys are ignored, so newer v1 reports are read as they are.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import stat
from typing import Any, Iterable, Iterator, Mapping, Optional, Protocol, Tuple, Union


from edgecheck.fleet.causes import causes_of
from edgecheck.fleet.model import COMPARED_PARAMS, InvalidInput, NodeReport

REPORT_SCHEMA = "edgecheck/report/v1"
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # a real report is tens of KiB; this is 100x headroom
STATUSES = ("pass", "warn", "fail", "skip")
FINDING_STATUSES = ("fail", "warn")
REPORT_SUFFIX = ".json"

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$"
)


class InvalidReport(ValueError):
    """The document is JSON but not a report the fleet can use; the message says where."""


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch; raises ValueError. (datetime.fromisoformat on 3.9 rejects 'Z'.)"""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError(f"not a valid date and time: {text!r}")
    seconds: float = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(7):
        seconds += float(m.group(7))
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return float(seconds)


# ----------------------------------------------------------------------------- discovery


class SeenPaths(Protocol):
    def first_time(self, key: str) -> bool: ...


class _SeenSet:
    def __init__(self) -> None:
        self._seen: set = set()

    def first_time(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def iter_inputs(paths: Iterable[str], seen: Optional["SeenPaths"] = None) -> Iterator[Union[str, InvalidInput]]:
    """Report files to read: each file argument as given (any name), each directory walked
    recursively for *.json (hidden files and directories skipped: temporary files of atomic
    writers are hidden; symlinked directories are not followed). A path that cannot be used is yielded as InvalidInput.
    A file reached twice (given and inside a given directory) is read once; `seen` remembers the
    files (the aggregator's store keeps them on disk)."""
    seen = seen if seen is not None else _SeenSet()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            yield InvalidInput(path, _os_problem(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            found = False
            for file_path in _walk(path):
                if isinstance(file_path, InvalidInput):
                    found = True  # already named; "holds no report" would say it twice
                    yield file_path
                    continue
                found = True
                if seen.first_time(os.path.realpath(file_path)):
                    yield file_path
            if not found:
                yield InvalidInput(path, f"directory holds no *{REPORT_SUFFIX} report file")
        elif seen.first_time(os.path.realpath(path)):
            yield path


def _walk(top: str) -> Iterator[Union[str, InvalidInput]]:
    """*.json files under `top`, streamed: a directory of 100,000 reports is never listed whole
    (os.scandir reads entries in chunks). Filesystem order: the summary sorts nodes itself."""
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    if is_dir:
                        pending.append(entry.path)
                    elif entry.name.lower().endswith(REPORT_SUFFIX):
                        yield entry.path
        except OSError as exc:
            yield InvalidInput(directory, f"cannot list directory: {_os_problem(exc)}")


def _os_problem(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


# ----------------------------------------------------------------------------- reading


def read_document(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The JSON value in the file; raises InvalidReport with a one-line problem."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InvalidReport(f"cannot open: {_os_problem(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidReport("not a regular file")
        if st.st_size > max_bytes:
            raise InvalidReport(f"too large: {st.st_size} bytes (limit {max_bytes}; --max-report-size)")
        chunks = []
        remaining = max_bytes + 1  # the file may grow between fstat and read: never read more
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise InvalidReport(f"cannot read: {_os_problem(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InvalidReport(f"too large: more than {max_bytes} bytes (--max-report-size)")
    if not data.strip():
        raise InvalidReport("empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidReport(f"not UTF-8 text (byte {exc.start}): not a JSON report") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # Cut off mid-write (a full disk, a copy that stopped): the parser runs out of text, or
        # a string runs to the end of it.
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise InvalidReport(f"truncated JSON: the document ends at byte {len(data)} before it is complete") from None
        raise InvalidReport(f"not JSON ({exc.msg}: line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InvalidReport("not a report: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer too long to convert
        raise InvalidReport(f"not JSON: {exc}") from None


def load_node(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Union[NodeReport, InvalidInput]:
    try:
        return node_from_document(read_document(path, max_bytes), path)
    except InvalidReport as exc:
        return InvalidInput(path, str(exc))


# ----------------------------------------------------------------------------- validation


def _need(obj: Mapping[str, Any], key: str, types: Tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise InvalidReport(f"{where}{key}: missing")
    value = obj[key]
    # bool is an int in Python; no field here accepts both.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise InvalidReport(f"{where}{key}: expected {expected}, got {_type_name(value)}")
    return value


_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", bool: "true/false",
               float: "a number"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _strings(value: Any, where: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidReport(f"{where}: expected an array of strings")
    return tuple(value)


def node_from_document(doc: Any, path: str) -> NodeReport:
    """Validate the parts of an edgecheck/report/v1 document the fleet uses; reduce it."""
    if not isinstance(doc, dict):
        raise InvalidReport(f"not a report: the JSON document is {_type_name(doc)}, not an object")
    schema = doc.get("schema")
    if schema != REPORT_SCHEMA:
        got = "no schema key" if schema is None else f"schema {schema!r}"
        raise InvalidReport(f"not an {REPORT_SCHEMA} report ({got})")
    generated_at = _need(doc, "generated_at", (str,), "")
    try:
        timestamp = parse_rfc3339(generated_at)
    except ValueError as exc:
        raise InvalidReport(f"generated_at: {exc}") from None
    agent = _need(doc, "agent", (dict,), "")
    version = _need(agent, "version", (str,), "agent.")
    host = _need(doc, "host", (dict,), "")
    hostname = _need(host, "hostname", (str,), "host.").strip()
    params = _need(doc, "params", (dict,), "")
    ready = _need(doc, "ready", (bool,), "")
    summary = _need(doc, "summary", (dict,), "")
    counts = []
    for key in STATUSES:
        value = _need(summary, key, (int,), "summary.")
        if value < 0:
            raise InvalidReport(f"summary.{key}: negative")
        counts.append(value)
    checks = _need(doc, "checks", (list,), "")
    for i, check in enumerate(checks):
        where = f"checks[{i}]."
        if not isinstance(check, dict):
            raise InvalidReport(f"checks[{i}]: expected an object, got {_type_name(check)}")
        if not _need(check, "id", (str,), where):
            raise InvalidReport(f"{where}id: empty")
        if _need(check, "status", (str,), where) not in STATUSES:
            raise InvalidReport(f"{where}status: {check['status']!r} is not one of {', '.join(STATUSES)}")
        if not _need(check, "reason", (str,), where):
            raise InvalidReport(f"{where}reason: empty")
    findings = doc.get("findings")
    if findings is not None:
        _check_findings(findings)
    causes, has_findings = causes_of(checks, findings)
    label = hostname or f"(no hostname) {os.path.basename(path)}"
    return NodeReport(
        path=path,
        hostname=label,
        generated_at=generated_at,
        timestamp=timestamp,
        version=version,
        params=tuple((key, _param_text(params.get(key))) for key in COMPARED_PARAMS),
        ready=ready,
        summary=(counts[0], counts[1], counts[2], counts[3]),
        causes=tuple(causes),
        has_findings=has_findings,
    )


def _check_findings(findings: Any) -> None:
    if not isinstance(findings, list):
        raise InvalidReport(f"findings: expected an array, got {_type_name(findings)}")
    for i, finding in enumerate(findings):
        where = f"findings[{i}]."
        if not isinstance(finding, dict):
            raise InvalidReport(f"findings[{i}]: expected an object, got {_type_name(finding)}")
        if not _need(finding, "cause", (str,), where):
            raise InvalidReport(f"{where}cause: empty")
        if _need(finding, "status", (str,), where) not in FINDING_STATUSES:
            raise InvalidReport(f"{where}status: {finding['status']!r} is not fail or warn")
        _need(finding, "reason", (str,), where)
        _need(finding, "title", (str,), where)
        _strings(_need(finding, "checks", (list,), where), f"{where}checks")
        if "advice" in finding:
            _strings(finding["advice"], f"{where}advice")
        if "command" in finding and not isinstance(finding["command"], str):
            raise InvalidReport(f"{where}command: expected a string, got {_type_name(finding['command'])}")


def _param_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
