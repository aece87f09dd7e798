"""Format names, how a file name selects one, and the one dispatch point to the renderers."""

from __future__ import annotations

from typing import Iterable

from edgecheck.errors import UsageError
from edgecheck.model import Report
from edgecheck.report.jsonreport import iter_json, to_json
from edgecheck.report.prometheus import render_prometheus
from edgecheck.report.text import render_text

FORMATS = ("text", "json", "prometheus")

# node_exporter only reads *.prom, so the extension is what a textfile-collector user already
# types; taking the format from it avoids a second option for the common case.
EXTENSIONS = {".json": "json", ".prom": "prometheus", ".txt": "text"}


def render(report: Report, fmt: str, *, verbose: bool = False, color: bool = False) -> str:
    if fmt == "text":
        return render_text(report, verbose=verbose, color=color)
    if fmt == "json":
        return to_json(report)
    if fmt == "prometheus":
        return render_prometheus(report)
    raise UsageError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


def render_chunks(report: Report, fmt: str, *, verbose: bool = False, color: bool = False) -> Iterable[str]:
    """render() in pieces to write as they come: JSON is made check by check, so a report of a
    thousand checks is never held twice; the other formats are one piece."""
    if fmt == "json":
        return iter_json(report)
    return (render(report, fmt, verbose=verbose, color=color),)
