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
from pathlib import Path
from typing import Any, Dict

import pytest

from bench.fleet_reports import plan_fleet, write_fleet
from edgecheck.fleet.summarise import render, summarise

from tests.fleet.cdp import Browser
from tests.fleet.fleetfixtures import NOW
from tests.fleet.htmlcheck import check_page_in_chromium, require_chromium

@pytest.fixture(scope="module")
def generated_site(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    require_chromium()
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
    require_chromium()
    page_path = tmp_path / "broken.html"
    page_path.write_text('<!DOCTYPE html><html><body><img src="missing.png">'
                         "<script>console.error('boom'); null.x;</script></body></html>")
    with Browser(tmp_path) as browser:
        page = browser.open(page_path.as_uri())
        errors = page.errors()
    assert any("console.error: boom" in e for e in errors), errors
    assert any(e.startswith("exception:") for e in errors), errors
    assert any("missing.png" in e for e in errors), errors
