"""This host's packet filter as one run sees it: read once (a RunFacts fact), then evaluated for
each check that needs it — inbound ports from their sources, outbound probes that failed.

The I/O is the read (reader.read_ruleset) and this host's addresses and routes (localaddr);
evaluation is the pure evaluator, with results cached per packet so concurrent checks that ask
the same question pay once.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from edgecheck.firewall.evaluate import Evaluation, evaluate
from edgecheck.firewall.localaddr import LocalNet, default_routes, local_networks, route_to
from edgecheck.firewall.manager import Manager, detect_manager
from edgecheck.firewall.reader import ReadResult, Unreadable, read_ruleset
from edgecheck.firewall.ruleset import Packet, Ruleset
from edgecheck.firewall.sources import CidrVerdict, SourceVerdict, evaluate_sources, overall_status
from edgecheck.records import record


@record(frozen=True)
class InboundView:
    """An inbound port evaluated from its sources, and where the synthetic packets arrived."""

    sources: SourceVerdict
    node: Optional[LocalNet]  # the node address the packets were sent to
    skipped: Tuple[str, ...] = ()  # sources of an address family this host has no address in
    ms: int = 0


class HostFilter:
    """The ruleset read once per run and this host's addressing, answering per-check questions."""

    def __init__(self, read: ReadResult, networks: Sequence[LocalNet], defaults: Mapping[str, str],
                 distro_family: str = "", read_ms: int = 0) -> None:
        self.read, self.networks, self.defaults = read, list(networks), dict(defaults)
        self.distro_family, self.read_ms = distro_family, read_ms
        self._outbound: Dict[Tuple[str, str, int], Optional[Evaluation]] = {}
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        return self.read.ok

    @property
    def unreadable(self) -> Optional[Unreadable]:
        return self.read.unreadable

    @property
    def ruleset(self) -> Ruleset:
        assert self.read.ruleset is not None, "check .ok first"
        return self.read.ruleset

    @property
    def rules(self) -> int:
        return self.read.ruleset.rule_count() if self.read.ruleset is not None else 0

    # -- this host's addressing -----------------------------------------------------------------
    def node(self, family: str) -> Optional[LocalNet]:
        """The node's address of this family: the one on the default route's interface first."""
        same = [n for n in self.networks if n.family == family]
        preferred = [n for n in same if n.interface == self.defaults.get(family)]
        found = preferred or same
        return found[0] if found else None

    def families(self) -> List[str]:
        return [f for f in ("ipv4", "ipv6") if self.node(f) is not None]

    def subnets(self) -> List[str]:
        return list(dict.fromkeys(n.network for n in self.networks))

    def _arrives_on(self, cidr: str, node: LocalNet) -> str:
        """The interface a packet from `cidr` arrives on: the one holding that subnet, else the
        interface of the node's (default-route) address."""
        first = ipaddress.ip_network(cidr, strict=False).network_address
        for n in self.networks:
            net = ipaddress.ip_network(n.network)
            if net.version == first.version and first in net and net.prefixlen > 0:
                return n.interface
        return node.interface

    # -- evaluation ---------------------------------------------------------------------------
    def inbound(self, protocol: str, port: int, cidrs: Sequence[str], deadline: Optional[float] = None) -> InboundView:
        """Can a new connection (datagram) from each CIDR reach `port` on the node's address?"""
        started = time.monotonic()
        groups: Dict[Tuple[str, str], List[str]] = {}
        skipped: List[str] = []
        shown: Optional[LocalNet] = None
        for cidr in cidrs:
            family = "ipv6" if ":" in cidr else "ipv4"
            node = self.node(family)
            if node is None:
                skipped.append(cidr)
                continue
            shown = shown or node
            groups.setdefault((self._arrives_on(cidr, node), node.address), []).append(cidr)
        per: List[CidrVerdict] = []
        for (iface, daddr), group in groups.items():
            per.extend(evaluate_sources(self.ruleset, group, protocol, port, daddr, iface, deadline=deadline).cidrs)
        ms = int((time.monotonic() - started) * 1000)
        return InboundView(SourceVerdict(overall_status(per), tuple(per)), shown, tuple(skipped), ms)

    def outbound(self, protocol: str, daddr: str, port: int) -> Optional[Evaluation]:
        """What the filter does with a new connection (datagram) from this host to daddr:port;
        None when the kernel has no route there (the filter never sees such a packet)."""
        key = (protocol, daddr, port)
        with self._lock:
            if key in self._outbound:
                return self._outbound[key]
        saddr, oif = route_to(daddr.split("%")[0])
        ev = None
        if saddr is not None:
            ev = evaluate(self.ruleset, Packet("out", protocol, saddr, daddr, port, oifname=oif or ""))
        with self._lock:
            self._outbound[key] = ev
        return ev

    def manager(self, ev: Optional[Evaluation]) -> Manager:
        return detect_manager(self.ruleset, ev)


def read_host_filter(timeout: float, distro_family: str = "") -> HostFilter:
    """Read the live ruleset and this host's addresses (never raises for an unreadable filter)."""
    started = time.monotonic()
    read = read_ruleset(timeout=timeout)
    ms = int((time.monotonic() - started) * 1000)
    networks, defaults = (local_networks(), default_routes()) if read.ok else ([], {})
    return HostFilter(read, networks, defaults, distro_family, ms)
