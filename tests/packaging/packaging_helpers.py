"""Shared helpers of the packaging tests (the fixtures are in conftest.py).

Packaging tests build every artefact once per session (packaging/build.sh all), then inspect.

Nothing here installs anything into the real system: packages are unpacked into temporary roots,
maintainer-script logic runs with stub commands, and the one full `run` happens inside a network
namespace this suite creates (only `lo`, down), so no packet leaves the host.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python3")
VERSION = subprocess.run(
    [sys.executable, "-c", "import re,sys; print(re.search(r'__version__ = \"(.+)\"', open(sys.argv[1]).read()).group(1))",
     str(REPO / "edgecheck" / "__init__.py")],
    check=True, capture_output=True, text=True,
).stdout.strip()


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} not installed (tests/run installs it)")
    return path


def python39() -> str:
    """The floor interpreter: pyenv's 3.9 here, else any python3.9 on PATH."""
    if PY39.exists():
        return str(PY39)
    return need("python3.9")
