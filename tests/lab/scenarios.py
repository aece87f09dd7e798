"""Scenario building blocks: CLI arguments per (mode, phase, version), the fault catalogue, and a
per-session cache of runs (each distinct scenario runs the real CLI exactly once)."""

from __future__ import annotations

import ipaddress
import json
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tests.lab.lab import (APISERVER_DEDICATED, APISERVER_PUBLIC, CLOSED_ADDR, RAVEN_ADDR, TUNNEL_ADDR, Lab, RunResult)

REGION = "cn-hangzhou"
MODES = ("public", "dedicated")
PHASES = ("join", "running")
VERSIONS = ("1.24", "1.28")
COMBOS = [(m, p, v) for m in MODES for p in PHASES for v in VERSIONS]
PROBE_TIMEOUT = "2"  # seconds per probe: faults that hang cost this much, once per run
INBOUND_TCP = (10250, 10255, 9100, 9445)
INBOUND_UDP = (8472,)

Combo = Tuple[str, str, str]

# system:* settings the lab cannot set in its namespaces: kernel modules, swap and the conntrack
# table belong to the machine running the tests, so their verdict is the machine's business (like
# the clock's sync flag). IPv6 is off in the lab's namespaces. The lab sets the per-namespace
# ones the node needs (ip_forward, rp_filter): those must pass.
MACHINE_KERNEL = ("system:module:br_netfilter", "system:net.bridge.bridge-nf-call-iptables",
                  "system:net.bridge.bridge-nf-call-ip6tables", "system:module:vxlan", "system:swap",
                  "system:net.netfilter.nf_conntrack_max", "system:net.ipv6.conf.all.forwarding")


def machine_kernel_check(check: Dict[str, Any]) -> bool:
    """A system:* check decided by the test machine's kernel, not by the lab."""
    if check["id"] not in MACHINE_KERNEL:
        return False
    assert check["reason"] in ("ok", "kernel-setting", "not-applicable"), check
    return True


def ready_but_for_the_machine(report: Dict[str, Any]) -> bool:
    """READY, or failing only in kernel settings of the machine the tests run on."""
    failing = [c for c in report["checks"] if c["status"] == "fail"]
    return all(c["id"] in MACHINE_KERNEL for c in failing)


def combo_id(combo: Combo) -> str:
    return "-".join(combo)


def apiserver_addr(mode: str) -> str:
    return APISERVER_PUBLIC if mode == "public" else APISERVER_DEDICATED


def base_args(lab: Lab, combo: Combo, *, apiserver: Optional[str] = "default", apiserver_ca: Optional[str] = None,
              raven: bool = True, tunnel: bool = True) -> List[str]:
    mode, phase, version = combo
    args = ["--region", REGION, "--mode", mode, "--phase", phase, "--k8s-version", version,
            "--timeout", PROBE_TIMEOUT]
    if apiserver == "default":
        apiserver = apiserver_addr(mode)
    if apiserver:
        args += ["--apiserver", apiserver, "--apiserver-ca", apiserver_ca or str(lab.cluster_ca.cert)]
    if mode == "public" and raven:
        args += ["--raven-gateway", RAVEN_ADDR]
    if mode == "public" and version == "1.24" and tunnel:
        args += ["--tunnel-server", TUNNEL_ADDR]
    return args


def all_inbound_listeners() -> List[str]:
    return [f"tcp:0.0.0.0:{p}" for p in INBOUND_TCP] + [f"udp:0.0.0.0:{p}" for p in INBOUND_UDP]


def host_matching(lab: Lab, pattern: str) -> str:
    """The one catalog hostname matching pattern ({region} substituted)."""
    rx = re.compile("^" + pattern.replace("{region}", re.escape(REGION)) + "$")
    found = [h for h in lab.hosts if rx.match(h)]
    assert len(found) == 1, f"pattern {pattern!r} matches {found} in the plan's hostnames {sorted(lab.hosts)}"
    return found[0]


# ---------------------------------------------------------------------------------- faults

