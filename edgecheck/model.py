"""The concepts every layer shares: targets (what to check), results (what was found), reports.

Data flows catalog -> plan (list of Target) -> checks (Target -> CheckResult) -> diagnosis
(remediation and findings) -> Report -> renderers. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Protocol, Tuple, Type, TypeVar

from edgecheck.records import record


class Status(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"

    def __str__(self) -> str:
        return self.value


class Reason(str, enum.Enum):
    """Machine-readable cause of a status. Values are part of the JSON contract (SPEC section 3)."""

    OK = "ok"
    NXDOMAIN = "nxdomain"
    DNS_TIMEOUT = "dns-timeout"
    DNS_ERROR = "dns-error"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    TLS_VERIFY_FAILED = "tls-verify-failed"
    TLS_HANDSHAKE_FAILED = "tls-handshake-failed"
    PROXY_ERROR = "proxy-error"
    ADDRESS_OUTSIDE_EXPECTED_CIDR = "address-outside-expected-cidr"
    NO_RESPONSE = "no-response"
    CLOCK_OFFSET = "clock-offset"
    PORT_IN_USE = "port-in-use"
    PORT_NOT_LISTENING = "port-not-listening"
    TOOL_MISSING = "tool-missing"
    NOT_APPLICABLE = "not-applicable"
    MISSING_INPUT = "missing-input"
    # Beyond the SPEC minimum.
    CLOCK_UNSYNCHRONISED = "clock-unsynchronised"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL_ERROR = "internal-error"
    LOOPBACK_ONLY = "loopback-only"  # inbound: listening, but only on 127.0.0.1/::1 (unreachable from the cloud)
    COMPONENT_UNHEALTHY = "component-unhealthy"  # a local component (YurtHub) is down or says it does not work
    # SPEC 7.1
    HOST_FIREWALL = "host-firewall"  # this host's own packet filter drops or rejects the traffic
    KERNEL_SETTING = "kernel-setting"  # a kernel setting this host needs for the node is wrong
    UNPROVEN = "unproven"  # reach: something accepted the connection but did not prove to be the listener
    PATH_MTU = "path-mtu"  # SPEC 7.1: TCP connects, large packets are lost (a smaller MSS works)
    TLS_INTERCEPTED = "tls-intercepted"  # the chain verifies on the system store only: re-signed on the way

    def __str__(self) -> str:
        return self.value


class Kind(str, enum.Enum):
    """What a check looks at; the prefix of its id."""

    ENDPOINT = "endpoint"  # something the node must reach
    INBOUND = "inbound"  # a port on this host the cloud must reach
    TOOL = "tool"  # an executable the installer needs
    CLOCK = "clock"  # the local clock
    COMPONENT = "component"  # a node component found running here (YurtHub)
    SYSTEM = "system"  # a kernel setting of this host (SPEC 7.2)
    REACH = "reach"  # a node's inbound port, probed from the other side (`edgecheck reach`)
    DNS = "dns"  # a nameserver of this host's resolver configuration (SPEC 7.2)

    def __str__(self) -> str:
        return self.value


class Mode(str, enum.Enum):
    PUBLIC = "public"
    DEDICATED = "dedicated"

    def __str__(self) -> str:
        return self.value


class Phase(str, enum.Enum):
    """The node's life-cycle phase, chosen by the user."""

    JOIN = "join"  # before joining or upgrading: install-time and operation endpoints
    RUNNING = "running"  # joined: operation endpoints only

    def __str__(self) -> str:
        return self.value


class Stage(str, enum.Enum):
    """When the documentation says an endpoint is needed; a catalog property of an endpoint."""

    INSTALL = "install"  # "during node installation and upgrade"
    OPERATION = "operation"  # "during ongoing cluster operations"

    def __str__(self) -> str:
        return self.value


class Trust(str, enum.Enum):
    """Which trust anchors verify a TLS endpoint."""

    PUBLIC = "public"  # --ca-bundle / REQUESTS_CA_BUNDLE / SSL_CERT_FILE / system store
    CLUSTER = "cluster"  # the cluster's own CA (--apiserver-ca); unverified when not given

    def __str__(self) -> str:
        return self.value


@record(frozen=True)
class Skip:
    """A target the plan already knows it will not probe, and why."""

    reason: Reason  # NOT_APPLICABLE or MISSING_INPUT
    message: str


@record(frozen=True)
class ToolSpec:
    """A package the installer needs, proven present by any one of its executables."""

    name: str  # package name as the documentation spells it, e.g. "conntrack-tools"
    executables: Tuple[str, ...]
    packages: Mapping[str, str]  # distribution family -> package name, e.g. {"debian": "conntrack"}


@record(frozen=True)
class Component:
    """What serves an inbound port on a joined node (catalog data, targets/endpoints.toml)."""

    name: str
    check: str  # how to see whether it runs
    bind: str  # how to make it listen on the node's address


