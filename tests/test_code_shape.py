"""The shape the code keeps (issue: one diagnosis layer): small functions, no knot of branches,
and a text renderer that only lays out."""

from __future__ import annotations

import ast
from pathlib import Path

from radon.complexity import cc_rank, cc_visit

PACKAGE = Path(__file__).resolve().parents[1] / "edgecheck"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 60


def test_sources_found():
    assert len(SOURCES) > 30


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long


def test_no_function_has_complexity_rank_e_or_f():
    knots = [f"{path.relative_to(PACKAGE)}:{block.lineno} {block.name} ({block.complexity})"
             for path in SOURCES for block in cc_visit(path.read_text()) if cc_rank(block.complexity) in "EF"]
    assert not knots


def test_the_text_renderer_stays_a_layout():
    assert len((PACKAGE / "report" / "text.py").read_text().splitlines()) <= 300


def test_every_package_ships():
    """A subpackage missing from pyproject's list installs from a checkout and breaks every wheel."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"edgecheck" + ("." + ".".join(p.parent.relative_to(PACKAGE).parts) if p.parent != PACKAGE else "")
             for p in PACKAGE.rglob("__init__.py")}
    assert found and found <= listed
