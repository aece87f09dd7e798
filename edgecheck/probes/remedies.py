"""What to do, per reason: pure text builders. Order follows seed 004's troubleshooting order
(DNS first, then network policy / firewall, then security groups); seed 003 for dedicated-mode
routes; seed 000 for the cluster security group's outbound rules."""

from __future__ import annotations

from typing import Sequence

from edgecheck.model import Mode, Reason, RunContext, Target


def _addrs(addresses: Sequence[str]) -> str:
    return ", ".join(addresses)


def dns(reason: Reason, target: Target, resolv_conf: str) -> str:
    host = target.host
    if reason is Reason.NXDOMAIN:
        text = (f"Check the name first (seed 004: DNS before anything else): `getent hosts {host}`; "
                f"verify the region id in it, and that the nameservers in {resolv_conf} resolve public "
                f"names (a split-horizon or internal-only resolver answers NXDOMAIN for them).")
        if target.optional:
            text += " The seeds say this endpoint may be absent in some regions, so a missing name can be expected."
        return text
    if reason is Reason.DNS_TIMEOUT:
        return (f"No nameserver in {resolv_conf} answered: make sure DNS (UDP and TCP 53) to those "
                f"nameservers is allowed by this host's firewall and the security group (seed 000/002: "
                f"always allow DNS egress), or point {resolv_conf} at a reachable resolver.")
    return (f"The nameservers in {resolv_conf} failed to resolve {host} (SERVFAIL/REFUSED/empty answer): "
            f"check the resolver's upstream forwarding for this zone, or use another resolver.")


def cidr(target: Target, outside: Sequence[str]) -> str:
    return (f"In dedicated-connection mode the line and firewall only carry the blocks the seeds give "
            f"({target.cidr_source or 'seed 003'}): make {target.host} resolve to its VPC endpoint "
            f"addresses on this host (VPC-internal DNS forwarding or a hosts entry), or route "
            f"{_addrs(outside)} over the dedicated connection (seed 003: core switch, firewall, VBR, "
            f"ECR/CEN).")


def connect(reason: Reason, target: Target, ctx: RunContext, addresses: Sequence[str]) -> str:
    port, proto = target.port, (target.protocol or "tcp").upper()
    where = f"{proto} {port} to {_addrs(addresses)}"
    dedicated = ctx.mode is Mode.DEDICATED
    route_hint = (" In dedicated-connection mode these addresses must be routed over the dedicated "
                  "connection and allowed on the data-center firewall (seed 003)." if dedicated else "")
    if reason is Reason.TIMEOUT:
        return (f"Packets for {where} are silently dropped: allow outbound {where} on this host's "
                f"firewall (iptables/nftables), the data-center or office firewall, and the cluster "
                f"security group's outbound rules (seed 000).{route_hint}")
    if reason is Reason.REFUSED:
        return (f"{where} was actively rejected (TCP reset or ICMP port unreachable): a firewall "
                f"rule rejects it or nothing listens there; check that the address is the right "
                f"endpoint, then the firewall and security group rules (seed 000).{route_hint}")
    return (f"This host has no usable route to {_addrs(addresses)} (or its own firewall rejects it): "
            f"check `ip route get {addresses[0] if addresses else target.host}` and the default "
            f"gateway.{route_hint}")


def tls_verify(target: Target, trust_origin: str) -> str:
    return (f"The certificate is not trusted by the anchors used ({trust_origin}). A TLS-inspecting "
            f"proxy or firewall replaces certificates: either exempt {target.host} from inspection or "
            f"pass its CA with --ca-bundle (also honoured: REQUESTS_CA_BUNDLE, SSL_CERT_FILE); an "
            f"expired certificate or wrong name means the host is not the real endpoint (check DNS).")


def tls_handshake(target: Target) -> str:
    return (f"TCP works but TLS with {target.host} does not: something on the path (DPI firewall, "
            f"SNI filter, transparent proxy) interferes, or the address is not the real endpoint; "
            f"allow TLS to {target.host}:{target.port} without inspection.")


def proxy(proxy_url: str, target: Target) -> str:
    return (f"The HTTP(S) proxy {proxy_url} (from HTTPS_PROXY/HTTP_PROXY) could not carry the request: "
            f"check it is running and reachable, that it allows CONNECT to {target.host}:{target.port}, "
            f"or add {target.host} to NO_PROXY if the node reaches it directly.")


def cluster_ca() -> str:
    return ("The API server certificate was not verified: pass the cluster CA with --apiserver-ca PATH "
            "(decode certificate-authority-data from the kubeconfig: `kubectl config view --raw "
            "-o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d > ca.crt`).")


def ntp(reason: Reason, target: Target) -> str:
    if reason is Reason.CLOCK_OFFSET:
        return ("This host's clock is off: enable and check time synchronisation (`chronyc tracking`, "
                f"`chronyc sources`), with {target.host} as a source.")
    if reason is Reason.CLOCK_UNSYNCHRONISED:
        return (f"{target.host} answered but says it is not synchronised itself: use another NTP "
                f"server, or set selfHostNtpServer if you synchronise the clock yourself.")
    return ""


def ike_no_response(target: Target) -> str:
    return (f"UDP cannot be confirmed without an answer: check that outbound UDP 4500 to {target.host} "
            f"is allowed on this host, the data-center firewall and the security group, and that "
            f"{target.host} is the Raven cloud gateway SLB address (`kubectl get svc -n kube-system "
            f"x-raven-tunnel-svc-gw-cloud-xxx`) with its UDP 4500 listener up.")
