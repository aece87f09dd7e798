"""This host's interface addresses, as getifaddrs(3) and psutil.net_if_addrs() list them, asked
of the kernel directly: one rtnetlink dump (RTM_GETADDR, rtnetlink(7)), nothing sent on a network.

Importing psutil costs about 20 ms of a run's start (issue 17), and a healthy run needs nothing
else from it. The socket belongs to the calling thread's network namespace, as psutil's does.
One difference: an IPv4 address carries its device's name ("eth0"), where getifaddrs gives its
label ("eth0:7"); iifname/oifname in a packet filter match the device.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Dict, Iterator, List, Tuple

from edgecheck.records import record

NETLINK_ROUTE = 0
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
RTATTR = struct.Struct("=HH")  # length, type


@record(frozen=True)
class IfAddress:
    interface: str
    address: str  # IPv6 link-local without its %scope
    prefixlen: int

    @property
    def ip(self) -> "ipaddress.IPv4Address | ipaddress.IPv6Address":
        return ipaddress.ip_address(self.address)

    @property
    def network(self) -> "ipaddress.IPv4Network | ipaddress.IPv6Network":
        return ipaddress.ip_network(f"{self.address}/{self.prefixlen}", strict=False)


def if_addresses(timeout: float = 2.0) -> List[IfAddress]:
    """Every IPv4 and IPv6 address of this namespace's interfaces, in the kernel's order.
    OSError when netlink is unavailable (the callers say what they could not tell)."""
    request = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), RTM_GETADDR,
                                    NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + request)
        names: Dict[int, str] = {}
        out: List[IfAddress] = []
        while True:
            for kind, payload in _messages(sock.recv(65536)):
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    raise OSError(code, f"rtnetlink RTM_GETADDR: {os.strerror(code)}")
                if kind == RTM_NEWADDR:
                    parsed = _address(payload, names)
                    if parsed is not None:
                        out.append(parsed)


def known_addresses() -> List[IfAddress]:
    """if_addresses(), or none when netlink cannot be asked (a seccomp filter): the callers then
    know no local address, which each of them can live with."""
    try:
        return if_addresses()
    except OSError:
        return []


def _messages(data: bytes) -> Iterator[Tuple[int, bytes]]:
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            return
        yield kind, data[offset + NLMSG_HEADER.size:offset + length]
        offset += (length + 3) & ~3


def _address(payload: bytes, names: Dict[int, str]) -> "IfAddress | None":
    family, prefixlen, _, _, index = IFADDRMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs: Dict[int, bytes] = {}
    offset = IFADDRMSG.size
    while offset + RTATTR.size <= len(payload):
        length, kind = RTATTR.unpack_from(payload, offset)
        if length < RTATTR.size:
            break
        attrs[kind] = payload[offset + RTATTR.size:offset + length]
        offset += (length + 3) & ~3
    # IFA_LOCAL is this end of a point-to-point IPv4 link (IFA_ADDRESS is then the peer), as
    # getifaddrs reads it; IPv6 has IFA_ADDRESS alone.
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None:
        return None
    if index not in names:
        try:
            names[index] = socket.if_indextoname(index)
        except OSError:
            names[index] = str(index)
    return IfAddress(names[index], socket.inet_ntop(family, raw), prefixlen)
