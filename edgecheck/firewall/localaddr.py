"""Which local interface carries an address, and which source address/interface the kernel would
use towards a destination: what the synthetic packet needs for iifname/oifname matches.

`route_to` uses connect(2) on a UDP socket: the kernel picks the route and source address without
sending anything (no datagram is written).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Tuple

import psutil


def interface_of(address: str) -> Optional[str]:
    """The interface holding `address`, or for a non-local address the interface whose subnet
    contains it; None when neither."""
    try:
        target = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    best: Optional[Tuple[int, str]] = None
    for name, addrs in psutil.net_if_addrs().items():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.address:
                continue
            try:
                ip = ipaddress.ip_address(a.address.split("%")[0])
            except ValueError:
                continue
            if ip == target:
                return name
            if a.netmask and ip.version == target.version:
                try:
                    net = ipaddress.ip_network(f"{ip}/{a.netmask}", strict=False)
                except ValueError:
                    continue
                if target in net and (best is None or net.prefixlen > best[0]):
                    best = (net.prefixlen, name)
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