@record(frozen=True)
class Target:
    """One check the plan asks for. Pure data: where, what, why, and what counts as correct."""

    id: str  # stable, e.g. "endpoint:cs-anony.cn-hangzhou.aliyuncs.com:443/tcp"
    kind: Kind
    probe: str  # a probe kind of edgecheck.registry, e.g. "https"
    name: str  # human purpose, from the documentation
    why: str  # why this target is in the plan (mode, phase, version, plugin, input)
    source: str  # title of the documentation page (or the targets file) the fact comes from
    entry: str  # catalog entry id that produced this target
    host: Optional[str] = None
    port: Optional[int] = None
    protocol: Optional[str] = None  # "tcp" | "udp"
    stage: Optional[Stage] = None  # endpoints only
    expected_cidrs: Tuple[str, ...] = ()  # dedicated mode: every resolved address must be inside
    cidr_source: str = ""  # where expected_cidrs come from, for messages
    optional: bool = False  # the documentation says it may be absent: NXDOMAIN is a warning
    trust: Trust = Trust.PUBLIC
    expect: Optional[str] = None  # inbound only: "free" (join) or "listening" (running)
    allowed_from: str = ""  # inbound only: who must reach the port (from the catalog, per mode)
    component: Optional[Component] = None  # inbound only: what serves the port
    leftovers: Tuple[str, ...] = ()  # inbound only: processes an earlier installation leaves on it
    answers: str = ""  # inbound: what the joined node's component speaks on the port ("tls", "http";
    #                    catalog); reach: how the probe proves the port ("token", "tls", "http", "tcp")
    tool: Optional[ToolSpec] = None  # tool only
    skip: Optional[Skip] = None  # decided at plan time: no packet is sent
    notes: Tuple[str, ...] = ()  # special cases the documentation states for this endpoint
    upstream_of: Optional[str] = None  # dns only: the loopback stub in resolv.conf this nameserver serves

    def target_fields(self) -> Dict[str, Any]:
        """The JSON `target` object: host, port, protocol where they apply."""
        out: Dict[str, Any] = {}
        if self.host is not None:
            out["host"] = self.host
        if self.port is not None:
            out["port"] = self.port
        if self.protocol is not None:
            out["protocol"] = self.protocol
        return out

    @property
    def where(self) -> str:
        """'host:port/proto' as ids show it (IPv6 hosts bracketed)."""
        return self.id.split(":", 1)[1]


class EvidencePart(Protocol):
    """One observation a check made (edgecheck/evidence.py): typed, and its own JSON keys."""

    def to_json(self) -> Dict[str, Any]: ...


P = TypeVar("P")


class Evidence:
    """What a check observed, as typed parts in the order they were made.

    The JSON evidence object is the parts' keys merged in that order; consumers in code ask for
    a part by its type (`evidence.find(TlsResult)`) instead of digging in dictionaries.
    """

    def __init__(self, *parts: EvidencePart) -> None:
        self._parts: List[EvidencePart] = [p for p in parts if p is not None]

    def add(self, part: Optional[EvidencePart]) -> None:
        """Add a part; one of the same type replaces the earlier one (a retry's newer view)."""
        if part is None:
            return
        self._parts = [p for p in self._parts if type(p) is not type(part)] + [part]

    def find(self, kind: Type[P]) -> Optional[P]:
        for part in self._parts:
            if isinstance(part, kind):
                return part
        return None

    def __iter__(self) -> Iterator[EvidencePart]:
        return iter(self._parts)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for part in self._parts:
            out.update(part.to_json())
        return out


@record
class CheckResult:
    """What one check found. Checks return these; they never print and never advise: the
    diagnosis layer writes `remediation` (edgecheck.diagnosis)."""

    target: Target
    status: Status
    reason: Reason
    message: str
    evidence: Evidence = field(default_factory=Evidence)
    duration_ms: int = 0
    remediation: str = ""

    @property
    def id(self) -> str:
        return self.target.id

    @property
    def kind(self) -> Kind:
        return self.target.kind

    @property
    def name(self) -> str:
        return self.target.name


@record(frozen=True)
class Finding:
    """Checks of one status that share a root cause, and what to do about it (edgecheck.diagnosis)."""

    cause: str  # stable across runs and nodes, e.g. "dns-timeout:nameservers=10.0.0.2"
    status: Status
    reason: Reason
    title: str  # count-free, e.g. "DNS lookups time out at nameserver 10.0.0.2"
    checks: Tuple[CheckResult, ...]
    advice: Tuple[str, ...] = ()  # paragraphs
    command: str = ""  # one command that fixes the whole finding
    details: Tuple[str, ...] = ()  # per check, shown next to it ("" when nothing to add)

    @property
    def headline(self) -> str:
        """The title with what it covers; a single check's own message is the most specific."""
        if len(self.checks) == 1 and self.checks[0].message:
            return self.checks[0].message
        return f"{self.title}: {_what(self.checks)}"


def _what(checks: Tuple[CheckResult, ...]) -> str:
    nouns = {Kind.ENDPOINT: "endpoint", Kind.INBOUND: "port", Kind.TOOL: "tool", Kind.CLOCK: "clock check",
             Kind.COMPONENT: "component", Kind.SYSTEM: "kernel setting", Kind.REACH: "node port",
             Kind.DNS: "nameserver"}
    kinds = {c.kind for c in checks}
    noun = nouns.get(kinds.pop(), "check") if len(kinds) == 1 else "check"
    n = len(checks)
    return f"{n} {noun}" + ("" if n == 1 else "s")


@record
class Report:
    """One run: the inputs, the host, every check result in plan order, and the diagnosis."""

    generated_at: str  # RFC 3339 UTC, e.g. "2026-11-21T05:43:18Z"
    agent_version: str
    host: Dict[str, Any]  # hostname, os, kernel, arch
    params: Dict[str, Any]  # the inputs used (no secrets)
    checks: List[CheckResult]  # plan order
    warnings: List[str] = field(default_factory=list)  # plan-time warnings (unknown region, ignored input)
    duration_ms: int = 0
    strict: bool = False  # --strict: warnings (a check's or the plan's) count as failures
    findings: List[Finding] = field(default_factory=list)  # filled by edgecheck.diagnosis

    @property
    def ready(self) -> bool:
        return not any(c.status is Status.FAIL for c in self.checks)

    @property
    def passes(self) -> bool:
        """The verdict: ready, and under --strict also free of warnings."""
        if not self.ready:
            return False
        return not (self.strict and (self.summary[Status.WARN.value] or self.warnings))

    @property
    def summary(self) -> Dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for c in self.checks:
            counts[c.status.value] += 1
        return counts
