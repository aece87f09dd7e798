"""Two network namespaces joined by one veth pair: an isolated "edge node" and a "cloud".

    [node ns]  veth-node 10.199.0.2/24 --- veth-cloud 10.199.0.1/24  [cloud ns]
               default via 10.199.0.1                                 lo: every endpoint address

The node's only route is the veth; the cloud has no link to the root namespace and does not
forward, so no packet a test sends can leave the lab. Nothing here touches the root namespace's
interfaces, routes or firewall: the veth pair is created inside the node namespace with its peer
placed straight into the cloud namespace, and iptables only ever runs under `ip netns exec`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

PREFIX = "eclab-"
NETNS_ETC = Path("/etc/netns")

NODE_IF = "veth-node"
CLOUD_IF = "veth-cloud"
NODE_ADDR = "10.199.0.2"
CLOUD_ADDR = "10.199.0.1"  # lab DNS server (dnsmasq)
SUBNET_LEN = 24


class LabError(RuntimeError):
    """The lab could not be built (a prerequisite or a server failed)."""


SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def which(name: str) -> Optional[str]:
    """Absolute path of a tool, also looking in the sbin dirs (a CI PATH may lack them)."""
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def tool(name: str) -> str:
    return which(name) or name


def sh(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a short command, capture its output; raise LabError with stderr on failure."""
    argv = [tool(argv[0]), *argv[1:]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} -> rc={proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def new_suffix() -> str:
    """Short random suffix so concurrent lab sessions never share a namespace name."""
    return secrets.token_hex(3)


class Netns:
    """One network namespace this lab created (and only such: delete() refuses foreign names)."""

    def __init__(self, name: str) -> None:
        if not name.startswith(PREFIX):
            raise ValueError(f"lab namespaces must start with {PREFIX!r}: {name}")
        self.name = name

    @property
    def etc_dir(self) -> Path:
        """/etc/netns/<ns>: `ip netns exec` bind-mounts each file here over /etc/<file>."""
        return NETNS_ETC / self.name

    def create(self) -> None:
        sh(["ip", "netns", "add", self.name])
        self.ip("link", "set", "lo", "up")

    def exists(self) -> bool:
        return (Path("/run/netns") / self.name).exists()

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh(["ip", "-n", self.name, *args], check=check)

    def exec_argv(self, argv: Sequence[str]) -> List[str]:
        """argv that runs `argv` inside this namespace. `ip netns exec` execs the command, so the
        pid Popen returns is the daemon's own pid (what teardown kills)."""
        return [tool("ip"), "netns", "exec", self.name, tool(argv[0]), *argv[1:]]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return sh(self.exec_argv(argv), check=check, timeout=timeout)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # Always scoped to this namespace: the root namespace's firewall is never touched.
        return self.run(["iptables", "-w", "5", *args], check=check)

    def write_etc(self, filename: str, content: str) -> Path:
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        path = self.etc_dir / filename
        tmp = path.with_name(f".{filename}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
        return path

    def pids(self) -> List[int]:
        """Every process whose network namespace is this one (all of them are the lab's)."""
        proc = sh(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in proc.stdout.split() if p.strip().isdigit()]

    def delete(self) -> None:
        """Kill anything still inside, delete the namespace and its /etc/netns dir. Idempotent."""
        if self.exists():
            kill_pids(self.pids())
            sh(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(self.etc_dir, ignore_errors=True)


def kill_pids(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM the given pids, then SIGKILL whatever is still alive after `grace` seconds."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (a reaped-later child of ours counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class Topology:
    """The node and cloud namespaces and the veth between them."""

    def __init__(self, suffix: Optional[str] = None) -> None:
        self.suffix = suffix or new_suffix()
        self.node = Netns(f"{PREFIX}{self.suffix}-n")
        self.cloud = Netns(f"{PREFIX}{self.suffix}-c")
        self.cloud_addresses: List[str] = []

    @property
    def namespaces(self) -> List[Netns]:
        return [self.node, self.cloud]

    def build(self) -> None:
        for ns in self.namespaces:
            ns.create()
        # Created inside the node ns, peer moved straight into the cloud ns: the pair never
        # appears in the root namespace.
        self.node.ip("link", "add", NODE_IF, "type", "veth", "peer", "name", CLOUD_IF, "netns", self.cloud.name)
        self.node.ip("addr", "add", f"{NODE_ADDR}/{SUBNET_LEN}", "dev", NODE_IF)
        self.cloud.ip("addr", "add", f"{CLOUD_ADDR}/{SUBNET_LEN}", "dev", CLOUD_IF)
        self.node.ip("link", "set", NODE_IF, "up")
        self.cloud.ip("link", "set", CLOUD_IF, "up")
        self.node.ip("route", "add", "default", "via", CLOUD_ADDR)
        for ns in self.namespaces:
            # IPv4 only: the lab's DNS serves A records; no stray IPv6 autoconf traffic.
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        # The cloud owns the endpoint addresses itself; it must never route anything onwards.
        self.cloud.sysctl("net.ipv4.ip_forward", "0")
        # The node as the installer leaves it (system:net.ipv4.ip_forward); nothing is behind it.
        self.node.sysctl("net.ipv4.ip_forward", "1")
        # Own hosts file so the root /etc/hosts never answers a lab name.
        for ns in self.namespaces:
            ns.write_etc("hosts", "127.0.0.1 localhost\n")

    def add_cloud_address(self, address: str) -> None:
        """An endpoint address: a /32 on the cloud's loopback, reached via the node's default route."""
        if address in self.cloud_addresses:
            return
        self.cloud.ip("addr", "add", f"{address}/32", "dev", "lo")
        self.cloud_addresses.append(address)

    def set_node_resolver(self, nameserver: str) -> None:
        # `ip netns exec` bind-mounts this file over /etc/resolv.conf at each exec, so a rewrite
        # takes effect for the next command started in the node namespace.
        self.node.write_etc("resolv.conf", f"nameserver {nameserver}\noptions timeout:1 attempts:1\n")

    def set_cloud_resolver(self, nameserver: str) -> None:
        # For the proxy (it resolves the names the node asks it to CONNECT to).
        self.cloud.write_etc("resolv.conf", f"nameserver {nameserver}\n")

    def destroy(self) -> None:
        for ns in self.namespaces:
            ns.delete()

    @contextmanager
    def iptables_rules(self, ns: Netns, rules: Sequence[Sequence[str]]) -> Iterator[None]:
        """Insert rules (each: chain + match/target args) for the duration of the block."""
        added = []
        try:
            for rule in rules:
                chain, *spec = rule
                ns.iptables("-I", chain, *spec)
                added.append((chain, spec))
            yield
        finally:
            for chain, spec in reversed(added):
                ns.iptables("-D", chain, *spec, check=False)


def leftovers(suffix: str) -> List[str]:
    """What a lab with this suffix left behind: namespaces and /etc/netns dirs."""
    found = []
    proc = sh(["ip", "netns", "list"], check=False)
    for line in proc.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}{suffix}"):
            found.append(f"netns {name}")
    if NETNS_ETC.is_dir():
        for entry in NETNS_ETC.iterdir():
            if entry.name.startswith(f"{PREFIX}{suffix}"):
                found.append(f"dir {entry}")
    return found
