"""The fleet summary as one self-contained HTML file: inline CSS, no script, no external asset.

What a person sees, top to bottom: the verdict and counts; what needs attention about the
inputs; the failing causes (numbered F1, F2, ... with the nodes they are on and what to do); a
matrix of not-ready nodes x failing causes, the nodes grouped by their exact combination of
causes so that "these 37 nodes fail the same way" is one block; warnings; a table of every node;
skipped files. It prints on A4 landscape (print CSS: no sticky headers or scroll boxes, table
headers repeat on each page, colours kept, and every mark is a symbol too, so black and white
works). Sizes stay sane for thousands of nodes: cause cards list the first NAMES_SHOWN nodes,
the matrix shows at most MATRIX_COLUMNS causes and MATRIX_ROWS node rows (every group keeps its
header row with its count), and the full membership is in the node table.

Every string from a report is escaped (hostnames and messages come from the nodes).
"""

from __future__ import annotations

from html import escape
from typing import Iterable, Iterator, List, Sequence

from edgecheck import __version__
from edgecheck.fleet.model import EXAMPLE_CHECKS, CauseLine, NodeLine
from edgecheck.fleet.render_text import duration_text, headline
from edgecheck.fleet.summary import FleetSummary

NAMES_SHOWN = 60
MATRIX_COLUMNS = 40
MATRIX_ROWS = 2000

