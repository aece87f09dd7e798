"""The .deb and .rpm: lint, contents, maintainer scripts, and an install into a temporary root.

Never installed into the real system: the .deb is unpacked with dpkg-deb -x, the user and ACL
steps run with `systemd-sysusers --root` / `systemd-tmpfiles --root`, and the fallback path of
the maintainer script runs against stub commands.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.packaging.packaging_helpers import VERSION, need

DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# systemctl / deb-systemd-helper / deb-systemd-invoke enabling or starting anything
ENABLE_OR_START = re.compile(r"(?:systemctl|deb-systemd-helper|deb-systemd-invoke)(?:\s+--?\S+)*\s+(?:enable|start|restart|reenable)\b")


def code_lines(script: str) -> str:
    return "\n".join(l for l in script.splitlines() if not l.lstrip().startswith("#"))


def deb(dist: Path, arch: str = "x86_64") -> Path:
    return dist / f"edgecheck_{VERSION}-1_{DEB_ARCH[arch]}.deb"


def rpm(dist: Path, arch: str = "x86_64") -> Path:
    return dist / f"edgecheck-{VERSION}-1.{arch}.rpm"


def sh(*cmd: str, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_lintian_has_no_errors(dist, arch):
    need("lintian")
    proc = subprocess.run(["lintian", "--no-tag-display-limit", str(deb(dist, arch))], capture_output=True, text=True, timeout=300)
    print(f"\nlintian {deb(dist, arch).name}:\n{proc.stdout}")
    tags = [l for l in proc.stdout.splitlines() if l[:2] in ("E:", "W:")]
    assert tags == [] and proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_deb_metadata_and_contents(dist, arch):
    info = sh("dpkg-deb", "-f", str(deb(dist, arch)))
    assert f"Architecture: {DEB_ARCH[arch]}" in info and f"Version: {VERSION}-1" in info
    assert "python3 (>= 3.9)" in info
    listing = sh("dpkg-deb", "-c", str(deb(dist, arch)))
    for path in ("./usr/bin/edgecheck", "./usr/lib/edgecheck/edgecheck.pyz", "./lib/systemd/system/edgecheck.service",
                 "./lib/systemd/system/edgecheck.timer", "./etc/default/edgecheck", "./usr/lib/sysusers.d/edgecheck.conf",
                 "./usr/lib/tmpfiles.d/edgecheck.conf", "./usr/share/doc/edgecheck/copyright",
                 "./usr/share/doc/edgecheck/examples/edgecheck.rules.yml", "./usr/share/man/man1/edgecheck.1.gz",
                 "./usr/share/doc/edgecheck/examples/firewall-read.conf"):
        assert f" {path}\n" in listing, path
    assert "-rwxr-xr-x root/root" in next(l for l in listing.splitlines() if l.endswith("./usr/bin/edgecheck"))
    assert sh("dpkg-deb", "-f", str(deb(dist, arch)), "Package").strip() == "edgecheck"


def test_deb_maintainer_scripts(dist, tmp_path):
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb(dist)), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/default/edgecheck"]
    postinst = (control / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "useradd --system" in postinst
    assert "systemd-tmpfiles --create /usr/lib/tmpfiles.d/edgecheck.conf" in postinst
    scripts = "".join((control / s).read_text() for s in ("postinst", "prerm", "postrm"))
    # the timer is never enabled or started by the package
    assert not ENABLE_OR_START.findall(code_lines(scripts)), ENABLE_OR_START.findall(code_lines(scripts))
    for script in ("postinst", "prerm", "postrm"):
        subprocess.run(["sh", "-n", str(control / script)], check=True)


@pytest.fixture(scope="module")
def deb_root(dist, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("debroot")
    subprocess.run(["dpkg-deb", "-x", str(deb(dist)), str(root)], check=True)
    (root / "etc").mkdir(exist_ok=True)
    # a minimal account database for systemd-sysusers --root
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return root


def test_unpacked_deb_runs(deb_root, tmp_path):
    """/usr/bin/edgecheck finds its bundle relative to itself and a python3 >= 3.9."""
    env = {"PATH": os.environ["PATH"], "EDGECHECK_CACHE_DIR": str(tmp_path / "c")}
    out = sh(str(deb_root / "usr" / "bin" / "edgecheck"), "--version", env=env)
    assert out.strip() == f"edgecheck, version {VERSION}"


def test_sysusers_creates_the_static_user(deb_root):
    need("systemd-sysusers")
    subprocess.run(["systemd-sysusers", f"--root={deb_root}", str(deb_root / "usr/lib/sysusers.d/edgecheck.conf")],
                   check=True, capture_output=True)
    entry = next(l for l in (deb_root / "etc" / "passwd").read_text().splitlines() if l.startswith("edgecheck:"))
    name, _, uid, gid, gecos, home, shell = entry.split(":")
    assert int(uid) < 1000 and home == "/var/lib/edgecheck" and shell.endswith("/nologin")
    assert any(l.startswith(f"edgecheck:x:{gid}:") for l in (deb_root / "etc" / "group").read_text().splitlines())


def test_tmpfiles_grants_textfile_dir_acl(deb_root, tmp_path):
    """The ACL line, applied in a temporary root (user 'nobody' stands in for edgecheck, which
    libacl resolves through the host's account database)."""
    need("systemd-tmpfiles")
    conf = tmp_path / "t.conf"
    conf.write_text((deb_root / "usr/lib/tmpfiles.d/edgecheck.conf").read_text().replace("u:edgecheck:", "u:nobody:"))
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(conf)], check=True, capture_output=True)
    textdir = root / "var/lib/prometheus/node-exporter"
    assert textdir.is_dir()
    raw = os.getxattr(str(textdir), "system.posix_acl_access")
    entries = [struct.unpack("<HHI", raw[i:i + 8]) for i in range(4, len(raw), 8)]
    assert (2, 7, 65534) in entries  # ACL_USER nobody rwx


