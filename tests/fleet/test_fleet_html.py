"""The HTML summary: self-contained, the matrix rows and columns, bounded for big sites."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from edgecheck.fleet import render_html
from edgecheck.fleet.summarise import render, summarise

from tests.fleet.fleetfixtures import NOW, write


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: List[Tuple[str, Dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _html(tmp_path: Path) -> str:
    return "".join(render(summarise([str(tmp_path)], now=NOW), "html"))


def test_self_contained_no_script_no_external_reference(tmp_path: Path) -> None:
    write(tmp_path, "edge-1", ["dns-forwarder-down"])
    write(tmp_path, "edge-2")
    html = _html(tmp_path)
    parser = _Tags()
    parser.feed(html)
    tags = {t for t, _ in parser.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs in parser.tags:
        for name in ("href", "src"):
            if name in attrs:
                assert attrs[name].startswith("#"), (tag, attrs)
    assert "url(" not in html and "@import" not in html
    assert "@media print" in html and "@page" in html


def test_matrix_has_a_row_per_not_ready_node_and_a_column_per_failing_cause(tmp_path: Path) -> None:
    write(tmp_path, "edge-1", ["dns-forwarder-down", "tools-missing"])
    write(tmp_path, "edge-2", ["dns-forwarder-down", "tools-missing"])
    write(tmp_path, "edge-3", ["clock-off"])
    write(tmp_path, "edge-4")
    html = _html(tmp_path)
    matrix = html[html.index('<table class="matrix">'):html.index("</table>", html.index('<table class="matrix">'))]
    rows = re.findall(r'<tr><th class="node" scope="row"[^>]*>([^<]+)</th>(.*?)</tr>', matrix)
    assert [name for name, _ in rows] == ["edge-1", "edge-2", "edge-3"]
    marks = {name: len(re.findall(r'<td class="x"', cells)) for name, cells in rows}
    assert marks == {"edge-1": 2, "edge-2": 2, "edge-3": 1}
    assert re.findall(r'<th scope="col" title="[^"]*"><a href="#(F\d+)">', matrix) == ["F1", "F2", "F3"]
    assert "Group 1: 2 nodes · F1, F2" in matrix and "Group 2: 1 node · F3" in matrix
    # All nodes, ready ones too, in the node table.
    table = html[html.index('<table class="nodes">'):]
    assert [n for n in re.findall(r'<tr><td title="[^"]*">([^<]+)</td>', table)] == ["edge-1", "edge-2", "edge-3", "edge-4"]


def test_big_site_matrix_is_bounded_but_counts_every_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_html, "MATRIX_ROWS", 5)
    monkeypatch.setattr(render_html, "NAMES_SHOWN", 3)
    for i in range(12):
        write(tmp_path, f"edge-{i}", ["registry-firewall"] if i % 4 else ["registry-firewall", "clock-off"])
    html = _html(tmp_path)
    matrix = html[html.index('<table class="matrix">'):html.index('</table>', html.index('<table class="matrix">'))]
    assert len(re.findall(r'<th class="node" scope="row"', matrix)) == 5
    assert "Group 1: 9 nodes · F1" in matrix and "Group 2: 3 nodes · F1, F2" in matrix
    assert "The matrix shows the first 5 of 12 not-ready nodes" in html
    assert "… and 9 more (see the node table)" in html
    table = html[html.index('<table class="nodes">'):]
    assert len(re.findall(r"<tr><td ", table)) == 12


def test_all_ready_site_has_no_matrix(tmp_path: Path) -> None:
    write(tmp_path, "edge-1")
    html = _html(tmp_path)
    assert "All 1 node ready" in html and 'class="matrix"' not in html