CSS = """
:root { --fail:#b3261e; --fail-bg:#fde7e4; --warn:#7a5000; --warn-bg:#fff1c9; --ok:#1e6b35; --ok-bg:#e2f3e6;
        --line:#cfd4da; --muted:#59616b; --head:#f1f3f5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
       color: #1b1f24; background: #fff; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
a { color: inherit; }
.muted { color: var(--muted); }
.verdict { font-size: 18px; font-weight: 700; margin: 6px 0; }
.verdict.bad { color: var(--fail); } .verdict.good { color: var(--ok); }
ul.stats { list-style: none; padding: 0; margin: 10px 0; display: flex; flex-wrap: wrap; gap: 8px; }
ul.stats li { border: 1px solid var(--line); border-radius: 4px; padding: 4px 10px; background: var(--head); }
ul.stats b { font-size: 16px; }
ul.attention { padding-left: 20px; } ul.attention li { margin: 3px 0; }
ol.causes { list-style: none; padding: 0; margin: 0; }
li.cause { border: 1px solid var(--line); border-left: 6px solid var(--fail); border-radius: 4px; padding: 8px 12px;
           margin: 8px 0; break-inside: avoid; }
li.cause.warn { border-left-color: #d39e00; }
.cause .head { font-weight: 600; }
.cause .num { display: inline-block; min-width: 2.8em; font-weight: 700; }
.cause p { margin: 4px 0; }
.badge { display: inline-block; border-radius: 3px; padding: 0 6px; font-size: 12px; font-weight: 700;
         background: var(--fail); color: #fff; margin-left: 6px; }
pre.command { background: var(--head); border: 1px solid var(--line); padding: 4px 8px; margin: 4px 0;
              white-space: pre-wrap; word-break: break-all; }
.scroll { overflow: auto; max-height: 80vh; border: 1px solid var(--line); }
.scroll.fit { display: inline-block; max-width: 100%; vertical-align: top; }
table { border-collapse: collapse; }
table.matrix th, table.matrix td { border: 1px solid var(--line); padding: 2px 5px; text-align: center; }
table.matrix thead th { position: sticky; top: 0; background: var(--head); z-index: 2; font-size: 12px; }
table.matrix th.node { position: sticky; left: 0; background: #fff; text-align: left; z-index: 1;
                       white-space: nowrap; font-weight: 500; }
table.matrix thead th.node { z-index: 3; background: var(--head); }
table.matrix td.x { background: var(--fail-bg); color: var(--fail); font-weight: 700; }
table.matrix td.x small { font-weight: 400; margin-left: 2px; }
table.matrix tr.group th { text-align: left; background: #e8ebef; font-weight: 600; position: static; }
table.matrix th small { display: block; font-weight: 400; color: var(--muted); }
table.overview { width: 100%; }
table.overview th, table.overview td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
                                       vertical-align: top; }
table.overview thead th { background: var(--head); }
table.overview td.n, table.overview th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.overview th.bar, table.overview td.bar { width: 24%; white-space: nowrap; }
span.bar { display: inline-block; height: 12px; background: var(--fail); vertical-align: middle; min-width: 2px; }
span.pct { margin-left: 6px; color: var(--muted); font-size: 12px; }
table.nodes { width: 100%; }
table.nodes th, table.nodes td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left;
                                 white-space: nowrap; vertical-align: top; }
table.nodes thead th { background: var(--head); position: sticky; top: 0; }
table.nodes td.n { text-align: right; font-variant-numeric: tabular-nums; }
.state { font-weight: 700; border-radius: 3px; padding: 0 6px; }
.state.bad { color: var(--fail); background: var(--fail-bg); }
.state.good { color: var(--ok); background: var(--ok-bg); }
.flag { color: var(--warn); background: var(--warn-bg); border-radius: 3px; padding: 0 5px; font-size: 12px; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
@media print {
  @page { size: A4 landscape; margin: 10mm; }
  body { margin: 0; font-size: 10.5px; }
  code, pre, .mono { font-size: 9.5px; }
  h2 { break-after: avoid; margin-top: 16px; }
  .scroll { overflow: visible; max-height: none; border: 0; }
  table.matrix thead th, table.matrix th.node, table.nodes thead th { position: static; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; }
  a { text-decoration: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word if n == 1 else word + 's'}"


def _names(names: Iterable[str], total: int) -> str:
    shown = [_e(n) for n in names]
    more = total - len(shown)
    return ", ".join(shown) + (f' <span class="muted">… and {more:,} more (see the node table)</span>' if more > 0 else "")


def _limit() -> int:
    return NAMES_SHOWN


def render_html(summary: FleetSummary) -> Iterator[str]:
    title = headline(summary)
    yield ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
           '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
           f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n")
    yield from _header(summary)
    yield from _attention(summary)
    if summary.failing:
        yield from _overview(summary)
        yield from _matrix(summary)
        yield '<section id="causes">\n<h2>Failing causes: what to do</h2>\n'
        yield from _cause_list(summary, summary.failing)
        yield "</section>\n"
    if summary.warnings:
        yield '<section id="warnings">\n<h2>Warnings</h2>\n'
        yield from _cause_list(summary, summary.warnings)
        yield "</section>\n"
    if summary.node_count:
        yield from _node_table(summary)
    if summary.invalid_count:
        yield '<section id="skipped">\n<h2>Skipped files</h2>\n<ul class="attention">\n'
        for bad in summary.invalid():
            yield f'<li><code>{_e(bad.path)}</code>: {_e(bad.problem)}</li>\n'
        yield "</ul>\n</section>\n"
    yield (f'<footer>edgecheck {_e(__version__)} · summary made {_e(summary.generated_at)} from '
           f'{_plural(summary.files_read, "file")} · exit status {summary.exit_code}</footer>\n</body>\n</html>\n')


def _header(summary: FleetSummary) -> Iterator[str]:
    site = f' <span class="muted">· {_e(summary.site)}</span>' if summary.site else ""
    yield f'<header>\n<h1>edgecheck fleet{site}</h1>\n'
    n = summary.node_count
    if not n:
        yield '<p class="verdict bad">No valid report</p>\n'
    elif summary.all_ready:
        yield f'<p class="verdict good">All {_plural(n, "node")} ready</p>\n'
    else:
        yield (f'<p class="verdict bad">{summary.not_ready_count:,} of {_plural(n, "node")} NOT READY</p>\n')
    stats = [
        (n, "nodes"), (summary.ready_count, "ready"), (summary.not_ready_count, "not ready"),
        (len(summary.failing), "failing causes"), (len(summary.warnings), "warnings"),
        (summary.flags.stale, "stale reports"), (summary.invalid_count, "skipped files"),
    ]
    yield '<ul class="stats">' + "".join(f"<li><b>{v:,}</b> {_e(label)}</li>" for v, label in stats) + "</ul>\n"
    if summary.reference_time:
        if summary.stale_after_seconds:
            basis = "the newest report" if summary.stale_from == "newest" else "the time of this summary"
            stale = f"reports older than {duration_text(summary.stale_after_seconds)} before {basis} are flagged stale"
        else:
            stale = "staleness not checked"
        yield f'<p class="muted">Reference time {_e(summary.reference_time)}; {_e(stale)}.</p>\n'
    yield "</header>\n"


def _attention(summary: FleetSummary) -> Iterator[str]:
    flags = summary.flags
    items: List[str] = []
    if flags.stale:
        items.append(f"<b>Stale:</b> {_plural(flags.stale, 'report')} more than "
                     f"{duration_text(summary.stale_after_seconds)} older than {_e(summary.reference_time)}: "
                     + _names((n.hostname for n in summary.nodes(stale=True, limit=_limit())), flags.stale))
    if flags.clock_ahead:
        items.append(f"<b>Clock ahead:</b> {_plural(flags.clock_ahead, 'report')} dated in the future; "
                     "check those nodes' time: "
                     + _names((n.hostname for n in summary.nodes(clock_ahead=True, limit=_limit())), flags.clock_ahead))
    if flags.mixed_versions:
        items.append("<b>Mixed edgecheck versions:</b> "
                     + ", ".join(f"{_e(v)} ({_plural(c, 'node')})" for v, c in flags.versions.items()))
    for name, values in flags.mixed.items():
        items.append(f"<b>Mixed {_e(name.replace('_', ' '))}:</b> "
                     + ", ".join(f"{_e(v or '(default)')} ({_plural(c, 'node')})" for v, c in values.items()))
    for dup in summary.duplicates(_limit()):
        items.append(f"<b>{_e(dup.hostname)}</b>: {len(dup.ignored) + 1} reports for one hostname; counted the newest "
                     f"(<code>{_e(dup.kept)}</code>), ignored " + ", ".join(f"<code>{_e(p)}</code>" for p in dup.ignored))
    if flags.duplicates > _limit():
        items.append(f"… and {flags.duplicates - _limit():,} more hostnames with several reports")
    if flags.without_findings:
        items.append(f"{_plural(flags.without_findings, 'report')} without root-cause findings (older edgecheck): "
                     "their failures are grouped per check.")
    if summary.invalid_count:
        items.append(f'<b>{_plural(summary.invalid_count, "file")} skipped</b> (not a valid report): '
                     '<a href="#skipped">see the list</a>.')
    if not items:
        return
    yield '<section id="attention">\n<h2>Needs attention</h2>\n<ul class="attention">\n'
    for item in items:
        yield f"<li>{item}</li>\n"
    yield "</ul>\n</section>\n"


def _overview(summary: FleetSummary) -> Iterator[str]:
    """One line per failing cause with a bar for its share of the not-ready nodes."""
    total = max(1, summary.not_ready_count)
    yield '<section id="overview">\n<h2>Failing causes</h2>\n'
    yield (f'<p class="muted">Grouped by root cause across {_plural(summary.not_ready_count, "not-ready node")}: '
           "causes on every not-ready node first (usually one shared firewall, DNS forwarder or proxy), then by "
           "number of nodes. Details and what to do follow the matrix.</p>\n")
    yield ('<table class="overview">\n<thead><tr><th>#</th><th>Cause</th><th>Reason</th><th class="n">Nodes</th>'
           '<th class="bar">Share of not-ready nodes</th></tr></thead>\n<tbody>\n')
    for c in summary.failing:
        share = 100.0 * c.node_count / total
        badge = ('<span class="badge">every not-ready node</span>'
                 if c.on_every_failing_node and summary.not_ready_count > 1 else "")
        yield (f'<tr><td><a href="#{_e(c.number)}"><b>{_e(c.number)}</b></a></td><td>{_e(c.title)}{badge}</td>'
               f"<td><code>{_e(c.reason)}</code></td><td class=\"n\">{c.node_count:,}</td>"
               f'<td class="bar"><span class="bar" style="width:{0.8 * share:.1f}%"></span>'
               f'<span class="pct">{share:.0f}%</span></td></tr>\n')
    yield "</tbody>\n</table>\n</section>\n"


def _cause_list(summary: FleetSummary, causes: Sequence[CauseLine]) -> Iterator[str]:
    yield '<ol class="causes">\n'
    total = summary.not_ready_count
    for c in causes:
        warn = c.status != "fail"
        badge = ""
        if c.on_every_failing_node and total > 1:
            badge = '<span class="badge">on every not-ready node</span>'
        of = f" of {total:,} not-ready" if not warn else ""
        yield (f'<li class="cause{" warn" if warn else ""}" id="{_e(c.number)}">\n'
               f'<div class="head"><span class="num">{_e(c.number)}</span>{_e(c.title)} '
               f'<span class="muted">— {c.node_count:,}{of} node{"s" if c.node_count != 1 or of else ""}</span>'
               f"{badge}</div>\n")
        grouping = " · grouped per check (report without findings)" if c.source == "checks" else ""
        yield (f'<p class="muted">reason <code>{_e(c.reason)}</code> · {_plural(c.check_count, "check")} · '
               f"cause <code>{_e(c.cause)}</code>{grouping}</p>\n")
        for paragraph in c.advice:
            yield f"<p>{_e(paragraph)}</p>\n"
        if c.command:
            yield f'<pre class="command">$ {_e(c.command)}</pre>\n'
        yield f"<p><b>Nodes:</b> {_names(summary.cause_nodes(c, _limit()), c.node_count)}</p>\n"
        if c.example_checks:
            yield ('<p class="muted">Checks: '
                   + ", ".join(f"<code>{_e(x)}</code>" for x in c.example_checks)
                   + (" …" if len(c.example_checks) >= EXAMPLE_CHECKS else "") + "</p>\n")
        yield "</li>\n"
    yield "</ol>\n"


def _matrix(summary: FleetSummary) -> Iterator[str]:
    columns = summary.failing[:MATRIX_COLUMNS]
    hidden = len(summary.failing) - len(columns)
    groups = summary.patterns()
    width = len(columns) + 1 + (1 if hidden else 0)
    yield '<section id="matrix">\n<h2>Not-ready nodes × failing causes</h2>\n'
    yield ('<p class="muted">One row per not-ready node, grouped by the exact combination of causes it fails '
           'with. <b>✕</b> = fails with that cause (small number: checks); column numbers are the causes above.'
           + (f" {hidden:,} more causes are counted in the last column." if hidden else "") + "</p>\n")
    yield '<div class="scroll fit">\n<table class="matrix">\n<thead><tr><th class="node" scope="col">Node</th>'
    for c in columns:
        yield (f'<th scope="col" title="{_e(c.title)}"><a href="#{_e(c.number)}">{_e(c.number)}</a>'
               f"<small>{c.node_count:,}</small></th>")
    if hidden:
        yield '<th scope="col">other<small>causes</small></th>'
    yield "</tr></thead>\n<tbody>\n"
    shown = 0
    for number, pattern in enumerate(groups, 1):
        labels = ", ".join(summary.failing[i].number for i in pattern.failing) or "no failing cause recorded"
        yield (f'<tr class="group"><th colspan="{width}">Group {number}: {_plural(pattern.node_count, "node")} · '
               f"{_e(labels)}</th></tr>\n")
        room = MATRIX_ROWS - shown
        if room > 0:
            for node in summary.pattern_nodes(pattern, limit=room):
                shown += 1
                yield _matrix_row(node, columns, hidden)
    yield "</tbody>\n</table>\n</div>\n"
    if shown < summary.not_ready_count:
        yield (f'<p class="muted">The matrix shows the first {shown:,} of {summary.not_ready_count:,} not-ready '
               "nodes; every group keeps its count, and the node table below lists every node with its causes.</p>\n")
    yield "</section>\n"


def _matrix_row(node: NodeLine, columns: Sequence[CauseLine], hidden: int) -> str:
    checks = dict(zip(node.failing, node.failing_checks))
    cells = []
    for i, c in enumerate(columns):
        if i in checks:
            cells.append(f'<td class="x" title="{_e(c.number)}: {_e(c.title)}">✕<small>{checks[i]}</small></td>')
        else:
            cells.append("<td></td>")
    if hidden:
        extra = sum(1 for i in checks if i >= len(columns))
        cells.append(f'<td class="x">{extra}</td>' if extra else "<td></td>")
    return f'<tr><th class="node" scope="row" title="{_e(node.path)}">{_e(node.hostname)}</th>{"".join(cells)}</tr>\n'


def _node_table(summary: FleetSummary) -> Iterator[str]:
    yield '<section id="nodes">\n<h2>All nodes</h2>\n<div class="scroll">\n<table class="nodes">\n'
    yield ("<thead><tr><th>Node</th><th>State</th><th>Fail</th><th>Warn</th><th>Pass</th><th>Skip</th>"
           "<th>Failing causes</th><th>Warnings</th><th>Region</th><th>Mode</th><th>Phase</th><th>K8s</th>"
           "<th>edgecheck</th><th>Report time</th><th>Notes</th></tr></thead>\n<tbody>\n")
    for n in summary.nodes():
        p, w, f, s = n.summary
        state = '<span class="state good">ready</span>' if n.ready else '<span class="state bad">✕ NOT READY</span>'
        fails = " ".join(f'<a href="#{summary.failing[i].number}">{summary.failing[i].number}</a>' for i in n.failing)
        warns = " ".join(f'<a href="#{summary.warnings[i].number}">{summary.warnings[i].number}</a>' for i in n.warning)
        params = dict(n.params)
        notes = [label for flag, label in ((n.stale, "stale"), (n.clock_ahead, "clock ahead"),
                                           (not n.has_findings, "no findings")) if flag]
        yield (f'<tr><td title="{_e(n.path)}">{_e(n.hostname)}</td><td>{state}</td><td class="n">{f}</td>'
               f'<td class="n">{w}</td><td class="n">{p}</td><td class="n">{s}</td><td>{fails}</td><td>{warns}</td>'
               f"<td>{_e(params.get('region', ''))}</td><td>{_e(params.get('mode', ''))}</td>"
               f"<td>{_e(params.get('phase', ''))}</td><td>{_e(params.get('k8s_version', '') or '—')}</td>"
               f"<td>{_e(n.version)}</td><td class=\"mono\">{_e(n.generated_at)}</td><td>"
               + " ".join(f'<span class="flag">{_e(x)}</span>' for x in notes) + "</td></tr>\n")
    yield "</tbody>\n</table>\n</div>\n</section>\n"
