"""Reports: JSON (schema edgecheck/report/v1), text for people, Prometheus textfile; --output.

Formatters are pure: they take a Report and return text. Every one of them removes secrets
(redact.py) on its own, so no caller can forget to. Exit codes (SPEC section 5):

    0   ready: no check failed (warnings allowed; with strict, no warnings either)
    1   not ready: a check failed (or, with strict, a check or the plan warned)
    2   usage or input error, nothing probed (edgecheck.errors.UsageError)
    74  probed, but a requested --output file could not be written (OutputError)
"""

from __future__ import annotations

import json
import os
import platform
import socket
from importlib import resources
from typing import Any, Dict, Mapping, Optional, TextIO

from edgecheck.model import Report, Status
from edgecheck.report.formats import EXTENSIONS, FORMATS, render
from edgecheck.report.jsonreport import SCHEMA_ID, to_dict, to_json
from edgecheck.report.output import (
    EXIT_OUTPUT_ERROR,
    OutputError,
    check_outputs,
    format_for_output,
    write_outputs,
)
from edgecheck.report.prometheus import render_prometheus
from edgecheck.report.text import render_text

__all__ = [
    "EXIT_OUTPUT_ERROR",
    "EXTENSIONS",
    "FORMATS",
    "OutputError",
    "SCHEMA_ID",
    "check_outputs",
    "exit_code",
    "format_for_output",
    "host_info",
    "render",
    "render_prometheus",
    "render_text",
    "schema",
    "to_dict",
    "to_json",
    "use_color",
    "write_outputs",
]

EXIT_READY = 0
EXIT_NOT_READY = 1


def _os_pretty_name(paths: tuple) -> str:
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        fields = {}
        for line in lines:
            key, sep, value = line.partition("=")
            if sep:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                fields[key.strip()] = value
        name = fields.get("PRETTY_NAME") or " ".join(
            x for x in (fields.get("NAME"), fields.get("VERSION_ID")) if x
        )
        if name:
            return name
    return platform.system() or "unknown"


def host_info(os_release: Optional[str] = None) -> Dict[str, str]:
    """hostname, os (PRETTY_NAME from os-release), kernel, arch of this host."""
    paths = (os_release,) if os_release else ("/etc/os-release", "/usr/lib/os-release")
    return {
        "hostname": socket.gethostname(),
        "os": _os_pretty_name(paths),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


def exit_code(report: Report, strict: bool = False) -> int:
    """0 ready, 1 not ready; with strict, any warning (a check's or the plan's) also gives 1."""
    if not report.ready:
        return EXIT_NOT_READY
    if strict and (report.summary.get(Status.WARN.value, 0) or report.warnings):
        return EXIT_NOT_READY
    return EXIT_READY


def schema() -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the JSON report, as shipped in the package."""
    text = resources.files(__name__).joinpath("schema.json").read_text(encoding="utf-8")
    return json.loads(text)


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
