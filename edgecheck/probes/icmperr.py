"""Who stopped an outbound probe: this host's filter, a firewall elsewhere, or the network.

Linux reports ICMP errors for a socket with IP_RECVERR / IPV6_RECVERR set on its error queue
(recvmsg(MSG_ERRQUEUE)) as a `struct sock_extended_err` followed by the offender's address
(SO_EE_OFFENDER): the host that sent the ICMP error. See ip(7) "IP_RECVERR", ipv6(7), and
include/uapi/linux/errqueue.h. TCP queues them too while connecting (tcp_v4_err -> ip_icmp_error
in SYN_SENT), so one mechanism serves the TCP and UDP probes.

Classification (pure):
- EPERM/EACCES from connect/send: this host's own OUTPUT filter dropped the packet as it was sent
  (nf_hook returns -EPERM to the sender on NF_DROP).
- An ICMP error whose offender is one of this host's own addresses: generated here, i.e. a REJECT
  rule in this host's filter.
- ICMP "administratively prohibited" (type 3 code 9/10/13, ICMPv6 type 1 code 1) from another
  address: a firewall at that address rejects the traffic.
- Other ICMP unreachables: the network (no route, host down, port closed).
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import socket
import struct
from typing import Callable, Collection, List, Optional, Sequence, Set, Tuple

from edgecheck.evidence import IcmpError
from edgecheck.model import Reason
from edgecheck.records import record

SOL_IP, SOL_IPV6 = 0, 41
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_NONE, SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 0, 1, 2, 3
_EE = struct.Struct("=IBBBBII")  # ee_errno, ee_origin, ee_type, ee_code, ee_pad, ee_info, ee_data

# Kinds of attribution.
HOST_FILTER_EPERM = "host-filter-eperm"
HOST_FILTER_REJECT = "host-filter-reject"
REMOTE_FILTER = "remote-admin-prohibited"
ICMP_UNREACHABLE = "icmp-unreachable"
NONE = "none"

ICMP_ADMIN_PROHIBITED = {(3, 9), (3, 10), (3, 13)}  # net, host, communication administratively prohibited
ICMP6_ADMIN_PROHIBITED = {(1, 1)}  # RFC 4443: communication with destination administratively prohibited
ICMP_NAMES = {
    (3, 0): "net unreachable", (3, 1): "host unreachable", (3, 2): "protocol unreachable",
    (3, 3): "port unreachable", (3, 4): "fragmentation needed", (3, 9): "net administratively prohibited",
    (3, 10): "host administratively prohibited", (3, 13): "communication administratively prohibited",
}
ICMP6_NAMES = {(1, 0): "no route to destination", (1, 1): "administratively prohibited",
               (1, 3): "address unreachable", (1, 4): "port unreachable", (1, 5): "source address failed policy",
               (1, 6): "reject route to destination", (2, 0): "packet too big"}


@record(frozen=True)
class ExtendedError:
    errno: int
    origin: int  # SO_EE_ORIGIN_*
    type: int
    code: int
    info: int
    data: int
    offender: Optional[str]

    @property
    def icmp_name(self) -> str:
        names = ICMP6_NAMES if self.origin == SO_EE_ORIGIN_ICMP6 else ICMP_NAMES
        proto = "ICMPv6" if self.origin == SO_EE_ORIGIN_ICMP6 else "ICMP"
        return f"{proto} {names.get((self.type, self.code), f'type {self.type} code {self.code}')}"

    @property
    def admin_prohibited(self) -> bool:
        if self.origin == SO_EE_ORIGIN_ICMP:
            return (self.type, self.code) in ICMP_ADMIN_PROHIBITED
        if self.origin == SO_EE_ORIGIN_ICMP6:
            return (self.type, self.code) in ICMP6_ADMIN_PROHIBITED
        return False


@record(frozen=True)
class Attribution:
    kind: str  # host-filter-eperm | host-filter-reject | remote-admin-prohibited | icmp-unreachable | none
    message: str
    offender: Optional[str] = None
    icmp: Optional[Tuple[int, int]] = None  # (type, code)
    errno: Optional[int] = None

    @property
    def host_firewall(self) -> bool:
        return self.kind in (HOST_FILTER_EPERM, HOST_FILTER_REJECT)


def parse_extended_err(level: int, ctype: int, data: bytes) -> Optional[ExtendedError]:
    """One IP_RECVERR/IPV6_RECVERR control message -> ExtendedError (None for other messages)."""
    if not ((level == SOL_IP and ctype == IP_RECVERR) or (level == SOL_IPV6 and ctype == IPV6_RECVERR)):
        return None
    if len(data) < _EE.size:
        return None
    ee_errno, origin, typ, code, _pad, info, edata = _EE.unpack_from(data)
    return ExtendedError(ee_errno, origin, typ, code, info, edata, _offender(data[_EE.size:]))


def _offender(sa: bytes) -> Optional[str]:
    if len(sa) < 2:
        return None
    fam = struct.unpack_from("=H", sa)[0]
    if fam == socket.AF_INET and len(sa) >= 8:
        return socket.inet_ntop(socket.AF_INET, sa[4:8])
    if fam == socket.AF_INET6 and len(sa) >= 24:
        addr = ipaddress.IPv6Address(sa[8:24])
        return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)
    return None


def classify(err: Optional[int], errors: Sequence[ExtendedError], local_addresses: Collection[str]) -> Attribution:
    """Decide who stopped the probe from the errno it got and the queued ICMP errors."""
    if err in (errno_mod.EPERM, errno_mod.EACCES):
        return Attribution(HOST_FILTER_EPERM,
                           f"this host's packet filter dropped the packet as it was sent "
                           f"({errno_mod.errorcode.get(err, err)} from the kernel)", errno=err)
    locals_ = {_norm(a) for a in local_addresses}
    for e in errors:
        if e.origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            continue
        off = _norm(e.offender) if e.offender else None
        if off is not None and (off in locals_ or _is_loopback(off)):
            return Attribution(HOST_FILTER_REJECT,
                               f"this host's packet filter rejected the packet ({e.icmp_name} generated by "
                               f"this host, {e.offender})", e.offender, (e.type, e.code), err)
        if e.admin_prohibited:
            return Attribution(REMOTE_FILTER,
                               f"a firewall at {e.offender} rejects this traffic ({e.icmp_name})",
                               e.offender, (e.type, e.code), err)
        return Attribution(ICMP_UNREACHABLE, f"{e.icmp_name} from {e.offender}", e.offender, (e.type, e.code), err)
    return Attribution(NONE, "no ICMP error was reported", errno=err)


def attribute_failure(err: Optional[int], errors: Sequence[ExtendedError],
                      local: Callable[[], Collection[str]]) -> Tuple[Optional[Reason], str, Optional[IcmpError]]:
    """What a failed probe's errno and queued ICMP errors say about who stopped it: the reason when
    it was this host's own filter (None: the errno's own reason stands), words to add to the error,
    and the ICMP error as evidence. `local` lists this host's addresses (asked only when needed)."""
    if err not in (errno_mod.EPERM, errno_mod.EACCES) and not errors:
        return None, "", None
    att = classify(err, errors, local() if errors else ())
    first = next((e for e in errors if e.origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6)), None)
    icmp = None
    if first is not None:
        icmp = IcmpError(first.offender or "", first.icmp_name, first.type, first.code, first.admin_prohibited,
                         att.kind == HOST_FILTER_REJECT)
    if att.kind == HOST_FILTER_EPERM:
        return Reason.HOST_FIREWALL, "", icmp  # describe_errno(EPERM) says it already
    if att.host_firewall:
        return Reason.HOST_FIREWALL, att.message, icmp
    if att.kind in (REMOTE_FILTER, ICMP_UNREACHABLE):
        return None, att.message, icmp
    return None, "", icmp


def _norm(a: str) -> str:
    try:
        return str(ipaddress.ip_address(a.split("%")[0]))
    except ValueError:
        return a


def _is_loopback(a: str) -> bool:
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:
        return False


# --- I/O ------------------------------------------------------------------------------------

def enable_recverr(sock: socket.socket) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(SOL_IP, IP_RECVERR, 1)


def read_error_queue(sock: socket.socket, max_items: int = 8) -> List[ExtendedError]:
    """Drain the socket's error queue without blocking."""
    out: List[ExtendedError] = []
    for _ in range(max_items):
        try:
            _, anc, _, _ = sock.recvmsg(512, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        for level, ctype, data in anc:
            e = parse_extended_err(level, ctype, data)
            if e is not None:
                out.append(e)
    return out


def local_addresses() -> Set[str]:
    from edgecheck.host.ifaddrs import known_addresses  # only when a refusal must be attributed

    return {a.address for a in known_addresses()}  # none known: no refusal is called this host's own
