"""What to do, per reason: the one source of advice for every format.

`advise(reason, checks, scene)` answers for one check (its JSON remediation) and for a group of
checks sharing a cause (a finding) alike, so a terminal user and a fleet tool read the same
words. Every fact comes from the checks' targets (the catalog, through the plan) and evidence:
ports, NTP servers, CIDR blocks, components and notes are never written here.

Order of the troubleshooting the advice follows: the ACK page on pod network access says DNS
first, then network policies and firewalls, then security groups; routes and devices for the
dedicated line come from the dedicated-connection page, outbound security-group rules from the
security-group page.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgecheck.diagnosis.scene import (Scene, clock_explanation, failed_addresses, hosts_text, listed, nameservers,
                                       ns_text, ports_text, resolver_source, zone)
from edgecheck.diagnosis.firewall import firewall_advice, firewall_also, not_evaluated_note, not_evaluated_outbound
from edgecheck.evidence import (ClockEvidence, Connects, InboundEvidence, KernelEvidence, PathMtu, PortHolder,
                                ProxyRoute, RavenMtuNote, ReachProbe, TlsInterception, TlsResult, ToolEvidence,
                                TrustSource)
from edgecheck.host.kernel import SETTINGS
from edgecheck.model import CheckResult, Kind, Phase, Reason, Status, Trust
from edgecheck.probes import tlskind
from edgecheck.records import record


@record(frozen=True)
class Advice:
    paragraphs: Tuple[str, ...] = ()
    command: str = ""  # one command that fixes it all, shown on its own line

    def text(self) -> str:
        """The remediation string of the JSON report and the metrics: the same words."""
        return " ".join(self.paragraphs + ((self.command,) if self.command else ()))


Adviser = Callable[[Sequence[CheckResult], Scene], Advice]

DNS_FIRST = "Fix DNS first: nothing else can be tested for these endpoints until their names resolve."


# ------------------------------------------------------------------------------------------ DNS
def _nxdomain(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if all(c.status is Status.WARN for c in checks):
        # Only optional names ("may be absent in some regions") are warnings: nothing to fix.
        return Advice(("Nothing to do if this name is absent in this region (the documentation allows it).",))
    host = checks[0].target.host or ""
    if scene.dedicated:
        second = (f"In dedicated-connection mode the -vpc and -internal names exist only in the VPC's DNS: "
                  f"forward {zone(host)} from your DNS server to a resolver in the VPC (the dedicated-connection "
                  f"page recommends resolving these names in the VPC).")
    else:
        second = (f"Check the region id (--region): endpoint names contain it. If it is right, the DNS server "
                  f"({ns_text(nameservers(checks[0]))}) filters or rewrites these names; compare with another "
                  f"resolver: `dig {host}`.")
    return Advice((DNS_FIRST, second))


def _dns_failure(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    endpoints = [c for c in checks if c.kind is not Kind.DNS]
    own = tuple(_nameserver_paragraph(c) for c in checks if c.kind is Kind.DNS)
    if not endpoints:
        return Advice(tuple(dict.fromkeys(own)))
    return Advice(_endpoint_dns_failure(endpoints, scene).paragraphs + own)


def _nameserver_paragraph(check: CheckResult) -> str:
    """For a dns:nameserver check: what is wrong with that nameserver, and where it is configured."""
    from edgecheck.checks.nameserver import NameserverEvidence

    ev = check.evidence.find(NameserverEvidence)
    ns, conf = check.target.host or "", ev.resolv_conf if ev else "/etc/resolv.conf"
    where = (f"the upstream list of the local stub {check.target.upstream_of}" if check.target.upstream_of
             else f"{conf} (or what writes it: netplan, NetworkManager, systemd-resolved or DHCP)")
    if ev is not None and ev.outcome == "tcp-blocked":
        return (f"Allow TCP port 53 to {ns} (host firewall, data-centre firewall, security group): answers larger "
                f"than a UDP datagram are fetched over TCP, and registry and OSS names can have such answers.")
    if ev is not None and ev.rcode:
        return (f"{ns} answers {ev.rcode}: check its forwarding (upstream servers, access lists, DNSSEC) with "
                f"`dig @{ns} <name>`, or replace it in {where}.")
    if check.status is Status.WARN:
        wait = f" every lookup waits {ev.wait_s:g} s on it first;" if ev is not None and ev.wait_s else ""
        return (f"Nameserver {ns} does not work while another one does:{wait} remove it from {where}, or make it "
                f"answer (UDP and TCP 53 from this host).")
    return (f"No nameserver answers: check that this host reaches {ns} on UDP and TCP port 53 (host firewall, "
            f"data-centre firewall, security group) and that it runs, or point {where} at a resolver that works.")


def _endpoint_dns_failure(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    ns = nameservers(checks[0])
    host = checks[0].target.host or ""
    first = ns[0] if ns else "<nameserver>"
    second = (f"Check that this host reaches {ns_text(ns)} on UDP and TCP port 53 (host firewall, "
              f"data-centre firewall, security group: always allow DNS egress), and that it answers for "
              f"{zone(host)} itself or forwards to an upstream that does: `dig @{first} {host}`.")
    if scene.dedicated:
        third = (f"In dedicated-connection mode, forward {zone(host)} to a resolver in the VPC so the -vpc "
                 "names resolve to internal addresses.")
    else:
        third = f"Or point {resolver_source(checks) or '/etc/resolv.conf'} at a resolver that works."
    return Advice((DNS_FIRST, second, third))


def _outside_cidr(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    blocks = listed([b for c in checks for b in c.target.expected_cidrs])
    sources = listed([c.target.cidr_source for c in checks])
    host = checks[0].target.host or ""
    return Advice((
        f"The dedicated line and the data-centre firewall carry only the routes the dedicated-connection "
        f"page gives ({blocks}; {sources}), so traffic to these addresses would leave another way or not at all.",
        f"Make these names resolve to their VPC endpoint addresses on this host (forward {zone(host)} from "
        f"your DNS server to a VPC resolver, or add hosts entries), or route the addresses over the dedicated "
        f"connection (core switch, data-centre firewall, VBR, ECR/CEN).",
    ))


# ---------------------------------------------------------------------------------- connections
def _where(checks: Sequence[CheckResult]) -> str:
    addresses = listed([a for c in checks for a in failed_addresses(c)])
    return f"{ports_text(checks)} to {addresses}" if addresses else ports_text(checks)


def _connect(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if _reach(checks):
        return _reach_path(checks, scene)
    proxy = checks[0].evidence.find(ProxyRoute)
    if proxy is not None:
        return Advice((
            f"The proxy {proxy.url} took the request but {hosts_text(checks)} did not answer through it in "
            f"time: check that the proxy reaches {ports_text(checks)} of these hosts (its own egress rules and "
            f"DNS), or add the hosts to NO_PROXY if this node reaches them directly.",))
    where = _where(checks)
    reason = checks[0].reason
    remote = _remote_firewall(checks)
    if remote:
        return Advice((remote,) + _path_paragraphs(checks, scene))
    if reason is Reason.TIMEOUT:
        first = (f"Packets for {where} are silently dropped. Check, in this order: this host's firewall "
                 f"(iptables/nftables output rules), the data-centre firewall's outbound rules, and the "
                 f"cluster security group's outbound rules or any ACL in between.")
    elif reason is Reason.REFUSED:
        first = (f"{where} was actively rejected (TCP reset or ICMP port unreachable): a firewall REJECT rule, "
                 f"or nothing listens at that address. Check that the names resolve to the right endpoint, "
                 f"then the firewall and security group rules.")
    else:
        addresses = [a for c in checks for a in failed_addresses(c)]
        first = (f"This host found no usable route for {where} (or its own firewall rejects it): check "
                 f"`ip route get {addresses[0] if addresses else '<address>'}`, the default gateway and the "
                 f"host firewall.")
    unread = not_evaluated_outbound(checks)
    return Advice((first,) + ((unread,) if unread else ()) + _path_paragraphs(checks, scene))


def _remote_firewall(checks: Sequence[CheckResult]) -> str:
    """ICMP "administratively prohibited" from another address: a firewall there rejects it."""
    for c in checks:
        connects = c.evidence.find(Connects)
        for a in connects.attempts if connects else ():
            if a.icmp is not None and a.icmp.admin_prohibited and not a.icmp.local:
                return (f"A firewall at {a.icmp.offender} rejects {_where(checks)} ({a.icmp.name}): it is configured "
                        f"to refuse this traffic. Ask whoever runs {a.icmp.offender} to allow it; nothing on this host "
                        f"needs to change.")
    return ""


def _path_paragraphs(checks: Sequence[CheckResult], scene: Scene) -> Tuple[str, ...]:
    if scene.dedicated:
        blocks = listed([b for c in checks for b in c.target.expected_cidrs])
        carried = f"these endpoints' blocks ({blocks})" if blocks else "these addresses"
        out = [f"Dedicated-connection mode: the core switch, VBR and ECR/CEN route tables must carry "
               f"{carried}, and the data-centre firewall must allow them outbound."]
    else:
        out = ["Public-network mode: the site's internet egress (NAT, upstream firewall) must allow these addresses."]
    if scene.proxy_in_use and any(c.target.probe not in ("https", "http") for c in checks):
        out.append("A proxy is configured, but raw TCP and UDP connections never use it.")
    if any(c.target.probe == "ntp" for c in checks):
        out.append("If this node syncs its clock from your own NTP servers, run with --self-host-ntp.")
    return tuple(out)


def _no_response(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if _reach(checks):
        return _reach_path(checks, scene)
    paragraphs = [f"UDP cannot be confirmed without an answer: check that outbound {_where(checks)} is allowed on "
                  f"this host, the data-centre firewall and the security group, and that the address is the "
                  f"right one."]
    paragraphs += list(dict.fromkeys(note for c in checks for note in c.target.notes))
    return Advice(tuple(paragraphs))


def _proxy(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    route = checks[0].evidence.find(ProxyRoute)
    proxy = route.url if route else "the configured proxy"
    return Advice((
        f"Check that the proxy {proxy} (from HTTPS_PROXY/HTTP_PROXY) is running and reachable from this host, "
        f"and that it allows CONNECT to {hosts_text(checks)} on {ports_text(checks)} (and accepts its "
        f"credentials, if any).",
        "If these endpoints must go direct (dedicated line, internal mirror), add them to NO_PROXY.",
    ))


# ------------------------------------------------------------------------------------------ TLS
def _tls_verify(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    trust = checks[0].evidence.find(TrustSource)
    tls = checks[0].evidence.find(TlsResult)
    kind = tls.verify_kind if tls is not None else None
    if kind in (tlskind.EXPIRED, tlskind.NOT_YET_VALID, tlskind.HOSTNAME_MISMATCH, tlskind.OTHER):
        return Advice((tls_verify_remedy(kind or "", clock_explanation(checks[0], scene)),))
    if checks[0].target.trust is Trust.CLUSTER:
        cafile = trust.cafile if trust and trust.cafile else "the --apiserver-ca file"
        return Advice((f"The API server certificate does not verify against --apiserver-ca {cafile}: check "
                       "that it is this cluster's CA (certificate-authority-data) and the endpoint is right.",))
    origin = trust.origin if trust else "the system trust store"
    return Advice((
        f"The certificate is not trusted by the anchors used ({origin}). If your network inspects TLS, a "
        f"proxy or firewall replaces the certificates: add its CA with --ca-bundle PATH and to the system "
        f"trust store (the node's components use it), or exempt {hosts_text(checks)} from inspection.",
        "Otherwise an expired certificate or a wrong name means the host is not the real endpoint: check "
        "the clock (see the clock check) and that the names resolve to the right addresses.",
    ))


def _tls_intercepted(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    parts = [c.evidence.find(TlsInterception) for c in checks]
    anchors = list(dict.fromkeys(p.anchor or p.issuer for p in parts if p is not None and (p.anchor or p.issuer)))
    return Advice((interception_remedy(anchors),))


def _path_mtu(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    parts = [p for p in (c.evidence.find(PathMtu) for c in checks) if p is not None]
    sizes = [p.largest_working for p in parts if p.largest_working]
    largest = min(sizes) if sizes else None
    interface = next((p.interface for p in parts if p.interface), None)
    paragraphs = [path_mtu_remedy(largest, interface, hosts_text(checks) or "these endpoints")]
    if scene.raven_gateways and largest:
        from edgecheck.probes.raven_mtu import raven_note

        mtu = next((p.egress.get("interface_mtu") for p in parts if p.egress.get("interface_mtu")), None)
        note = raven_note(largest, mtu)
        paragraphs.append(f"Raven gateway {listed(scene.raven_gateways)}: if its path crosses the same link, "
                          + note.message[0].lower() + note.message[1:] + (f" {note.fix}" if note.fix else ""))
    return Advice(tuple(paragraphs))


_TLS_VERIFY_REMEDIES = {
    tlskind.UNKNOWN_ISSUER: (
        "The issuer is not in this host's trust store. If a TLS-inspecting proxy or appliance sits on the path, its "
        "CA must be added to the system store (update-ca-certificates or update-ca-trust) and to containerd; "
        "otherwise this name reaches a server that is not the real endpoint: check DNS and the proxy settings."),
    tlskind.SELF_SIGNED: (
        "A self-signed certificate means this name reaches a server that is not the real endpoint (a captive "
        "portal, a wrong mirror, a misrouted address): check DNS (/etc/hosts, the resolver) and the proxy settings."),
    tlskind.HOSTNAME_MISMATCH: (
        "The certificate belongs to other names, so this name reaches another site's server: check DNS "
        "(/etc/hosts, the resolver), the address the name resolves to, and any transparent proxy."),
    tlskind.EXPIRED: (
        "The server's certificate is out of its dates. For your own endpoints renew it; for the cloud's endpoints "
        "this means the name reaches a server that is not the real endpoint (check DNS and any inspecting proxy)."),
    tlskind.OTHER: "Check the certificate chain the server presents (openssl s_client -connect HOST:PORT -showcerts).",
}
_TLS_VERIFY_REMEDIES[tlskind.NOT_YET_VALID] = _TLS_VERIFY_REMEDIES[tlskind.EXPIRED]


def tls_verify_remedy(kind: str, clock: Optional[tlskind.ClockExplanation] = None) -> str:
    """What to do for a certificate of this verify kind; a date failure the clock explains is the
    clock's to fix."""
    if clock is not None and kind in (tlskind.EXPIRED, tlskind.NOT_YET_VALID):
        if clock.explained:
            return (f"The cause is this host's clock: {clock.words}. Fix the clock first (see the clock check: "
                    f"chrony or systemd-timesyncd must synchronise it); the certificate is valid at the correct time.")
        if clock.explained is False:
            return f"Not the clock: {clock.words}. " + _TLS_VERIFY_REMEDIES[kind]
    return _TLS_VERIFY_REMEDIES.get(kind, _TLS_VERIFY_REMEDIES[tlskind.OTHER])