def test_user_setup_falls_back_to_useradd(dist, tmp_path):
    """Without systemd-sysusers (containers) the postinst creates the user with useradd."""
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb(dist)), str(control)], check=True)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "calls"
    for name in ("getent", "groupadd", "useradd", "systemctl"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n' + ("exit 2\n" if name == "getent" else "exit 0\n"))
        stub.chmod(0o755)
    for tool in ("sh", "dirname", "cat"):
        os.symlink(f"/bin/{tool}" if os.path.exists(f"/bin/{tool}") else f"/usr/bin/{tool}", stubs / tool)
    subprocess.run(["/bin/sh", str(control / "postinst"), "configure"], env={"PATH": str(stubs)}, check=True)
    calls = log.read_text().splitlines()
    assert "groupadd --system edgecheck" in calls
    assert any(c.startswith("useradd --system --gid edgecheck --home-dir /var/lib/edgecheck") for c in calls), calls


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_rpm_metadata_contents_and_scripts(dist, arch):
    need("rpm")
    pkg = str(rpm(dist, arch))
    assert sh("rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}", pkg) == f"edgecheck {VERSION} {arch}"
    files = sh("rpm", "-qlp", pkg).split()
    for path in ("/usr/bin/edgecheck", "/usr/lib/edgecheck/edgecheck.pyz", "/usr/lib/systemd/system/edgecheck.service",
                 "/usr/lib/systemd/system/edgecheck.timer", "/etc/sysconfig/edgecheck", "/usr/lib/sysusers.d/edgecheck.conf",
                 "/usr/lib/tmpfiles.d/edgecheck.conf", "/usr/share/doc/edgecheck/examples/firewall-read.conf"):
        assert path in files, path
    # %config(noreplace): an admin's edits survive upgrades
    flags = dict(l.split(" ", 1) for l in sh("rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", pkg).splitlines())
    assert set(flags["/etc/sysconfig/edgecheck"]) >= {"c", "n"}
    scripts = sh("rpm", "-qp", "--scripts", pkg)
    assert "systemd-sysusers" in scripts and "useradd --system" in scripts
    assert not ENABLE_OR_START.findall(code_lines(scripts))
    requires = sh("rpm", "-qp", "--requires", pkg)
    assert "python3 >= 3.9" in requires


def test_rpm_installs_into_a_temporary_root_and_units_verify(dist, tmp_path):
    """rpm --root installs the payload (scripts off: they would create users); the units, as
    the .rpm lays them out in /usr/lib/systemd/system, pass systemd-analyze verify."""
    need("rpm")
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["rpm", f"--root={root}", "--initdb"], check=True, capture_output=True)
    subprocess.run(["rpm", f"--root={root}", "-i", "--nodeps", "--noscripts", str(rpm(dist))], check=True, capture_output=True)
    assert sh("rpm", f"--root={root}", "-q", "edgecheck").strip() == f"edgecheck-{VERSION}-1.x86_64"
    units = root / "usr/lib/systemd/system"
    for unit in Path("/lib/systemd/system").iterdir():  # the host's sysinit.target etc.
        if not (units / unit.name).exists():
            if unit.is_symlink():
                os.symlink(os.readlink(unit), units / unit.name)
            elif unit.is_file():
                shutil.copy2(unit, units / unit.name)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "edgecheck.service", "edgecheck.timer"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    env = {"PATH": os.environ["PATH"], "EDGECHECK_CACHE_DIR": str(tmp_path / "c")}
    assert sh(str(root / "usr/bin/edgecheck"), "--version", env=env).strip() == f"edgecheck, version {VERSION}"
