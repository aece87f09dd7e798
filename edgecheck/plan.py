"""Selection: from the user's inputs and the catalog to the exact list of targets to check.

Pure functions only: no packet is sent and no file is read here, so `edgecheck targets` can
show the plan safely and tests need no network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from edgecheck import registry
from edgecheck.catalog import REGION_ID, Catalog, EndpointEntry, InboundEntry, Region
from edgecheck.errors import UsageError
from edgecheck.host.kernel import SETTINGS
from edgecheck.model import Component, Kind, Mode, Phase, Reason, Skip, Stage, Target
from edgecheck.netloc import host_port
from edgecheck.records import record

DEFAULT_APISERVER_PORT = 6443
# The public-mode page says edge nodes need NTP (or --self-host-ntp); the clock check cites it.
CLOCK_SOURCE = "001_ab11e32110905c75.txt"
# Without --k8s-version the newest rules apply (SPEC: ">= 1.26"); any version above all rules.
NEWEST = (999, 999)
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?$")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@record(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return host_port(self.host, self.port)


@record(frozen=True)
class LocalComponent:
    """A component found on this node that a local check probes (node discovery, phase running)."""

    name: str  # "yurthub", or ACK Edge's "edge-hub"
    probe: str  # its probe kind in edgecheck.registry
    purpose: str  # what it does for the node, for the check's name
    found: str  # where it was found on the node
    check: str  # how an operator sees whether it runs
    host: Optional[str] = None  # the loopback address it is probed on; None: not probed
    port: Optional[int] = None
    unprobed: str = ""  # why it is not probed


@record(frozen=True)
class Nameserver:
    """A nameserver of this host's resolver configuration (read by the runner; SPEC 7.2)."""

    address: str
    port: int = 53
    upstream_of: Optional[str] = None  # found behind this loopback stub of resolv.conf
    source: str = ""  # the file it was read from


@record(frozen=True)
class Selection:
    """The inputs that decide the plan (SPEC section 1)."""

    region: str
    mode: Mode = Mode.PUBLIC
    phase: Phase = Phase.JOIN
    k8s_version: Optional[Tuple[int, int]] = None  # None: newest rules
    network_plugin: str = "flannel"
    self_host_ntp: bool = False
    apiserver: Optional[HostPort] = None
    raven_gateways: Tuple[str, ...] = ()
    tunnel_server: Optional[str] = None
    apiserver_hint: str = ""  # where node discovery looked, when it found no API server
    components: Tuple[LocalComponent, ...] = ()
    nameservers: Tuple[Nameserver, ...] = ()
    resolver_error: str = ""  # the resolver configuration could not be read


@record(frozen=True)
class Plan:
    selection: Selection
    targets: Tuple[Target, ...]
    warnings: Tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------
# Input parsing: each raises UsageError with a one-line message that says what to do.
# ---------------------------------------------------------------------------------------------


def parse_region(text: str) -> str:
    region = text.strip()
    if not REGION_ID.match(region):
        raise UsageError(f"invalid region {text!r}: use a region id like cn-hangzhou (see `edgecheck regions`)")
    return region


def parse_k8s_version(text: Optional[str]) -> Optional[Tuple[int, int]]:
    if text is None or text == "":
        return None
    m = _VERSION.match(text.strip())
    if not m:
        raise UsageError(f"invalid --k8s-version {text!r}: use MAJOR.MINOR, e.g. 1.28")
    return int(m.group(1)), int(m.group(2))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _is_hostname(text: str) -> bool:
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # An all-numeric dotted name is a malformed IPv4 address, not a hostname.
    if all(label.isdigit() for label in labels):
        return False
    return all(_HOSTNAME_LABEL.match(label) for label in labels)


def parse_host(text: str, option: str) -> str:
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if _is_ip(host) or _is_hostname(host):
        return host
    raise UsageError(f"invalid {option} {text!r}: give a hostname or an IP address")


