"""Realistic reports built from the real plan (catalog -> plan) with the evidence the checks record,
diagnosed as the runner does: the renderers see exactly what a run hands them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence

from edgecheck.catalog import load_catalog
from edgecheck.diagnosis import diagnose
from edgecheck.evidence import (BLOCKED, Certificate, ClockEvidence, ConnectAttempt, Connects, DirectRoute,
                                Distribution, FirewallVerdict, HttpResult, InboundEvidence, KernelClock,
                                KernelEvidence, Measurement, PortHolder, ProxyRoute, Resolution, TlsResult,
                                ToolEvidence, TrustSource)
from edgecheck.firewall import BaseChainRef, Manager
from edgecheck.model import CheckResult, Evidence, Mode, Reason, Report, Status, Target
from edgecheck.plan import HostPort, Selection, build_plan
from edgecheck.probes.ike import IkeEvidence, IkeOutcome
from edgecheck.probes.ntp import CLOCK_OFFSET_FAIL_S, CLOCK_OFFSET_WARN_S, NtpEvidence, NtpOutcome

HOST = {
    "hostname": "edge-bj-017",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-26-amd64",
    "arch": "x86_64",
}
GENERATED_AT = "2026-11-21T05:43:18Z"
NAMESERVER = "10.20.0.53"
SYSTEM_TRUST = TrustSource(True, cafile="/etc/ssl/certs/ca-certificates.crt", origin="system")
PROXY = "http://proxyuser:s3cret-pw@10.0.0.8:3128"


def plan_targets(mode: Mode = Mode.PUBLIC, **selection) -> Dict[str, Target]:
    plan = build_plan(load_catalog(), Selection("cn-hangzhou", mode=mode, k8s_version=(1, 30), **selection))
    return {t.id: t for t in plan.targets}


def params(mode: str = "public", **extra) -> Dict:
    out = {"region": "cn-hangzhou", "mode": mode, "phase": "join", "k8s_version": "1.30",
           "network_plugin": "flannel", "timeout": 3.0, "self_host_ntp": False}
    out.update(extra)
    return out


def resolution(host: str, addresses: Sequence[str], reason: Optional[Reason] = None, error: str = "") -> Resolution:
    return Resolution(host=host, addresses=list(addresses), source="/etc/resolv.conf", nameservers=[NAMESERVER],
                      answered_by=None if reason else NAMESERVER, reason=reason, error=error, ms=3)


def attempt(address: str, port: int, ms: int, reason: Optional[Reason] = None, error: str = "") -> ConnectAttempt:
    return ConnectAttempt(address, port, reason is None, ms, reason, error)


def cert(host: str, issuer: str = "CN=GlobalSign GCC R3 OV TLS CA 2024") -> Certificate:
    return Certificate(f"CN=*.{host.split('.', 1)[1]}", issuer, "2026-03-02T00:00:00Z", "2027-03-02T00:00:00Z")


def https_ok(t: Target, address: str, ms: int = 38) -> CheckResult:
    host = t.host or ""
    evidence = Evidence(
        SYSTEM_TRUST, DirectRoute(), resolution(host, [address]), Connects((attempt(address, 443, ms // 3),)),
        TlsResult(True, sni=host, version="TLSv1.3", verified=True, peer_certificate=cert(host), address=address,
                  ms=ms // 3),
        HttpResult(True, f"https://{host}/", 403, ms // 3))
    return CheckResult(t, Status.PASS, Reason.OK,
                       f"HTTPS to {host}:443 works: TCP connects on 1 address, TLSv1.3 certificate verified "
                       f"(system), HTTP 403 in {ms // 3} ms.", evidence, ms)


def ntp_result(t: Target, address: str, offset: float = 0.0021) -> CheckResult:
    exchange = NtpOutcome(address, True, offset_s=offset, delay_s=0.031, stratum=2, leap=0, ms=33)
    evidence = Evidence(DirectRoute(), resolution(t.host or "", [address]), NtpEvidence(exchange, (exchange,)))
    summary = f"offset {offset:+.3f} s, stratum 2, round trip 31 ms from {address}"
    if abs(offset) <= CLOCK_OFFSET_WARN_S:
        return CheckResult(t, Status.PASS, Reason.OK, f"NTP (UDP 123) to {t.host} answers: {summary}.", evidence, 33)
    status, limit = (Status.FAIL, CLOCK_OFFSET_FAIL_S) if abs(offset) > CLOCK_OFFSET_FAIL_S else (Status.WARN, CLOCK_OFFSET_WARN_S)
    return CheckResult(t, status, Reason.CLOCK_OFFSET, f"This host's clock differs from {t.host} by {offset:+.3f} s "
                       f"(more than {limit:g} s): {summary}.", evidence, 33)


def inbound(t: Target, holders: Sequence[PortHolder] = (), expect: str = "free") -> CheckResult:
    label = f"{(t.protocol or 'tcp').upper()} {t.port}"
    evidence = Evidence(InboundEvidence(expect, "psutil", True, tuple(holders)))
    if not holders:
        return CheckResult(t, Status.PASS, Reason.OK, f"{label} is free.", evidence, 1)
    h = holders[0]
    return CheckResult(t, Status.FAIL, Reason.PORT_IN_USE,
                       f"{label} is in use by {h.process} (pid {h.pid}, user {h.user}, {h.unit}) on [::]:{t.port}.",
                       evidence, 1)


def kernel(t: Target, value: str = "1") -> CheckResult:
    setting = t.id.split(":", 1)[1]
    if value == "1":
        return CheckResult(t, Status.PASS, Reason.OK, f"{setting} = 1.", Evidence(KernelEvidence(setting, {"value": "1"})), 1)
    fix = KernelEvidence(setting, {"value": value}, f"sysctl -w {setting}=1",
                         f"`echo '{setting} = 1' >> /etc/sysctl.d/90-ack-edge.conf && sysctl --system`")
    return CheckResult(t, Status.WARN, Reason.KERNEL_SETTING,
                       f"IPv4 forwarding is off ({setting} = {value}): pod traffic (flannel) and the Raven gateway "
                       "cannot be forwarded. The installer sets this during the join.", Evidence(fix), 1)


# firewalld's default zone on a RHEL-family node: everything not allowed ends in the zone's reject.
FIREWALLD_PUBLIC = FirewallVerdict(
    "in", "tcp", 9100, BLOCKED, peers=("10.20.0.0/24",), peers_origin="this host's own subnets, public mode",
    blocked=("10.20.0.0/24",), action="reject (icmpx admin-prohibited)",
    rule="reject with icmpx admin-prohibited", where="inet firewalld chain filter_IN_public handle 212",
    path=("inet firewalld filter_INPUT", "filter_INPUT_ZONES", "filter_IN_public"),
    manager=Manager("firewalld", "public", "nftables"),
    base=BaseChainRef("nftables", "inet", "firewalld", "filter_INPUT", "input", 10),
    local_address="10.20.0.17", interface="eth0", distro_family="rhel", rules=96, ms=4, read_ms=31)


def firewalled(t: Target) -> CheckResult:
    return CheckResult(t, Status.FAIL, Reason.HOST_FIREWALL,
                       "TCP 9100 is free, but this host's packet filter rejects new TCP connections to port 9100 from "
                       "10.20.0.0/24: `reject with icmpx admin-prohibited` (inet firewalld chain filter_IN_public "
                       "handle 212, firewalld zone public).",
                       Evidence(InboundEvidence("free", "psutil", True, ()), FIREWALLD_PUBLIC), 5)


def tools(targets: Dict[str, Target], missing: Sequence[str] = (), command: str = "") -> List[CheckResult]:
    out = []
    for t in (t for t in targets.values() if t.tool is not None):
        spec = t.tool
        exe = spec.executables[0]
        base = dict(package=spec.name, executables_wanted=tuple(spec.executables), searched=("/usr/bin", "/usr/sbin"),
                    distribution=Distribution("debian", "12", ()))
        if spec.name in missing:
            ev = ToolEvidence(executables_found={}, install_command=command, missing_packages=tuple(command.split()[6:]),
                              package_manager="apt-get", **base)
            out.append(CheckResult(t, Status.WARN, Reason.TOOL_MISSING,
                                   f"{spec.name} is missing: none of {', '.join(spec.executables)} found in PATH and "
                                   "sbin. The installer installs it online if the package repository is reachable.",
                                   Evidence(ev)))
        else:
            ev = ToolEvidence(executables_found={exe: f"/usr/sbin/{exe}"}, distribution_package=spec.name, **base)
            out.append(CheckResult(t, Status.PASS, Reason.OK, f"{spec.name} is installed: {exe} at /usr/sbin/{exe}.",
                                   Evidence(ev), 2))
    return out


def clock(t: Target, offset: float = 0.0021, synchronised: bool = True) -> CheckResult:
    measurements = (Measurement("ntp1.aliyun.com (203.107.6.88)", offset, 2, 0.031),)
    evidence = ClockEvidence(KernelClock(synchronised, "TIME_OK" if synchronised else "TIME_ERROR"), (), (),
                             measurements, offset, measurements[0].source, CLOCK_OFFSET_WARN_S, CLOCK_OFFSET_FAIL_S,
                             "chrony", ("ntp1.aliyun.com", "cn.ntp.org.cn"))
    if abs(offset) > CLOCK_OFFSET_FAIL_S:
        return CheckResult(t, Status.FAIL, Reason.CLOCK_OFFSET,
                           f"Clock is off by {offset:+.2f} s against {measurements[0].source} (limit 60 s; "
                           "not synchronised: kernel adjtimex status): TLS, tokens and signed downloads will fail.",
                           Evidence(evidence), 1)
    return CheckResult(t, Status.PASS, Reason.OK,
                       f"Clock is synchronised (kernel adjtimex status); offset {offset * 1000:+.1f} ms (behind) "
                       f"against {measurements[0].source}.", Evidence(evidence), 2)


def skipped(t: Target) -> CheckResult:
    assert t.skip is not None
    return CheckResult(t, Status.SKIP, t.skip.reason, t.skip.message)


def _report(checks: List[CheckResult], params_: Dict, warnings: Sequence[str] = (), ms: int = 1240) -> Report:
    return diagnose(Report(generated_at=GENERATED_AT, agent_version="0.1.0", host=dict(HOST), params=params_,
                           checks=checks, warnings=list(warnings), duration_ms=ms))


PUBLIC_ADDRESSES = {
    "aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com": "118.31.219.200",
    "cs-anony.aliyuncs.com": "47.97.243.11",
    "cs-anony.cn-hangzhou.aliyuncs.com": "47.97.243.12",
    "dockerauth.cn-hangzhou.aliyuncs.com": "47.97.242.13",
    "dockerauth-ee.cn-hangzhou.aliyuncs.com": "47.97.242.14",
    "registry-cn-hangzhou.ack.aliyuncs.com": "47.97.242.201",
    "ntp1.aliyun.com": "203.107.6.88",
    "cn.ntp.org.cn": "114.118.7.163",
}


def _by_probe(t: Target) -> CheckResult:
    if t.skip is not None:
        return skipped(t)
    if t.probe == "https":
        return https_ok(t, PUBLIC_ADDRESSES[t.host or ""], 38 + len(t.host or "") % 9)
    if t.probe == "ntp":
        return ntp_result(t, PUBLIC_ADDRESSES[t.host or ""])
    if t.probe == "inbound":
        return inbound(t)
    if t.probe == "clock":
        return clock(t)
    if t.probe == "kernel":
        return kernel(t)
    raise AssertionError(t.id)


def ready_report() -> Report:
    targets = plan_targets()
    checks = [_by_probe(t) for t in targets.values() if t.probe != "tool"]
    checks[-1:-1] = tools(targets)  # the plan's order: tools before the clock
    return _report(checks, params())


DEDICATED_HOSTS = ("cs-anony-vpc.cn-hangzhou.aliyuncs.com", "aliacs-k8s-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com",
                   "ntp1.aliyun.com", "cn.ntp.org.cn", "dockerauth-vpc.cn-hangzhou.aliyuncs.com",
                   "dockerauth-ee-vpc.cn-hangzhou.aliyuncs.com",
                   "aliregistry-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com",
                   "registry-cn-hangzhou-vpc.ack.aliyuncs.com")


def dns_timeout(t: Target) -> CheckResult:
    res = resolution(t.host or "", [], Reason.DNS_TIMEOUT, "no nameserver answered in time")
    return CheckResult(t, Status.FAIL, Reason.DNS_TIMEOUT,
                       f"{t.host} does not resolve: no nameserver answered in time (nameservers {NAMESERVER}).",
                       Evidence(DirectRoute(), res), 3002)


def dns_forwarder_report() -> Report:
    """Dedicated mode; the DNS forwarder 10.20.0.53 times out, breaking all eight named endpoints."""
    targets = plan_targets(Mode.DEDICATED, apiserver=HostPort("192.168.0.10", 6443))
    checks = []
    for t in targets.values():
        if t.host in DEDICATED_HOSTS:
            checks.append(dns_timeout(t))
        elif t.probe == "https":  # the API server, an address: no DNS
            evidence = Evidence(TrustSource(False, origin="none: no --apiserver-ca given"), DirectRoute(),
                                Resolution("192.168.0.10", ["192.168.0.10"], literal=True),
                                Connects((attempt("192.168.0.10", 6443, 4),)),
                                TlsResult(True, sni="192.168.0.10", version="TLSv1.3", address="192.168.0.10", ms=5),
                                HttpResult(True, "https://192.168.0.10:6443/", 401, 3))
            checks.append(CheckResult(t, Status.PASS, Reason.OK,
                                      "HTTPS to 192.168.0.10:6443 works: TCP connects on 1 address, TLSv1.3 handshake "
                                      "completes but the certificate was NOT verified (no --apiserver-ca), HTTP 401 in 3 "
                                      "ms.", evidence, 12))
        elif t.probe != "tool":
            checks.append(_by_probe(t))
    checks[-1:-1] = tools(targets)
    return _report(checks, params("dedicated", apiserver="192.168.0.10:6443"), ms=3120)


def _timeout(t: Target, address: str) -> CheckResult:
    evidence = Evidence(SYSTEM_TRUST, DirectRoute(), resolution(t.host or "", [address]),
                        Connects((attempt(address, 443, 3000, Reason.TIMEOUT, "timed out, no answer to the SYN"),)))
    return CheckResult(t, Status.FAIL, Reason.TIMEOUT,
                       f"TCP 443 to {t.host} is blocked on every address: {address} (timed out, no answer to the SYN).",
                       evidence, 3001)


def _proxy_refused(t: Target) -> CheckResult:
    evidence = Evidence(SYSTEM_TRUST, ProxyRoute("http://10.0.0.8:3128", ("10.0.0.8",), (attempt("10.0.0.8", 3128, 2),)))
    return CheckResult(t, Status.FAIL, Reason.PROXY_ERROR,
                       f"The proxy {PROXY} for HTTPS to {t.host}:443 failed: the proxy refused CONNECT "
                       f"{t.host}:443: HTTP/1.1 403 Forbidden.", evidence, 15)


def _untrusted(t: Target) -> CheckResult:
    host = t.host or ""
    evidence = Evidence(SYSTEM_TRUST, DirectRoute(), resolution(host, ["47.97.242.13"]),
                        Connects((attempt("47.97.242.13", 443, 12),)),
                        TlsResult(False, Reason.TLS_VERIFY_FAILED, sni=host, verify_error="self-signed certificate in "
                                  "certificate chain", error="certificate verification failed",
                                  peer_certificate=cert(host, "CN=Corp Inspection CA"), address="47.97.242.13", ms=9))
    return CheckResult(t, Status.FAIL, Reason.TLS_VERIFY_FAILED,
                       f"TLS to {host}:443 connects but the certificate fails verification: self-signed certificate "
                       f"in certificate chain (peer certificate subject \"CN=*.cn-hangzhou.aliyuncs.com\", issuer "
                       f"\"CN=Corp Inspection CA\", expires 2027-03-02T00:00:00Z).", evidence, 58)


def _optional_missing(t: Target) -> CheckResult:
    res = resolution(t.host or "", [], Reason.NXDOMAIN, "the name does not exist (NXDOMAIN)")
    return CheckResult(t, Status.WARN, Reason.NXDOMAIN,
                       f"{t.host} does not resolve (the name does not exist (NXDOMAIN)); the documentation says it "
                       "may be absent in this region.", Evidence(SYSTEM_TRUST, DirectRoute(), res), 21)


def _refused_apiserver(t: Target) -> CheckResult:
    evidence = Evidence(TrustSource(False, origin="none: no --apiserver-ca given"), DirectRoute(),
                        Resolution("47.96.10.5", ["47.96.10.5"], literal=True),
                        Connects((attempt("47.96.10.5", 6443, 2, Reason.REFUSED, "Connection refused (ECONNREFUSED)"),)))
    return CheckResult(t, Status.FAIL, Reason.REFUSED,
                       "TCP 6443 to 47.96.10.5 is blocked on every address: 47.96.10.5 (Connection refused "
                       "(ECONNREFUSED)).", evidence, 3)


def _silent_gateway(t: Target) -> CheckResult:
    exchange = IkeOutcome("47.96.10.9", False, Reason.NO_RESPONSE, "no answer after 3 datagram(s)", sends=3, ms=3000)
    evidence = Evidence(DirectRoute(), Resolution("47.96.10.9", ["47.96.10.9"], literal=True),
                        IkeEvidence(exchange, (exchange,)))
    return CheckResult(t, Status.WARN, Reason.NO_RESPONSE,
                       "UDP 4500 to 47.96.10.9 got no answer to an IKE_SA_INIT from 47.96.10.9 (no answer after 3 "
                       "datagram(s)); UDP cannot be confirmed without an answer.", evidence, 3000)


def _raven_tcp(t: Target) -> CheckResult:
    evidence = Evidence(DirectRoute(), Resolution("47.96.10.9", ["47.96.10.9"], literal=True),
                        Connects((attempt("47.96.10.9", t.port or 0, 6),)))
    return CheckResult(t, Status.PASS, Reason.OK, f"TCP {t.port} to 47.96.10.9 connects on 1 address "
                       "(47.96.10.9 6 ms), directly.", evidence, 6)


KUBELET = PortHolder("tcp", "::", 0, False, 811, "kubelet", "root", 0, "/usr/bin/kubelet", "kubelet.service")


def mixed_report() -> Report:
    """Public mode with a bit of everything, a proxy with credentials, and a plan warning."""
    targets = plan_targets(apiserver=HostPort("47.96.10.5", 6443), raven_gateways=("47.96.10.9",))
    special = {
        "endpoint:cs-anony.cn-hangzhou.aliyuncs.com:443/tcp": _proxy_refused,
        "endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com:443/tcp":
            lambda t: _timeout(t, "118.31.219.200"),
        "endpoint:registry-cn-hangzhou.ack.aliyuncs.com:443/tcp": lambda t: _timeout(t, "47.97.242.201"),
        "endpoint:dockerauth.cn-hangzhou.aliyuncs.com:443/tcp": _untrusted,
        "endpoint:dockerauth-ee.cn-hangzhou.aliyuncs.com:443/tcp": _optional_missing,
        "endpoint:47.96.10.5:6443/tcp": _refused_apiserver,
        "endpoint:47.96.10.9:4500/udp": _silent_gateway,
        "endpoint:ntp1.aliyun.com:123/udp": lambda t: ntp_result(t, "203.107.6.88", -72.41),
        "endpoint:cn.ntp.org.cn:123/udp": lambda t: ntp_result(t, "114.118.7.163", -72.40),
        "inbound:10250/tcp": lambda t: inbound(t, [replace(KUBELET, port=10250)]),
        "inbound:10255/tcp": lambda t: inbound(t, [replace(KUBELET, port=10255)]),
        "inbound:9100/tcp": firewalled,
        "system:net.ipv4.ip_forward": lambda t: kernel(t, "0"),
        "clock:local": lambda t: clock(t, -72.41, synchronised=False),
    }
    checks = []
    for t in targets.values():
        if t.id in special:
            checks.append(special[t.id](t))
        elif t.probe == "tcp":
            checks.append(_raven_tcp(t))
        elif t.probe != "tool":
            checks.append(_by_probe(t))
    checks[-1:-1] = tools(targets, ("socat", "ebtables", "conntrack-tools"),
                          "apt-get update && apt-get install -y socat ebtables conntrack")
    return _report(checks, params(apiserver="47.96.10.5:6443", raven_gateways=["47.96.10.9"], https_proxy=PROXY),
                   warnings=["HTTPS_PROXY is set: HTTPS probes go through the proxy, raw TCP/UDP probes go direct",
                             "--tunnel-server is ignored: clusters >= 1.26 have no tunnel server"], ms=3140)


ALL = {"ready": ready_report, "dns_forwarder": dns_forwarder_report, "mixed": mixed_report}
