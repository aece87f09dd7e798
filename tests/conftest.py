"""Suite-wide rules, each defined here and nowhere else.

1. The network guard (tests/netguard.py) is armed for the test process.
2. A skip is a failure under `tests/run` (it passes --no-skips) and whenever CI is set: a skip
   there means a missing install step, and `sudo` strips CI, so tests/run cannot rely on it.
   The one way to let a test skip there is @pytest.mark.skip_allowed(reason=...); tests/run
   prints how many did. Prerequisite helpers only skip (tests/prereq.py); this turns it red.
3. The empty network namespace the CLI tests share (tests/emptyns.py) is deleted at the end.
"""

from __future__ import annotations

from typing import Iterator, List

import pytest

from tests import emptyns, netguard
from tests.prereq import OPTION, strict_run

netguard.arm()

ALLOWED = "skip_allowed"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(OPTION, action="store_true", default=False,
                     help=f"a skipped test fails, unless marked @pytest.mark.{ALLOWED} (tests/run passes this)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{ALLOWED}(reason): this test may skip even under tests/run, "
                                       "which counts and reports it")


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not strict_run(item.config):
        return
    if item.get_closest_marker(ALLOWED) is not None:
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped: {_reason(report)}\n"
                       f"A skip is a failure here ({OPTION} or CI): install what the test needs, or mark it "
                       f"@pytest.mark.{ALLOWED}(reason=...) if skipping is deliberate.")


def _skipped(session: pytest.Session) -> List[pytest.TestReport]:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter else []


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not strict_run(config):
        return
    allowed = [r for r in terminalreporter.stats.get("skipped", []) if ALLOWED in getattr(r, "keywords", {})]
    terminalreporter.write_line(f"{len(allowed)} test(s) skipped deliberately (@pytest.mark.{ALLOWED})",
                                yellow=bool(allowed))
    for r in allowed:
        terminalreporter.write_line(f"  {r.nodeid}: {_reason(r)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    emptyns.close_shared()
    if not strict_run(session.config):
        return
    # Skips the hook above cannot see (a whole module skipped at collection) still fail the run.
    unmarked = [r for r in _skipped(session) if ALLOWED not in getattr(r, "keywords", {})]
    if not unmarked:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(f"{len(unmarked)} skip(s) outside @pytest.mark.{ALLOWED}: a skip is a failure here",
                            red=True)
        for r in unmarked:
            reporter.write_line(f"  {r.nodeid}: {_reason(r)}")
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