# A URL names its port by its scheme when it gives none, as kubectl and client-go read a
# kubeconfig `server:` (https://HOST means port 443, not the bare-HOST default of 6443).
URL_DEFAULT_PORTS = {"https": 443}


def parse_host_port(text: str, option: str, default_port: int) -> HostPort:
    """HOST[:PORT], [IPv6]:PORT, or https://HOST[:PORT][/] as the ACK console shows the API server."""
    raw = text.strip()
    if "://" in raw:
        return _parse_url_authority(raw, text, option)
    return _parse_authority(raw, text, option, default_port)


def _parse_url_authority(raw: str, text: str, option: str) -> HostPort:
    scheme, _, rest = raw.partition("://")
    scheme = scheme.lower()
    if scheme not in URL_DEFAULT_PORTS:
        hint = " (the API server only speaks HTTPS)" if scheme == "http" else ""
        raise UsageError(f"invalid {option} {text!r}: only https:// URLs are accepted{hint}; or give HOST[:PORT]")
    authority, _, path = rest.partition("/")
    for char, what in (("@", "user information"), ("?", "a query"), ("#", "a fragment")):
        if char in authority or char in path:
            raise UsageError(f"invalid {option} {text!r}: {what} is not allowed; give https://HOST[:PORT]")
    if path:
        raise UsageError(f"invalid {option} {text!r}: a path (/{path}) is not allowed; give https://HOST[:PORT]")
    if authority.count(":") > 1 and not authority.startswith("["):
        # Without brackets the port cannot be told from the address (RFC 3986 section 3.2.2).
        raise UsageError(f"invalid {option} {text!r}: put an IPv6 address in brackets, e.g. https://[2001:db8::1]:6443")
    return _parse_authority(authority, text, option, URL_DEFAULT_PORTS[scheme])


