"""The report for a person at a terminal: a layout of the diagnosis, nothing decided here.

Order follows what the reader needs: the verdict, plan warnings that change how to read the rest,
the findings (failures, then warnings, each a root cause with what to do, as edgecheck.diagnosis
grouped and ordered them), then what passed and what was skipped.

Everything is wrapped to 80 columns; only a token that cannot be broken (a URL, a long hostname)
may stick out. ASCII only: edge hosts often run with LANG=C.
"""

from __future__ import annotations

import textwrap
from typing import Any, Dict, List, Optional, Tuple

from edgecheck.model import CheckResult, Finding, Kind, Report, Status
from edgecheck.report.redact import redact_text, redact_value

WIDTH = 80
INDENT = "   "

_RESET = "\033[0m"
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_KIND_ORDER = (Kind.DNS, Kind.ENDPOINT, Kind.REACH, Kind.INBOUND, Kind.SYSTEM, Kind.COMPONENT, Kind.TOOL, Kind.CLOCK)


class _Style:
    """ANSI styling that is a no-op when colour is off, so layout code never branches on it."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, *styles: str) -> str:
        if not self.color or not text:
            return text
        return f"\033[{';'.join(_SGR[s] for s in styles)}m{text}{_RESET}"


def _plural(n: int, one: str) -> str:
    return f"{n} {one if n == 1 else one + 's'}"


def _seconds(ms: int) -> str:
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _wrap(text: str, indent: str = "", subsequent: Optional[str] = None) -> List[str]:
    """Wrap to WIDTH without splitting hostnames or URLs (no breaks on hyphens or in words)."""
    out: List[str] = []
    for para in str(text).splitlines() or [""]:
        if not para.strip():
            out.append("")
            continue
        out.extend(textwrap.wrap(para, width=WIDTH, initial_indent=indent,
                                 subsequent_indent=indent if subsequent is None else subsequent,
                                 break_long_words=False, break_on_hyphens=False))
    return out


def _command_lines(command: str, indent: str) -> List[str]:
    """A shell command wrapped with backslash continuations, so it still pastes as one command."""
    lines = textwrap.wrap(command, width=WIDTH - 2, initial_indent=indent, subsequent_indent=indent + "  ",
                          break_long_words=False, break_on_hyphens=False)
    return [line + " \\" for line in lines[:-1]] + lines[-1:]


def label(c: CheckResult) -> str:
    """How a check is named in lists: its id minus "endpoint:", so that the longest real one fits
    in 80 columns. It is still a substring of the id, so it greps back to the JSON and metrics."""
    return c.target.where if c.kind is Kind.ENDPOINT else c.id


def _name_adds(c: CheckResult) -> bool:
    """Whether the check's name tells the reader more than its label does."""
    name, key = c.name.strip().lower(), c.target.where.lower()
    return bool(name) and key not in name and name not in key


# ---------------------------------------------------------------------------------------------
# evidence for -v


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _flat(prefix: str, value: Any) -> List[Tuple[str, str]]:
    """Evidence as (key, text) pairs: nested objects get dotted keys, lists of objects a line each."""
    if isinstance(value, dict):
        if value and prefix and all(not isinstance(v, (dict, list)) for v in value.values()):
            return [(prefix, " ".join(f"{k}={_scalar(v)}" for k, v in value.items() if v is not None))]
        return [pair for k, v in value.items() for pair in _flat(f"{prefix}.{k}" if prefix else str(k), v)]
    if isinstance(value, list):
        if not value:
            return [(prefix, "-")]
        if all(not isinstance(v, (dict, list)) for v in value):
            return [(prefix, ", ".join(_scalar(v) for v in value))]
        return [pair for v in value for pair in _flat(prefix, v)]
    return [(prefix, "-" if value is None else _scalar(value))]


def _evidence_lines(c: CheckResult, indent: str) -> List[str]:
    return [line for key, text in _flat("", redact_value(c.evidence.to_json()))
            for line in _wrap(f"{key}: {text}", indent, indent + "  ")]


# ---------------------------------------------------------------------------------------------
# sections


def _verdict(report: Report, st: _Style) -> List[str]:
    s = report.summary
    if not report.ready:
        word, colour = "NOT READY", "red"
    elif not report.passes:
        word, colour = "NOT READY (--strict: warnings fail)", "red"
    else:
        word, colour = "READY", "green"
    counts = (f"{s['fail']} failed, {_plural(s['warn'], 'warning')}, {s['pass']} passed, "
              f"{s['skip']} skipped")
    took = _seconds(report.duration_ms) if report.duration_ms else ""
    lines = _wrap(f"{word}  {counts}" + (f" in {took}" if took else ""), "", "  ")
    lines[0] = lines[0].replace(word, st(word, "bold", colour), 1)

    host, params = report.host, report.params
    about = [str(x) for x in (host.get("os"), host.get("arch")) if x]
    context = str(host.get("hostname") or "this host") + (f" ({', '.join(about)})" if about else "")
    plan = [str(params[k]) for k in ("region", "mode", "phase") if params.get(k)]
    if params.get("k8s_version"):
        plan.append(f"k8s {params['k8s_version']}")
    if plan:
        context += ": " + ", ".join(plan)
    context += f"; edgecheck {report.agent_version} at {report.generated_at}"
    source = params.get("apiserver_source")
    if source and source != "--apiserver":
        context += f"; API server {params.get('apiserver')} from {source}"
    return lines + _wrap(context, "", "  ")