def drop_tcp(lab: Lab, host: str, port: Optional[int] = None) -> Any:
    port_match = ["--dport", str(port)] if port else []
    return lab.cloud_firewall([["INPUT", "-d", a, "-p", "tcp", *port_match, "-j", "DROP"]
                               for a in lab_addresses(lab, host)])


def reject(lab: Lab, host: str, proto: str, with_: str, port: Optional[int] = None,
           addresses: Optional[Sequence[str]] = None) -> Any:
    port_match = ["--dport", str(port)] if port else []
    return lab.cloud_firewall([["INPUT", "-d", a, "-p", proto, *port_match, "-j", "REJECT", "--reject-with", with_]
                               for a in (addresses or lab_addresses(lab, host))])


def drop_udp(lab: Lab, host: str, port: int) -> Any:
    return lab.cloud_firewall([["INPUT", "-d", a, "-p", "udp", "--dport", str(port), "-j", "DROP"]
                               for a in lab_addresses(lab, host)])


def lab_addresses(lab: Lab, host: str) -> List[str]:
    return lab.addresses_of(host) if host in lab.hosts else [host]


@dataclass(frozen=True)
class Fault:
    """One thing wrong in the lab, and what edgecheck must say about the checks it affects."""

    name: str
    modes: Tuple[str, ...]
    host: str  # hostname pattern ({region}) or a fixed address (IP targets)
    status: str
    reason: str
    apply: Callable[[Lab, str], Any]  # (lab, resolved host) -> context manager
    phases: Tuple[str, ...] = PHASES
    versions: Tuple[str, ...] = VERSIONS
    ports: Optional[Tuple[int, ...]] = None  # only these checks of the host carry the fault
    protocol: str = "tcp"
    evidence: Optional[Callable[[Lab, str], str]] = None  # a string the check's evidence must contain
    optional_host: bool = False  # the host exists in this combo's plan only sometimes (install stage)

    def applies(self, combo: Combo) -> bool:
        mode, phase, version = combo
        return mode in self.modes and phase in self.phases and version in self.versions

    def resolve(self, lab: Lab) -> str:
        """IP targets (API server, Raven, tunnel) are given as addresses; names are patterns."""
        try:
            ipaddress.ip_address(self.host)
            return self.host
        except ValueError:
            return host_matching(lab, self.host)


