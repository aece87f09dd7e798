"""The shipped units, verified as the .deb installs them (real ExecStart binary, real paths)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from tests.packaging.packaging_helpers import REPO, VERSION, need

UNITS = REPO / "systemd"
MAX_EXPOSURE = 2.5


def unit_settings(path: Path) -> dict:
    """{section: {key: [values...]}} (systemd allows repeated keys, so no configparser)."""
    out: dict = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def installed_root(dist, tmp_path_factory) -> Path:
    """A root with the host's systemd units plus the .deb unpacked (systemd-analyze --root)."""
    root = tmp_path_factory.mktemp("unitroot")
    (root / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "lib" / "systemd" / "system", symlinks=True)
    subprocess.run(["dpkg-deb", "-x", str(dist / f"edgecheck_{VERSION}-1_amd64.deb"), str(root)], check=True)
    assert (root / "usr" / "bin" / "edgecheck").is_file()
    return root


def analyze(*args: str) -> subprocess.CompletedProcess:
    need("systemd-analyze")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120)


def test_verify_shipped_units_without_warnings(installed_root):
    proc = analyze("verify", "--man=no", f"--root={installed_root}", "edgecheck.service", "edgecheck.timer")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_verify_would_catch_a_bad_key(installed_root, tmp_path):
    """Negative control: the empty-stderr assertion above is able to fail."""
    unit = installed_root / "lib" / "systemd" / "system" / "edgecheck-broken.service"
    unit.write_text((UNITS / "edgecheck.service").read_text().replace("[Service]", "[Service]\nTimeoutStartSecs=1"))
    try:
        proc = analyze("verify", "--man=no", f"--root={installed_root}", "edgecheck-broken.service")
        assert "Unknown key 'TimeoutStartSecs'" in proc.stderr
    finally:
        unit.unlink()


def exposure(root: Path) -> float:
    proc = analyze("security", "--offline=true", f"--root={root}", "edgecheck.service")
    m = re.search(r"Overall exposure level for edgecheck\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


def test_security_exposure(installed_root):
    score = exposure(installed_root)
    print(f"\nedgecheck.service exposure: {score}")
    assert score <= MAX_EXPOSURE


@pytest.mark.parametrize("example", ["port-owners.conf", "firewall-read.conf"])
def test_security_exposure_with_an_opt_in_dropin(installed_root, example):
    dropin = installed_root / "etc" / "systemd" / "system" / "edgecheck.service.d"
    dropin.mkdir(parents=True)
    shutil.copy(installed_root / "usr/share/doc/edgecheck/examples" / example, dropin)
    try:
        proc = analyze("verify", "--man=no", f"--root={installed_root}", "edgecheck.service")
        assert proc.returncode == 0 and proc.stderr == ""
        score = exposure(installed_root)
        print(f"\nedgecheck.service + {example} exposure: {score}")
        assert score <= MAX_EXPOSURE
    finally:
        shutil.rmtree(dropin)


def test_service_contract():
    svc = unit_settings(UNITS / "edgecheck.service")["Service"]
    assert svc["Type"] == ["oneshot"]
    assert int(svc["TimeoutStartSec"][0]) > 0
    assert svc["User"] == ["edgecheck"] and "DynamicUser" not in svc
    assert svc["StateDirectory"] == ["edgecheck"]
    assert svc["ExecStart"] == ["/usr/bin/edgecheck agent"]
    assert svc["EnvironmentFile"] == ["-/etc/default/edgecheck", "-/etc/sysconfig/edgecheck"]
    assert "ProcSubset" not in svc  # would hide /proc/net from the port checks
    # 1 (not ready) and 75 (another run holds the lock) are successful agent runs; a run stopped
    # on request (SIGTERM) is not a broken agent either
    assert set(svc["SuccessExitStatus"][0].split()) == {"1", "75", "SIGTERM"}
    assert "-/var/lib/prometheus/node-exporter" in svc["ReadWritePaths"]


def test_timer_contract():
    timer = unit_settings(UNITS / "edgecheck.timer")
    t = timer["Timer"]
    assert "OnBootSec" in t and "OnUnitActiveSec" in t
    assert "Persistent" not in t  # only meaningful with OnCalendar=
    assert "RandomizedDelaySec" in t
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def agent_envvars() -> set:
    from edgecheck.cli import main

    cmd = main.commands["agent"]
    return {p.envvar for p in cmd.params if isinstance(p, click.Option) and p.envvar}


def test_env_example_documents_every_agent_variable():
    text = (UNITS / "edgecheck.env.example").read_text()
    documented = set(re.findall(r"^#?(EDGECHECK_[A-Z0-9_]+)=", text, re.M))
    # --strict and --apiserver-ca are niche; everything else a fleet configures must be there
    assert agent_envvars() - {"EDGECHECK_STRICT", "EDGECHECK_APISERVER_CA"} <= documented
    assert documented <= agent_envvars()
    for proxy in ("HTTPS_PROXY", "NO_PROXY"):
        assert f"#{proxy}=" in text
    # the shipped conffile sets nothing: every assignment is commented out
    assert not [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