def _header(text: str, st: _Style, colour: str = "") -> List[str]:
    return ["", st(text, "bold", colour) if colour else st(text, "bold")]


def _finding_lines(i: int, f: Finding, marker: str, st: _Style, colour: str, verbose: bool) -> List[str]:
    num = f"{i}."
    head = _wrap(f"{num} {f.headline} [{f.reason.value}]", "", INDENT)
    head[0] = st(num, "bold", colour) + head[0][len(num):]
    lines = [""] + head
    sub = INDENT + "    "
    for c, detail in zip(f.checks, f.details):
        item = f"{INDENT}{marker} {label(c)}"
        name = c.name if _name_adds(c) else ""
        if name and not detail and len(item) + 2 + len(name) <= WIDTH:
            lines.append(f"{item}  {st(name, 'dim')}")
        else:
            lines.append(item)
            lines.extend(st(x, "dim") for x in (_wrap(name, sub) if name else []))
            lines.extend(_wrap(detail, sub, sub + "  ") if detail else [])
        if verbose:
            if len(f.checks) > 1:
                lines.extend(_wrap(c.message, sub, sub + "  "))
                lines.extend(_wrap("fix: " + c.remediation, sub, sub + "  ") if c.remediation else [])
            lines.extend(st(x, "dim") for x in _evidence_lines(c, sub))
    if f.advice or f.command:
        lines.append(f"{INDENT}{st('What to do:', 'bold')}")
        for para in f.advice:
            lines.extend(_wrap(para, INDENT + "  "))
        if f.command:
            lines.extend(_command_lines(f.command, INDENT + "    "))
    return lines


def _findings(report: Report, status: Status, st: _Style, verbose: bool) -> List[str]:
    found = [f for f in report.findings if f.status is status]
    if not found:
        return []
    n = report.summary[status.value]
    if status is Status.FAIL:
        causes = "cause" if len(found) == 1 else "separate causes"
        lines = _header(f"FAILED: {_plural(n, 'check')}, {len(found)} {causes}", st, "red")
        marker, colour = "x", "red"
    else:
        lines = _header(f"WARNINGS: {_plural(n, 'check')}", st, "yellow")
        marker, colour = "!", "yellow"
    for i, f in enumerate(found, 1):
        lines.extend(_finding_lines(i, f, marker, st, colour, verbose))
    return lines


def _passed_row(c: CheckResult, width: int, st: _Style) -> str:
    took = _seconds(c.duration_ms) if c.duration_ms else ""
    if took and len(label(c)) <= width:
        return f"  {label(c):<{width}}  " + st(f"{took:>7}", "dim")
    return f"  {label(c)}"


def _passed(report: Report, st: _Style, verbose: bool) -> List[str]:
    checks = [c for c in report.checks if c.status is Status.PASS]
    if not checks:
        return []
    lines = _header(f"PASSED ({len(checks)})", st, "green")
    # Endpoints and reached node ports one per line (the time is right-aligned);
    # ports, tools and the clock collapse into one wrapped line per kind unless -v.
    listed = checks if verbose else [c for c in checks if c.kind in (Kind.ENDPOINT, Kind.REACH) or c.remediation]
    width = min(max((len(label(c)) for c in listed), default=0), WIDTH - 2 - 2 - 7)
    for i, c in enumerate(listed):
        lines.append(_passed_row(c, width, st))
        # Consecutive checks with the same note (e.g. every port's unread firewall) show it once.
        repeated = not verbose and i + 1 < len(listed) and listed[i + 1].remediation == c.remediation
        lines.extend(_wrap("note: " + c.remediation, "      ", "        ") if c.remediation and not repeated else [])
        lines.extend(st(x, "dim") for x in (_evidence_lines(c, "      ") if verbose else []))
    others: Dict[Kind, List[str]] = {}
    for c in checks:
        if c not in listed:
            others.setdefault(c.kind, []).append(c.target.where)
    for kind in sorted(others, key=lambda k: _KIND_ORDER.index(k) if k in _KIND_ORDER else 99):
        lines.extend(_wrap(f"{kind.value}: " + ", ".join(others[kind]), "  ", "    "))
    return lines


def _skipped(report: Report, st: _Style, verbose: bool) -> List[str]:
    checks = [c for c in report.checks if c.status is Status.SKIP]
    if not checks:
        return []
    lines = _header(f"SKIPPED ({len(checks)})", st)
    for c in checks:
        lines.append(f"  {label(c)}")
        lines.extend(st(x, "dim") for x in _wrap(c.message or c.reason.value, "      "))
        lines.extend(st(x, "dim") for x in (_evidence_lines(c, "      ") if verbose else []))
    return lines


def render_text(report: Report, *, verbose: bool = False, color: bool = False) -> str:
    st = _Style(color)
    lines = _verdict(report, st)
    if report.warnings:
        lines.extend(_header("PLAN WARNINGS", st, "yellow"))
        for w in report.warnings:
            lines.extend(_wrap(f"! {w}", "  ", "    "))
    lines.extend(_findings(report, Status.FAIL, st, verbose))
    lines.extend(_findings(report, Status.WARN, st, verbose))
    lines.extend(_passed(report, st, verbose))
    lines.extend(_skipped(report, st, verbose))
    if not verbose and any(c.evidence for c in report.checks):
        lines += ["", st("Run with -v for the evidence behind every check.", "dim")]
    return redact_text("\n".join(lines) + "\n")

