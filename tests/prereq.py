"""Missing prerequisites skip a test, always the same way: here. Whether that skip is allowed is
decided in one place too, tests/conftest.py: under `tests/run` (and whenever CI is set) a skip
fails the run unless the test carries @pytest.mark.skip_allowed(reason=...).
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

import pytest

OPTION = "--no-skips"  # tests/run passes it


def strict_run(config: pytest.Config) -> bool:
    """tests/run (--no-skips) or CI: a skip fails, snapshots are never rewritten."""
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    return bool(config.getoption(OPTION)) or ci


def need(tool: str) -> str:
    """The tool's path; skips the calling test when it is not installed."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/local/sbin:/usr/sbin:/sbin")
    if not path:
        pytest.skip(f"{tool} not installed (tests/run installs it)")
    return path


def require(missing: Sequence[str], what: str) -> None:
    """Skip the calling test when anything is missing, naming all of it."""
    if missing:
        pytest.skip(f"{what} prerequisites missing: " + "; ".join(missing))