def interception_remedy(anchors: Sequence[str]) -> str:
    """What to do for intercepted chains whose trust anchors are `anchors`."""
    ca = ", ".join(f"\"{a}\"" for a in anchors if a) or "the inspecting CA"
    return (f"Make containerd, kubelet and the node's other components trust {ca} as well, or image pulls and "
            f"the join fail: add it to the system trust store (update-ca-certificates or update-ca-trust) and to "
            f"containerd (/etc/containerd/certs.d/<registry>/ca.crt, then restart containerd); or exempt the "
            f"cluster's endpoints from inspection on the proxy or appliance.")


def path_mtu_remedy(largest_working: Optional[int], interface: Optional[str] = None,
                    host: str = "these endpoints") -> str:
    """The three fixes for a path-MTU black hole, with the sizes measured (IPv4 header sizes)."""
    from edgecheck.probes.pmtu import SMALL_MSS_V4

    clamp = largest_working - 40 if largest_working else SMALL_MSS_V4
    mtu = largest_working or 1280
    dev = interface or "<interface>"
    return (f"A link on the path to {host} is smaller than this host's MTU and the ICMP 'fragmentation "
            f"needed' (type 3 code 4; IPv6: packet too big, type 2) that should report it is filtered. "
            f"Fix one of: clamp the TCP MSS on the router or tunnel that carries this traffic "
            f"(iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu, "
            f"or --set-mss {clamp}); lower this host's MTU to {mtu} "
            f"(ip link set dev {dev} mtu {mtu}, and persist it in the network configuration); "
            f"or allow ICMP type 3 code 4 through the firewalls on the path so path-MTU discovery works.")


