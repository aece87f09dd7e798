"""Typed evidence: what checks observe, in the shapes the diagnosis layer and renderers read.

Each part is a dataclass with `to_json()` returning its own keys of the JSON `evidence` object
(schema edgecheck/report/v1); a check collects parts in an edgecheck.model.Evidence. Wire modules
produce these (the resolver a Resolution, the TLS layer a TlsResult, ...); a part only one check
reads may live next to its wire module instead (NTP and IKE exchanges do).
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from edgecheck.model import Reason
from edgecheck.records import record

if TYPE_CHECKING:  # annotations only: a run whose checks never read the host filter never imports it
    from edgecheck.firewall.evaluate import BaseChainRef
    from edgecheck.firewall.manager import Manager, Opening


def _reason(reason: Optional[Reason]) -> Optional[str]:
    return reason.value if reason is not None else None


# ------------------------------------------------------------------------------------------ DNS
@record
class Resolution:
    """What resolving one hostname found. reason is None when at least one address came back."""

    host: str
    addresses: List[str] = field(default_factory=list)  # A records first, then AAAA
    cname_chain: List[str] = field(default_factory=list)
    source: str = ""  # resolv.conf path
    nameservers: List[str] = field(default_factory=list)
    answered_by: Optional[str] = None
    reason: Optional[Reason] = None
    error: str = ""
    partial_errors: Dict[str, str] = field(default_factory=dict)  # e.g. {"AAAA": "timed out"}
    ms: int = 0
    literal: bool = False

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_json(self) -> Dict[str, Any]:
        if self.literal:
            return {"addresses": list(self.addresses), "dns": "skipped: the host is an IP address"}
        ev: Dict[str, Any] = {
            "resolver": {"source": self.source, "nameservers": list(self.nameservers),
                         "answered_by": self.answered_by},
            "addresses": list(self.addresses),
            "cname_chain": list(self.cname_chain),
            "dns_ms": self.ms,
        }
        if self.error:
            ev["dns_error"] = self.error
        if self.partial_errors:
            ev["dns_partial_errors"] = dict(self.partial_errors)
        return ev


@record(frozen=True)
class AddressBlocks:
    """Dedicated mode: the blocks every resolved address must fall in, and those that did not."""

    expected: Tuple[str, ...]
    outside: Tuple[str, ...]

    def to_json(self) -> Dict[str, Any]:
        return {"expected_cidrs": list(self.expected), "outside_expected": list(self.outside)}


# --------------------------------------------------------------------------------------- routes
@record(frozen=True)
class DirectRoute:
    """The probe went straight to the target (raw TCP/UDP always does)."""

    def to_json(self) -> Dict[str, Any]:
        return {"route": "direct"}


@record(frozen=True)
class IcmpError:
    """An ICMP error the kernel queued for a probe's socket (IP_RECVERR), and who sent it."""

    offender: str
    name: str  # e.g. "ICMP host administratively prohibited"
    icmp_type: int
    code: int
    admin_prohibited: bool = False
    local: bool = False  # sent by this host itself: a REJECT rule of its own filter

    def to_json(self) -> Dict[str, Any]:
        return {"offender": self.offender, "name": self.name, "type": self.icmp_type, "code": self.code,
                "admin_prohibited": self.admin_prohibited, "from_this_host": self.local}


@record
class ConnectAttempt:
    address: str
    port: int
    ok: bool
    ms: int
    reason: Optional[Reason] = None
    error: str = ""
    errno: Optional[int] = None
    icmp: Optional[IcmpError] = None

    def to_json(self) -> Dict[str, Any]:
        ev = {"address": self.address, "port": self.port, "ok": self.ok, "ms": self.ms,
              "reason": _reason(self.reason), "error": self.error}
        if self.icmp is not None:
            ev["icmp"] = self.icmp.to_json()
        return ev


@record(frozen=True)
class ProxyRoute:
    """The probe went through an HTTP(S) proxy from the environment; the proxy resolves the name."""

    url: str  # credentials already removed
    addresses: Tuple[str, ...] = ()
    attempts: Tuple[ConnectAttempt, ...] = ()

    def to_json(self) -> Dict[str, Any]:
        return {"route": "proxy", "proxy": self.url,
                "dns": "not resolved locally: the proxy resolves the name, as the node's components do",
                "proxy_addresses": list(self.addresses),
                "proxy_connect": [a.to_json() for a in self.attempts]}


