"""Open a fleet HTML summary in headless Chromium and check what a person would see."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.fleet.cdp import Browser, chromium_binary

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


def require_chromium() -> None:
    if chromium_binary() is None or os.geteuid() != 0:
        pytest.skip("chromium (Debian package chromium) and root (unshare --net) are needed")


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
