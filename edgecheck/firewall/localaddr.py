"""Which local interface carries an address, and which source address/interface the kernel would
use towards a destination: what the synthetic packet needs for iifname/oifname matches.

`route_to` uses connect(2) on a UDP socket: the kernel picks the route and source address without
sending anything (no datagram is written).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Dict, List, Optional, Tuple

from edgecheck.host.ifaddrs import known_addresses
from edgecheck.records import record


def interface_of(address: str) -> Optional[str]:
    """The interface holding `address`, or for a non-local address the interface whose subnet
    contains it; None when neither."""
    try:
        target = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    best: Optional[Tuple[int, str]] = None
    for a in known_addresses():
        if a.ip == target:
            return a.interface
        if a.ip.version == target.version and target in a.network and (best is None or a.prefixlen > best[0]):
            best = (a.prefixlen, a.interface)
    return best[1] if best else None


def route_to(destination: str, port: int = 9) -> Tuple[Optional[str], Optional[str]]:
    """(source address, outgoing interface) the kernel would use towards `destination`."""
    fam = socket.AF_INET6 if ":" in destination else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((destination, port))  # UDP connect: route lookup only, nothing is sent
            src = s.getsockname()[0]
    except OSError:
        return None, None
    return src, interface_of(src)


@record(frozen=True)
class LocalNet:
    """One address of this host with the subnet it sits in."""

    interface: str
    address: str
    network: str  # CIDR, e.g. "10.0.0.0/24"

    @property
    def family(self) -> str:
        return "ipv6" if ":" in self.address else "ipv4"


def local_networks() -> List[LocalNet]:
    """This host's addresses and subnets; loopback and link-local left out (nobody reaches the node
    through them)."""
    return [LocalNet(a.interface, a.address, str(a.network)) for a in known_addresses()
            if not (a.ip.is_loopback or a.ip.is_link_local)]


def parse_default_routes(route_v4: str, route_v6: str) -> Dict[str, str]:
    """{family: interface of the default route} from /proc/net/route and /proc/net/ipv6_route."""
    out: Dict[str, str] = {}
    for line in route_v4.splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and "ipv4" not in out:
            out["ipv4"] = f[0]
    for line in route_v6.splitlines():
        f = line.split()
        if len(f) >= 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo" and "ipv6" not in out:
            out["ipv6"] = f[9]
    return out


def default_routes(proc_net: Optional[str] = None) -> Dict[str, str]:
    # The calling thread's view (thread-self): /proc/net follows the process's main thread.
    if proc_net is None:
        proc_net = "/proc/thread-self/net" if os.path.isdir("/proc/thread-self/net") else "/proc/net"
    texts = []
    for name in ("route", "ipv6_route"):
        try:
            with open(os.path.join(proc_net, name)) as f:
                texts.append(f.read())
        except OSError:
            texts.append("")
    return parse_default_routes(texts[0], texts[1])
