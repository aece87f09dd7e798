"""Shared helpers of the packaging tests (imported by name; conftest.py holds the fixtures).

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
import uuid
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


_BUILT: dict = {}


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Path:
    """dist/ with sdist, wheel, both zipapps, both .debs and both .rpms, built once.

    Test modules import this fixture by name (tests/packaging has no conftest.py: a second
    top-level `conftest` module would shadow tests/conftest.py for modules that import from it),
    so each module gets its own FixtureDef: the module-level cache keeps it one build a session.
    """
    if "dist" in _BUILT:
        return _BUILT["dist"]
    for tool in ("dpkg-deb", "rpmbuild"):
        need(tool)
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    proc = subprocess.run(
        ["sh", str(REPO / "packaging" / "build.sh"), "all"],
        env={**os.environ, "DIST": str(out), "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"\npackaging/build.sh all: {time.monotonic() - started:.1f}s")
    _BUILT["dist"] = out
    return out


@pytest.fixture
def netns():
    """A fresh, empty network namespace (only `lo`); deleted afterwards."""
    need("ip")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"ecpkg-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


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
