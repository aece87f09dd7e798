"""Path MTU toward one address: the egress interface, the kernel's estimate, DF probes.

What can be measured without an answering peer (egress_route, df_probe):
- the egress interface and its MTU, and the kernel's current path-MTU estimate for the address
  (IP_MTU / IPV6_MTU on a connected UDP socket: the route MTU, or a smaller value the kernel
  learned from an ICMP too-big). No packet is sent for that.
- DF datagrams (IP_PMTUDISC_PROBE: DF set, the cached estimate ignored) of a few sizes prove a
  size *too big* only when a router says so (ICMP too-big, with its next-hop MTU, read from the
  socket error queue via IP_RECVERR), and prove a size *delivered* only when the destination
  answers (a reply, or ICMP port unreachable from the host itself). Silence proves nothing: a
  black hole, a filtered port and a host that ignores the datagram look the same. That is why the
  black hole itself is proven with TCP against the real service, which always answers.

Linux only (IP_RECVERR, SIOCGIFMTU); sources: linux include/uapi/linux/in.h, in6.h, errqueue.h
(sock_extended_err), sockios.h; ip(7), ipv6(7).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edgecheck.probes.budget import Budget, elapsed_ms
from edgecheck.probes.pmtu import family_of

# linux/in.h and linux/in6.h: the socket module does not export these.
IP_MTU_DISCOVER, IP_RECVERR, IP_MTU = 10, 11, 14
IPV6_MTU_DISCOVER, IPV6_MTU, IPV6_RECVERR = 23, 24, 25
PMTUDISC_DO, PMTUDISC_PROBE = 2, 3  # same values for IPv4 and IPv6
SIOCGIFMTU = 0x8921  # linux/sockios.h
SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 1, 2, 3  # linux/errqueue.h
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)  # linux/socket.h


@dataclass
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
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/bin/ip") if os.path.exists(p)), None)
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
    try:
        import psutil
        for name, addrs in psutil.net_if_addrs().items():  # getifaddrs(): netlink, this namespace
            for a in addrs:
                if a.address and a.address.split("%", 1)[0] == source:
                    return name
    except Exception:  # noqa: BLE001 - psutil missing or failing: the route says it anyway
        return None
    return None


def _mtu_opts(family: int) -> Tuple[int, int, int, int]:
    if family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_MTU, IPV6_RECVERR
    return socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_MTU, IP_RECVERR


def kernel_path_mtu(address: str, port: int = 9) -> Optional[int]:
    """The kernel's current path-MTU estimate for address (no packet is sent)."""
    family = family_of(address)
    level, disc, mtu_opt, _ = _mtu_opts(family)
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


