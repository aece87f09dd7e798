"""A routed path with a narrow link in the middle, for path-MTU tests (all in test namespaces).

    [node] --1500-- [cpe] ==1280== [isp] --1500-- [server]
    10.81.1.2       .1  10.81.2.1  .2  10.81.3.1  10.81.3.2; endpoint addresses 10.81.0.X/32 on lo
    fd81:1::2       ::1 fd81:2::1 ::2  fd81:3::1  fd81:3::2; endpoints fd81::X/128 on lo

Every link has the same MTU on both ends (as real links do); only the cpe-isp link is narrow, so
neither end host knows the path is smaller than its own interface. Routers that cannot forward a
DF packet send ICMP "fragmentation needed" / "packet too big" from their OUTPUT chain: a rule
there that drops it toward one endpoint address makes that endpoint's path a black hole (the
classic firewall that filters all ICMP), while the other endpoint addresses heal by PMTUD.
veth pairs are created inside one namespace with the peer moved straight into the other, so
nothing appears in the root namespace; iptables only runs under `ip netns exec`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, Sequence

from tests.probes.netns import Netns

NARROW_MTU = 1280  # IPv6's minimum link MTU (RFC 8200), so the same link carries both families

NODE4, CPE4_NODE, CPE4_ISP, ISP4_CPE, ISP4_SRV, SRV4 = (
    "10.81.1.2", "10.81.1.1", "10.81.2.1", "10.81.2.2", "10.81.3.1", "10.81.3.2")
NODE6, CPE6_NODE, CPE6_ISP, ISP6_CPE, ISP6_SRV, SRV6 = (
    "fd81:1::2", "fd81:1::1", "fd81:2::1", "fd81:2::2", "fd81:3::1", "fd81:3::2")


def endpoint4(i: int) -> str:
    return f"10.81.0.{i}"


def endpoint6(i: int) -> str:
    return f"fd81::{i:x}"


class PathLab:
    def __init__(self) -> None:
        self.namespaces: List[Netns] = []
        try:
            self.node, self.cpe, self.isp, self.server = (self._ns() for _ in range(4))
            self._wire()
        except Exception:
            self.close()
            raise

    def _ns(self) -> Netns:
        ns = Netns()
        self.namespaces.append(ns)
        return ns

    @staticmethod
    def _link(a: Netns, b: Netns, a4: str, b4: str, a6: str, b6: str, mtu: int) -> None:
        a.link(b, f"{a4}/24", f"{b4}/24")
        # Netns.link names the pair ecv<tag>a/b; find them back by their IPv4 address.
        for ns, v4, v6 in ((a, a4, a6), (b, b4, b6)):
            dev = _dev_with(ns, v4)
            ns.exec("ip", "link", "set", dev, "mtu", str(mtu))
            ns.exec("ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")

    def _wire(self) -> None:
        for ns in self.namespaces:
            ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0")
            ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
        self._link(self.node, self.cpe, NODE4, CPE4_NODE, NODE6, CPE6_NODE, 1500)
        self._link(self.cpe, self.isp, CPE4_ISP, ISP4_CPE, CPE6_ISP, ISP6_CPE, NARROW_MTU)
        self._link(self.isp, self.server, ISP4_SRV, SRV4, ISP6_SRV, SRV6, 1500)
        for router in (self.cpe, self.isp):
            router.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            router.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        self.node.exec("ip", "route", "add", "default", "via", CPE4_NODE)
        self.node.exec("ip", "-6", "route", "add", "default", "via", CPE6_NODE)
        self.cpe.exec("ip", "route", "add", "default", "via", ISP4_CPE)
        self.cpe.exec("ip", "-6", "route", "add", "default", "via", ISP6_CPE)
        self.isp.exec("ip", "route", "add", "10.81.1.0/24", "via", CPE4_ISP)
        self.isp.exec("ip", "route", "add", "10.81.0.0/24", "via", SRV4)
        self.isp.exec("ip", "-6", "route", "add", "fd81:1::/64", "via", CPE6_ISP)
        self.isp.exec("ip", "-6", "route", "add", "fd81::/64", "via", SRV6)
        self.server.exec("ip", "route", "add", "default", "via", ISP4_SRV)
        self.server.exec("ip", "-6", "route", "add", "default", "via", ISP6_SRV)

    def add_endpoint(self, i: int) -> tuple:
        """An endpoint address pair on the server's loopback."""
        v4, v6 = endpoint4(i), endpoint6(i)
        self.server.exec("ip", "addr", "add", f"{v4}/32", "dev", "lo")
        self.server.exec("ip", "-6", "addr", "add", f"{v6}/128", "dev", "lo", "nodad")
        return v4, v6

    def black_hole(self, *endpoints: str) -> None:
        """The isp router's own ICMP too-big toward these endpoint addresses is dropped."""
        for ep in endpoints:
            if ":" in ep:
                self.isp.exec("ip6tables", "-w", "5", "-A", "OUTPUT", "-p", "icmpv6", "--icmpv6-type",
                              "packet-too-big", "-d", ep, "-j", "DROP")
            else:
                self.isp.exec("iptables", "-w", "5", "-A", "OUTPUT", "-p", "icmp", "--icmp-type",
                              "fragmentation-needed", "-d", ep, "-j", "DROP")

    @contextlib.contextmanager
    def silent_cpe(self) -> Iterator[None]:
        """The cpe router's own ICMP too-big toward the node is dropped too (both directions dark)."""
        rules = [("iptables", "-p", "icmp", "--icmp-type", "fragmentation-needed"),
                 ("ip6tables", "-p", "icmpv6", "--icmpv6-type", "packet-too-big")]
        for tool, *spec in rules:
            self.cpe.exec(tool, "-w", "5", "-I", "OUTPUT", *spec, "-j", "DROP")
        try:
            yield
        finally:
            for tool, *spec in rules:
                self.cpe.exec(tool, "-w", "5", "-D", "OUTPUT", *spec, "-j", "DROP")

    def forget_pmtu(self) -> None:
        """Drop what the end hosts learned from ICMP too-big: the server keeps a path MTU per
        destination (the node), whichever of its addresses taught it, so a healthy path's lesson
        would heal the black hole too."""
        for ns in (self.server, self.node):
            ns.exec("ip", "route", "flush", "cache")
            ns.exec("ip", "-6", "route", "flush", "cache")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            ns.close()


def _dev_with(ns: Netns, address: str) -> str:
    import json
    import subprocess
    out = subprocess.run(["ip", "-n", ns.name, "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for link in json.loads(out):
        for a in link.get("addr_info", []):
            if a.get("local") == address:
                return link["ifname"]
    raise RuntimeError(f"no device with {address} in {ns.name}")


def addresses(*pairs: Sequence[str]) -> List[str]:
    return [a for p in pairs for a in p]
