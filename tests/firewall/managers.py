"""firewalld and ufw themselves, run inside a test network namespace with a private mount
namespace, so that this machine's /etc/firewalld, /etc/ufw, /run and D-Bus are never touched.
Shared by the firewall oracle tests and the lab (tests/lab/test_host_firewall.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import List, Tuple

from tests.firewall.fwlab import need

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/>
    <allow send_type="method_call"/><allow send_type="signal"/>
    <allow send_type="method_return"/><allow send_type="error"/>
    <allow receive_type="method_call"/><allow receive_type="signal"/>
    <allow receive_type="method_return"/><allow receive_type="error"/>
  </policy>
</busconfig>
"""


def sh_in(ns: str, script: str, private_mounts: str = "") -> subprocess.CompletedProcess:
    """Run a shell script in network namespace `ns` (plus a private mount namespace when mounts
    are given); fails the test with the script's output when it fails."""
    argv = ["ip", "netns", "exec", ns]
    if private_mounts:
        argv += ["unshare", "-m", "--propagation", "private", "sh", "-ec", private_mounts + "\n" + script]
    else:
        argv += ["sh", "-ec", script]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"
    return proc


def tree_digest(path: str) -> List[Tuple[str, float, int]]:
    out = []
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out.append((os.path.join(root, f), st.st_mtime, st.st_size))
    return sorted(out)


def run_firewalld(ns: str, d: Path, commands: str) -> None:
    """firewalld itself, in namespace `ns` with its own D-Bus, /run and /etc/firewalld; it loads
    its ruleset, runs `commands` (firewall-cmd ...), and exits leaving the rules in place."""
    need("firewalld", "firewall-cmd", "dbus-daemon")
    etc = d / "etc-firewalld"
    shutil.copytree("/etc/firewalld", etc)
    conf = etc / "firewalld.conf"
    text = conf.read_text()
    for key, value in (("CleanupOnExit", "no"), ("DefaultZone", "public"), ("FirewallBackend", "nftables")):
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}=")]
        text = "\n".join(lines + [f"{key}={value}"]) + "\n"
    conf.write_text(text)
    (d / "bus.conf").write_text(BUS_CONF)
    mounts = (f"mount -t tmpfs tmpfs /run\nmkdir -p /run/dbus /run/firewalld\n"
              f"mount --bind /bin/true $(command -v modprobe || echo /sbin/modprobe) 2>/dev/null || true\n"
              f"mount --bind {etc} /etc/firewalld\n")
    script = f"""
        dbus-daemon --config-file={d}/bus.conf --fork --print-pid > {d}/dbus.pid
        firewalld --nofork --nopid --log-file {d}/firewalld.log &
        echo $! > {d}/firewalld.pid
        i=0; until firewall-cmd --state >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || exit 3; sleep 0.2; done
        {commands}
        kill $(cat {d}/firewalld.pid); wait $(cat {d}/firewalld.pid) || true
        kill $(cat {d}/dbus.pid)
    """
    sh_in(ns, script, private_mounts=mounts)


def ufw_mounts(d: Path) -> str:
    """Mount commands giving ufw its own /etc/ufw, /lib/ufw and /etc/default/ufw (copies of the
    package's defaults, with deny incoming / allow outgoing)."""
    need("ufw")
    etc, lib = d / "etc-ufw", d / "lib-ufw"
    shutil.copytree("/etc/ufw/applications.d", etc / "applications.d")
    for name in ("before.rules", "before6.rules", "after.rules", "after6.rules", "user.rules", "user6.rules"):
        shutil.copy(f"/usr/share/ufw/iptables/{name}", etc / name)
    shutil.copy("/usr/share/ufw/ufw.conf", etc / "ufw.conf")
    for name in ("before.init", "after.init"):
        if os.path.exists(f"/usr/share/ufw/{name}"):
            shutil.copy(f"/usr/share/ufw/{name}", etc / name)
    (etc / "sysctl.conf").write_text("")  # ufw applies it with sysctl -p: nothing for the test
    shutil.copytree("/lib/ufw", lib)
    default = d / "default-ufw"
    default.write_text(textwrap.dedent("""\
        IPV6=yes
        DEFAULT_INPUT_POLICY="DROP"
        DEFAULT_OUTPUT_POLICY="ACCEPT"
        DEFAULT_FORWARD_POLICY="DROP"
        DEFAULT_APPLICATION_POLICY="SKIP"
        MANAGE_BUILTINS=no
        IPT_SYSCTL=/etc/ufw/sysctl.conf
        IPT_MODULES=""
        """))
    return (f"mount -t tmpfs tmpfs /run\n"
            f"mount --bind /bin/true $(command -v modprobe || echo /sbin/modprobe) 2>/dev/null || true\n"
            f"mount --bind {etc} /etc/ufw\nmount --bind {lib} /lib/ufw\nmount --bind {default} /etc/default/ufw\n")


def run_ufw(ns: str, d: Path, commands: str) -> None:
    """ufw itself in namespace `ns`, on private copies of its configuration."""
    sh_in(ns, commands, private_mounts=ufw_mounts(d))
