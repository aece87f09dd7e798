"""The single-file zipapps: contents per architecture, isolation, Python floor, a real run."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.packaging.packaging_helpers import REPO, VERSION, python39

BUNDLED = ("edgecheck", "click", "requests", "urllib3", "idna", "certifi", "charset_normalizer", "ntplib", "psutil",
           "ruamel")
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}


def manifest(pyz: Path) -> dict:
    with zipfile.ZipFile(pyz) as zf:
        return json.loads(zf.read("edgecheck-zipapp.json"))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_contents_per_architecture(dist, arch):
    pyz = dist / f"edgecheck-{arch}.pyz"
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    m = manifest(pyz)
    assert m["arch"] == arch and m["requires_python"] == [3, 9]
    pk = m["packages"]
    assert pk["edgecheck"] == VERSION
    # the newest releases that still support Python 3.9 (NOTES), not the build machine's
    assert pk["click"].startswith("8.1.") and "dnspython" not in pk and pk["requests"].startswith("2.32.")
    with zipfile.ZipFile(pyz) as zf:
        names = zf.namelist()
        # every dependency is a pure-Python or stable-ABI wheel: one archive serves 3.9 ... 3.13
        for n in names:
            if n.endswith(".dist-info/WHEEL"):
                tags = [l.split(":", 1)[1].strip() for l in zf.read(n).decode().splitlines() if l.startswith("Tag:")]
                assert tags and all(t.endswith("-none-any") or "-abi3-" in t for t in tags), (n, tags)
        sos = [n for n in names if n.endswith(".so")]
        assert sos and all("abi3" in n for n in sos), sos
        for so in sos:
            head = zf.read(so)[:20]
            assert head[:4] == b"\x7fELF"
            assert struct.unpack("<H", head[18:20])[0] == ELF_MACHINE[arch], so
        for top in BUNDLED:
            assert any(n.startswith(f"site/{top}/") or n == f"site/{top}.py" for n in names), top
        assert any(n.startswith("site/edgecheck/targets/") and n.endswith(".toml") for n in names)


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory) -> Path:
    """A fresh Python 3.9 venv with nothing installed, whose site-packages is booby-trapped:
    a `click` and a `requests` there would break any import that leaked out of the bundle."""
    venv = tmp_path_factory.mktemp("venv39")
    subprocess.run([python39(), "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    for name in ("click", "requests", "psutil"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"raise ImportError('{name} imported from site-packages')\n")
    return venv


def run_pyz(python, pyz, *args, cache, netns=None, timeout=60, extra_env=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EDGECHECK_CACHE_DIR": str(cache), "LANG": "C.UTF-8"}
    env.update(extra_env or {})
    cmd = [str(python), str(pyz), *args]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_version_on_the_floor_python_uses_only_the_bundle(dist, bare_venv, tmp_path):
    cache = tmp_path / "cache"
    dump = tmp_path / "modules.json"
    proc = run_pyz(bare_venv / "bin" / "python", dist / "edgecheck-x86_64.pyz", "--version",
                   cache=cache, extra_env={"EDGECHECK_BOOTSTRAP_DUMP": str(dump)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"edgecheck, version {VERSION}"
    loaded = json.loads(dump.read_text())
    assert not [p for p in loaded["sys_path"] if "site-packages" in p]
    for name, path in loaded["modules"].items():
        assert "site-packages" not in path and "dist-packages" not in path, (name, path)
        if name.split(".")[0] in BUNDLED:
            assert path.startswith(str(cache)), (name, path)


def test_targets_on_python39(dist, tmp_path):
    proc = run_pyz(python39(), dist / "edgecheck-x86_64.pyz", "targets", "--region", "cn-hangzhou", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cn-hangzhou" in proc.stdout and "nothing was sent" in proc.stdout


def test_full_run_in_empty_netns_gives_a_valid_report(dist, bare_venv, tmp_path, netns):
    """Every probe fails locally (no route, no resolver): exit 1 and a complete JSON report."""
    import jsonschema

    proc = run_pyz(bare_venv / "bin" / "python", dist / "edgecheck-x86_64.pyz",
                   "run", "--region", "cn-hangzhou", "--format", "json", "--timeout", "0.5",
                   cache=tmp_path / "cache", netns=netns)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    schema = json.loads((REPO / "edgecheck" / "report" / "schema.json").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(report)
    assert report["ready"] is False and report["summary"]["fail"] > 0
    assert report["agent"]["version"] == VERSION


def test_agent_in_empty_netns_writes_state_and_metrics(dist, bare_venv, tmp_path, netns):
    state = tmp_path / "state"
    state.mkdir()
    prom = tmp_path / "edgecheck.prom"
    args = ("agent", "--region", "cn-hangzhou", "--timeout", "0.5", "--state-dir", str(state), "--textfile", str(prom))
    first = run_pyz(bare_venv / "bin" / "python", dist / "edgecheck-x86_64.pyz", *args, cache=tmp_path / "cache", netns=netns)
    assert first.returncode == 1, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("edgecheck agent: first run (no previous report): NOT READY; failing: ")
    assert lines[1].startswith("edgecheck agent: NOT READY (fail ")
    doc = json.loads((state / "report.json").read_text())
    assert doc["params"]["phase"] == "running"  # the agent's default phase
    assert "edgecheck_ready 0" in prom.read_text()
    second = run_pyz(bare_venv / "bin" / "python", dist / "edgecheck-x86_64.pyz", *args, cache=tmp_path / "cache", netns=netns)
    assert second.returncode == 1 and len(second.stdout.splitlines()) == 1, second.stdout


def test_too_old_python_is_one_line(dist, tmp_path):
    """A bundle whose floor is above the running Python says so instead of failing obscurely."""
    src = dist / "edgecheck-x86_64.pyz"
    fake = tmp_path / "future.pyz"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(fake, "w") as zout:
        zout.writestr("__main__.py", zin.read("__main__.py"))
        m = json.loads(zin.read("edgecheck-zipapp.json"))
        m["requires_python"] = [3, 99]
        zout.writestr("edgecheck-zipapp.json", json.dumps(m))
    proc = run_pyz(sys.executable, fake, "--version", cache=tmp_path / "c")
    assert proc.returncode == 69
    assert proc.stderr.count("\n") == 1 and "needs Python >= 3.99" in proc.stderr


def test_wrong_architecture_is_one_line(dist, tmp_path):
    proc = run_pyz(sys.executable, dist / "edgecheck-aarch64.pyz", "--version", cache=tmp_path / "c")
    assert proc.returncode == 69
    assert "built for aarch64" in proc.stderr and "edgecheck-x86_64.pyz" in proc.stderr


def test_unsafe_cache_dir_is_not_used(dist, tmp_path):
    """Code is executed from the cache: a directory others can write to is skipped."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "EDGECHECK_CACHE_DIR": str(shared), "HOME": str(home)}
    proc = subprocess.run([sys.executable, str(dist / "edgecheck-x86_64.pyz"), "--version"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert list(shared.iterdir()) == []
    assert list((home / ".cache" / "edgecheck").glob("build-x86_64-*/.complete"))


def test_systemd_cache_directory_and_concurrent_first_starts(dist, tmp_path):
    """Under the unit, CacheDirectory= exports CACHE_DIRECTORY; parallel first starts share one tree."""
    cache = tmp_path / "var-cache-edgecheck"
    cache.mkdir(mode=0o700)
    env = {"PATH": "/usr/bin:/bin", "CACHE_DIRECTORY": str(cache), "HOME": "/nonexistent"}
    procs = [subprocess.Popen([sys.executable, str(dist / "edgecheck-x86_64.pyz"), "--version"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1 and entries[0].startswith("build-x86_64-"), entries
