"""Fixtures of the packaging tests: every artefact built once a session, and an empty netns."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.packaging.packaging_helpers import REPO, need


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Path:
    """dist/ with sdist, wheel, both zipapps, both .debs and both .rpms, built once a session."""
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
