"""Rules for the tests themselves that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import List

TESTS = Path(__file__).resolve().parent
SOURCES = sorted(p for p in TESTS.rglob("*.py") if p.name != "test_suite_rules.py")


def test_the_rules_see_the_suite():
    assert len(SOURCES) >= 50 and TESTS / "conftest.py" in SOURCES


def test_no_importorskip_of_the_project():
    """A broken import of the project's own code must fail, never skip."""
    found = [f"{p.relative_to(TESTS)}:{m.group(0)}" for p in SOURCES
             for m in re.finditer(r"importorskip\(\s*['\"](edgecheck|tests)[\w.]*['\"]", p.read_text())]
    assert found == []


def self_comparisons(source: str, name: str) -> List[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and len(node.comparators) == 1 and isinstance(node.ops[0], (ast.Eq, ast.Is)):
            left, right = ast.unparse(node.left), ast.unparse(node.comparators[0])
            if left == right:
                out.append(f"{name}:{node.lineno}: {left} == {right}")
    return out


def test_no_value_is_compared_with_itself():
    """`f(x) == f(x)` holds whatever f does (stability belongs in two processes)."""
    assert [line for p in SOURCES for line in self_comparisons(p.read_text(), str(p.relative_to(TESTS)))] == []


def test_the_self_comparison_rule_catches_one():
    sample = "def test_x():\n    assert to_json(r) == to_json(r)\n    assert a == b\n"
    assert self_comparisons(sample, "sample.py") == ["sample.py:2: to_json(r) == to_json(r)"]