def _parse_authority(raw: str, text: str, option: str, default_port: int) -> HostPort:
    host, port_text = raw, None
    if raw.startswith("["):  # [IPv6]:port
        end = raw.find("]")
        if end < 0:
            raise UsageError(f"invalid {option} {text!r}: unbalanced '[' in an IPv6 address")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"invalid {option} {text!r}: use HOST[:PORT] or [IPv6]:PORT")
            port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    try:
        host = parse_host(host, option)
    except UsageError:
        raise UsageError(f"invalid {option} {text!r}: give a hostname or an IP address") from None
    port = default_port
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise UsageError(f"invalid {option} {text!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    return HostPort(host, port)


def region_warnings(region: str, catalog: Catalog) -> List[str]:
    if region in catalog.regions:
        return []
    message = (
        f"region {region!r} is not in the catalog: endpoints are built from the documented name "
        "templates, but region tables (dedicated-mode routes) are unknown"
    )
    import difflib  # only for a region the catalog does not know

    close = difflib.get_close_matches(region, list(catalog.regions), n=1, cutoff=0.75)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return [message]


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------


def probe_for(entry: EndpointEntry, port: int) -> str:
    if entry.probe is not None:
        return entry.probe
    probe = registry.default_probe(entry.protocol, port)
    assert probe is not None, "the catalog loader rejects ports without a default probe"
    return probe.name


def port_ranges(ports: Iterable[int]) -> str:
    """"10280-10284" for consecutive ports, "10262,10263" style otherwise."""
    ordered = sorted(ports)
    spans: List[List[int]] = []
    for port in ordered:
        if spans and port == spans[-1][1] + 1:
            spans[-1][1] = port
        else:
            spans.append([port, port])
    return ",".join(f"{a}" if a == b else (f"{a},{b}" if b == a + 1 else f"{a}-{b}") for a, b in spans)


def _version_text(version: Optional[Tuple[int, int]]) -> str:
    return "no --k8s-version: newest rules" if version is None else f"k8s {version[0]}.{version[1]}"


def _applies(entry: EndpointEntry, sel: Selection) -> bool:
    if sel.mode not in entry.modes:
        return False
    if entry.stage is Stage.INSTALL and sel.phase is not Phase.JOIN:
        return False
    if entry.k8s is not None and not entry.k8s.matches(sel.k8s_version or NEWEST):
        return False
    if entry.plugins is not None and sel.network_plugin not in entry.plugins:
        return False
    if entry.regions is not None and sel.region not in entry.regions:
        return False
    return sel.region not in entry.except_regions


def _why(entry: EndpointEntry, sel: Selection) -> str:
    parts = [f"{sel.mode.value} mode"]
    if entry.stage is Stage.INSTALL:
        parts.append("needed during installation and upgrade (phase join)")
    else:
        parts.append("needed during operation")
    if entry.k8s is not None:
        parts.append(f"clusters {entry.k8s} ({_version_text(sel.k8s_version)})")
    if entry.plugins is not None:
        parts.append(f"network plugin {sel.network_plugin}")
    if entry.regions is not None:
        parts.append(f"required in {sel.region}")
    return "; ".join(parts)


def _expected_cidrs(entry: EndpointEntry, sel: Selection, catalog: Catalog) -> Tuple[Tuple[str, ...], str]:
    if entry.cidrs:
        return entry.cidrs, f"entry {entry.id!r} of {entry.origin}"
    if sel.mode is not Mode.DEDICATED or entry.routes == "none":
        return (), ""
    cloud = catalog.routes["cloud"]
    cloud_text = f"cloud services block {', '.join(cloud.cidrs)} ({catalog.title(cloud.source)})"
    region: Optional[Region] = catalog.regions.get(sel.region)
    if entry.routes == "registry":
        if region is not None and region.registry_routes:
            return region.registry_routes, f"registry routes for {sel.region} ({catalog.title(region.source)})"
        return cloud.cidrs, f"{cloud_text}; {sel.region} has no registry route table"
    if entry.routes == "oss":
        if region is not None and region.oss_vip_cidrs:
            return region.oss_vip_cidrs, (f"OSS internal VIP CIDR blocks for {sel.region} "
                                          f"({catalog.title(region.source)})")
        return cloud.cidrs, f"{cloud_text}; {sel.region} has no OSS VIP table"
    return cloud.cidrs, cloud_text


def _input_hosts(entry: EndpointEntry, sel: Selection) -> List[Tuple[str, Tuple[int, ...]]]:
    """(host, ports) pairs for an endpoint whose host is a per-cluster input."""
    if entry.host_from == "apiserver":
        if sel.apiserver is None:
            return []
        return [(sel.apiserver.host, (sel.apiserver.port,))]
    if entry.host_from == "raven_gateway":
        return [(host, entry.ports) for host in sel.raven_gateways]
    if entry.host_from == "tunnel_server":
        return [(sel.tunnel_server, entry.ports)] if sel.tunnel_server else []
    raise AssertionError(entry.host_from)


# The option that supplies each per-cluster host; where to find the value is catalog data (notes).
INPUT_OPTIONS = {
    "apiserver": "--apiserver HOST[:PORT]",
    "raven_gateway": "--raven-gateway HOST",
    "tunnel_server": "--tunnel-server HOST",
}


def endpoint_id(host: str, port: object, protocol: str) -> str:
    """'endpoint:HOST:PORT/PROTOCOL', an IPv6 host in brackets ('endpoint:[2001:db8::1]:7443/tcp')."""
    return f"endpoint:{host_port(host, port)}/{protocol}"


def _endpoint_targets(entry: EndpointEntry, sel: Selection, catalog: Catalog) -> List[Target]:
    cidrs, cidr_source = _expected_cidrs(entry, sel, catalog)
    base = Target(
        id="", kind=Kind.ENDPOINT, probe=probe_for(entry, entry.ports[0]), name=entry.name, why=_why(entry, sel),
        source=catalog.title(entry.source), entry=entry.id, protocol=entry.protocol, stage=entry.stage,
        optional=entry.optional, trust=entry.trust, notes=entry.notes,
    )
    if entry.host_from is not None:
        pairs = _input_hosts(entry, sel)
        option = INPUT_OPTIONS[entry.host_from]
        if not pairs:
            placeholder = entry.host_from.replace("_", "-")
            ports = port_ranges(entry.ports) if entry.host_from != "apiserver" else str(entry.ports[0])
            hint = (sel.apiserver_hint,) if entry.host_from == "apiserver" and sel.apiserver_hint else ()
            skip = Skip(Reason.MISSING_INPUT, " ".join((f"Not checked: give {option}.",) + entry.notes + hint))
            return [replace(base, id=endpoint_id(placeholder, ports, entry.protocol),
                            why=f"{base.why}; per-cluster endpoint, not given", skip=skip)]
        base = replace(base, why=f"{base.why}; given by {option.split()[0]}")
    else:
        assert entry.host is not None, "the catalog loader requires host or host_from"
        pairs = [(entry.host.format(region=sel.region), entry.ports)]
    if entry.skip_when == "self_host_ntp" and sel.self_host_ntp:
        base = replace(base, skip=Skip(
            Reason.NOT_APPLICABLE,
            "not checked: --self-host-ntp says the node syncs its clock itself (the local clock is still checked)"))
    return [
        replace(base, id=endpoint_id(host, port, entry.protocol), probe=probe_for(entry, port), host=host, port=port,
                expected_cidrs=cidrs, cidr_source=cidr_source)
        for host, ports in pairs
        for port in ports
    ]


def _inbound_targets(entry: InboundEntry, sel: Selection, catalog: Catalog) -> List[Target]:
    if sel.mode not in entry.modes:
        return []
    if entry.plugins is not None and sel.network_plugin not in entry.plugins:
        return []
    expect = "free" if sel.phase is Phase.JOIN else "listening"
    why = f"{sel.mode.value} mode; phase {sel.phase.value}: the port must be {expect}"
    if entry.plugins is not None:
        why += f"; network plugin {sel.network_plugin}"
    return [
        Target(
            id=f"inbound:{port}/{entry.protocol}",
            kind=Kind.INBOUND,
            probe="inbound",
            name=entry.name,
            why=why,
            source=catalog.title(entry.source),
            entry=entry.id,
            port=port,
            protocol=entry.protocol,
            expect=expect,
            allowed_from=entry.allowed_from.get(sel.mode.value, ""),
            component=catalog.components.get(entry.component or ""),
            leftovers=catalog.leftover_processes,
            notes=entry.notes,
            answers=entry.answers.get(port, ""),
        )
        for port in entry.ports
    ]


def _system_targets(sel: Selection) -> List[Target]:
    """The kernel settings an edge node needs (SPEC 7.2); the phase decides how strict the check is."""
    when = ("; phase join: the installer sets it, so a wrong value is a warning" if sel.phase is Phase.JOIN
            else "; phase running: the installer's setting must have stuck")
    return [
        Target(id=s.id, kind=Kind.SYSTEM, probe="kernel", name=s.name, why=s.why + (when if s.installer else ""),
               source=s.source, entry=s.id)
        for s in SETTINGS
        if s.plugins is None or sel.network_plugin in s.plugins
    ]


def _tool_and_clock_targets(catalog: Catalog, sel: Selection) -> List[Target]:
    targets = [
        Target(
            id=f"tool:{tool.id}",
            kind=Kind.TOOL,
            probe="tool",
            name=f"system tool {tool.name}",
            why="the installer needs it (installed online from the node's package repository when missing)",
            source=catalog.title(tool.source),
            entry=tool.id,
            tool=tool.spec,
        )
        for tool in catalog.tools
    ]
    clock_why = "certificates and tunnels need a synchronised clock"
    if sel.self_host_ntp:
        clock_why += "; --self-host-ntp: the only clock check"
    targets.append(
        Target(
            id="clock:local",
            kind=Kind.CLOCK,
            probe="clock",
            name="local clock synchronisation",
            why=clock_why,
            source=catalog.title(CLOCK_SOURCE),
            entry="clock",
        )
    )
    return targets


def _component_targets(sel: Selection) -> List[Target]:
    return [
        Target(
            id=f"component:{c.name}", kind=Kind.COMPONENT, probe=c.probe, name=f"{c.name}: {c.purpose}",
            why=f"phase {sel.phase.value}: found on this node ({c.found})", source="this node's configuration",
            entry=c.name, host=c.host, port=c.port, protocol="tcp" if c.port else None,
            component=Component(c.name, c.check, ""),
            skip=Skip(Reason.NOT_APPLICABLE, c.unprobed) if c.unprobed else None,
        )
        for c in sel.components
    ]


def _nameserver_targets(sel: Selection) -> List[Target]:
    out = []
    for ns in sel.nameservers:
        if ns.upstream_of:
            name = f"nameserver {ns.address}, upstream of the local stub {ns.upstream_of}"
            why = (f"resolv.conf points only at the local stub {ns.upstream_of}, which forwards to it ({ns.source}); "
                   f"kubelet and CoreDNS cannot use a loopback stub, so pods resolve through it")
        else:
            name = f"nameserver {ns.address} of this host's resolver"
            why = f"listed in {ns.source}: the node's components ask it for every name, in order"
        out.append(Target(
            id=f"dns:nameserver:{ns.address}", kind=Kind.DNS, probe="nameserver", name=name, why=why,
            source="this host's resolver configuration", entry="resolver", host=ns.address, port=ns.port,
            protocol="udp", upstream_of=ns.upstream_of))
    return out


def _input_warnings(sel: Selection, catalog: Catalog) -> List[str]:
    warnings = []
    if sel.resolver_error:
        warnings.append(f"nameserver checks left out: {sel.resolver_error}")
    given = {"raven_gateway": bool(sel.raven_gateways), "tunnel_server": bool(sel.tunnel_server)}
    for host_from, option in (("raven_gateway", "--raven-gateway"), ("tunnel_server", "--tunnel-server")):
        entries = [e for e in catalog.endpoints if e.host_from == host_from]
        if given[host_from] and entries and not any(_applies(e, sel) for e in entries):
            # Where the catalog uses this input (its modes and cluster versions), not a copy of it here.
            where = " or ".join(dict.fromkeys(f"{'/'.join(m.value for m in e.modes)} mode"
                                              + (f", Kubernetes {e.k8s}" if e.k8s else "") for e in entries))
            warnings.append(f"{option} ignored: the catalog uses it only in {where}")
    return warnings


def build_plan(catalog: Catalog, sel: Selection) -> Plan:
    """Every target `run` checks for these inputs, in a stable order, each with why it is there."""
    targets: List[Target] = _nameserver_targets(sel)  # DNS first, as the troubleshooting order
    for entry in catalog.endpoints:
        if _applies(entry, sel):
            targets.extend(_endpoint_targets(entry, sel, catalog))
    for inbound in catalog.inbound:
        targets.extend(_inbound_targets(inbound, sel, catalog))
    targets.extend(_system_targets(sel))
    targets.extend(_component_targets(sel))
    targets.extend(_tool_and_clock_targets(catalog, sel))
    return Plan(
        selection=sel,
        targets=tuple(_merge_duplicates(targets)),
        warnings=tuple(region_warnings(sel.region, catalog) + _input_warnings(sel, catalog)),
    )


def _merge_duplicates(targets: Sequence[Target]) -> List[Target]:
    """One check per id: a user target that repeats a catalog one is probed once."""
    seen: Dict[str, int] = {}
    merged: List[Target] = []
    for target in targets:
        if target.id in seen:
            first = merged[seen[target.id]]
            merged[seen[target.id]] = _with_note(first, f"also required by entry {target.entry!r} ({target.source})")
            continue
        seen[target.id] = len(merged)
        merged.append(target)
    return merged


def _with_note(target: Target, note: str) -> Target:
    return replace(target, notes=target.notes + (note,))

