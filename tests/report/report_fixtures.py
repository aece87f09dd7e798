"""Realistic reports built straight from the model, for renderer tests.

Evidence shapes follow what the probes record (resolver, addresses, connect, route, proxy, tls,
http, ntp, holders, executable/install_command/package, synchronised/offset_s).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from edgecheck.model import CheckResult, Kind, Reason, Report, Status

HOST = {
    "hostname": "edge-bj-017",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-26-amd64",
    "arch": "x86_64",
}
GENERATED_AT = "2026-11-21T05:43:18Z"
RESOLVER = {"source": "/etc/resolv.conf", "nameservers": ["10.20.0.53"], "answered_by": "10.20.0.53"}


def params(mode: str = "public", **extra: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "region": "cn-hangzhou",
        "mode": mode,
        "phase": "join",
        "k8s_version": "1.30",
        "network_plugin": "flannel",
        "timeout": 3.0,
        "self_host_ntp": False,
    }
    out.update(extra)
    return out


def endpoint(
    host: Optional[str],
    port: int,
    name: str,
    status: Status = Status.PASS,
    reason: Reason = Reason.OK,
    message: str = "",
    *,
    protocol: str = "tcp",
    remediation: str = "",
    evidence: Optional[Dict[str, Any]] = None,
    duration_ms: int = 40,
    id_host: Optional[str] = None,
) -> CheckResult:
    target: Dict[str, Any] = {"port": port, "protocol": protocol}
    if host:
        target = {"host": host, **target}
    return CheckResult(
        id=f"endpoint:{id_host or host}:{port}/{protocol}",
        kind=Kind.ENDPOINT,
        name=name,
        target=target,
        status=status,
        reason=reason,
        message=message or f"{host}:{port}/{protocol} reachable",
        remediation=remediation,
        duration_ms=duration_ms,
        evidence=dict(evidence or {}),
    )


def https_ok(host: str, name: str, address: str, ms: int = 38) -> CheckResult:
    return endpoint(
        host,
        443,
        name,
        message=f"HTTPS to {host} works (HTTP 403 in {ms} ms)",
        evidence={
            "resolver": RESOLVER,
            "addresses": [address],
            "cname_chain": [],
            "connect": [{"address": address, "port": 443, "ok": True, "ms": ms // 3, "reason": "ok", "error": ""}],
            "route": "direct",
            "tls": {
                "sni": host,
                "version": "TLSv1.3",
                "verified": True,
                "verify_error": "",
                "peer_certificate": {
                    "subject": "CN=*.aliyuncs.com",
                    "issuer": "CN=GlobalSign GCC R3 OV TLS CA 2024",
                    "not_after": "2027-03-02T00:00:00Z",
                },
            },
            "http": {"url": f"https://{host}/", "status": 403, "ms": ms},
        },
        duration_ms=ms,
    )


def ntp_ok(host: str, address: str, offset: float = 0.0021) -> CheckResult:
    return endpoint(
        host,
        123,
        "NTP server",
        protocol="udp",
        message=f"NTP answered from {address} (stratum 2, offset {offset * 1000:.1f} ms)",
        evidence={
            "resolver": RESOLVER,
            "addresses": [address],
            "ntp": {"address": address, "offset_s": offset, "stratum": 2, "delay_s": 0.031, "leap": 0},
        },
        duration_ms=33,
    )


def inbound(port: int, protocol: str = "tcp", status: Status = Status.PASS, reason: Reason = Reason.OK,
            message: str = "", sockets: Optional[List[Dict[str, Any]]] = None, remediation: str = "") -> CheckResult:
    """Shaped like edgecheck/host/ports.py (evidence "sockets": one entry per bound socket)."""
    return CheckResult(
        id=f"inbound:{port}/{protocol}",
        kind=Kind.INBOUND,
        name={10250: "kubelet", 10255: "kubelet (read-only)", 9100: "node-exporter", 9445: "node-exporter",
              8472: "flannel VXLAN"}.get(port, "inbound port"),
        target={"port": port, "protocol": protocol},
        status=status,
        reason=reason,
        message=message or f"{protocol.upper()} {port} is free",
        remediation=remediation,
        duration_ms=1,
        evidence={"sockets": sockets or [], "bind_test": "in-use" if sockets else "free"},
    )


TOOLS = [
    ("net-tools", "netstat", "net-tools"),
    ("iproute", "ip", "iproute2"),
    ("chrony", "chronyd", "chrony"),
    ("crontabs", "crontab", "cron"),
    ("pciutils", "lspci", "pciutils"),
    ("socat", "socat", "socat"),
    ("ebtables", "ebtables", "ebtables"),
    ("iptables", "iptables", "iptables"),
    ("conntrack-tools", "conntrack", "conntrack"),
]


def tool(name: str, exe: str, package: str, missing: bool = False, all_missing: str = "") -> CheckResult:
    """Shaped like edgecheck/host/tools.py: a missing tool is a warning in phase join (the
    installer fetches it) and every missing tool carries the one command installing them all."""
    evidence: Dict[str, Any] = {
        "package": name,
        "executables_wanted": [exe],
        "executables_found": {} if missing else {exe: f"/usr/sbin/{exe}"},
        "distribution": {"id": "debian", "version_id": "12", "id_like": []},
    }
    if missing:
        command = f"apt-get update && apt-get install -y {all_missing or package}"
        evidence.update(install_command=command, missing_packages=(all_missing or package).split(),
                        package_manager="apt-get")
        return CheckResult(
            id=f"tool:{name}", kind=Kind.TOOL, name=name, target={},
            status=Status.WARN, reason=Reason.TOOL_MISSING,
            message=f"{name} is missing: none of {exe} found in PATH and sbin. The installer "
                    "installs it online if the package repository is reachable.",
            remediation=f"Install the missing tools now: {command}",
            evidence=evidence,
        )
    evidence["distribution_package"] = package
    return CheckResult(
        id=f"tool:{name}", kind=Kind.TOOL, name=name, target={},
        status=Status.PASS, reason=Reason.OK,
        message=f"{name} is installed: {exe} at /usr/sbin/{exe}.", evidence=evidence,
    )


def clock_ok() -> CheckResult:
    return CheckResult(
        id="clock:local",
        kind=Kind.CLOCK,
        name="local clock",
        target={},
        status=Status.PASS,
        reason=Reason.OK,
        message="clock synchronised (chrony); offset 2.1 ms against ntp1.aliyun.com",
        duration_ms=2,
        evidence={"synchronised": True, "offset_s": 0.0021, "source": "ntp1.aliyun.com"},
    )


def _skips(mode: str = "public") -> List[CheckResult]:
    return [
        endpoint(
            None, 6443, "API server", Status.SKIP, Reason.MISSING_INPUT,
            "no API server endpoint given: pass --apiserver HOST[:PORT] (cluster details page, "
            "Basic Information tab, API server internal endpoint)",
            id_host="apiserver", duration_ms=0,
        ),
        endpoint(
            None, 4500, "Raven cloud gateway (IPsec NAT-T)", Status.SKIP,
            Reason.MISSING_INPUT if mode == "public" else Reason.NOT_APPLICABLE,
            "no Raven gateway given: pass --raven-gateway HOST (cluster details page, Raven gateway)"
            if mode == "public" else "dedicated-connection mode does not use the Raven gateway",
            protocol="udp", id_host="raven-gateway", duration_ms=0,
        ),
    ]


def ready_report() -> Report:
    checks = [
        https_ok("cs-anony.cn-hangzhou.aliyuncs.com", "Container Service control plane", "47.97.243.12", 41),
        https_ok("aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com", "OSS component packages", "118.31.219.200", 52),
        https_ok("dockerauth.cn-hangzhou.aliyuncs.com", "System component images (auth)", "47.97.242.13", 39),
        https_ok("dockerauth-ee.cn-hangzhou.aliyuncs.com", "System component images (auth, EE)", "47.97.242.14", 44),
        https_ok("registry-cn-hangzhou.ack.aliyuncs.com", "System component images", "47.97.242.201", 47),
        ntp_ok("ntp1.aliyun.com", "203.107.6.88"),
        ntp_ok("cn.ntp.org.cn", "114.118.7.163", 0.0034),
        *_skips(),
        inbound(10250), inbound(10255), inbound(9100), inbound(9445), inbound(8472, "udp"),
        *[tool(*t) for t in TOOLS],
        clock_ok(),
    ]
    return Report(
        generated_at=GENERATED_AT,
        agent_version="0.1.0",
        host=dict(HOST),
        params=params(),
        checks=checks,
        warnings=[],
        duration_ms=1240,
    )


DEDICATED_NAMES = [
    ("cs-anony-vpc.cn-hangzhou.aliyuncs.com", 443, "tcp", "Container Service control plane"),
    ("aliacs-k8s-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com", 443, "tcp", "OSS component packages"),
    ("dockerauth-vpc.cn-hangzhou.aliyuncs.com", 443, "tcp", "System component images (auth)"),
    ("dockerauth-ee-vpc.cn-hangzhou.aliyuncs.com", 443, "tcp", "System component images (auth, EE)"),
    ("aliregistry-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com", 443, "tcp", "System component images (OSS)"),
    ("registry-cn-hangzhou-vpc.ack.aliyuncs.com", 443, "tcp", "System component images"),
    ("ntp1.aliyun.com", 123, "udp", "NTP server"),
    ("cn.ntp.org.cn", 123, "udp", "NTP server"),
]


def dns_forwarder_report() -> Report:
    """Dedicated mode; the DNS forwarder 10.20.0.53 times out, breaking all eight named endpoints."""
    checks: List[CheckResult] = []
    for host, port, proto, name in DEDICATED_NAMES:
        checks.append(
            endpoint(
                host, port, name, Status.FAIL, Reason.DNS_TIMEOUT,
                f"resolving {host} timed out after 3.0 s (nameserver 10.20.0.53)",
                protocol=proto,
                remediation="Check that the nameserver 10.20.0.53 answers; fix DNS first.",
                evidence={
                    "resolver": {"source": "/etc/resolv.conf", "nameservers": ["10.20.0.53"], "answered_by": None},
                    "addresses": [],
                    "error": "The DNS operation timed out after 3.002 seconds",
                },
                duration_ms=3002,
            )
        )
    api = endpoint(
        "192.168.0.10", 6443, "API server",
        message="TCP 192.168.0.10:6443 connected in 4 ms; TLS verified against the cluster CA",
        evidence={
            "addresses": ["192.168.0.10"],
            "connect": [{"address": "192.168.0.10", "port": 6443, "ok": True, "ms": 4, "reason": "ok", "error": ""}],
            "route": "direct",
            "expected_cidrs": ["192.168.0.0/16"],
            "outside_expected": [],
        },
        duration_ms=12,
    )
    checks.insert(6, api)
    checks += _skips("dedicated")[1:]
    checks += [inbound(10250), inbound(10255), inbound(9100), inbound(9445), inbound(8472, "udp")]
    checks += [tool(*t) for t in TOOLS]
    checks.append(clock_ok())
    return Report(
        generated_at=GENERATED_AT,
        agent_version="0.1.0",
        host=dict(HOST),
        params=params("dedicated", apiserver="192.168.0.10:6443"),
        checks=checks,
        warnings=[],
        duration_ms=3120,
    )


PROXY = "http://proxyuser:s3cret-pw@10.0.0.8:3128"


def mixed_report() -> Report:
    """Public mode with a bit of everything, a proxy with credentials, and a plan warning."""
    timeout_ev = lambda addr: {  # noqa: E731
        "resolver": RESOLVER,
        "addresses": [addr],
        "connect": [{"address": addr, "port": 443, "ok": False, "ms": 3000, "reason": "timeout",
                     "error": "timed out"}],
        "route": "direct",
    }
    checks = [
        endpoint(
            "cs-anony.cn-hangzhou.aliyuncs.com", 443, "Container Service control plane",
            Status.FAIL, Reason.PROXY_ERROR,
            f"proxy {PROXY} refused CONNECT to cs-anony.cn-hangzhou.aliyuncs.com:443 (HTTP 403)",
            remediation=f"Allow CONNECT to cs-anony.cn-hangzhou.aliyuncs.com:443 on {PROXY}, or add "
                        "the host to NO_PROXY.",
            evidence={"resolver": RESOLVER, "addresses": ["47.97.243.12"], "route": "proxy", "proxy": PROXY,
                      "http": {"url": "https://cs-anony.cn-hangzhou.aliyuncs.com/", "status": 403, "ms": 9}},
            duration_ms=15,
        ),
        endpoint(
            "aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com", 443, "OSS component packages",
            Status.FAIL, Reason.TIMEOUT,
            "TCP connect to 118.31.219.200:443 timed out after 3.0 s",
            evidence=timeout_ev("118.31.219.200"), duration_ms=3001,
        ),
        endpoint(
            "dockerauth.cn-hangzhou.aliyuncs.com", 443, "System component images (auth)",
            Status.FAIL, Reason.TLS_VERIFY_FAILED,
            "certificate of dockerauth.cn-hangzhou.aliyuncs.com not trusted: self-signed certificate in "
            "certificate chain (issuer CN=Corp Inspection CA)",
            evidence={
                "resolver": RESOLVER, "addresses": ["47.97.242.13"], "route": "direct",
                "connect": [{"address": "47.97.242.13", "port": 443, "ok": True, "ms": 12, "reason": "ok",
                             "error": ""}],
                "tls": {"sni": "dockerauth.cn-hangzhou.aliyuncs.com", "version": "TLSv1.2", "verified": False,
                        "verify_error": "self-signed certificate in certificate chain",
                        "peer_certificate": {"subject": "CN=*.cn-hangzhou.aliyuncs.com",
                                             "issuer": "CN=Corp Inspection CA",
                                             "not_after": "2027-01-01T00:00:00Z"}},
            },
            duration_ms=58,
        ),
        endpoint(
            "dockerauth-ee.cn-hangzhou.aliyuncs.com", 443, "System component images (auth, EE)",
            Status.WARN, Reason.NXDOMAIN,
            "dockerauth-ee.cn-hangzhou.aliyuncs.com does not exist (NXDOMAIN); the seeds say it is absent "
            "in some regions, so this is not a failure",
            evidence={"resolver": RESOLVER, "addresses": []}, duration_ms=21,
        ),
        endpoint(
            "registry-cn-hangzhou.ack.aliyuncs.com", 443, "System component images",
            Status.FAIL, Reason.TIMEOUT,
            "TCP connect to 47.97.242.201:443 timed out after 3.0 s",
            evidence=timeout_ev("47.97.242.201"), duration_ms=3002,
        ),
        endpoint(
            "47.96.10.5", 6443, "API server", Status.FAIL, Reason.REFUSED,
            "TCP connect to 47.96.10.5:6443 refused",
            evidence={"addresses": ["47.96.10.5"], "route": "direct",
                      "connect": [{"address": "47.96.10.5", "port": 6443, "ok": False, "ms": 2,
                                   "reason": "refused", "error": "[Errno 111] Connection refused"}]},
            duration_ms=3,
        ),
        endpoint(
            "47.96.10.9", 4500, "Raven cloud gateway (IPsec NAT-T)", Status.WARN, Reason.NO_RESPONSE,
            "no answer from 47.96.10.9 on UDP 4500 within 3.0 s: cannot be confirmed over UDP",
            protocol="udp",
            evidence={"addresses": ["47.96.10.9"], "ike": {"sent": True, "answered": False, "icmp": None}},
            duration_ms=3000,
        ),
        ntp_ok("ntp1.aliyun.com", "203.107.6.88", -2.41),
        ntp_ok("cn.ntp.org.cn", "114.118.7.163", -2.40),
        inbound(10250, status=Status.FAIL, reason=Reason.PORT_IN_USE,
                message="TCP 10250 is in use by kubelet (pid 811)",
                sockets=[{"protocol": "tcp", "address": "::", "port": 10250, "pid": 811, "process": "kubelet",
                          "user": "root", "uid": 0, "unit": "kubelet.service", "loopback": False}]),
        inbound(10255, status=Status.FAIL, reason=Reason.PORT_IN_USE,
                message="TCP 10255 is in use by kubelet (pid 811)",
                sockets=[{"protocol": "tcp", "address": "::", "port": 10255, "pid": 811, "process": "kubelet",
                          "user": "root", "uid": 0, "unit": "kubelet.service", "loopback": False}]),
        inbound(9100), inbound(9445), inbound(8472, "udp"),
        *[tool(n, e, p, missing=n in ("socat", "ebtables", "conntrack-tools"),
               all_missing="socat ebtables conntrack") for n, e, p in TOOLS],
        CheckResult(
            id="clock:local", kind=Kind.CLOCK, name="local clock", target={},
            status=Status.FAIL, reason=Reason.CLOCK_OFFSET,
            message="local clock is 2.41 s ahead of ntp1.aliyun.com (limit 1.0 s); chrony not running",
            remediation="Start chrony (systemctl enable --now chrony) and check chronyc tracking.",
            evidence={"synchronised": False, "offset_s": 2.41, "source": "ntp1.aliyun.com"},
            duration_ms=1,
        ),
    ]
    return Report(
        generated_at=GENERATED_AT,
        agent_version="0.1.0",
        host=dict(HOST),
        params=params(apiserver="47.96.10.5:6443", raven_gateway=["47.96.10.9"],
                      https_proxy=PROXY),
        checks=checks,
        warnings=[
            "HTTPS_PROXY is set: HTTPS probes go through the proxy, raw TCP/UDP probes go direct",
            "--tunnel-server is ignored: clusters >= 1.26 have no tunnel server",
        ],
        duration_ms=3140,
    )


ALL = {"ready": ready_report, "dns_forwarder": dns_forwarder_report, "mixed": mixed_report}