@dataclass
class DfProbe:
    """One DF datagram of `size` bytes (whole IP packet) and what came back."""

    size: int
    outcome: str = "silent"  # delivered | too-big | local-too-big | unreachable | silent | error
    reported_mtu: Optional[int] = None  # from ICMP too-big (next-hop MTU) or the local limit
    reported_by: Optional[str] = None  # the router (or host) that sent the ICMP
    detail: str = ""
    ms: Optional[int] = None

    def evidence(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def parse_extended_err(data: bytes) -> Tuple[int, int, int, int, int]:
    """Pure: (ee_errno, ee_origin, ee_type, ee_code, ee_info) of a struct sock_extended_err."""
    ee_errno, origin, etype, code, _pad, info, _data = struct.unpack_from("=IBBBBII", data, 0)
    return ee_errno, origin, etype, code, info


def _offender(data: bytes, family: int) -> Optional[str]:
    """SO_EE_OFFENDER: the sockaddr right after the 16-byte sock_extended_err."""
    try:
        if family == socket.AF_INET6 and len(data) >= 16 + 24:
            return socket.inet_ntop(socket.AF_INET6, data[16 + 8:16 + 24])
        if len(data) >= 16 + 8:
            return socket.inet_ntop(socket.AF_INET, data[16 + 4:16 + 8])
    except (OSError, ValueError):
        return None
    return None


def _payload_bytes(size: int, family: int) -> int:
    return size - (48 if family == socket.AF_INET6 else 28)  # IP + UDP headers


def df_probe(address: str, port: int, sizes: Sequence[int], budget: Budget,
             payload: Optional[bytes] = None) -> List[DfProbe]:
    """Send one DF datagram per size (each on its own connected socket, so each answer is
    attributable) and wait until the budget ends or every size has an outcome.

    payload: the start of every datagram (padded with zeros to the size), e.g. a real request of
    the service on that port so that it answers. Sizes the interface cannot send at all come
    back at once as local-too-big.
    """
    family = family_of(address)
    level, disc, _mtu_opt, recverr = _mtu_opts(family)
    probes = [DfProbe(size=s) for s in sizes]
    socks: Dict[int, Tuple[socket.socket, DfProbe]] = {}
    start = time.monotonic()
    poller = select.poll()
    try:
        for probe in probes:
            n = _payload_bytes(probe.size, family)
            if n < 0:
                probe.outcome, probe.detail = "error", "smaller than the IP and UDP headers"
                continue
            s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                s.setsockopt(level, disc, PMTUDISC_PROBE)
                s.setsockopt(level, recverr, 1)
                s.connect((address, port))
                body = (payload or b"")[:n]
                s.send(body + b"\x00" * (n - len(body)))
            except OSError as exc:
                s.close()
                if exc.errno == errno.EMSGSIZE:
                    probe.outcome = "local-too-big"
                    probe.reported_mtu = interface_mtu(_interface_for_source(_source_of(address)) or "", family)
                    probe.detail = "larger than the egress interface MTU"
                else:
                    probe.outcome, probe.detail = "error", exc.strerror or str(exc)
                continue
            socks[s.fileno()] = (s, probe)
            poller.register(s.fileno(), select.POLLIN | select.POLLERR)
        pending = set(socks)
        while pending:
            left = budget.left()
            if left <= 0:
                break
            for fd, _ev in poller.poll(int(left * 1000) + 1):
                if fd not in pending:
                    continue
                s, probe = socks[fd]
                if _read_outcome(s, probe, family):
                    probe.ms = elapsed_ms(start)
                    pending.discard(fd)
                    poller.unregister(fd)
    finally:
        for s, _ in socks.values():
            s.close()
    return probes


def _source_of(address: str) -> str:
    try:
        with socket.socket(family_of(address), socket.SOCK_DGRAM) as s:
            s.connect((address, 9))
            return s.getsockname()[0]
    except OSError:
        return ""


def _read_outcome(s: socket.socket, probe: DfProbe, family: int) -> bool:
    """Read what arrived for one probe socket; True once the probe has a final outcome."""
    try:
        _data, anc, _flags, _addr = s.recvmsg(2048, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        anc = None
    except OSError:
        anc = None
    if anc:
        for _level, _type, data in anc:
            if len(data) < 16:
                continue
            ee_errno, origin, _etype, _code, info = parse_extended_err(data)
            probe.reported_by = _offender(data, family)
            if ee_errno == errno.EMSGSIZE:
                probe.outcome = "too-big" if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6) else "local-too-big"
                probe.reported_mtu = info or None
                probe.detail = (f"{probe.reported_by or 'a router'} reports a next-hop MTU of {info}"
                                if probe.outcome == "too-big" else f"local limit {info}")
                return True
            if ee_errno == errno.ECONNREFUSED:
                probe.outcome = "delivered"
                probe.detail = "the host answered ICMP port unreachable: this size reached it"
                return True
            probe.outcome, probe.detail = "unreachable", os.strerror(ee_errno)
            return True
    try:
        data = s.recv(65535, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except ConnectionRefusedError:
        probe.outcome, probe.detail = "delivered", "the host answered ICMP port unreachable: this size reached it"
        return True
    except OSError as exc:
        if exc.errno == errno.EMSGSIZE:
            probe.outcome, probe.detail = "too-big", "a router reports this size too big"
            return True
        probe.outcome, probe.detail = "unreachable", exc.strerror or str(exc)
        return True
    probe.outcome, probe.detail = "delivered", f"the service answered ({len(data)} bytes)"
    return True


@dataclass
class PathMtuMeasurement:
    """Egress facts plus DF probes, summarised as bounds on the path MTU toward one address."""

    egress: EgressRoute
    probes: List[DfProbe] = field(default_factory=list)
    learned_mtu: Optional[int] = None  # the kernel's estimate after the probes (ICMP taught it)

    @property
    def at_least(self) -> Optional[int]:
        ok = [p.size for p in self.probes if p.outcome == "delivered"]
        return max(ok) if ok else None

    @property
    def at_most(self) -> Optional[int]:
        """Largest size that can pass: a reported MTU, or one less than a size proven too big."""
        limits = [p.reported_mtu for p in self.probes if p.outcome in ("too-big", "local-too-big") and p.reported_mtu]
        limits += [p.size - 1 for p in self.probes if p.outcome in ("too-big", "local-too-big") and not p.reported_mtu]
        if self.learned_mtu and self.egress.interface_mtu and self.learned_mtu < self.egress.interface_mtu:
            limits.append(self.learned_mtu)
        return min(limits) if limits else None

    def summary(self) -> str:
        lo, hi = self.at_least, self.at_most
        iface = (f"egress {self.egress.interface} MTU {self.egress.interface_mtu}" if self.egress.interface
                 else "egress interface unknown")
        if lo and hi and lo == hi:
            return f"path MTU {lo} bytes ({iface})"
        if hi:
            return f"path MTU at most {hi} bytes" + (f", at least {lo}" if lo else "") + f" ({iface})"
        if lo:
            return f"path MTU at least {lo} bytes ({iface}); larger sizes got no answer, which proves nothing"
        return (f"path MTU not measurable without an answer: no router reported a limit and the host did "
                f"not answer ({iface})")

    def evidence(self) -> Dict[str, Any]:
        return {"egress": self.egress.evidence(), "df_probes": [p.evidence() for p in self.probes],
                "kernel_path_mtu_after": self.learned_mtu, "at_least": self.at_least,
                "at_most": self.at_most, "summary": self.summary()}


def default_df_sizes(egress_mtu: Optional[int], family: int) -> List[int]:
    top = egress_mtu or 1500
    floor = 1280 if family == socket.AF_INET6 else 576
    return sorted({s for s in (floor, 1280, 1400, 1452, top) if floor <= s <= top})


def measure_path_mtu(address: str, port: int, budget: Budget, *, sizes: Optional[Sequence[int]] = None,
                     payload: Optional[bytes] = None) -> PathMtuMeasurement:
    """egress_route + df_probe + the kernel's estimate afterwards, within the budget."""
    egress = egress_route(address, timeout=min(1.0, budget.left()))
    m = PathMtuMeasurement(egress=egress)
    if egress.error:
        return m
    family = family_of(address)
    m.probes = df_probe(address, port, sizes or default_df_sizes(egress.interface_mtu, family), budget, payload)
    m.learned_mtu = kernel_path_mtu(address)
    return m