@record(frozen=True)
class Connects:
    """TCP connects to every resolved address; `ignored` failed for a family this host cannot route."""

    attempts: Tuple[ConnectAttempt, ...]
    ignored: Tuple[str, ...] = ()

    @property
    def failed_addresses(self) -> List[str]:
        return [a.address for a in self.attempts if not a.ok and a.address not in self.ignored]

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"connect": [a.to_json() for a in self.attempts]}
        if self.ignored:
            ev["connect_ignored"] = {
                "addresses": list(self.ignored),
                "why": "this host has no route for that IP family, so clients do not use it"}
        return ev


# ------------------------------------------------------------------------------------- TLS/HTTP
@record(frozen=True)
class TrustSource:
    """The trust anchors that verify one TLS endpoint, and where they came from."""

    verify: bool
    cafile: Optional[str] = None
    capath: Optional[str] = None
    origin: str = ""  # "--ca-bundle", "REQUESTS_CA_BUNDLE", "--apiserver-ca", "system", "none: ..."

    @property
    def system_store(self) -> bool:
        """The system's own store (probes/tls.system_trust: "system" or "system (OpenSSL defaults)"),
        the only trust whose chains are compared with the public roots for interception."""
        return self.verify and self.origin.startswith("system")

    def to_json(self) -> Dict[str, Any]:
        return {"trust": {"origin": self.origin, "cafile": self.cafile, "capath": self.capath,
                          "verify": self.verify}}


@record(frozen=True)
class Certificate:
    subject: Optional[str] = None
    issuer: Optional[str] = None
    not_before: Optional[str] = None  # RFC 3339
    not_after: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {k: v for k, v in (("subject", self.subject), ("issuer", self.issuer),
                                  ("not_before", self.not_before), ("not_after", self.not_after))
                if v is not None}


@record
class TlsResult:
    ok: bool
    reason: Optional[Reason] = None
    sni: Optional[str] = None
    version: Optional[str] = None
    verified: bool = False
    verify_error: Optional[str] = None
    error: str = ""
    peer_certificate: Optional[Certificate] = None
    address: str = ""
    ms: int = 0
    verify_kind: Optional[str] = None  # SPEC 7.1: unknown-issuer, self-signed, hostname-mismatch, expired, ...
    verify_code: Optional[int] = None  # OpenSSL's X509_V_ERR_* code
    timed_out: bool = False  # the handshake made no progress until the budget ran out (a stall)

    @property
    def issuer(self) -> str:
        return (self.peer_certificate.issuer or "") if self.peer_certificate else ""

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {
            "sni": self.sni, "address": self.address, "version": self.version,
            "verified": self.verified, "verify_error": self.verify_error,
            "peer_certificate": self.peer_certificate.to_json() if self.peer_certificate else {},
            "ms": self.ms}
        if self.verify_kind is not None:
            ev["verify_kind"], ev["verify_code"] = self.verify_kind, self.verify_code
        if self.error:
            ev["error"] = self.error
        return {"tls": ev}


@record(frozen=True)
class TlsInterception:
    """A chain verified against the system store compared with the public roots (certifi)."""

    intercepted: Optional[bool]  # None: could not tell
    method: str  # "chain" | "handshake" | "unavailable"
    issuer: str = ""  # who signed the server's certificate
    anchor: str = ""  # the trust anchor the system store supplied
    public_roots: str = ""  # the bundle compared with
    detail: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {"tls_interception": {"intercepted": self.intercepted, "method": self.method, "issuer": self.issuer,
                                     "trust_anchor": self.anchor, "public_roots": self.public_roots,
                                     "detail": self.detail}}


@record(frozen=True)
class PathMtu:
    """A stalled handshake or HTTP response retried with smaller TCP MSS values (pmtu.py), judged."""

    stage: str  # "tls" | "http": where the original connection stalled
    black_hole: bool
    why: str
    working_sizes: Tuple[int, ...] = ()  # IP packet sizes that completed
    failing_sizes: Tuple[int, ...] = ()  # IP packet sizes that stalled
    retry: Dict[str, Any] = field(default_factory=dict)  # every attempt (pmtu.MssRetry.evidence())
    egress: Dict[str, Any] = field(default_factory=dict)  # interface, its MTU, gateway (no packet sent)

    @property
    def largest_working(self) -> Optional[int]:
        return max(self.working_sizes) if self.working_sizes else None

    @property
    def smallest_failing(self) -> Optional[int]:
        return min(self.failing_sizes) if self.failing_sizes else None

    @property
    def interface(self) -> Optional[str]:
        return self.egress.get("interface")

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"stage": self.stage, "black_hole": self.black_hole, "why": self.why,
                              "working_packet_sizes": list(self.working_sizes),
                              "failing_packet_sizes": list(self.failing_sizes),
                              "largest_working": self.largest_working, "smallest_failing": self.smallest_failing,
                              "retry": self.retry}
        if self.egress:
            ev["egress_route"] = self.egress
        return {"path_mtu": ev}


