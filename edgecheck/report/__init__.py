"""Reports: JSON (schema edgecheck/report/v1), text for people, Prometheus textfile; --output.

Formatters are pure: they take a diagnosed Report (edgecheck.runner.run) and return text. Every
one of them removes secrets (redact.py) on its own, so no caller can forget to. Exit codes live in
edgecheck/exitcodes.py.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, TextIO

from edgecheck.report.formats import EXTENSIONS, FORMATS, render, render_chunks
from edgecheck.report.jsonreport import SCHEMA_ID, to_dict, to_json
from edgecheck.report.output import check_outputs, format_for_output, write_outputs
from edgecheck.report.prometheus import render_prometheus
from edgecheck.report.text import render_text

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "SCHEMA_ID",
    "check_outputs",
    "format_for_output",
    "render",
    "render_chunks",
    "render_prometheus",
    "render_text",
    "schema",
    "to_dict",
    "to_json",
    "use_color",
    "write_outputs",
]


def schema() -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the JSON report, as shipped in the package."""
    from importlib import resources

    text = resources.files(__name__).joinpath("schema.json").read_text(encoding="utf-8")
    data: Dict[str, Any] = json.loads(text)
    return data


def use_color(stream: TextIO, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Colour only on a terminal, never with NO_COLOR set and non-empty (no-color.org) or TERM=dumb."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
