"""The concepts every layer shares: targets (what to check), results (what was found), reports.

Data flows catalog -> plan (list of Target) -> checks (Target -> CheckResult) -> Report ->
renderers. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple


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

    def __str__(self) -> str:
        return self.value


class Kind(str, enum.Enum):
    """What a check looks at; the prefix of its id."""

    ENDPOINT = "endpoint"  # something the node must reach
    INBOUND = "inbound"  # a port on this host the cloud must reach
    TOOL = "tool"  # an executable the installer needs
    CLOCK = "clock"  # the local clock

    def __str__(self) -> str:
        return self.value


class Probe(str, enum.Enum):
    """How a target is checked; selects the check implementation."""

    HTTPS = "https"  # DNS, TCP connect, TLS handshake with verification, one HTTP request
    HTTP = "http"  # DNS, TCP connect, one plain HTTP request
    TCP = "tcp"  # DNS, TCP connect to every address
    NTP = "ntp"  # DNS, one NTP exchange (UDP 123)
    IKE = "ike"  # DNS, IKEv2 IKE_SA_INIT over NAT-T (UDP 4500)
    INBOUND = "inbound"  # local port free (join) or listening (running)
    TOOL = "tool"  # executables on PATH / sbin
    CLOCK = "clock"  # local clock synchronisation + NTP offset

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
    """When the seeds say an endpoint is needed; a catalog property of an endpoint."""

    INSTALL = "install"  # "during node installation and upgrade"
    OPERATION = "operation"  # "during ongoing cluster operations"

    def __str__(self) -> str:
        return self.value


class Trust(str, enum.Enum):
    """Which trust anchors verify a TLS endpoint."""

    PUBLIC = "public"  # --ca-bundle / REQUESTS_CA_BUNDLE / SSL_CERT_FILE / system store
    CLUSTER = "cluster"  # the cluster's own CA (--apiserver-ca); unverified when not given


@dataclass(frozen=True)
class Skip:
    """A target the plan already knows it will not probe, and why."""

    reason: Reason  # NOT_APPLICABLE or MISSING_INPUT
    message: str


@dataclass(frozen=True)
class ToolSpec:
    """A package the installer needs, proven present by any one of its executables."""

    name: str  # package name as the seeds spell it, e.g. "conntrack-tools"
    executables: Tuple[str, ...]
    packages: Mapping[str, str]  # distribution family -> package name, e.g. {"debian": "conntrack"}


@dataclass(frozen=True)
class Target:
    """One check the plan asks for. Pure data: where, what, why, and what counts as correct."""

    id: str  # stable, e.g. "endpoint:cs-anony.cn-hangzhou.aliyuncs.com:443/tcp"
    kind: Kind
    probe: Probe
    name: str  # human purpose, from the seeds
    why: str  # why this target is in the plan (mode, phase, version, plugin, input)
    source: str  # seed file (or targets file) the fact comes from
    entry: str  # catalog entry id that produced this target
    host: Optional[str] = None
    port: Optional[int] = None
    protocol: Optional[str] = None  # "tcp" | "udp"
    stage: Optional[Stage] = None  # endpoints only
    expected_cidrs: Tuple[str, ...] = ()  # dedicated mode: every resolved address must be inside
    cidr_source: str = ""  # where expected_cidrs come from, for messages
    optional: bool = False  # the seeds say it may be absent: NXDOMAIN is a warning, not a failure
    trust: Trust = Trust.PUBLIC
    expect: Optional[str] = None  # inbound only: "free" (join) or "listening" (running)
    tool: Optional[ToolSpec] = None  # tool only
    skip: Optional[Skip] = None  # decided at plan time: no packet is sent
    notes: Tuple[str, ...] = ()  # special cases the seeds state for this endpoint

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


@dataclass
class CheckResult:
    """What one check found. Checks return these; they never print."""

    id: str
    kind: Kind
    name: str
    target: Dict[str, Any]
    status: Status
    reason: Reason
    message: str
    remediation: str = ""
    duration_ms: int = 0
    evidence: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        target: Target,
        status: Status,
        reason: Reason,
        message: str,
        *,
        remediation: str = "",
        evidence: Optional[Dict[str, Any]] = None,
        duration_ms: int = 0,
    ) -> "CheckResult":
        return cls(
            id=target.id,
            kind=target.kind,
            name=target.name,
            target=target.target_fields(),
            status=status,
            reason=reason,
            message=message,
            remediation=remediation,
            duration_ms=duration_ms,
            evidence=dict(evidence or {}),
        )


@dataclass(frozen=True)
class RunContext:
    """Everything a check may need besides its target. Built once per run by the CLI."""

    timeout: float = 3.0  # per probe, seconds
    deadline: float = float("inf")  # time.monotonic() value after which nothing new starts
    ca_bundle: Optional[str] = None  # --ca-bundle (already merged with REQUESTS_CA_BUNDLE/SSL_CERT_FILE)
    apiserver_ca: Optional[str] = None  # --apiserver-ca: the cluster CA for Trust.CLUSTER
    environ: Mapping[str, str] = field(default_factory=dict)  # proxy variables as the run saw them
    resolv_conf: str = "/etc/resolv.conf"
    os_release: str = "/etc/os-release"
    tool_path: Optional[str] = None  # PATH-like search list for tool checks; None = PATH + sbin dirs
    phase: Phase = Phase.JOIN
    mode: Mode = Mode.PUBLIC
    targets: Tuple[Target, ...] = ()  # the whole plan, for checks that summarise (one install command)
    ntp_results: Tuple[CheckResult, ...] = ()  # filled by the engine before clock checks run

    def remaining(self) -> float:
        """Seconds left before the hard deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())


@dataclass
class Report:
    """One run: the inputs, the host, and every check result in plan order."""

    generated_at: str  # RFC 3339 UTC, e.g. "2026-11-21T05:43:18Z"
    agent_version: str
    host: Dict[str, Any]  # hostname, os, kernel, arch
    params: Dict[str, Any]  # the inputs used (no secrets)
    checks: list  # list[CheckResult], plan order
    warnings: list = field(default_factory=list)  # list[str]: plan-time warnings (unknown region, ignored input)
    duration_ms: int = 0

    @property
    def ready(self) -> bool:
        return not any(c.status is Status.FAIL for c in self.checks)

    @property
    def summary(self) -> Dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for c in self.checks:
            counts[c.status.value] += 1
        return counts