@record(frozen=True)
class RavenMtuNote:
    """What Raven's IPsec tunnel leaves for pod packets on a small path to the gateway (raven_mtu.py)."""

    path_mtu: int
    suite: str
    inner_max: int  # largest pod packet the tunnel carries without loss on this path
    overhead: Tuple[int, int]  # (least, most) bytes
    interface_mtu: Optional[int] = None
    raven_mtu: Optional[int] = None  # what Raven will configure: interface MTU - 64
    lossy_range: Optional[Tuple[int, int]] = None  # pod packet sizes Raven allows but the path cannot carry
    message: str = ""
    fix: str = ""  # what to do when pod packets would be lost

    def to_json(self) -> Dict[str, Any]:
        return {"raven_mtu": {
            "path_mtu": self.path_mtu, "suite": self.suite, "inner_max": self.inner_max,
            "overhead": list(self.overhead), "interface_mtu": self.interface_mtu, "raven_mtu": self.raven_mtu,
            "lossy_range": list(self.lossy_range) if self.lossy_range else None, "message": self.message,
            "fix": self.fix}}


@record
class HttpResult:
    ok: bool
    url: str
    status: Optional[int] = None
    ms: int = 0
    reason: Optional[Reason] = None
    error: str = ""

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"url": self.url, "status": self.status, "ms": self.ms}
        if self.error:
            ev["error"] = self.error
        return {"http": ev}


# ------------------------------------------------------------------------------ inbound ports
@record(frozen=True)
class PortHolder:
    """One socket bound to a local port, and what could be learnt about its process."""

    protocol: str
    address: str
    port: int
    loopback: bool = False
    pid: Optional[int] = None
    process: Optional[str] = None
    user: Optional[str] = None  # the process's user; else the socket's owner from /proc/net
    uid: Optional[int] = None
    cmdline: Optional[str] = None
    unit: Optional[str] = None  # systemd unit, from /proc/<pid>/cgroup
    kernel_socket: bool = False  # inode 0: no process owns it (e.g. a VXLAN device)

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"protocol": self.protocol, "address": self.address, "port": self.port,
                              "pid": self.pid}
        for key in ("process", "user", "uid", "cmdline", "unit"):
            value = getattr(self, key)
            if value is not None:
                ev[key] = value
        if self.kernel_socket:
            ev["kernel_socket"] = True
        ev["loopback"] = self.loopback
        return ev


@record(frozen=True)
class InboundEvidence:
    expect: str  # "free" | "listening"
    socket_table: str  # "psutil" | "none"
    owners_visible: bool
    holders: Tuple[PortHolder, ...] = ()
    owner_note: str = ""
    table_error: str = ""  # the socket table could not be read; a bind test decided
    bind_test: str = ""  # "free" | "in-use" | "inconclusive"

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"expect": self.expect, "socket_table": self.socket_table,
                              "owners_visible": self.owners_visible}
        if self.table_error:
            ev["socket_table_error"] = self.table_error
            ev["bind_test"] = self.bind_test
        else:
            ev["sockets"] = [h.to_json() for h in self.holders]
        if self.owner_note:
            ev["owner_note"] = self.owner_note
        return ev


# ------------------------------------------------------------------------ this host's own filter
ALLOWED, BLOCKED, PARTIAL, UNKNOWN, NOT_EVALUATED = "allowed", "blocked", "partial", "unknown", "not-evaluated"


