"""The opt-in drop-in that lets the agent read the packet filter: valid, and its exposure measured."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_EXPOSURE = 2.5  # the same bound the default unit and port-owners.conf are held to


def analyze(*args: str) -> subprocess.CompletedProcess:
    if not shutil.which("systemd-analyze"):
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("needs systemd-analyze (Debian: systemd)")
        pytest.skip("needs systemd-analyze")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120)


def exposure(root: Path) -> float:
    proc = analyze("security", "--offline=true", f"--root={root}", "edgecheck.service")
    m = re.search(r"Overall exposure level for edgecheck\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


def test_firewall_read_dropin(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
    shutil.copy(REPO / "systemd/edgecheck.service", root / "lib/systemd/system/edgecheck.service")
    exe = root / "usr/bin/edgecheck"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    base = exposure(root)
    dropin = root / "etc/systemd/system/edgecheck.service.d"
    dropin.mkdir(parents=True)
    shutil.copy(REPO / "systemd/firewall-read.conf", dropin)
    proc = analyze("verify", "--man=no", f"--root={root}", "edgecheck.service")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    score = exposure(root)
    print(f"\nedgecheck.service exposure {base}; with firewall-read.conf {score}")
    assert base < score <= MAX_EXPOSURE
    text = (REPO / "systemd/firewall-read.conf").read_text()
    assert "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW" in text
