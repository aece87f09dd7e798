"""--output: write the report to files, atomically, one file per format.

Readers (node_exporter, fleet tooling, a person tailing the file) see the previous complete
report or the new complete one, never a partial file: write_atomic writes a temp file in the same
directory, fsyncs and renames. A failure leaves the previous file as it was.

Exit code: a run that probed but could not write a requested report exits 74 (EX_IOERR from
sysexits.h). It is not 1 (that means "not ready", and the host may be ready), not 2 (that means
"nothing was probed"), and distinct from an internal error, so a systemd unit or a fleet script
can tell "the host is broken" from "the monitoring file is stale".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from edgecheck.errors import OutputError, UsageError
from edgecheck.model import Report
from edgecheck.report.formats import EXTENSIONS, FORMATS, render

def format_for_output(path: str, default_format: str) -> str:
    """The format for an --output file: its extension (.json, .prom, .txt), else --format."""
    ext = os.path.splitext(str(path))[1].lower()
    return EXTENSIONS.get(ext, default_format)


def check_outputs(
    outputs: Sequence[str], default_format: str, *, check_dirs: bool = True
) -> List[Tuple[str, str]]:
    """Validate --output values before anything is probed: (path, format) pairs, or UsageError.

    Catches what can be known up front (bad format, two files of one format, a directory that
    does not exist or cannot be written) so a typo costs exit 2 instantly, not a full run.
    """
    if default_format not in FORMATS:
        raise UsageError(f"unknown report format {default_format!r}: use one of {', '.join(FORMATS)}")
    planned: List[Tuple[str, str]] = []
    by_format: Dict[str, str] = {}
    for raw in outputs:
        path = str(raw)
        if not path.strip():
            raise UsageError("--output needs a file path")
        fmt = format_for_output(path, default_format)
        if fmt in by_format:
            raise UsageError(
                f"--output {by_format[fmt]} and --output {path} are both {fmt}: give each format "
                "at most one output file"
            )
        by_format[fmt] = path
        planned.append((path, fmt))
        if not check_dirs:
            continue
        parent = Path(path).parent
        if not parent.is_dir():
            raise UsageError(f"--output {path}: directory {parent} does not exist")
        if Path(path).is_dir():
            raise UsageError(f"--output {path} is a directory; give a file name")
        if not os.access(str(parent), os.W_OK | os.X_OK):
            raise UsageError(f"--output {path}: directory {parent} is not writable")
    return planned


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def write_outputs(
    report: Report, outputs: Sequence[str], default_format: str, *, verbose: bool = False
) -> None:
    """Write the report to every path in `outputs`, each in its format.

    Tries every file even when one fails (a full /var/log must not also stale the .prom file on
    another filesystem), then raises one OutputError naming each failure.
    Raises UsageError for invalid outputs (call check_outputs before probing to get that early).
    """
    # Directories are not re-checked here: after probing, a missing directory is a write
    # failure (OutputError), not a usage error.
    planned = check_outputs(outputs, default_format, check_dirs=False)
    if not planned:
        return
    from edgecheck.atomicfile import write_atomic  # tempfile and friends: only when there is a file to write

    # Render everything first: a rendering bug must not leave some files new and some old.
    rendered = [(path, render(report, fmt, verbose=verbose, color=False)) for path, fmt in planned]
    failures: List[str] = []
    for path, text in rendered:
        try:
            write_atomic(path, text, mode=0o644)
        except OSError as exc:
            failures.append(f"{path}: {_why(exc)}")
    if failures:
        raise OutputError(
            "cannot write the report to " + "; ".join(failures) + " (any previous report there is unchanged)"
        )
