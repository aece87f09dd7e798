"""Path MTU toward one address as this host knows it, without sending a packet: the egress
interface and its MTU, the gateway, and the kernel's current path-MTU estimate (IP_MTU / IPV6_MTU
on a connected UDP socket: the route MTU, or a smaller value an ICMP too-big taught it).

No DF probes. In a black hole proper the ICMP too-big is filtered, so a DF datagram learns nothing
the small-MSS retry (pmtu.py) has not proven against the real service; and where a router's ICMP
does reach this host, each one installs a path-MTU exception in this host's routing cache (for
net.ipv4.route.mtu_expires, 10 minutes by default): the agent would change the path it measures
and the next timer runs would pass, then fail again.

Linux only (SIOCGIFMTU); sources: linux include/uapi/linux/in.h, in6.h, sockios.h; ip(7), ipv6(7).
"""

from __future__ import annotations

import fcntl
import json
import socket
import struct
import subprocess
from dataclasses import asdict
from typing import Any, Dict, Optional, Tuple

from edgecheck.host.tools import which
from edgecheck.probes.pmtu import family_of
from edgecheck.records import record

# linux/in.h and linux/in6.h: the socket module does not export these.
IP_MTU_DISCOVER, IP_MTU = 10, 14
IPV6_MTU_DISCOVER, IPV6_MTU = 23, 24
PMTUDISC_DO = 2  # same value for IPv4 and IPv6
SIOCGIFMTU = 0x8921  # linux/sockios.h


@record
class EgressRoute:
    """Where packets to address leave this host, and what the kernel knows of the path. No packet
    is sent to find this out (connecting a UDP socket only selects a route)."""

    address: str
    source: Optional[str] = None
    interface: Optional[str] = None
    interface_mtu: Optional[int] = None
    gateway: Optional[str] = None
    path_mtu: Optional[int] = None  # IP_MTU: route MTU, or a smaller one learned from ICMP
    cached_pmtu: Optional[int] = None  # `ip route get` shows "mtu N" when an ICMP taught it
    error: str = ""

    def evidence(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def _ip_route_get(address: str, timeout: float) -> Dict[str, Any]:
    ip = which("ip")
    if not ip:
        return {}
    try:
        proc = subprocess.run([ip, "-j", "route", "get", address], capture_output=True, text=True,
                              timeout=max(0.1, timeout))
        routes = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}
    return routes[0] if routes and isinstance(routes[0], dict) else {}


def parse_route_get(route: Dict[str, Any]) -> Dict[str, Any]:
    """Pure: dev, prefsrc, gateway and a cached PMTU from one `ip -j route get` entry."""
    mtu = None
    for m in route.get("metrics", []) or []:
        if isinstance(m, dict) and "mtu" in m:
            mtu = m["mtu"]
    return {"interface": route.get("dev"), "source": route.get("prefsrc"), "gateway": route.get("gateway"),
            "cached_pmtu": mtu}


def interface_mtu(name: str, family: int = socket.AF_INET) -> Optional[int]:
    """SIOCGIFMTU on a socket of the caller's own network namespace (not /sys, which shows the
    namespace sysfs was mounted in)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFMTU, struct.pack("16si", name.encode()[:15], 0))
        return struct.unpack("16si", raw)[1]
    except OSError:
        return None


def _interface_for_source(source: str) -> Optional[str]:
    from edgecheck.host.ifaddrs import known_addresses

    return next((a.interface for a in known_addresses() if a.address == source), None)


def _mtu_opts(family: int) -> Tuple[int, int, int]:
    if family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_MTU
    return socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_MTU


def kernel_path_mtu(address: str, port: int = 9) -> Optional[int]:
    """The kernel's current path-MTU estimate for address (no packet is sent)."""
    family = family_of(address)
    level, disc, mtu_opt = _mtu_opts(family)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.setsockopt(level, disc, PMTUDISC_DO)
            s.connect((address, port))
            return s.getsockopt(level, mtu_opt)
    except OSError:
        return None


def egress_route(address: str, timeout: float = 1.0) -> EgressRoute:
    out = EgressRoute(address=address)
    family = family_of(address)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((address, 9))  # selects the route; UDP sends nothing on connect
            out.source = s.getsockname()[0]
    except OSError as exc:
        out.error = f"no route: {exc.strerror or exc}"
        return out
    out.path_mtu = kernel_path_mtu(address)
    route = parse_route_get(_ip_route_get(address, timeout))
    out.interface = route["interface"] or _interface_for_source(out.source or "")
    out.gateway, out.cached_pmtu = route["gateway"], route["cached_pmtu"]
    if out.interface:
        out.interface_mtu = interface_mtu(out.interface, family)
    return out
