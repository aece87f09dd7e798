"""The node's own packet filter and kernel settings in the lab (issue 11): rules loaded into the
node namespace (iptables-nft, native nft, firewalld, ufw), sysctls of the node namespace, extra
source addresses in the cloud, and the kernel as the oracle: a real packet per case.

Everything runs under `ip netns exec` in the lab's own namespaces and restores itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from tests.firewall.managers import run_firewalld, run_ufw, sh_in
from tests.lab.lab import Lab
from tests.lab.plan import REPO, edgecheck_env
from tests.lab.topology import CLOUD_IF, Netns

# (protocol, destination, port, source address or None) -> accept | drop | reject | blocked
Case = Tuple[str, str, int, Optional[str]]

_ORACLE = """
import json, sys
from tests.firewall.fwlab import kernel_verdict
print(json.dumps([kernel_verdict(p, d, port, s, 1.0) for p, d, port, s in json.loads(sys.argv[1])]))
"""


def oracle(ns: Netns, cases: Sequence[Case]) -> List[str]:
    """What the kernel does with a real new connection/datagram per case, sent from `ns`."""
    proc = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", _ORACLE, json.dumps(list(cases))],
                          capture_output=True, text=True, cwd=REPO, env=edgecheck_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def passes_filter(kernel: str) -> bool:
    """The packet got through the filter: a connection, or a reset/ICMP error from the far end."""
    return kernel in ("accept", "reject")


@contextmanager
def node_nft(lab: Lab, ruleset: str) -> Iterator[None]:
    """A native nftables ruleset (one or more tables) in the node namespace for the block."""
    with tempfile.NamedTemporaryFile("w", suffix=".nft", dir=lab.workdir, delete=False) as f:
        f.write(ruleset)
    tables = [line.split("{")[0].split()[1:3] for line in ruleset.splitlines() if line.startswith("table ")]
    sh_in(lab.topology.node.name, f"nft -f {f.name}")
    try:
        yield
    finally:
        for family, name in tables:
            subprocess.run(["ip", "netns", "exec", lab.topology.node.name, "nft", "delete", "table", family, name],
                           capture_output=True, timeout=30)


@contextmanager
def node_sysctls(lab: Lab, values: Dict[str, str]) -> Iterator[None]:
    """Per-namespace sysctls of the node (never the root namespace's), restored afterwards."""
    node = lab.topology.node
    before = {k: node.run(["sysctl", "-n", k]).stdout.strip() for k in values}
    for key, value in values.items():
        node.sysctl(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            node.sysctl(key, value)


@contextmanager
def cloud_sources(lab: Lab, on_link: Sequence[str] = (), routed: Sequence[str] = ()) -> Iterator[None]:
    """Extra source addresses in the cloud: on its veth (inside the node's subnet) or on its
    loopback (beyond it; the node reaches them through its default route)."""
    cloud = lab.topology.cloud
    added = [(a, CLOUD_IF) for a in on_link] + [(a, "lo") for a in routed]
    for address, dev in added:
        cloud.ip("addr", "add", f"{address}/32", "dev", dev)
    try:
        yield
    finally:
        for address, dev in added:
            cloud.ip("addr", "del", f"{address}/32", "dev", dev, check=False)


@contextmanager
def flushed_after(lab: Lab) -> Iterator[None]:
    """A firewall manager's whole ruleset is removed from the node namespace afterwards."""
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", lab.topology.node.name, "nft", "flush", "ruleset"],
                       capture_output=True, timeout=30)


@contextmanager
def firewalld(lab: Lab, commands: str = "true") -> Iterator[None]:
    """Rules a real firewalld (default zone public, nftables backend) loads into the node."""
    with flushed_after(lab), tempfile.TemporaryDirectory(dir=lab.workdir) as d:
        run_firewalld(lab.topology.node.name, Path(d), commands)
        yield


@contextmanager
def ufw(lab: Lab, commands: str) -> Iterator[None]:
    """Rules a real ufw loads into the node (on private copies of its configuration)."""
    with flushed_after(lab), tempfile.TemporaryDirectory(dir=lab.workdir) as d:
        run_ufw(lab.topology.node.name, Path(d), commands)
        yield