@record(frozen=True)
class FirewallVerdict:
    """What this host's own packet filter does with a check's new connection or datagram (SPEC 7.2).

    Inbound: evaluated from every source the port must be reachable from (`peers`); outbound: for
    the destination addresses that failed. The deciding rule, the manager that owns it and the
    base chain are what the advice builds its commands from (edgecheck.firewall.manager.remedy).
    """

    direction: str  # "in" | "out"
    protocol: str
    port: int
    verdict: str  # allowed | blocked | partial | unknown | not-evaluated
    peers: Tuple[str, ...] = ()  # in: the source CIDRs evaluated; out: the destination addresses
    peers_origin: str = ""  # in: where the sources come from (--source-cidr, subnets, any source)
    blocked: Tuple[str, ...] = ()  # the peers it blocks (all or part of them)
    allowed: Tuple[str, ...] = ()
    action: str = ""  # "drop" or "reject (TYPE)" of the deciding rule
    rule: str = ""  # the deciding (or unreadable) rule as nft / iptables-save print it
    where: str = ""  # "ip filter chain INPUT rule 1"
    path: Tuple[str, ...] = ()  # the chains walked to that rule
    manager: Optional[Manager] = None
    base: Optional[BaseChainRef] = None  # the base chain that decided: where a fix belongs
    local_address: str = ""  # in: the node address evaluated; out: the source address
    interface: str = ""
    detail: str = ""  # unknown: what could not be read; not-evaluated: why
    hint: str = ""  # not-evaluated: what to run instead
    kernel: str = ""  # out: what the kernel itself reported (EPERM, an ICMP error from this host)
    sampled: bool = False  # too many rule boundaries: sources were sampled, not proven
    distro_family: str = ""  # debian | rhel | "": where the persistence advice points
    rules: int = 0  # rules in the ruleset read
    ms: int = 0  # evaluation time
    read_ms: int = 0  # reading and parsing the ruleset, once per run (shared by every check)

    @property
    def stops(self) -> bool:
        """Blocks all or part of the traffic this check needs."""
        return self.verdict in (BLOCKED, PARTIAL)

    def opening(self) -> Opening:
        """What must be let through, for the manager's remediation command."""
        from edgecheck.firewall.manager import Opening

        peers = tuple(p for p in self.blocked if not p.endswith("/0"))  # "any source": no source match
        if self.direction == "in":
            return Opening("in", self.protocol, self.port, sources=peers)
        return Opening("out", self.protocol, self.port, destinations=peers)

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"direction": self.direction, "verdict": self.verdict, "protocol": self.protocol,
                              "port": self.port}
        for key in ("peers", "blocked", "allowed", "path"):
            if getattr(self, key):
                ev[key] = list(getattr(self, key))
        for key in ("peers_origin", "action", "rule", "where", "local_address", "interface", "detail", "hint",
                    "kernel"):
            if getattr(self, key):
                ev[key] = getattr(self, key)
        if self.manager is not None:
            ev["manager"] = {k: v for k, v in vars(self.manager).items() if v}
        if self.base is not None:
            ev["base_chain"] = vars(self.base).copy()
        if self.sampled:
            ev["sampled"] = True
        if self.verdict != NOT_EVALUATED:
            ev.update(rules=self.rules, ms=self.ms, read_ms=self.read_ms)
        return {"firewall": ev}


# ----------------------------------------------------------------------------------- kernel
@record(frozen=True)
class KernelEvidence:
    """One kernel setting (`system:*`): the values read, and the command that fixes it."""

    setting: str
    values: Mapping[str, object]
    command: str = ""  # what fixes it now, as root
    persist: str = ""  # what keeps it after a reboot

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"setting": self.setting, "values": dict(self.values)}
        if self.command:
            ev["fix"] = {"command": self.command, "persist": self.persist}
        return ev


# ----------------------------------------------------------------------------------------- tools
@record(frozen=True)
class Distribution:
    id: str
    version_id: str
    id_like: Tuple[str, ...]

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "version_id": self.version_id, "id_like": list(self.id_like)}


@record(frozen=True)
class ToolEvidence:
    package: str
    executables_wanted: Tuple[str, ...]
    executables_found: Dict[str, str]  # name -> path
    searched: Tuple[str, ...]
    distribution: Distribution
    version: Optional[str] = None
    distribution_package: Optional[str] = None
    install_command: Optional[str] = None  # missing: the one command installing every missing tool
    missing_packages: Tuple[str, ...] = ()
    package_manager: Optional[str] = None
    commands_by_family: Tuple[Tuple[str, str], ...] = ()  # unknown distribution: family -> command

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {
            "package": self.package,
            "executables_wanted": list(self.executables_wanted),
            "executables_found": dict(self.executables_found),
            "searched": list(self.searched),
            "distribution": self.distribution.to_json(),
        }
        if self.version:
            ev["version"] = self.version
        if self.distribution_package:
            ev["distribution_package"] = self.distribution_package
        if not self.executables_found:
            ev["install_command"] = self.install_command
            ev["missing_packages"] = list(self.missing_packages)
            if self.package_manager:
                ev["package_manager"] = self.package_manager
            if self.commands_by_family:
                ev["install_commands_by_family"] = dict(self.commands_by_family)
        return ev