def _tls_handshake(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if _reach(checks):
        return Advice(tuple(
            f"{ports_text(group)} of {hosts_text(group)} accept connections, but {name or 'the component'} does not "
            f"complete a TLS handshake there: check that it serves TLS on that port ({_logs(group)}) and that "
            f"nothing on the path (DPI, a transparent proxy) intercepts it." for name, group in _by_component(checks).items()))
    return Advice((
        f"TCP works but TLS with {hosts_text(checks)} does not: something on the path (DPI firewall, SNI "
        f"filter, transparent proxy) interferes, or the address is not the real endpoint. Allow TLS to "
        f"these hosts without inspection; if the site requires a proxy, set HTTPS_PROXY.",))


def _passed(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if _reach(checks):
        return _reach_nat(checks)
    # A passed check can still carry a note: this host's filter could not be read for its port, or
    # the path to the Raven gateway is too small for Raven's IPsec packets.
    notes = [n.fix for n in (c.evidence.find(RavenMtuNote) for c in checks) if n is not None and n.fix]
    notes += [n for n in (not_evaluated_note(checks),) if n]
    if notes:
        return Advice(tuple(dict.fromkeys(notes)))
    trust = checks[0].evidence.find(TrustSource)
    if trust is not None and not trust.verify and checks[0].target.trust is Trust.CLUSTER:
        return Advice((
            "The API server certificate was not verified: give the cluster's kubeconfig with --kubeconfig PATH "
            "(its certificate-authority-data is used), or the cluster CA with --apiserver-ca PATH.",))
    return Advice()


# ----------------------------------------------------------------------------------------- clock
def _enable_chrony(clock: ClockEvidence) -> str:
    servers = " and ".join(clock.ntp_servers) if clock.ntp_servers else "the documented NTP servers"
    return (f"Keep the clock synchronised: install chrony and run `systemctl enable --now {clock.service}` "
            f"with servers {servers} or your own NTP servers (then use --self-host-ntp); check with "
            f"`chronyc tracking`.")


def _clock(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if _reach(checks):
        offsets = listed([f"{p.clock_offset_s:+.0f} s" for p in _probes(checks) if p.clock_offset_s is not None])
        return Advice((f"The clocks of {hosts_text(checks)} and this host differ{' by ' + offsets if offsets else ''}: "
                       "synchronise both (chrony against the same NTP servers; `edgecheck run` on the node checks "
                       "its clock). The cluster's certificates and tunnels fail the same way.",))
    certificates = [c for c in checks if c.reason is Reason.TLS_VERIFY_FAILED]
    others = [c for c in checks if c not in certificates]
    # Certificates alone (the clock check warns while they fail): the clock's evidence still says what to do.
    advice = _clock_itself(others or certificates, scene.clock if not others else None)
    if not certificates:
        return advice
    return Advice(advice.paragraphs + (
        f"The certificate failures of {hosts_text(certificates)} come from this clock: at the correct time their "
        f"certificates are valid, so they clear once the clock is right.",), advice.command)


def _clock_itself(checks: Sequence[CheckResult], measured: Optional[ClockEvidence]) -> Advice:
    local = next((c for c in checks if c.kind is Kind.CLOCK), None)
    clock = local.evidence.find(ClockEvidence) if local else measured
    if clock is None:
        host = hosts_text(checks)
        if checks[0].reason is Reason.CLOCK_UNSYNCHRONISED:
            return Advice((f"{host} answered but says it is not synchronised itself: use another NTP server, or "
                           f"set selfHostNtpServer (--self-host-ntp) if you synchronise the clock yourself.",))
        return Advice((f"This host's clock is off: enable and check time synchronisation (`chronyc tracking`, "
                       f"`chronyc sources`), with {host} as a source.",))
    enable = _enable_chrony(clock)
    offset = abs(clock.offset_s) if clock.offset_s is not None else 0.0
    reason = local.reason if local is not None else Reason.CLOCK_OFFSET
    if reason is Reason.CLOCK_OFFSET and offset > clock.fail_s:
        return Advice(("Step the clock once with chronyd running: `chronyc makestep` (add `makestep 1 3` to "
                       "chrony.conf so a boot steps large offsets).", enable))
    if reason is Reason.CLOCK_OFFSET or local is None:
        return Advice((f"Check the configured time sources (`chronyc sources -v`) against "
                       f"{' / '.join(clock.ntp_servers) or 'your NTP servers'}.",))
    daemon = next((d for d in clock.running_time_daemons if d != "ntpdate"), None)
    if daemon:
        # A daemon that runs but never synchronises: its sources are unreachable or wrong.
        return Advice((f"{daemon} is running but has not synchronised the clock: check its sources (`chronyc "
                       "sources -v`, `ntpq -p` or `timedatectl timesync-status`) and that UDP 123 to them is "
                       "allowed.", enable))
    return Advice((enable,))


# ------------------------------------------------------------------------------- inbound ports
def _firewall(checks: Sequence[CheckResult]) -> str:
    allowed = listed([c.target.allowed_from for c in checks]) or "the sources that must reach them"
    return (f"allow inbound {ports_text(checks)} from {allowed} on the host firewall and the data-center "
            f"firewall/security group")


def _table_unreadable(checks: Sequence[CheckResult]) -> Optional[Advice]:
    ev = checks[0].evidence.find(InboundEvidence)
    if ev is not None and ev.bind_test == "inconclusive":
        return Advice(("Run edgecheck where /proc/net is visible (not under systemd ProcSubset=pid).",))
    return None


def _how_to_free(h: PortHolder) -> str:
    if h.unit:
        return f"stop its service: `systemctl disable --now {h.unit}`"
    if h.pid is not None:
        return f"stop it (`kill {h.pid}`), and whatever restarts it"
    if h.kernel_socket:
        return ("it is a kernel socket, typically a VXLAN device left by an earlier flannel: find it with "
                "`ip -d link show type vxlan` and remove it with `ip link delete <device>`")
    flag = "-ltnp" if h.protocol == "tcp" else "-lunp"
    return f"find the holder as root with `ss {flag} 'sport = :{h.port}'` and stop it"


def _holders(check: CheckResult) -> Tuple[PortHolder, ...]:
    ev = check.evidence.find(InboundEvidence)
    return ev.holders if ev else ()


def _port_in_use(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    unreadable = _table_unreadable(checks)
    if unreadable:
        return unreadable
    by_fix: Dict[str, List[CheckResult]] = {}
    for c in checks:
        holders = _holders(c)
        fix = _how_to_free(holders[0]) if holders else _how_to_free(PortHolder(c.target.protocol or "tcp", "", c.target.port or 0))
        by_fix.setdefault(fix, []).append(c)
    paragraphs = []
    for fix, group in by_fix.items():
        components = listed([c.target.component.name for c in group if c.target.component])
        needs = f" ({components} must bind {'it' if len(group) == 1 else 'them'})" if components else ""
        paragraphs.append(f"Free {ports_text(group)} before joining{needs}: {fix}.")
    leftovers = listed([h.process or "" for c in checks for h in _holders(c)
                        if h.process and any(n in h.process.lower() for n in c.target.leftovers)])
    if leftovers:
        paragraphs.append(f"{leftovers} looks like a component left from an earlier installation: if this host "
                          "was joined to a cluster before, remove it from that cluster and clean it up first (or, "
                          "if it is a node already, run with --phase running).")
    return Advice(tuple(paragraphs) + firewall_also(checks))


def _by_component(checks: Sequence[CheckResult]) -> Dict[str, List[CheckResult]]:
    out: Dict[str, List[CheckResult]] = {}
    for c in checks:
        out.setdefault(c.target.component.name if c.target.component else "", []).append(c)
    return out


def _not_listening(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    unreadable = _table_unreadable(checks)
    if unreadable:
        return unreadable
    paragraphs = []
    for name, group in _by_component(checks).items():
        component = group[0].target.component
        start = f"Start {name} ({component.check})" if component else "Start the component that serves this port"
        paragraphs.append(f"{start}; then {_firewall(group)}.")
    if scene.phase is Phase.RUNNING:
        paragraphs.append("If this host has not joined yet, use --phase join.")
    return Advice(tuple(paragraphs) + firewall_also(checks))


def _loopback_only(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    paragraphs = []
    for name, group in _by_component(checks).items():
        component = group[0].target.component
        bind = component.bind if component else "bind it to 0.0.0.0 or the node IP"
        paragraphs.append(f"Make {name or 'the process'} listen on the node's address: {bind}; then {_firewall(group)}.")
    return Advice(tuple(paragraphs) + firewall_also(checks))


# ---------------------------------------------------------- reach: a node's ports, from outside
# The path back to the node, in the order of the dedicated-connection page's device sections, or
# the public-network page's inbound rule; who must get in is the targets' `allowed_from` (catalog).
def _reach(checks: Sequence[CheckResult]) -> bool:
    return all(c.kind is Kind.REACH for c in checks)


def _probes(checks: Sequence[CheckResult]) -> List[ReachProbe]:
    return [p for p in (c.evidence.find(ReachProbe) for c in checks) if p is not None]


def _logs(checks: Sequence[CheckResult]) -> str:
    """How to see whether the components of these ports run: one clause per component."""
    components = list(dict.fromkeys(c.target.component for c in checks if c.target.component))
    if len(components) == 1:
        return components[0].check
    return "; ".join(f"{c.name}: {c.check}" for c in components) or "its logs"


def _who_stopped(checks: Sequence[CheckResult]) -> str:
    ports, nodes, reason = ports_text(checks), hosts_text(checks), checks[0].reason
    probes = _probes(checks)
    on_path = listed([p.rejected_by or "" for p in probes if not p.rejected_by_node and not p.blocked_locally])
    if checks[0].target.protocol == "udp" and any(p.rejected_by_node and p.port_unreachable for p in probes):
        return (f"Nothing listens on {ports} on {nodes} (the node answered ICMP port unreachable, as a REJECT rule "
                f"would too): start `edgecheck listen` there before the join, or check the component on a joined "
                f"node ({_logs(checks)}).")
    if any(p.rejected_by_node for p in probes):
        return (f"{nodes} itself rejects {ports} (the ICMP error came from the node: a REJECT rule in its packet "
                "filter): allow these ports there; `edgecheck run` on the node names the rule.")
    if on_path:
        return f"The rejection came from {on_path}, on the path to {nodes} (not the node): start with that device."
    if reason is Reason.REFUSED:
        return (f"Nothing accepted {ports} on {nodes} (a TCP reset): start `edgecheck listen` there before the join, "
                f"or check that the component runs on a joined node ({_logs(checks)}); a firewall answering with "
                "resets looks the same.")
    if reason is Reason.TIMEOUT:
        return f"Packets for {ports} to {nodes} are dropped without an answer, on the way or by the node's own filter."
    if reason is Reason.NO_RESPONSE and checks[0].target.protocol != "udp":
        return f"{ports} of {nodes} accept connections but send no answer: check the component there ({_logs(checks)})."
    if reason is Reason.NO_RESPONSE:
        return (f"No answer on {ports} from {nodes}: with `edgecheck listen` running there the datagrams are dropped "
                "on the way or by the node's filter; without it nothing can confirm UDP (run it on the node for a proof).")
    return (f"This host has no route to {nodes}, or a router on the way cannot deliver: check `ip route get "
            f"{checks[0].target.host}` here and the routes back from the node.")


def _reach_devices(checks: Sequence[CheckResult], scene: Scene) -> str:
    ports = ports_text(checks)
    allowed = listed([c.target.allowed_from for c in checks]) or "the sources that must reach them"
    if scene.dedicated:
        return (f"Dedicated connection: the traffic comes from {allowed}. Check, in the order of the dedicated-"
                f"connection page: 1) the data-centre firewall allows inbound {ports} from there to the node; 2) the "
                "core switch and the VBR route the data-centre block back (the VBR's outbound route through the "
                "Express Connect circuit and the firewall); 3) CEN/ECR: the transit router's outbound route to the "
                "data-centre block through the VBR; 4) the VPC route table's outbound route to the data-centre block "
                f"through CEN/ECR and the VBR; 5) the VPC security group allows outbound {ports} to the data-centre block.")
    return (f"Public-network mode: allow inbound {ports} from {allowed} (the public-network page's inbound rule) on "
            "the node's own firewall and on every firewall or security group in front of it.")


def _reach_path(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    probes = _probes(checks)
    if probes and all(p.blocked_locally for p in probes):
        return Advice((f"This host's own packet filter stops outbound {ports_text(checks)} to {hosts_text(checks)}: allow "
                       "it in this host's OUTPUT chain (iptables/nftables, or the firewalld/ufw rules that load "
                       "them), then probe again.",))
    notes = tuple(dict.fromkeys(n for c in checks for n in c.target.notes))
    return Advice((_who_stopped(checks), _reach_devices(checks, scene)) + notes)


def _reach_nat(checks: Sequence[CheckResult]) -> Advice:
    seen = listed([p.seen_source or "" for p in _probes(checks) if p.nat == "address"])
    if not seen:
        return Advice()
    return Advice((f"The node sees these probes coming from {seen}, not from this host: the path is NATed. Allow "
                   f"{seen} wherever the node's inbound rules name sources (its own firewall, the data-centre "
                   "firewall, security groups).",))


def _unproven(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if not _reach(checks):
        return Advice((f"Something accepted {ports_text(checks)} of {hosts_text(checks)} but did not answer as "
                       "expected: another service, or a middlebox answering in its place.",))
    token = [c for c in checks if c.target.answers == "token"]
    paragraphs = [
        f"Something accepted {ports_text(token)} on {hosts_text(token)} but did not prove to be `edgecheck listen` with "
        "this token: check that it runs there with the same token (compare the fingerprints both sides print) and "
        "that nothing else holds or answers for these ports (another service, or a proxy, load balancer or NAT "
        "device in between)."] if token else []
    for name, group in _by_component([c for c in checks if c not in token]).items():
        paragraphs.append(f"{ports_text(group)} of {hosts_text(group)} accept connections, but {name or 'the component'} "
                          f"did not answer as expected: check it ({_logs(group)}).")
    return Advice(tuple(paragraphs))


# ----------------------------------------------------------------------------------------- tools
def _tool_missing(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    ev = checks[0].evidence.find(ToolEvidence)
    if ev is None:
        return Advice(("Install the missing tools with the distribution's package manager.",))
    if ev.install_command:
        return Advice(("Install the missing tools (as root):",), ev.install_command)
    where = f"os-release ID={ev.distribution.id}" if ev.distribution.id else "no readable os-release"
    families = {"debian": "Debian/Ubuntu family", "rhel": "RHEL/CentOS family"}
    return Advice((f"Unknown distribution ({where}): install these packages with your package manager: "
                   f"{', '.join(ev.missing_packages)}.",)
                  + tuple(f"{families.get(f, f)}: {cmd}" for f, cmd in ev.commands_by_family))


# ------------------------------------------------------------------------------ node components
def _component(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    paragraphs = []
    for c in checks:
        component = c.target.component
        name = component.name if component else c.target.entry
        logs = component.check if component else "its logs"
        from edgecheck.probes.yurthub import YurtHubProbe  # its check ran, so it is imported already

        probe = c.evidence.find(YurtHubProbe)
        if probe is None or not probe.answering:
            paragraphs.append(f"Start or fix {name}: {logs}.")
        elif not probe.healthz.ok:
            paragraphs.append(f"Check {name}: {logs}.")
        elif probe.ready is False:
            paragraphs.append(f"{name} gets its certificates and its yurt-hub-cfg ConfigMap from the API server: see "
                              f"the API server check for the network cause, and {logs}.")
        elif any(v == 0 for _, v in probe.server_health):
            paragraphs.append(f"See the API server check for the network cause of the failing heartbeat; {name} "
                              f"retries by itself ({logs}).")
        else:
            paragraphs.append(f"Check {name}: {logs}.")
    return Advice(tuple(dict.fromkeys(paragraphs)))


# --------------------------------------------------------------------------- this host's filter
def _host_firewall(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    if _reach(checks):  # `reach` from this host: its OUTPUT chain stopped the probes
        return _reach_path(checks, scene)
    paragraphs, command = firewall_advice(checks)
    return Advice(paragraphs, command)


# ---------------------------------------------------------------------------------------- kernel
def _kernel_setting(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    fixes = [ev for ev in (c.evidence.find(KernelEvidence) for c in checks) if ev is not None]
    commands = list(dict.fromkeys(ev.command for ev in fixes if ev.command))
    persist = list(dict.fromkeys(ev.persist for ev in fixes if ev.persist))
    if not commands:
        return Advice(("Set the kernel setting the check names (as root: `sysctl -w NAME=VALUE`, or `modprobe "
                       "MODULE`) and make it persistent in /etc/sysctl.d/ or /etc/modules-load.d/.",))
    paragraphs: List[str] = []
    set_by_installer = {s.id for s in SETTINGS if s.installer}
    if scene.phase is Phase.JOIN and any(c.status is Status.WARN and c.id in set_by_installer for c in checks):
        paragraphs.append("The installer sets the forwarding and bridge settings during the join too; setting them "
                          "now does no harm and shows early if something on this host resets them.")
    if persist:
        paragraphs.append(f"To keep {'it' if len(commands) == 1 else 'them'} after a reboot: {'; '.join(persist)}.")
    paragraphs.append("Set it now (as root):" if len(commands) == 1 else "Set them now (as root):")
    return Advice(tuple(paragraphs), " && ".join(commands))


# ----------------------------------------------------------------------------------- the engine
def _deadline(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    return Advice(("Something hangs longer than --timeout allows: rerun with -v to see where, or with fewer "
                   "targets or a longer --timeout; a probe that outlives its own timeout is a bug worth reporting.",))


def _internal(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    return Advice(("This is a bug in edgecheck, not a finding about the host: rerun with --debug and report it.",))


def _nothing(checks: Sequence[CheckResult], scene: Scene) -> Advice:
    return Advice()  # skips: the message names the input to give, or why it does not apply


ADVICE: Dict[Reason, Adviser] = {
    Reason.OK: _passed,
    Reason.NXDOMAIN: _nxdomain,
    Reason.DNS_TIMEOUT: _dns_failure,
    Reason.DNS_ERROR: _dns_failure,
    Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR: _outside_cidr,
    Reason.PROXY_ERROR: _proxy,
    Reason.TIMEOUT: _connect,
    Reason.REFUSED: _connect,
    Reason.UNREACHABLE: _connect,
    Reason.NO_RESPONSE: _no_response,
    Reason.UNPROVEN: _unproven,
    Reason.TLS_VERIFY_FAILED: _tls_verify,
    Reason.TLS_HANDSHAKE_FAILED: _tls_handshake,
    Reason.TLS_INTERCEPTED: _tls_intercepted,
    Reason.PATH_MTU: _path_mtu,
    Reason.CLOCK_OFFSET: _clock,
    Reason.CLOCK_UNSYNCHRONISED: _clock,
    Reason.PORT_IN_USE: _port_in_use,
    Reason.PORT_NOT_LISTENING: _not_listening,
    Reason.LOOPBACK_ONLY: _loopback_only,
    Reason.TOOL_MISSING: _tool_missing,
    Reason.COMPONENT_UNHEALTHY: _component,


    Reason.HOST_FIREWALL: _host_firewall,
    Reason.KERNEL_SETTING: _kernel_setting,
    Reason.DEADLINE_EXCEEDED: _deadline,
    Reason.INTERNAL_ERROR: _internal,
    Reason.MISSING_INPUT: _nothing,
    Reason.NOT_APPLICABLE: _nothing,
}


def advise(reason: Reason, checks: Sequence[CheckResult], scene: Scene) -> Advice:
    """What to do about these checks, which share `reason` (and, for a finding, one cause)."""
    return ADVICE[reason](checks, scene)
