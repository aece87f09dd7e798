"""Fixtures for the listen/reach tests: one three-namespace lab per session (see topo.py).

Needs root, iproute2 and iptables/ip6tables; the joined-node case also needs openssl and nginx.
A missing prerequisite skips here and fails under CI=true (tests/conftest.py turns skips into
failures there).
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.reach.topo import ReachLab, missing_tools

TOKEN = "reach-test-token-0123456789"


@pytest.fixture(scope="session")
def reach_lab() -> Iterator[ReachLab]:
    if os.geteuid() != 0:
        pytest.skip("the reach lab needs root (network namespaces)")
    missing = missing_tools(["ss"])
    if missing:
        pytest.skip(f"the reach lab needs {', '.join(missing)} (iproute2, iptables)")
    lab = ReachLab()
    try:
        yield lab
    finally:
        lab.close()
