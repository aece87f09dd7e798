"""This host's socket table (read once per run through RunFacts), and who holds a local port.

psutil.net_connections() walks every /proc/<pid>/fd to map socket inodes to processes: the
costly part, so one snapshot serves all inbound checks of a run. /proc/net/{tcp,udp}{,6} is
world-readable and names each socket's owner uid and inode, which psutil does not: that is how a
non-root run can still say "a socket owned by root holds 10250" honestly, and how a kernel socket
(inode 0, e.g. a VXLAN device) is told apart from a process we may not see.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import pwd
import socket
import sys
from dataclasses import field
from typing import Callable, Collection, Dict, List, Optional, Tuple

from edgecheck.evidence import PortHolder
from edgecheck.records import record

# Capability bits (linux/capability.h): both are needed to map another user's socket to its pid.
CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19

_TCP_LISTEN_HEX = "0A"
_PROC_NET_FILES = (("tcp", "/proc/net/tcp"), ("tcp", "/proc/net/tcp6"), ("udp", "/proc/net/udp"), ("udp", "/proc/net/udp6"))


@record(frozen=True)
class Socket:
    protocol: str  # "tcp" | "udp"
    address: str
    port: int
    listening: bool  # TCP LISTEN, or any bound UDP socket
    pid: Optional[int]
    uid: Optional[int] = None  # from /proc/net: visible to everyone
    inode: Optional[int] = None  # 0 = kernel socket, no process owns it

    @property
    def loopback(self) -> bool:
        return is_loopback(self.address)


@record(frozen=True)
class ProcNetEntry:
    protocol: str
    address: str
    port: int
    listening: bool
    uid: int
    inode: int


@record
class SocketTable:
    sockets: Tuple[Socket, ...] = ()
    error: Optional[str] = None  # the table could not be read; the caller falls back
    source: str = "psutil"

    def holders(self, protocol: str, port: int) -> List[Socket]:
        return [s for s in self.sockets if s.protocol == protocol and s.port == port and s.listening]


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _norm(address: str) -> str:
    """One spelling per address, so psutil's and /proc's views can be joined."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else str(ip)


def decode_proc_address(hexaddr: str) -> Tuple[str, int]:
    """'0100007F:1F90' -> ('127.0.0.1', 8080). Addresses are 32-bit words in host byte order."""
    host, _, port = hexaddr.partition(":")
    raw = bytes.fromhex(host)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def parse_proc_net(text: str, protocol: str, listening_only: bool = False) -> List[ProcNetEntry]:
    """listening_only: skip connections before decoding their addresses (a busy node has
    thousands; ipaddress is the slow part)."""
    entries: List[ProcNetEntry] = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        # UDP has no LISTEN state: a bound UDP socket is what holds the port.
        listening = cols[3] == _TCP_LISTEN_HEX if protocol == "tcp" else True
        if listening_only and not listening:
            continue
        try:
            address, port = decode_proc_address(cols[1])
            uid, inode = int(cols[7]), int(cols[9])
        except ValueError:
            continue
        entries.append(ProcNetEntry(protocol, address, port, listening, uid, inode))
    return entries


def _read_proc_net(strict: bool = False) -> Dict[Tuple[str, str, int], ProcNetEntry]:
    """Listening sockets by (protocol, address, port). strict: an unreadable file raises."""
    out: Dict[Tuple[str, str, int], ProcNetEntry] = {}
    for protocol, path in _PROC_NET_FILES:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            continue  # e.g. no IPv6 in this kernel
        except OSError:
            if strict:
                raise
            continue
        for e in parse_proc_net(text, protocol, listening_only=True):
            out.setdefault((protocol, _norm(e.address), e.port), e)
    return out


def read_socket_table_for(ports: Collection[Tuple[str, int]]) -> SocketTable:
    """The socket table as far as the plan's inbound ports need it. /proc/net names every
    listening socket; only when one holds a port of `ports` is its process looked up, which means
    psutil walking every /proc/<pid>/fd (the costly part of a run on a busy node). A healthy
    `join` run, whose ports are free, never pays for that walk."""
    try:
        listening = _read_proc_net(strict=True)
    except OSError:
        return read_socket_table()  # unreadable /proc/net: the full path says why
    if any((protocol, port) in ports for protocol, _, port in listening):
        return read_socket_table(listening)
    return SocketTable(tuple(Socket(e.protocol, e.address, e.port, True, None, uid=e.uid, inode=e.inode)
                             for e in listening.values()), source="/proc/net")


