"""Realistic edgecheck/report/v1 reports for a whole site, for fleet tests and the fleet bench.

    python3 -m bench.fleet_reports DIR --count 1000 [--seed 7]

Each report has the checks of a real plan (cn-hangzhou, public mode, join phase, k8s 1.28, API
server and Raven gateway given: 11 endpoints, 5 inbound ports, 9 tools, the clock), evidence
shaped like the probes', and, like the reports of edgecheck versions that group failures, a
top-level `findings` list (cause, status, reason, count-free title, check ids, advice, command).
Some reports are written without `findings`, as older versions do.

Faults are named (FAULTS) and each says which checks it breaks and the finding it produces, so
tests know exactly which node must appear under which cause.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REGION = "cn-hangzhou"
NAMESERVER = "10.20.0.53"
APISERVER = "203.0.113.10"
RAVEN = "203.0.113.20"

# (check id, name, host, port, protocol, probe) of the plan `edgecheck targets --region cn-hangzhou`
# prints with --apiserver and --raven-gateway.
ENDPOINTS: Tuple[Tuple[str, str, str, int, str, str], ...] = (
    ("aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com", "Component packages (OSS): edgeadm, kubelet, CNI, runtime, edgehub",
     "aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com", 443, "tcp", "https"),
    ("cs-anony.aliyuncs.com", "Container Service control plane (management endpoint)", "cs-anony.aliyuncs.com", 443, "tcp", "https"),
    ("cs-anony.cn-hangzhou.aliyuncs.com", "Container Service control plane (management endpoint)",
     "cs-anony.cn-hangzhou.aliyuncs.com", 443, "tcp", "https"),
    (APISERVER, "API Server: all interaction with kube-apiserver", APISERVER, 6443, "tcp", "https"),
    *((RAVEN, "Raven cloud gateway SLB: Raven tunnel", RAVEN, port, "tcp", "tcp") for port in range(10280, 10285)),
    (RAVEN, "Raven cloud gateway SLB: Raven tunnel (IPsec NAT-T)", RAVEN, 4500, "udp", "ike"),
    ("dockerauth.cn-hangzhou.aliyuncs.com", "System component images (registry authentication)",
     "dockerauth.cn-hangzhou.aliyuncs.com", 443, "tcp", "https"),
    ("dockerauth-ee.cn-hangzhou.aliyuncs.com", "System component images (registry authentication, Enterprise Edition)",
     "dockerauth-ee.cn-hangzhou.aliyuncs.com", 443, "tcp", "https"),
    ("registry-cn-hangzhou.ack.aliyuncs.com", "System component images (registry)",
     "registry-cn-hangzhou.ack.aliyuncs.com", 443, "tcp", "https"),
    ("ntp1.aliyun.com", "NTP: clock synchronization", "ntp1.aliyun.com", 123, "udp", "ntp"),
    ("cn.ntp.org.cn", "NTP: clock synchronization", "cn.ntp.org.cn", 123, "udp", "ntp"),
)
INBOUND = ((10250, "tcp", "kubelet: API Server and Metrics Server access (proxied by Raven in public mode)"),
           (10255, "tcp", "kubelet: API Server and Metrics Server access (proxied by Raven in public mode)"),
           (9100, "tcp", "Node-Exporter: Prometheus scrapes monitoring data"),
           (9445, "tcp", "Node-Exporter: Prometheus scrapes monitoring data"),
           (8472, "udp", "Flannel VXLAN overlay between nodes"))
TOOLS = (("net-tools", "netstat"), ("iproute", "ip"), ("chrony", "chronyd"), ("crontabs", "crontab"),
         ("pciutils", "lspci"), ("socat", "socat"), ("ebtables", "ebtables"), ("iptables", "iptables"),
         ("conntrack-tools", "conntrack"))
RESOLVER = {"source": "/etc/resolv.conf", "nameservers": [NAMESERVER], "answered_by": NAMESERVER}


def endpoint_id(host: str, port: int, protocol: str) -> str:
    return f"endpoint:{host}:{port}/{protocol}"


def _addr(host: str, rng: random.Random) -> str:
    if host[0].isdigit():
        return host
    return f"47.{96 + len(host) % 8}.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"


def base_checks(rng: random.Random) -> List[Dict[str, Any]]:
    """Every check of the plan, passing (API server CA not given: the run still verifies TLS)."""
    checks: List[Dict[str, Any]] = []
    for _key, name, host, port, proto, probe in ENDPOINTS:
        address = _addr(host, rng)
        ms = rng.randrange(8, 90)
        evidence: Dict[str, Any] = {"addresses": [address], "route": "direct"}
        if not host[0].isdigit():
            evidence["resolver"] = RESOLVER
        if probe == "https":
            evidence["connect"] = [{"address": address, "port": port, "ok": True, "ms": ms // 3, "reason": "ok", "error": ""}]
            evidence["tls"] = {"version": "TLSv1.3", "verified": True, "issuer": "GlobalSign RSA OV SSL CA 2018",
                               "subject": f"*.{host.split('.', 1)[-1]}", "not_after": "2027-06-30T23:59:59Z"}
            evidence["http"] = {"status": 403 if "aliyuncs" in host else 401, "ms": ms}
            message = f"HTTPS to {host} works (HTTP {evidence['http']['status']} in {ms} ms)"
        elif probe == "ntp":
            evidence["ntp"] = {"offset_s": round(rng.uniform(-0.02, 0.02), 6), "stratum": 2, "rtt_ms": ms}
            message = f"NTP answer from {host} (offset {evidence['ntp']['offset_s']:+.3f} s)"
        elif probe == "ike":
            evidence["ike"] = {"sent": True, "answered": True, "notify": "NO_PROPOSAL_CHOSEN"}
            message = f"IKE answer from {host}:4500/udp"
        else:
            evidence["connect"] = [{"address": address, "port": port, "ok": True, "ms": ms // 3, "reason": "ok", "error": ""}]
            message = f"TCP {port} to {host} open"
        checks.append({
            "id": endpoint_id(host, port, proto), "kind": "endpoint", "name": name,
            "target": {"host": host, "port": port, "protocol": proto}, "status": "pass", "reason": "ok",
            "message": message, "remediation": "", "duration_ms": ms, "evidence": evidence,
        })
    for port, proto, name in INBOUND:
        checks.append({
            "id": f"inbound:{port}/{proto}", "kind": "inbound", "name": name, "target": {"port": port, "protocol": proto},
            "status": "pass", "reason": "ok", "message": f"{proto.upper()} {port} is free for the node's components",
            "remediation": "", "duration_ms": 1, "evidence": {"sockets": [], "bind_test": "free"},
        })
    for package, exe in TOOLS:
        checks.append({
            "id": f"tool:{package}", "kind": "tool", "name": f"system tool {package}", "target": {},
            "status": "pass", "reason": "ok", "message": f"{package} is installed: {exe} at /usr/sbin/{exe}.",
            "remediation": "", "duration_ms": 0,
            "evidence": {"executables": [exe], "found": f"/usr/sbin/{exe}", "distribution_package": package},
        })
    checks.append({
        "id": "clock:local", "kind": "clock", "name": "local clock synchronisation", "target": {},
        "status": "pass", "reason": "ok", "message": "The clock is synchronised (offset +0.002 s against ntp1.aliyun.com)",
        "remediation": "", "duration_ms": 30,
        "evidence": {"synchronised": True, "offset_s": 0.0021, "source": "ntp1.aliyun.com"},
    })
    return checks


# ----------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """What one fault does: which checks it changes, and the finding a grouping version writes."""

    name: str
    status: str
    reason: str
    cause: str
    title: str
    advice: Tuple[str, ...]
    selects: Callable[[Dict[str, Any]], bool]
    message: Callable[[Dict[str, Any]], str]
    evidence: Callable[[Dict[str, Any]], Dict[str, Any]] = lambda c: {}
    remediation: str = ""
    command: str = ""


def _host(c: Dict[str, Any]) -> str:
    return str(c.get("target", {}).get("host") or "")


def _named(c: Dict[str, Any]) -> bool:
    return c["kind"] == "endpoint" and not _host(c)[:1].isdigit()


FAULTS: Dict[str, Fault] = {f.name: f for f in (
    Fault("dns-forwarder-down", "fail", "dns-timeout", f"dns-timeout:nameservers={NAMESERVER}",
          f"DNS lookups time out at nameserver {NAMESERVER}",
          ("Fix DNS first: nothing else can be tested for these endpoints until their names resolve.",
           f"Check that this host reaches {NAMESERVER} on UDP and TCP port 53 and that it answers for aliyuncs.com "
           "itself or forwards to an upstream that does."),
          _named, lambda c: f"DNS lookup of {_host(c)} timed out at {NAMESERVER} after 3.0 s",
          lambda c: {"resolver": RESOLVER, "addresses": [], "dns": {"error": "timeout", "nameserver": NAMESERVER}},
          remediation=f"Check that this host reaches {NAMESERVER} on UDP/TCP 53."),
    Fault("registry-firewall", "fail", "timeout", "timeout:protocol=tcp,port=443,route=direct",
          "TCP port 443 times out",
          ("Packets are silently dropped on the way. Check, in this order: this host's firewall, the data-centre "
           "firewall's outbound rules for TCP 443 to these addresses, and any security group or ACL in between.",
           "Public-network mode: the site's internet egress (NAT, upstream firewall) must allow these addresses."),
          lambda c: c["kind"] == "endpoint" and ("registry" in _host(c) or "dockerauth" in _host(c)),
          lambda c: f"TCP connect to {_host(c)}:443 timed out after 3.0 s",
          lambda c: {"connect": [{"address": (c["evidence"].get("addresses") or ["?"])[0], "port": 443, "ok": False,
                                  "ms": 3000, "reason": "timeout", "error": "timed out"}], "route": "direct"},
          remediation="Allow outbound TCP 443 to this address in the site firewall."),
    Fault("raven-udp-blocked", "warn", "no-response", "no-response:protocol=udp,port=4500",
          "No answer on UDP port 4500",
          ("UDP cannot be confirmed without an answer. Allow outbound UDP 4500 to these addresses in the host and "
           "data-centre firewalls and security groups (Raven uses IPsec NAT-T on UDP 4500).",),
          lambda c: c["id"] == f"endpoint:{RAVEN}:4500/udp",
          lambda c: f"No answer from {_host(c)}:4500/udp within 3.0 s (cannot be confirmed over UDP)",
          lambda c: {"ike": {"sent": True, "answered": False, "icmp": None}}),
    Fault("kubelet-running", "fail", "port-in-use", "port-in-use",
          "Ports the node needs are already in use",
          ("Phase join needs these ports free. If kubelet or node-exporter holds them, this host is probably a node "
           "already: run with --phase running, or clean up the old installation.",),
          lambda c: c["id"] in ("inbound:10250/tcp", "inbound:10255/tcp"),
          lambda c: f"TCP {c['target']['port']} is in use by kubelet (pid 812)",
          lambda c: {"sockets": [{"address": "0.0.0.0", "port": c["target"]["port"], "pid": 812, "process": "kubelet"}],
                     "bind_test": "in-use"}),
    Fault("tools-missing", "fail", "tool-missing", "tool-missing",
          "System tools the installer needs are missing",
          ("The installer would fetch them online from this host's package repositories during the join; install "
           "them now:",),
          lambda c: c["id"] in ("tool:socat", "tool:conntrack-tools"),
          lambda c: f"{c['id'].split(':', 1)[1]} is not installed",
          lambda c: {"executables": [c["evidence"]["executables"][0]], "found": None,
                     "install_command": "apt-get install -y " + {"tool:socat": "socat"}.get(c["id"], "conntrack"),
                     "package": {"tool:socat": "socat"}.get(c["id"], "conntrack")},
          command="apt-get install -y socat conntrack"),
    Fault("clock-off", "fail", "clock-offset", "clock-offset", "The local clock is off",
          ("Enable time synchronisation (chrony) against ntp1.aliyun.com and cn.ntp.org.cn or your own NTP servers, "
           "then check with chronyc tracking.",),
          lambda c: c["id"] == "clock:local",
          lambda c: "The clock is off by +42.7 s against ntp1.aliyun.com and not synchronised",
          lambda c: {"synchronised": False, "offset_s": 42.7, "source": "ntp1.aliyun.com"}),
    Fault("tls-inspection", "fail", "tls-verify-failed", "tls-verify-failed:issuer=Corp Inspection CA",
          "TLS certificates not trusted (issuer: Corp Inspection CA)",
          ("If your network inspects TLS, a proxy or firewall replaces the certificates: add its CA with --ca-bundle "
           "PATH and to the system trust store, or exempt these hosts from inspection.",),
          lambda c: c["kind"] == "endpoint" and _host(c).startswith("cs-anony"),
          lambda c: f"TLS certificate of {_host(c)} is not trusted: unknown issuer Corp Inspection CA",
          lambda c: {"tls": {"verified": False, "issuer": "Corp Inspection CA", "verify_kind": "unknown-issuer",
                             "verify_error": "unable to get local issuer certificate"}}),
    Fault("ntp-blocked", "warn", "no-response", "no-response:protocol=udp,port=123",
          "No answer on UDP port 123",
          ("NTP requests or their replies are blocked, or the servers do not answer. Allow outbound UDP 123.",),
          lambda c: c["kind"] == "endpoint" and c["target"].get("port") == 123,
          lambda c: f"No NTP answer from {_host(c)} within 3.0 s",
          lambda c: {"ntp": {"answered": False}}),
)}


def apply_faults(checks: List[Dict[str, Any]], faults: Sequence[str]) -> List[Dict[str, Any]]:
    """Break the checks; return the findings (fail first, then warn), as a grouping version would."""
    findings = []
    for name in faults:
        fault = FAULTS[name]
        hit = []
        for c in checks:
            if c["status"] == "pass" and fault.selects(c):
                c["status"], c["reason"] = fault.status, fault.reason
                c["message"], c["remediation"] = fault.message(c), fault.remediation
                c["evidence"] = {**c["evidence"], **fault.evidence(c)}
                c["duration_ms"] = 3000 if "time" in fault.reason or fault.reason == "no-response" else c["duration_ms"]
                hit.append(c["id"])
        if hit:
            findings.append({"cause": fault.cause, "status": fault.status, "reason": fault.reason, "title": fault.title,
                             "checks": hit, "advice": list(fault.advice), "command": fault.command})
    findings.sort(key=lambda f: f["status"] != "fail")
    return findings


def make_report(hostname: str, faults: Sequence[str] = (), *, findings: bool = True, version: str = "0.2.0",
                generated_at: Optional[float] = None, mode: str = "public", phase: str = "join",
                region: str = REGION, k8s_version: str = "1.28", seed: Optional[int] = None) -> Dict[str, Any]:
    rng = random.Random(hostname if seed is None else seed)
    checks = base_checks(rng)
    found = apply_faults(checks, faults)
    summary = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", "warn", "fail", "skip")}
    when = time.time() if generated_at is None else generated_at
    report: Dict[str, Any] = {
        "schema": "edgecheck/report/v1",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "agent": {"version": version},
        "host": {"hostname": hostname, "os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-26-amd64",
                 "arch": "x86_64"},
        "params": {"region": region, "mode": mode, "phase": phase, "k8s_version": k8s_version,
                   "network_plugin": "flannel", "self_host_ntp": False, "apiserver": f"{APISERVER}:6443",
                   "raven_gateways": [RAVEN], "tunnel_server": None, "targets_files": [], "timeout": 3.0,
                   "trust": "system trust store", "ca_bundle": None, "apiserver_ca": None, "strict": False},
        "ready": summary["fail"] == 0,
        "summary": summary,
        "checks": checks,
        "warnings": [],
        "duration_ms": 3000 + rng.randrange(0, 400) if any(c["duration_ms"] >= 3000 for c in checks) else rng.randrange(300, 900),
    }
    if findings:
        report["findings"] = found
    return report


# ----------------------------------------------------------------------------- a whole site


@dataclass
class NodeSpec:
    hostname: str
    faults: Tuple[str, ...]
    findings: bool
    age_seconds: float
    version: str
    phase: str = "join"


@dataclass
class FleetPlan:
    nodes: List[NodeSpec] = field(default_factory=list)
    newest: float = 0.0

    def with_fault(self, fault: str) -> List[str]:
        return [n.hostname for n in self.nodes if fault in n.faults]


def plan_fleet(count: int, seed: int = 7, *, shared_fault: str = "registry-firewall", shared_share: float = 0.3,
               old_share: float = 0.1, stale_share: float = 0.01, now: Optional[float] = None) -> FleetPlan:
    """A site: a share of nodes behind one shared firewall, a few individual faults, some reports
    from an older edgecheck (no findings), a few stale ones."""
    rng = random.Random(seed)
    newest = time.time() if now is None else now
    plan = FleetPlan(newest=newest)
    singles = [f for f in FAULTS if f != shared_fault]
    width = len(str(count))
    for i in range(1, count + 1):
        faults: List[str] = []
        if rng.random() < shared_share:
            faults.append(shared_fault)
        if rng.random() < 0.15:
            faults.append(rng.choice(singles))
        old = rng.random() < old_share
        stale = rng.random() < stale_share
        plan.nodes.append(NodeSpec(
            hostname=f"edge-{i:0{width}d}", faults=tuple(dict.fromkeys(faults)), findings=not old,
            age_seconds=(2 * 86400 if stale else rng.uniform(0, 600)), version="0.1.0" if old else "0.2.0",
        ))
    return plan


def write_fleet(directory: str, plan: FleetPlan) -> List[str]:
    os.makedirs(directory, exist_ok=True)
    paths = []
    for spec in plan.nodes:
        report = make_report(spec.hostname, spec.faults, findings=spec.findings, version=spec.version,
                             generated_at=plan.newest - spec.age_seconds, phase=spec.phase)
        path = os.path.join(directory, f"{spec.hostname}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        paths.append(path)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    paths = write_fleet(args.directory, plan_fleet(args.count, args.seed))
    size = sum(os.path.getsize(p) for p in paths)
    print(f"wrote {len(paths)} reports ({size / len(paths) / 1024:.1f} KiB each) to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