FAULTS: List[Fault] = [
    # --- public mode
    Fault("firewall-drops-control-plane", ("public",), r"cs-anony\.{region}\.aliyuncs\.com", "fail", "timeout",
          lambda lab, h: drop_tcp(lab, h)),
    Fault("firewall-resets-global-control-plane", ("public",), r"cs-anony\.aliyuncs\.com", "fail", "refused",
          lambda lab, h: reject(lab, h, "tcp", "tcp-reset")),
    Fault("record-missing", ("public",), r"dockerauth\.{region}\.aliyuncs\.com", "fail", "nxdomain",
          lambda lab, h: lab.dns({h: None})),
    Fault("wrong-ca", ("public",), r"dockerauth-ee\.{region}\.aliyuncs\.com", "fail", "tls-verify-failed",
          lambda lab, h: lab.dns({h: [lab.rogue_for(h)]})),
    Fault("host-unreachable", ("public",), r"registry-{region}\.ack\.aliyuncs\.com", "fail", "unreachable",
          lambda lab, h: reject(lab, h, "tcp", "icmp-host-unreachable")),
    Fault("plain-http-on-443", ("public",), r"aliacs-k8s-{region}\.oss-{region}\.aliyuncs\.com", "fail",
          "tls-handshake-failed", lambda lab, h: lab.dns({h: [lab.plain_for(h)]}), phases=("join",), ports=(443,)),
    Fault("plain-http-on-443-port-80-fine", ("public",), r"aliacs-k8s-{region}\.oss-{region}\.aliyuncs\.com",
          "pass", "ok", lambda lab, h: _nothing(), phases=("join",), versions=("1.24",), ports=(80,)),
    Fault("apiserver-nothing-listens", ("public",), CLOSED_ADDR, "fail", "refused", lambda lab, h: _nothing(),
          ports=(6443,)),
    Fault("raven-tcp-dropped", ("public",), RAVEN_ADDR, "fail", "timeout",
          lambda lab, h: drop_tcp(lab, h, 10281), ports=(10281,)),
    Fault("raven-tcp-others-fine", ("public",), RAVEN_ADDR, "pass", "ok", lambda lab, h: _nothing(),
          ports=(10280, 10282, 10283, 10284)),
    Fault("ike-silently-dropped", ("public",), RAVEN_ADDR, "warn", "no-response",
          lambda lab, h: drop_udp(lab, h, 4500), phases=("join",), versions=("1.28",), ports=(4500,), protocol="udp"),
    Fault("ike-port-unreachable", ("public",), RAVEN_ADDR, "fail", "refused",
          lambda lab, h: reject(lab, h, "udp", "icmp-port-unreachable", 4500),
          phases=("join",), versions=("1.24",), ports=(4500,), protocol="udp"),
    Fault("ike-host-unreachable", ("public",), RAVEN_ADDR, "fail", "unreachable",
          lambda lab, h: reject(lab, h, "udp", "icmp-host-unreachable", 4500),
          phases=("running",), versions=("1.28",), ports=(4500,), protocol="udp"),
    Fault("ike-answered", ("public",), RAVEN_ADDR, "pass", "ok", lambda lab, h: _nothing(),
          phases=("running",), versions=("1.24",), ports=(4500,), protocol="udp"),
    Fault("tunnel-port-reset", ("public",), TUNNEL_ADDR, "fail", "refused",
          lambda lab, h: reject(lab, h, "tcp", "tcp-reset", 10263), versions=("1.24",), ports=(10263,)),
    Fault("tunnel-other-port-fine", ("public",), TUNNEL_ADDR, "pass", "ok", lambda lab, h: _nothing(),
          versions=("1.24",), ports=(10262,)),
    Fault("ntp-dropped", ("public",), r"cn\.ntp\.org\.cn", "fail", "timeout",
          lambda lab, h: drop_udp(lab, h, 123), protocol="udp"),
    Fault("ntp-fine", ("public",), r"ntp1\.aliyun\.com", "pass", "ok", lambda lab, h: _nothing(), protocol="udp"),
    # --- dedicated mode
    Fault("firewall-drops-control-plane", ("dedicated",), r"cs-anony-vpc\.{region}\.aliyuncs\.com", "fail",
          "timeout", lambda lab, h: drop_tcp(lab, h)),
    Fault("record-missing", ("dedicated",), r"dockerauth-vpc\.{region}\.aliyuncs\.com", "fail", "nxdomain",
          lambda lab, h: lab.dns({h: None})),
    # seed 003: "not available in some regions and can be skipped" -> a warning, not a failure
    Fault("optional-record-missing", ("dedicated",), r"dockerauth-ee-vpc\.{region}\.aliyuncs\.com", "warn",
          "nxdomain", lambda lab, h: lab.dns({h: None})),
    Fault("resolves-outside-route", ("dedicated",), r"registry-{region}-vpc\.ack\.aliyuncs\.com", "fail",
          "address-outside-expected-cidr", lambda lab, h: lab.dns({h: [lab.outside_for(h)]}),
          versions=("1.28",), evidence=lambda lab, h: lab.outside_for(h)),
    Fault("one-of-two-vips-unreachable", ("dedicated",), r"registry-{region}-vpc\.ack\.aliyuncs\.com", "fail",
          "unreachable", lambda lab, h: reject(lab, h, "tcp", "icmp-host-unreachable",
                                               addresses=lab.addresses_of(h)[1:]),
          versions=("1.24",), evidence=lambda lab, h: lab.addresses_of(h)[1]),
    Fault("plain-http-on-443", ("dedicated",), r"aliregistry-{region}\.oss-{region}-internal\.aliyuncs\.com",
          "fail", "tls-handshake-failed", lambda lab, h: lab.dns({h: [lab.plain_for(h)]})),
    Fault("wrong-ca", ("dedicated",), r"aliacs-k8s-{region}\.oss-{region}-internal\.aliyuncs\.com", "fail",
          "tls-verify-failed", lambda lab, h: lab.dns({h: [lab.rogue_for(h)]}), phases=("join",), ports=(443,)),
    Fault("wrong-ca-port-80-fine", ("dedicated",), r"aliacs-k8s-{region}\.oss-{region}-internal\.aliyuncs\.com",
          "pass", "ok", lambda lab, h: _nothing(), phases=("join",), versions=("1.24",), ports=(80,)),
    Fault("apiserver-wrong-cluster-ca", ("dedicated",), APISERVER_DEDICATED, "fail", "tls-verify-failed",
          lambda lab, h: _nothing(), ports=(6443,)),
    Fault("ntp-dropped", ("dedicated",), r"ntp1\.aliyun\.com", "fail", "timeout",
          lambda lab, h: drop_udp(lab, h, 123), protocol="udp"),
]


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _nothing() -> _Nothing:
    return _Nothing()


