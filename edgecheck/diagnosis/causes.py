"""Root causes: which checks most likely share one cause and one fix, what to call it, and the
order a person should work through them.

One broken DNS forwarder that breaks eight endpoints is one cause listing eight endpoints. A cause
id is stable across runs and nodes (it names the reason and the shared thing: nameservers, port,
proxy, issuer), so `edgecheck fleet` groups the same cause across a whole site.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgecheck.diagnosis.scene import (Scene, blamed_on_clock, clock_explanation, failed_addresses, nameservers,
                                       ns_text, resolver_source)
from edgecheck.evidence import (AddressBlocks, FirewallVerdict, InboundEvidence, KernelEvidence, PathMtu, ProxyRoute,
                                ReachProbe, TlsInterception, TlsResult, ToolEvidence)
from edgecheck.model import CheckResult, Kind, Reason, Status
from edgecheck.probes import tlskind
from edgecheck.records import record

# Presentation order: the ACK troubleshooting page says DNS first, then network policies and
# firewalls, then security groups; a proxy sits in front of all of those; TLS problems only show
# once TCP works, and a path-MTU black hole is what makes TLS stall after TCP connects; then this
# host itself. This host's own packet filter is the first firewall on every path, so it comes
# before the network's; kernel settings go with the other host checks. A certificate that is
# expired or not yet valid only because this host's clock is off is the clock's (cause_of), and
# shows in the clock's finding.
ORDER: Tuple[Reason, ...] = (
    Reason.NXDOMAIN, Reason.DNS_TIMEOUT, Reason.DNS_ERROR, Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR,
    Reason.PROXY_ERROR, Reason.HOST_FIREWALL, Reason.UNREACHABLE, Reason.TIMEOUT, Reason.REFUSED,
    Reason.NO_RESPONSE, Reason.UNPROVEN, Reason.PATH_MTU, Reason.TLS_HANDSHAKE_FAILED, Reason.TLS_VERIFY_FAILED,
    Reason.TLS_INTERCEPTED, Reason.PORT_IN_USE, Reason.PORT_NOT_LISTENING, Reason.LOOPBACK_ONLY,
    Reason.COMPONENT_UNHEALTHY, Reason.KERNEL_SETTING, Reason.TOOL_MISSING, Reason.CLOCK_UNSYNCHRONISED,
    Reason.CLOCK_OFFSET,
    Reason.DEADLINE_EXCEEDED, Reason.MISSING_INPUT, Reason.NOT_APPLICABLE, Reason.INTERNAL_ERROR,
)
RANK: Dict[Reason, int] = {r: i for i, r in enumerate(ORDER)}

DNS_REASONS = (Reason.NXDOMAIN, Reason.DNS_TIMEOUT, Reason.DNS_ERROR)
CONNECT_REASONS = (Reason.TIMEOUT, Reason.REFUSED, Reason.UNREACHABLE)


@record(frozen=True)
class Cause:
    reason: Reason
    scope: Tuple[Tuple[str, str], ...] = ()  # what the checks share, e.g. (("port", "443"),)

    @property
    def id(self) -> str:
        """'timeout:protocol=tcp,port=443,route=direct'; just the reason when nothing more is shared."""
        if not self.scope:
            return self.reason.value
        return self.reason.value + ":" + ",".join(f"{k}={v}" for k, v in self.scope)

    def get(self, key: str) -> str:
        return dict(self.scope).get(key, "")


def _route(check: CheckResult) -> str:
    if check.kind is Kind.REACH:
        return "inbound"  # from this host to a node's port (`edgecheck reach`)
    return "proxy" if check.evidence.find(ProxyRoute) else "direct"


def cause_of(check: CheckResult, scene: Optional[Scene] = None) -> Cause:
    """The root cause a check shares with others. scene (the whole report's) lets a certificate
    date failure that this host's clock explains be the clock's cause."""
    reason, t = check.reason, check.target
    if scene is not None and blamed_on_clock(check, scene):
        return Cause(Reason.CLOCK_OFFSET)
    if check.kind is Kind.REACH and (reason in CONNECT_REASONS or reason is Reason.NO_RESPONSE):
        # Every blocked port of the nodes in one cause per protocol: one firewall rule, one route,
        # or nothing listening on the node explains them together (the advice names each port).
        return Cause(reason, (("protocol", t.protocol or "tcp"), ("route", "inbound")))
    if reason in DNS_REASONS:
        return Cause(reason, (("nameservers", ",".join(nameservers(check))),))
    if reason in CONNECT_REASONS:
        return Cause(reason, (("protocol", t.protocol or "tcp"), ("port", str(t.port or "")), ("route", _route(check))))
    if reason is Reason.NO_RESPONSE:
        return Cause(reason, (("protocol", t.protocol or "tcp"), ("port", str(t.port or ""))))
    if reason is Reason.PROXY_ERROR:
        route = check.evidence.find(ProxyRoute)
        return Cause(reason, (("proxy", route.url if route else ""),))
    if reason is Reason.TLS_VERIFY_FAILED:
        tls = check.evidence.find(TlsResult)
        kind = (("kind", tls.verify_kind),) if tls and tls.verify_kind else ()
        return Cause(reason, kind + (("issuer", tls.issuer if tls else ""),))
    if reason is Reason.TLS_INTERCEPTED:
        seen = check.evidence.find(TlsInterception)
        return Cause(reason, (("anchor", seen.anchor if seen else ""),))
    if reason is Reason.PATH_MTU:
        mtu = check.evidence.find(PathMtu)
        return Cause(reason, (("largest_working", str(mtu.largest_working if mtu else "")),))
    if reason is Reason.HOST_FIREWALL:
        return Cause(reason, firewall_scope(check))
    # Everything else: one cause per reason (all missing tools, all busy ports, ...).
    return Cause(reason)


def firewall_scope(check: CheckResult) -> Tuple[Tuple[str, str], ...]:
    """One rule or chain of one manager that blocks five ports is one cause: direction, verdict,
    manager (and firewalld zone), and the base chain that decided."""
    fw = check.evidence.find(FirewallVerdict)
    if fw is None:
        return (("direction", "in" if check.kind is Kind.INBOUND else "out"),)
    scope = [("direction", fw.direction), ("verdict", fw.verdict)]
    if fw.manager is not None and fw.manager.name != "none":
        scope.append(("manager", fw.manager.name))
        if fw.manager.zone:
            scope.append(("zone", fw.manager.zone))
    if fw.base is not None:
        scope.append(("chain", f"{fw.base.family}:{fw.base.table}:{fw.base.chain}"))
    return tuple(scope)


def _firewall_title(cause: Cause, checks: Sequence[CheckResult]) -> str:
    verdict, direction = cause.get("verdict"), "inbound" if cause.get("direction") == "in" else "outbound"
    manager = cause.get("manager")
    by = f" ({manager}{', zone ' + cause.get('zone') if cause.get('zone') else ''})" if manager else ""
    if verdict == "unknown":
        return f"This host's packet filter has {direction} rules edgecheck cannot evaluate{by}"
    if verdict == "partial":
        return f"This host's packet filter lets {direction} traffic through from only some sources{by}"
    return f"This host's packet filter blocks {direction} traffic{by}"


def _dns_title(cause: Cause, checks: Sequence[CheckResult]) -> str:
    if all(c.kind is Kind.DNS and c.status is Status.WARN for c in checks):
        return f"{ns_text([n for n in cause.get('nameservers').split(',') if n]).capitalize()} fails while another one answers"
    verb = {Reason.DNS_TIMEOUT: "time out at", Reason.DNS_ERROR: "fail at",
            Reason.NXDOMAIN: "return NXDOMAIN (no such name) at"}[cause.reason]
    source = resolver_source(checks)
    where = ns_text([n for n in cause.get("nameservers").split(",") if n]) + (f" (from {source})" if source else "")
    return f"DNS lookups {verb} {where}"


def _connect_title(cause: Cause, checks: Sequence[CheckResult]) -> str:
    verb = {Reason.TIMEOUT: "times out", Reason.REFUSED: "is refused", Reason.UNREACHABLE: "is unreachable",
            Reason.NO_RESPONSE: "gets no answer"}
    if cause.get("route") == "inbound":
        return f"{cause.get('protocol').upper()} to the nodes' inbound ports {verb[cause.reason]}"
    via = " through the proxy" if cause.get("route") == "proxy" else ""
    return f"{cause.get('protocol').upper()} port {cause.get('port')}{via} {verb[cause.reason]}"


_TLS_TITLES = {
    tlskind.UNKNOWN_ISSUER: "TLS certificates from an issuer this host does not trust",
    tlskind.SELF_SIGNED: "Self-signed TLS certificates",
    tlskind.HOSTNAME_MISMATCH: "TLS certificates for other names",
    tlskind.EXPIRED: "Expired TLS certificates",
    tlskind.NOT_YET_VALID: "TLS certificates not valid yet",
    tlskind.OTHER: "TLS certificates fail verification",
}


_TITLES: Dict[Reason, Callable[[Cause, Sequence[CheckResult]], str]] = {
    Reason.NXDOMAIN: _dns_title,
    Reason.DNS_TIMEOUT: _dns_title,
    Reason.DNS_ERROR: _dns_title,
    Reason.TIMEOUT: _connect_title,
    Reason.REFUSED: _connect_title,
    Reason.UNREACHABLE: _connect_title,
    Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR: lambda c, _: "Names resolve outside the dedicated-connection routes",
    Reason.PROXY_ERROR: lambda c, _: f"Proxy {c.get('proxy') or 'the configured proxy'} failed",
    Reason.NO_RESPONSE: lambda c, checks: _connect_title(c, checks) if c.get("route") == "inbound" else (
        f"No answer on {c.get('protocol').upper()} port {c.get('port')}"),
    Reason.TLS_VERIFY_FAILED: lambda c, _: _TLS_TITLES.get(c.get("kind"), "TLS certificates not trusted") + (
        f" (issuer: {c.get('issuer')})" if c.get("issuer") else ""),
    Reason.UNPROVEN: lambda c, _: "Ports accept connections, but not the expected listener or component",
    Reason.TLS_INTERCEPTED: lambda c, _: "TLS is re-signed on the way (inspected)" + (
        f" by {c.get('anchor')}" if c.get("anchor") else ""),
    Reason.PATH_MTU: lambda c, _: "Large packets are lost on the path (path-MTU black hole)" + (
        f": {c.get('largest_working')} bytes get through" if c.get("largest_working") else ""),
    Reason.TLS_HANDSHAKE_FAILED: lambda c, _: "TLS handshake fails after TCP connects",
    Reason.PORT_IN_USE: lambda c, _: "Ports the node needs are already in use",
    Reason.PORT_NOT_LISTENING: lambda c, _: "Ports a joined node serves are not listening",
    Reason.LOOPBACK_ONLY: lambda c, _: "Ports listen on loopback only, unreachable from the cloud",
    Reason.HOST_FIREWALL: _firewall_title,
    Reason.KERNEL_SETTING: lambda c, _: "Kernel settings the node needs are wrong",
    Reason.TOOL_MISSING: lambda c, _: "System tools the installer needs are missing",
    Reason.COMPONENT_UNHEALTHY: lambda c, checks: f"{checks[0].target.entry} on this node does not work",
    Reason.CLOCK_UNSYNCHRONISED: lambda c, _: "The local clock is not synchronised",
    Reason.CLOCK_OFFSET: lambda c, _: "The local clock is off",
    Reason.DEADLINE_EXCEEDED: lambda c, _: "Did not finish before the run's deadline",
    Reason.INTERNAL_ERROR: lambda c, _: "edgecheck could not run these checks",
}


def title_of(cause: Cause, checks: Sequence[CheckResult]) -> str:
    """A count-free title for the cause ('DNS lookups time out at nameserver 10.0.0.2')."""
    titled = _TITLES.get(cause.reason)
    return titled(cause, checks) if titled else cause.reason.value


def detail_of(check: CheckResult, scene: Optional[Scene] = None) -> str:
    """What to show next to one check of a finding: the part that differs from its siblings."""
    reason, ev = check.reason, check.evidence
    probe = ev.find(ReachProbe)
    if probe is not None and reason is not Reason.OK:
        return probe.detail
    explanation = clock_explanation(check, scene) if scene is not None else None
    if explanation is not None and explanation.explained:
        tls = ev.find(TlsResult)
        seems = "expired" if tls is not None and tls.verify_kind == tlskind.EXPIRED else "not yet valid"
        return f"certificate {seems} by this host's clock; {explanation.words}"
    if reason is Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR:
        blocks = ev.find(AddressBlocks)
        if blocks is not None:
            return f"got {', '.join(blocks.outside)}; routes carry {', '.join(blocks.expected)}"
    if reason in CONNECT_REASONS:
        return ", ".join(a for a in failed_addresses(check) if a != check.target.host)
    if reason is Reason.TLS_VERIFY_FAILED:
        tls = ev.find(TlsResult)
        return tls.verify_error or "" if tls else ""
    if reason is Reason.PATH_MTU:
        mtu = ev.find(PathMtu)
        return f"stalls in {'the TLS handshake' if mtu.stage == 'tls' else 'the HTTP response'}" if mtu else ""
    if reason in (Reason.PORT_IN_USE, Reason.LOOPBACK_ONLY):
        return _held_by(check)
    if reason is Reason.HOST_FIREWALL:
        fw = ev.find(FirewallVerdict)
        return _firewall_detail(fw) if fw is not None else ""
    if reason is Reason.KERNEL_SETTING:
        kernel = ev.find(KernelEvidence)
        return kernel.command if kernel is not None else ""
    if reason is Reason.TOOL_MISSING:
        tool = ev.find(ToolEvidence)
        wanted = list(tool.executables_wanted) if tool else []
        return "needs " + " or ".join(wanted) if wanted and wanted != [check.id.split(":", 1)[-1]] else ""
    return ""


def _firewall_detail(fw: FirewallVerdict) -> str:
    if fw.verdict == "unknown":
        return f"cannot evaluate `{fw.rule}`" if fw.rule else ""
    peers = ", ".join(fw.blocked)
    via = f" by `{fw.rule}`" if fw.rule else ""
    return (f"from {peers}" if fw.direction == "in" else f"to {peers}") + via if peers else via.strip()


def _held_by(check: CheckResult) -> str:
    inbound = check.evidence.find(InboundEvidence)
    names: List[str] = []
    for h in inbound.holders if inbound else ():
        who = h.process or h.unit or ("the kernel" if h.kernel_socket else "an unknown process")
        extra = [f"pid {h.pid}"] if h.pid is not None else []
        extra += [f"user {h.user}"] if h.user else []
        extra += [f"on {h.address}"] if h.loopback else []
        text = who + (f" ({', '.join(extra)})" if extra else "")
        if text not in names:
            names.append(text)
    return "held by " + "; ".join(names) if names else ""
