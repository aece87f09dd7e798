"""The HTML summary in a real browser: Debian's chromium, headless, over the DevTools pipe.

A generated site (a shared firewall on a third of the nodes, single faults, an older edgecheck
without findings, a stale report, a skipped file) is summarised to HTML and opened as a file://
URL: the page must load with no console error, no failed load and no request other than the
file itself, show the matrix with exactly the not-ready nodes and the failing causes, keep its
print styles, and print to PDF. Screenshots (screen and print media) are kept in pytest's
temporary directory. A control page with a deliberate console error and a missing image proves
the error check can fail.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Dict

import pytest

from bench.fleet_reports import plan_fleet, write_fleet
from edgecheck.fleet import render, summarise

from .cdp import Browser, chromium_binary
from .fleetfixtures import NOW

MATRIX_PROBE = """
(() => {
  const m = document.querySelector('table.matrix');
  if (!m) return null;
  const rows = [...m.querySelectorAll('tbody tr')].filter(r => r.querySelector('th.node'));
  const cell = m.querySelector('td.x');
  const box = m.getBoundingClientRect();
  return {
    columns: [...m.querySelectorAll('thead th a')].map(a => a.textContent),
    rows: rows.map(r => [r.querySelector('th.node').textContent, r.querySelectorAll('td.x').length]),
    groups: [...m.querySelectorAll('tr.group th')].map(t => t.textContent),
    width: box.width, height: box.height,
    cellBackground: cell ? getComputedStyle(cell).backgroundColor : null,
    headPosition: getComputedStyle(m.querySelector('thead th')).position,
    nodeTableRows: document.querySelectorAll('table.nodes tbody tr').length,
    title: document.title,
  };
})()
"""


def _require_chromium() -> None:
    if chromium_binary() is None or os.geteuid() != 0:
        message = "chromium (Debian package chromium) and root (unshare --net) are needed"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message + " (CI is set: this test must run, not skip)", pytrace=False)
        pytest.skip(message)


def png_size(png: bytes) -> tuple:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


def check_page_in_chromium(html_path: Path, workdir: Path, expect: Dict[str, Any], shots: str) -> Dict[str, Any]:
    """Open the summary, check it, keep screenshots next to it; return what the page showed."""
    with Browser(workdir) as browser:
        page = browser.open(html_path.as_uri())
        assert page.errors() == [], page.errors()
        assert page.requested_urls() == [html_path.as_uri()], page.requested_urls()
        shown = page.evaluate(MATRIX_PROBE)
        assert shown is not None, "no matrix on the page"
        assert shown["columns"] == expect["columns"]
        assert [name for name, _ in shown["rows"]] == expect["rows"]
        assert all(marks >= 1 for _, marks in shown["rows"])
        assert shown["width"] > 100 and shown["height"] > 20 * len(expect["rows"])
        assert shown["cellBackground"] not in (None, "rgba(0, 0, 0, 0)", "transparent")
        assert shown["headPosition"] == "sticky"  # screen: the header row stays while scrolling
        assert shown["nodeTableRows"] == expect["nodes"]
        screen = page.screenshot(full_page=True)
        assert 1300 <= png_size(screen)[0] <= 1400 and png_size(screen)[1] > 600
        (workdir / f"{shots}-screen.png").write_bytes(screen)
        page.emulate_media("print")
        assert page.evaluate(MATRIX_PROBE)["headPosition"] == "static"  # print CSS applies
        (workdir / f"{shots}-print.png").write_bytes(page.screenshot(full_page=True))
        pdf = page.pdf()
        assert pdf.startswith(b"%PDF")
        pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
        assert pages >= 1
        (workdir / f"{shots}.pdf").write_bytes(pdf)
        assert page.errors() == [], page.errors()
        shown["pdf_pages"] = pages
        return shown


@pytest.fixture(scope="module")
def generated_site(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    _require_chromium()
    work = tmp_path_factory.mktemp("chromium")
    plan = plan_fleet(40, seed=3, stale_share=0.05, now=NOW)
    write_fleet(str(work / "reports"), plan)
    (work / "reports" / "truncated.json").write_text('{"schema": "edgecheck/report/v1", "host": {')
    html = work / "fleet.html"
    with summarise([str(work / "reports")], now=NOW, site="generated site") as summary:
        html.write_text("".join(render(summary, "html")))
        expect = {
            "columns": [c.number for c in summary.failing],
            "rows": [n.hostname for p in summary.patterns() for n in summary.pattern_nodes(p)],
            "nodes": summary.node_count,
        }
    return {"work": work, "html": html, "expect": expect}


def test_summary_renders_in_chromium_with_the_matrix_and_no_errors(generated_site: Dict[str, Any]) -> None:
    work = generated_site["work"]
    shown = check_page_in_chromium(generated_site["html"], work, generated_site["expect"], "generated")
    (work / "shown.json").write_text(json.dumps(shown, indent=1))
    assert shown["title"].startswith("edgecheck fleet (generated site): 40 nodes")


def test_error_detection_catches_console_errors_and_failed_loads(tmp_path: Path) -> None:
    """Control: the same checks see a console error, an exception and a missing image."""
    _require_chromium()
    page_path = tmp_path / "broken.html"
    page_path.write_text('<!DOCTYPE html><html><body><img src="missing.png">'
                         "<script>console.error('boom'); null.x;</script></body></html>")
    with Browser(tmp_path) as browser:
        page = browser.open(page_path.as_uri())
        errors = page.errors()
    assert any("console.error: boom" in e for e in errors), errors
    assert any(e.startswith("exception:") for e in errors), errors
    assert any("missing.png" in e for e in errors), errors