def faults_for(combo: Combo) -> List[Fault]:
    return [f for f in FAULTS if f.applies(combo)]


def fault_args(lab: Lab, combo: Combo) -> List[str]:
    mode = combo[0]
    if mode == "public":
        return base_args(lab, combo, apiserver=CLOSED_ADDR)
    # the dedicated API server is verified against the wrong CA (the public lab CA)
    return base_args(lab, combo, apiserver_ca=str(lab.ca.cert))


def fault_listeners(combo: Combo) -> List[str]:
    """join: a process holds 10250 (port-in-use); running: only 10250 and 9100 listen."""
    if combo[1] == "join":
        return ["tcp:0.0.0.0:10250"]
    return ["tcp:0.0.0.0:10250", "tcp:0.0.0.0:9100"]


# ---------------------------------------------------------------------------------- run cache

@dataclass
class Runs:
    """Runs each named scenario once per session; tests then assert on the cached result."""

    lab: Lab
    cache: Dict[Any, Tuple[RunResult, Dict[str, Any]]] = field(default_factory=dict)

    def get(self, key: Any, runner: Callable[[], Tuple[RunResult, Dict[str, Any]]]) -> Tuple[RunResult, Dict[str, Any]]:
        if key not in self.cache:
            self.cache[key] = runner()
        return self.cache[key]

    def healthy(self, combo: Combo) -> Tuple[RunResult, Dict[str, Any]]:
        def run() -> Tuple[RunResult, Dict[str, Any]]:
            with ExitStack() as stack:
                info: Dict[str, Any] = {}
                if combo[1] == "running":
                    info["listeners"] = stack.enter_context(self.lab.node_listeners(all_inbound_listeners())).pid
                return self.lab.run_edgecheck(base_args(self.lab, combo)), info
        return self.get(("healthy", combo), run)

    def faulty(self, combo: Combo) -> Tuple[RunResult, Dict[str, Any]]:
        def run() -> Tuple[RunResult, Dict[str, Any]]:
            with ExitStack() as stack:
                info: Dict[str, Any] = {"hosts": {}}
                for fault in faults_for(combo):
                    host = fault.resolve(self.lab)
                    info["hosts"][fault.name] = host
                    stack.enter_context(fault.apply(self.lab, host))
                listener = stack.enter_context(self.lab.node_listeners(fault_listeners(combo)))
                info["listener_pid"] = listener.pid
                return self.lab.run_edgecheck(fault_args(self.lab, combo)), info
        return self.get(("faulty", combo), run)


def checks_for(result: RunResult, host: str, fault: Fault) -> List[Dict[str, Any]]:
    out = []
    for c in result.checks(lambda c: c["kind"] == "endpoint"):
        tgt = c.get("target") or {}
        if tgt.get("host") != host or tgt.get("protocol") != fault.protocol:
            continue
        if fault.ports is not None and tgt.get("port") not in fault.ports:
            continue
        out.append(c)
    return out


def evidence_text(check: Dict[str, Any]) -> str:
    return json.dumps(check.get("evidence") or {}, sort_keys=True)