# ----------------------------------------------------------------------------------------- clock
@record(frozen=True)
class KernelClock:
    synchronised: Optional[bool]  # None: could not read
    state: Optional[str] = None  # TIME_OK, TIME_ERROR, ...
    status_flags: Optional[int] = None
    maxerror_s: Optional[float] = None  # the daemon's bound on the clock error, grown by the kernel
    esterror_s: Optional[float] = None
    error: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@record(frozen=True)
class DaemonView:
    name: str  # "chronyd" | "timedatectl" (systemd-timedated's NTPSynchronized)
    synchronised: Optional[bool] = None
    offset_s: Optional[float] = None  # reference - local
    detail: Tuple[Tuple[str, str], ...] = ()
    error: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"name": self.name}
        if self.synchronised is not None:
            ev["synchronised"] = self.synchronised
        if self.offset_s is not None:
            ev["offset_s"] = self.offset_s
        if self.detail:
            ev["detail"] = dict(self.detail)
        if self.error is not None:
            ev["error"] = self.error
        return ev


@record(frozen=True)
class Measurement:
    """One usable NTP offset: reference - local (positive: this host is behind)."""

    source: str
    offset_s: float
    stratum: Optional[int] = None
    delay_s: Optional[float] = None

    def to_json(self) -> Dict[str, Any]:
        return {"source": self.source, "offset_s": self.offset_s, "stratum": self.stratum,
                "delay_s": self.delay_s}


@record(frozen=True)
class ClockEvidence:
    kernel: KernelClock
    daemons: Tuple[DaemonView, ...]
    running_time_daemons: Tuple[str, ...]
    measurements: Tuple[Measurement, ...]
    offset_s: Optional[float]
    offset_source: Optional[str]
    warn_s: float
    fail_s: float
    service: str  # the chrony unit name on this distribution ("chrony" or "chronyd")
    ntp_servers: Tuple[str, ...] = ()  # the plan's NTP servers
    disagreement: str = ""

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {
            "kernel": self.kernel.to_json(),
            "daemons": [d.to_json() for d in self.daemons],
            "running_time_daemons": list(self.running_time_daemons),
            "ntp": [m.to_json() for m in self.measurements],
            "offset_s": self.offset_s,
            "offset_source": self.offset_source,
            "thresholds_s": {"warn": self.warn_s, "fail": self.fail_s},
            "service": self.service,
        }
        if self.disagreement:
            ev["disagreement"] = self.disagreement
        return ev


# ----------------------------------------------------------------------------------------- crash
@record(frozen=True)
class Crash:
    """A check raised: a bug in edgecheck, not a finding about the host."""

    exception: str
    error: str

    def to_json(self) -> Dict[str, Any]:
        return {"exception": self.exception, "error": self.error}


# ---------------------------------------------------------------------------------------- reach
@record(frozen=True)
class ReachProbe:
    """What `edgecheck reach` found on one node port. The JSON is the probe's own (the reach
    evidence schema in edgecheck/report/schema.json); the fields are what the diagnosis reads."""

    data: Mapping[str, Any]  # edgecheck.reach.probeloop.ProbeResult.evidence(), plus the token fingerprint
    method: str  # "token" | "tls" | "http" | "https" | "tcp"
    outcome: str  # edgecheck.reach.probeloop.Outcome value
    detail: str
    local: Optional[str] = None  # this host's address the probe left from
    seen_source: Optional[str] = None  # the source address the node saw (token probes only)
    nat: Optional[str] = None  # "none" | "port" | "address" when the node said what it saw
    rejected_by: Optional[str] = None  # who sent the ICMP error that ended the probe
    rejected_by_node: bool = False  # ... and that was the node itself
    port_unreachable: bool = False  # ... and it said "port unreachable" (UDP: nothing listens, or REJECT)
    blocked_locally: bool = False  # this host's own packet filter stopped the probe
    clock_offset_s: Optional[float] = None  # token probes: the node's clock minus this host's

    def to_json(self) -> Dict[str, Any]:
        return dict(self.data)
