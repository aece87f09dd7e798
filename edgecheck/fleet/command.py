"""The `edgecheck fleet` click command. edgecheck/cli.py lists it in LazyGroup.lazy_commands, so
this module is imported only when `fleet` runs (or `--help` lists it).

Exit status (SPEC 7.5): 0 every node ready and every input a valid report; 1 a node is not
ready, or an input was skipped; 2 usage error, or no input is a valid report; 74 an --output
file could not be written.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, List, Optional, Sequence, Tuple

import click

from edgecheck import exitcodes
from edgecheck.atomicfile import write_atomic_chunks
from edgecheck.fleet.model import InvalidInput

EXTENSIONS = {".json": "json", ".html": "html", ".htm": "html", ".txt": "text", ".text": "text"}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """'90s', '30m', '6h', '2d' or plain seconds; '0' turns the check off."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 6h, 2d; 0 = off)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2).lower()]


def parse_size(text: str) -> int:
    """'16M', '512K', '1G', '20000' (bytes); binary units."""
    m = _SIZE.match(text or "")
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size (e.g. 16M, 512K, 1G)")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[m.group(2).lower()]


class _Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Size(click.ParamType):
    name = "SIZE"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def output_format(path: str, default: str) -> str:
    return EXTENSIONS.get(os.path.splitext(path)[1].lower(), default)


def _say_skipped(bad: InvalidInput) -> None:
    click.echo(f"edgecheck fleet: skipped {bad.path}: {bad.problem}", err=True)


@click.command("fleet")
@click.argument("paths", nargs=-1, type=click.Path(), metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True,
              help="Summary format on stdout.")
@click.option("--output", "outputs", multiple=True, metavar="PATH",
              help="Also write the summary to PATH, atomically; the format comes from the extension "
                   "(.json, .html, .txt; any other: --format). Repeatable.")
@click.option("--stale-after", type=_Duration(), default="1h", show_default=True,
              help="Flag reports older than this before the reference time (90s, 30m, 6h, 2d; 0 = off).")
@click.option("--stale-from", type=click.Choice(["newest", "now"]), default="newest", show_default=True,
              help="Reference time: the newest report (an archive stays meaningful) or this machine's clock.")
@click.option("--max-report-size", type=_Size(), default="16M", show_default=True,
              help="Skip report files larger than this (read stops there).")
@click.option("--site", default="", metavar="NAME", help="Site name for the summary's heading.")
@click.option("-v", "--verbose", is_flag=True, default=False,
              help="Text: list every node under each cause, and advice for warnings.")
@click.option("--schema", "print_schema", is_flag=True, default=False,
              help="Print the JSON Schema of --format json and exit.")
def fleet_command(paths: Tuple[str, ...], fmt: str, outputs: Tuple[str, ...], stale_after: float, stale_from: str,
                  max_report_size: int, site: str, verbose: bool, print_schema: bool) -> None:
    """Summarise many nodes' JSON reports (files, or directories of *.json): which nodes are
    ready, and each failing cause with how many nodes and which.

    Exit 0 when every node is ready, 1 otherwise (also when a file was skipped), 2 when no input
    is a valid report. Invalid files are named on stderr and skipped.
    """
    from edgecheck.fleet.summarise import render, schema, summarise

    if print_schema:
        click.echo(json.dumps(schema(), indent=2))
        return
    if not paths:
        raise click.UsageError("give at least one report file or directory (PATH...)")
    _check_outputs(outputs)
    with summarise(paths, max_bytes=max_report_size, stale_after=stale_after, stale_from=stale_from,
                   site=site, on_invalid=_say_skipped) as summary:
        if not summary.node_count:
            click.echo(f"edgecheck fleet: no valid report among {summary.invalid_count} input(s)", err=True)
        for chunk in render(summary, fmt, verbose=verbose):
            sys.stdout.write(chunk)
        sys.stdout.flush()
        failed = _write_outputs(outputs, fmt, summary, verbose)
        code = exitcodes.OUTPUT_ERROR if failed else summary.exit_code
    sys.exit(code)


def _check_outputs(outputs: Sequence[str]) -> None:
    """Fail before reading thousands of reports if an output cannot be written at all."""
    for path in outputs:
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise click.BadParameter(f"{path} is a directory", param_hint="--output")
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
            raise click.BadParameter(f"cannot write in {directory}", param_hint="--output")


def _write_outputs(outputs: Sequence[str], fmt: str, summary, verbose: bool) -> List[str]:
    from edgecheck.fleet.summarise import render

    failed: List[str] = []
    for path in outputs:
        try:
            write_atomic_chunks(path, render(summary, output_format(path, fmt), verbose=verbose))
        except OSError as exc:
            click.echo(f"edgecheck fleet: cannot write {path}: {exc.strerror or exc}", err=True)
            failed.append(path)
    return failed


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Stand-alone entry until cli.py registers the command: `python -m edgecheck.fleet.command
    [fleet] PATH...` (a leading "fleet" is accepted, so the same argument list works for both)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["fleet"]:
        args = args[1:]
    fleet_command.main(args=args, prog_name="edgecheck fleet")


if __name__ == "__main__":
    main()
