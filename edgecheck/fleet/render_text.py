"""The fleet summary for a person at a terminal.

Order: one line per node (long on a big site, so it comes first), then the failing causes with
the nodes they are on and what to do, warnings, what needs attention about the inputs (stale
reports, mixed versions or inputs, duplicates), skipped files, and the verdict last, where the
terminal leaves the eye. Rendered as a stream of lines from the summary's iterators: nothing here
builds the whole text or holds every node.
"""

from __future__ import annotations

import textwrap
from typing import Iterable, Iterator

from edgecheck.fleet.model import CauseLine
from edgecheck.fleet.summary import FleetSummary

NAMES_SHOWN = 20  # nodes listed per cause without --verbose
WRAP = 100


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def verdict_text(summary: FleetSummary) -> str:
    n = summary.node_count
    if not n:
        return "no valid report"
    if summary.all_ready:
        return f"{_plural(n, 'node')}, every node READY"
    return f"{_plural(n, 'node')}, {summary.ready_count} ready, {summary.not_ready_count} NOT READY"


def headline(summary: FleetSummary) -> str:
    site = f" ({summary.site})" if summary.site else ""
    return f"edgecheck fleet{site}: {verdict_text(summary)}"


def _names(names: Iterable[str], total: int, limit: int) -> str:
    shown = list(names)
    more = total - len(shown)
    return ", ".join(shown) + (f" ... and {more} more (--verbose or --format json lists all)" if more > 0 else "")


def _wrap(text: str, indent: str) -> Iterator[str]:
    for line in textwrap.wrap(text, WRAP, initial_indent=indent, subsequent_indent=indent,
                              break_long_words=False, break_on_hyphens=False) or [indent]:
        yield line + "\n"


def _cause(summary: FleetSummary, cause: CauseLine, limit: int, advice: bool) -> Iterator[str]:
    count = _plural(cause.node_count, "node")
    every = ""
    if cause.on_every_failing_node and summary.not_ready_count > 1:
        every = "  [on every not-ready node]"
    yield from _wrap(f"{cause.number}  {cause.title} -- {count}{every}", "")
    detail = f"reason {cause.reason}; {_plural(cause.check_count, 'check')}; cause {cause.cause}"
    if cause.source == "checks":
        detail += " (grouped per check: report without findings)"
    yield from _wrap(detail, "    ")
    yield from _wrap("nodes: " + _names(summary.cause_nodes(cause, limit), cause.node_count, limit), "    ")
    if advice:
        for paragraph in cause.advice:
            yield from _wrap(paragraph, "    ")
        if cause.command:
            yield f"    $ {cause.command}\n"


def render_text(summary: FleetSummary, *, verbose: bool = False) -> Iterator[str]:
    limit = max(1, summary.node_count) if verbose else NAMES_SHOWN
    yield headline(summary) + "\n"
    if summary.reference_time:
        stale = (f"stale after {duration_text(summary.stale_after_seconds)} before the "
                 f"{'newest report' if summary.stale_from == 'newest' else 'time of this summary'}"
                 if summary.stale_after_seconds else "staleness not checked")
        yield f"reference time {summary.reference_time} ({stale})\n"

    if summary.node_count:
        yield "\nNODES\n"
        width = min(40, summary.longest_hostname())
        for n in summary.nodes():
            p, w, f, s = n.summary
            state = "ready" if n.ready else "NOT READY"
            causes = " ".join([summary.failing[i].number for i in n.failing] + [summary.warnings[i].number for i in n.warning])
            notes = [label for flag, label in ((n.stale, "stale"), (n.clock_ahead, "clock ahead")) if flag]
            note = f"  [{', '.join(notes)}]" if notes else ""
            line = (f"  {n.hostname:<{width}}  {state:<9}  fail {f:<3} warn {w:<3} pass {p:<3} skip {s:<3}"
                    f"  {causes}{note}")
            yield line.rstrip() + "\n"

    if summary.failing:
        yield f"\nFAILING CAUSES (on {_plural(summary.not_ready_count, 'not-ready node')})\n"
        for cause in summary.failing:
            yield from _cause(summary, cause, limit, advice=True)
    if summary.warnings:
        yield "\nWARNINGS\n"
        for cause in summary.warnings:
            yield from _cause(summary, cause, limit, advice=verbose)

    attention = list(_attention(summary, limit))
    if attention:
        yield "\nATTENTION\n"
        for item in attention:
            yield from _wrap(item, "  ")
    if summary.invalid_count:
        yield f"\nSKIPPED ({_plural(summary.invalid_count, 'file')} not counted)\n"
        for bad in summary.invalid():
            yield from _wrap(f"{bad.path}: {bad.problem}", "  ")
    yield "\n" + _verdict(summary) + "\n"


def _dated(summary: FleetSummary, lines: Iterable) -> str:
    return ", ".join(f"{n.hostname} ({n.generated_at})" for n in lines)


def _attention(summary: FleetSummary, limit: int) -> Iterator[str]:
    flags = summary.flags
    if flags.stale:
        more = flags.stale - min(limit, flags.stale)
        yield (f"stale: {_plural(flags.stale, 'report')} more than {duration_text(summary.stale_after_seconds)} "
               f"older than {summary.reference_time}: {_dated(summary, summary.nodes(stale=True, limit=limit))}"
               + (f" ... and {more} more" if more > 0 else ""))
    if flags.clock_ahead:
        more = flags.clock_ahead - min(limit, flags.clock_ahead)
        yield (f"clock ahead: {_plural(flags.clock_ahead, 'report')} dated in the future of this machine's "
               f"clock (check those nodes' time): {_dated(summary, summary.nodes(clock_ahead=True, limit=limit))}"
               + (f" ... and {more} more" if more > 0 else ""))
    if flags.mixed_versions:
        yield "mixed edgecheck versions: " + ", ".join(f"{v} ({_plural(n, 'node')})" for v, n in flags.versions.items())
    for name, values in flags.mixed.items():
        yield f"mixed {name.replace('_', ' ')}: " + ", ".join(
            f"{v or '(default)'} ({_plural(n, 'node')})" for v, n in values.items())
    for dup in summary.duplicates(limit):
        yield (f"{dup.hostname}: {_plural(len(dup.ignored) + 1, 'report')} for one hostname; counted the newest "
               f"({dup.kept}), ignored {', '.join(dup.ignored)}")
    if flags.duplicates > limit:
        yield f"... and {flags.duplicates - limit} more hostnames with several reports"
    if flags.without_findings:
        yield (f"{_plural(flags.without_findings, 'report')} without root-cause findings (older edgecheck): "
               "their failures are grouped per check")


def _verdict(summary: FleetSummary) -> str:
    if not summary.node_count:
        return f"NO VALID REPORT among {_plural(summary.files_read, 'input')} (exit 2)"
    parts = [verdict_text(summary)]
    if summary.failing:
        parts.append(_plural(len(summary.failing), "failing cause"))
    if summary.invalid_count:
        parts.append(f"{_plural(summary.invalid_count, 'file')} skipped")
    return "; ".join(parts) + f" (exit {summary.exit_code})"
