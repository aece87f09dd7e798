"""A local DNS stub in resolv.conf, and the real upstreams behind it.

When every nameserver in resolv.conf is a loopback address, this host's own lookups go through a
local stub (systemd-resolved at 127.0.0.53, a dnsmasq, ...). Kubelet and CoreDNS cannot use it:
pods have their own loopback, so kubelet hands pods (and CoreDNS forwards to) the stub's upstreams
instead (kubelet --resolv-conf; kubeadm points it at /run/systemd/resolve/resolv.conf on
systemd-resolved hosts). Those upstreams are what must work for the node's pods, so they are
found here and tested too.

- systemd-resolved: /run/systemd/resolve/resolv.conf lists the upstreams it uses
  (systemd-resolved.service(8), "/run/systemd/resolve/resolv.conf").
- dnsmasq: the process listening on the stub address (socket inode in this network namespace's
  /proc/thread-self/net/udp, owner found through /proc/<pid>/fd), then its upstreams from its
  command line and config files: server=/-S, conf-file=/-C (default /etc/dnsmasq.conf),
  conf-dir=/-7, servers-file=, resolv-file=/-r (default /etc/resolv.conf) unless no-resolv/-R
  (dnsmasq(8)). A dnsmasq run by NetworkManager gets its servers over D-Bus; NetworkManager
  writes them to /run/NetworkManager/no-stub-resolv.conf.
- nscd does not answer DNS: it caches glibc lookups in front of the resolv.conf nameservers, which
  stay what is tested. Kubelet (Go resolver) and CoreDNS do not use it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from dataclasses import asdict, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from edgecheck.host.sockets import is_loopback
from edgecheck.probes.resolvconf import parse_resolv_conf
from edgecheck.records import record

RESOLVED_STUBS = ("127.0.0.53", "127.0.0.54")
RESOLVED_UPSTREAM_FILE = "/run/systemd/resolve/resolv.conf"
NM_NO_STUB_FILE = "/run/NetworkManager/no-stub-resolv.conf"
DNSMASQ_DEFAULT_CONF = "/etc/dnsmasq.conf"
DNSMASQ_DEFAULT_RESOLV = "/etc/resolv.conf"
NSCD_SOCKETS = ("/var/run/nscd/socket", "/run/nscd/socket")


@record
class Upstream:
    address: str
    port: int = 53
    domain: Optional[str] = None  # dnsmasq server=/domain/IP: only for names under domain

    def label(self) -> str:
        return self.address if self.port == 53 else f"{self.address}#{self.port}"


@record
class StubInfo:
    address: str  # the loopback nameserver in resolv.conf
    kind: str  # "systemd-resolved" | "dnsmasq" | a process name | "unknown"
    upstreams: List[Upstream] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)  # where the upstreams were read
    pid: Optional[int] = None
    note: str = ""

    def evidence(self) -> Dict[str, object]:
        ev = asdict(self)
        ev["upstreams"] = [u.label() for u in self.upstreams]
        return ev


# ------------------------------------------------------------------------------ pure parsing
def resolv_conf_nameservers(text: str) -> List[str]:
    return list(parse_resolv_conf(text).nameservers)


def _split_server(value: str) -> Optional[Upstream]:
    """dnsmasq server= value: [/domain/...]IP[#port][@source]; None for local-only entries."""
    domain = None
    if value.startswith("/"):
        parts = value.split("/")
        domains, value = [d for d in parts[1:-1] if d], parts[-1]
        domain = domains[0] if domains else ""
    if not value or value == "#":  # /domain/ (local only) or /domain/# (the usual servers)
        return None
    value = value.split("@", 1)[0]
    addr, _, port = value.partition("#")
    try:
        ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return None
    return Upstream(addr, int(port) if port.isdigit() else 53, domain or None)


_SHORT = {"-S": "server", "-C": "conf-file", "-7": "conf-dir", "-r": "resolv-file", "-R": "no-resolv"}


def dnsmasq_options(argv: Sequence[str]) -> List[Tuple[str, str]]:
    """Pure: (name, value) pairs from a dnsmasq command line, long and short forms."""
    out: List[Tuple[str, str]] = []
    args = list(argv[1:])
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            out.append((name, value if eq else ""))
        elif a[:2] in _SHORT:
            name = _SHORT[a[:2]]
            if name == "no-resolv":
                out.append((name, ""))
            elif len(a) > 2:
                out.append((name, a[2:]))
            elif i + 1 < len(args):
                out.append((name, args[i + 1]))
                i += 1
        i += 1
    return out


def config_lines(text: str) -> List[Tuple[str, str]]:
    """Pure: (name, value) pairs from a dnsmasq config file."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        out.append((name.strip(), value.strip() if eq else ""))
    return out


@record
class DnsmasqUpstreams:
    servers: List[Upstream] = field(default_factory=list)
    resolv_files: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    dbus: bool = False


def _dir_files(directory: str, patterns: Sequence[str], list_dir: Callable[[str], List[str]]) -> List[str]:
    out = []
    for name in sorted(list_dir(directory)):
        if name.startswith(".") or name.endswith("~") or ".dpkg-" in name:
            continue
        if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns if not p.startswith("!")):
            continue
        out.append(os.path.join(directory, name))
    return out


def dnsmasq_upstreams(argv: Sequence[str], read: Callable[[str], Optional[str]],
                      list_dir: Callable[[str], List[str]] = lambda d: []) -> DnsmasqUpstreams:
    """Pure given read/list_dir: every server a dnsmasq with this command line forwards to."""
    result = DnsmasqUpstreams(sources=["cmdline"])
    opts = dnsmasq_options(argv)
    if not any(n == "conf-file" for n, _ in opts) and read(DNSMASQ_DEFAULT_CONF) is not None:
        opts.append(("conf-file", DNSMASQ_DEFAULT_CONF))
    no_resolv, resolv_file = False, DNSMASQ_DEFAULT_RESOLV
    seen: set = set()
    queue = list(opts)
    while queue:
        name, value = queue.pop(0)
        if name == "server" and value:
            up = _split_server(value)
            if up is not None:
                result.servers.append(up)
        elif name in ("conf-file", "servers-file"):
            path = value or DNSMASQ_DEFAULT_CONF
            if path in seen or path == "/dev/null":
                continue
            seen.add(path)
            text = read(path)
            if text is not None:
                result.sources.append(path)
                queue.extend(config_lines(text))
        elif name == "conf-dir" and value:
            directory, *patterns = value.split(",")
            for path in _dir_files(directory, patterns, list_dir):
                queue.append(("conf-file", path))
        elif name == "resolv-file":
            resolv_file = value or DNSMASQ_DEFAULT_RESOLV
        elif name == "no-resolv":
            no_resolv = True
        elif name == "enable-dbus":
            result.dbus = True
    if not no_resolv:
        result.resolv_files.append(resolv_file)
    return result


# ------------------------------------------------------------------------------ I/O
def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _list_dir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _udp_inodes(address: str, port: int = 53) -> List[int]:
    """Inodes of UDP sockets bound to address:port (or the wildcard) in the caller's namespace.
    /proc/thread-self/net, not /proc/net: a thread that entered another namespace sees its own."""
    from edgecheck.host.sockets import parse_proc_net  # psutil: only when a stub must be identified

    exact, wildcard = [], []
    for name, proto in (("udp", "udp"), ("udp6", "udp")):
        text = _read(f"/proc/thread-self/net/{name}") or _read(f"/proc/net/{name}") or ""
        for e in parse_proc_net(text, proto):
            if e.port != port or not e.inode:
                continue
            if e.address == address:
                exact.append(e.inode)
            elif e.address in ("0.0.0.0", "::"):
                wildcard.append(e.inode)
    return exact or wildcard


def _pid_of_inodes(inodes: Iterable[int], proc: str = "/proc") -> Optional[int]:
    wanted = {f"socket:[{i}]" for i in inodes}
    if not wanted:
        return None
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in wanted:
                    return int(pid)
            except OSError:
                continue
    return None


def _cmdline(pid: int, proc: str = "/proc") -> List[str]:
    raw = _read(os.path.join(proc, str(pid), "cmdline")) or ""
    return [a for a in raw.split("\x00") if a]


def _dnsmasq_candidates(address: str, proc: str = "/proc") -> List[int]:
    """Fallback when socket owners are hidden (not root): dnsmasq processes naming the address."""
    named, all_ = [], []
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        if (_read(os.path.join(proc, pid, "comm")) or "").strip() != "dnsmasq":
            continue
        all_.append(int(pid))
        if address in " ".join(_cmdline(int(pid), proc)):
            named.append(int(pid))
    return named or (all_ if len(all_) == 1 else [])


def nscd_running() -> bool:
    return any(os.path.exists(p) for p in NSCD_SOCKETS)


def discover_stub(address: str, *, resolved_file: str = RESOLVED_UPSTREAM_FILE,
                  read: Callable[[str], Optional[str]] = _read,
                  list_dir: Callable[[str], List[str]] = _list_dir, qname: Optional[str] = None) -> StubInfo:
    """What serves the loopback nameserver `address`, and its upstreams (loopback ones dropped)."""
    if address in RESOLVED_STUBS:
        info = StubInfo(address, "systemd-resolved")
        text = read(resolved_file)
        if text is None:
            info.note = f"{resolved_file} is missing: systemd-resolved's upstreams are unknown"
            return info
        info.sources.append(resolved_file)
        info.upstreams = [Upstream(a) for a in resolv_conf_nameservers(text) if not is_loopback(a)]
        if not info.upstreams:
            info.note = f"{resolved_file} lists no upstream nameserver"
        return info

    pid = _pid_of_inodes(_udp_inodes(address))
    verified = pid is not None
    if pid is None:
        cands = _dnsmasq_candidates(address)
        pid = cands[0] if cands else None
    if pid is None:
        return StubInfo(address, "unknown", note=f"no process found serving DNS on {address} (or its owner is "
                                                 f"hidden: run as root to see it)")
    comm = (read(f"/proc/{pid}/comm") or "").strip() or "unknown"
    info = StubInfo(address, comm, pid=pid)
    if not verified:
        info.note = "the process was matched by name, not by its socket (run as root to verify)"
    if comm != "dnsmasq":
        info.note = f"{comm} (pid {pid}) serves {address}; its upstreams are not read by edgecheck"
        return info
    argv = _cmdline(pid)
    parsed = dnsmasq_upstreams(argv, read, list_dir)
    info.sources = [f"/proc/{pid}/cmdline" if s == "cmdline" else s for s in parsed.sources]
    servers = [u for u in parsed.servers if u.domain is None or (qname and _under(qname, u.domain))]
    for path in parsed.resolv_files + ([NM_NO_STUB_FILE] if parsed.dbus else []):
        text = read(path)
        if text is not None:
            info.sources.append(path)
            servers += [Upstream(a) for a in resolv_conf_nameservers(text)]
    unique: Dict[Tuple[str, int], Upstream] = {}
    for u in servers:
        if not is_loopback(u.address):
            unique.setdefault((u.address, u.port), u)
    info.upstreams = list(unique.values())
    if not info.upstreams:
        info.note = (info.note + "; " if info.note else "") + "no upstream server found in its configuration"
    return info


def _under(qname: str, domain: str) -> bool:
    q, d = qname.lower().rstrip("."), domain.lower().rstrip(".")
    return q == d or q.endswith("." + d)

