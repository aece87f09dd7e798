"""Suite-wide rule: under CI (CI=true, as root) a skipped test is a failure, not a pass.

Tests that need root, network namespaces or lab software must run in CI; a skip there means a
missing install step, which this turns into a red build.
"""

from __future__ import annotations

import os

import pytest

from tests import netguard

netguard.arm()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _in_ci():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; every test must run in CI", red=True)
        session.exitstatus = 1

