"""Shared helpers of the packaging tests (the fixtures are in conftest.py).

Packaging tests build every artefact once per session (packaging/build.sh all), then inspect.

Nothing here installs anything into the real system: packages are unpacked into temporary roots,
maintainer-script logic runs with stub commands, and the one full `run` happens inside a network
namespace this suite creates (only `lo`, down), so no packet leaves the host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.prereq import need

REPO = Path(__file__).resolve().parents[2]
PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python3")
VERSION = subprocess.run(
    [sys.executable, "-c", "import re,sys; print(re.search(r'__version__ = \"(.+)\"', open(sys.argv[1]).read()).group(1))",
     str(REPO / "edgecheck" / "__init__.py")],
    check=True, capture_output=True, text=True,
).stdout.strip()


def python39() -> str:
    """The floor interpreter: pyenv's 3.9 here, else any python3.9 on PATH."""
    if PY39.exists():
        return str(PY39)
    return need("python3.9")


DEB_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def build_deb_from_copy(out: Path, *, version: str, arches: str = "x86_64") -> Path:
    """packaging/build.sh deb, run on a copy of the source tree whose __version__ is `version`
    (a "newer build" for upgrade tests). Returns the .deb of the first architecture."""
    src = out / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "dist", "build", "*.egg-info", "__pycache__", ".venv", ".pytest_cache", "*.pyz", "*.deb", "*.rpm"))
    init = src / "edgecheck" / "__init__.py"
    text, count = re.subn(r'__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text())
    assert count == 1, "no __version__ in edgecheck/__init__.py"
    init.write_text(text)
    epoch = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "DIST": str(out / "dist"), "PYTHON": sys.executable, "ARCHES": arches,
           "SOURCE_DATE_EPOCH": epoch or str(int(time.time()))}
    started = time.monotonic()
    proc = subprocess.run(["sh", str(src / "packaging" / "build.sh"), "deb"], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"\npackaging/build.sh deb ({version}, {arches}): {time.monotonic() - started:.1f}s")
    first = arches.split()[0]
    deb = out / "dist" / f"edgecheck_{version}-1_{DEB_ARCHES.get(first, first)}.deb"
    assert deb.is_file(), sorted(p.name for p in (out / "dist").iterdir())
    return deb
