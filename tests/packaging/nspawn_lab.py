"""The integration lab (tests/lab) with a booted container as its "edge node".

The container starts with --private-network (only `lo`). Its network namespace is then named
with `ip netns attach` and takes the place of the lab's node namespace: the lab's veth is created
inside it with its peer moved straight into the lab's cloud namespace, as in tests/lab/topology.py.
So the agent inside the container reaches the lab's DNS, HTTPS, API server and NTP servers, and
nothing else: no interface, route or firewall rule of the root namespace is involved.
"""

from __future__ import annotations

import shutil
from typing import Sequence

from tests.lab.lab import Lab
from tests.lab.topology import Netns, Topology, sh

from tests.packaging.nspawn_helpers import Container


class ContainerNetns(Netns):
    """The container's own network namespace under a lab name (a bind mount in /run/netns)."""

    def __init__(self, name: str, leader_pid: int) -> None:
        super().__init__(name)
        self.leader_pid = leader_pid

    def create(self) -> None:
        sh(["ip", "netns", "attach", self.name, str(self.leader_pid)])
        self.ip("link", "set", "lo", "up")

    def delete(self) -> None:
        """Only the name goes: the namespace and its processes belong to the container."""
        if self.exists():
            sh(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(self.etc_dir, ignore_errors=True)


class ContainerTopology(Topology):
    def __init__(self, container: Container) -> None:
        super().__init__()
        assert container.leader is not None
        self.node = ContainerNetns(self.node.name, container.leader)


def start_lab(container: Container, regions: Sequence[str], servers: Sequence[str]) -> Lab:
    """A lab whose node is `container`; the container's resolver points at the lab's DNS."""
    lab = Lab(regions=tuple(regions), topology=ContainerTopology(container))
    lab.start(servers=list(servers))  # tears itself down if a step fails
    try:
        # `ip netns exec` would bind-mount /etc/netns/<node>/resolv.conf; processes inside the
        # container read their own /etc/resolv.conf instead.
        container.write("/etc/resolv.conf", lab.topology.node.etc_dir.joinpath("resolv.conf").read_text())
        container.write("/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 edge-node\n")
    except BaseException:
        lab.stop()
        raise
    return lab