def read_socket_table(proc_net: Optional[Dict[Tuple[str, str, int], ProcNetEntry]] = None) -> SocketTable:
    """Every listening socket with its process (psutil), its uid and inode from /proc/net
    (`proc_net`, when the caller has already read it)."""
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError) as exc:  # e.g. systemd ProcSubset=pid hides /proc/net
        return SocketTable(error=f"{type(exc).__name__}: {exc}".rstrip(": "), source="none")
    extra = proc_net if proc_net is not None else _read_proc_net()
    sockets: List[Socket] = []
    for c in conns:
        if not c.laddr:
            continue
        protocol = "tcp" if c.type == socket.SOCK_STREAM else "udp"
        listening = c.status == psutil.CONN_LISTEN if protocol == "tcp" else True
        if not listening:
            continue  # established connections do not hold a port against a new listener
        e = extra.get((protocol, _norm(c.laddr.ip), c.laddr.port))
        sockets.append(
            Socket(
                protocol,
                c.laddr.ip,
                c.laddr.port,
                True,
                c.pid,
                uid=e.uid if e else None,
                inode=e.inode if e else None,
            )
        )
    return SocketTable(tuple(sockets))


def bind_test(protocol: str, port: int) -> Optional[bool]:
    """Fallback when the table is unreadable: True = in use, False = free, None = cannot tell.
    Binds the wildcard address without listening and closes at once: nothing is exposed."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        if protocol == "tcp":
            # Ignore sockets in TIME_WAIT: they do not stop a new listener with SO_REUSEADDR.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        return False
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return True
        return None
    finally:
        s.close()


def effective_capabilities() -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def can_see_socket_owners() -> bool:
    """Whether this process can map any user's socket to its pid (root, or both capabilities)."""
    caps = effective_capabilities()
    if caps is None:
        return os.geteuid() == 0
    need = (1 << CAP_DAC_READ_SEARCH) | (1 << CAP_SYS_PTRACE)
    return caps & need == need


@record
class ProcessInfo:
    pid: int
    name: Optional[str] = None
    user: Optional[str] = None
    cmdline: Optional[str] = None
    unit: Optional[str] = None  # systemd unit, from /proc/<pid>/cgroup
    errors: List[str] = field(default_factory=list)


def process_info(pid: int) -> ProcessInfo:
    import psutil

    info = ProcessInfo(pid)
    try:
        p = psutil.Process(pid)
    except psutil.Error as exc:
        info.errors.append(f"{type(exc).__name__}")
        return info
    getters: Tuple[Tuple[str, Callable[[], Optional[str]]], ...] = (
        ("name", p.name), ("user", p.username), ("cmdline", lambda: " ".join(p.cmdline())[:300] or None))
    for attr, getter in getters:
        try:
            setattr(info, attr, getter())
        except (psutil.Error, KeyError, OSError) as exc:  # KeyError: uid without a passwd entry
            info.errors.append(f"{attr}: {type(exc).__name__}")
    info.unit = systemd_unit(pid)
    return info


def systemd_unit(pid: int) -> Optional[str]:
    """The .service a process runs in (cgroup v1 or v2), e.g. 'kubelet.service'."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return unit_from_cgroup(text)


def unit_from_cgroup(text: str) -> Optional[str]:
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            # user@UID.service is a login session manager: stopping it is never the fix.
            if part.endswith(".service") and not part.startswith("user@"):
                return part
    return None


def user_name(uid: Optional[int]) -> Optional[str]:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def gather_holders(table: SocketTable, protocol: str, port: int) -> List[PortHolder]:
    """Every socket bound to the port, with what can be learnt about its process from here."""
    out: List[PortHolder] = []
    infos: Dict[int, ProcessInfo] = {}
    for s in table.holders(protocol, port):
        info = None
        if s.pid is not None:
            info = infos.get(s.pid) or process_info(s.pid)
            infos[s.pid] = info
        out.append(PortHolder(
            protocol=s.protocol,
            address=s.address,
            port=s.port,
            loopback=s.loopback,
            pid=s.pid,
            process=info.name if info else None,
            user=(info.user if info and info.user else user_name(s.uid)),
            uid=s.uid,
            cmdline=info.cmdline if info else None,
            unit=info.unit if info else None,
            kernel_socket=s.pid is None and s.inode == 0,
        ))
    return out
