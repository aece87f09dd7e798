"""The library's entry point: options -> a validated, ready run (prepare) -> a diagnosed Report (run).

The CLI and the agent both call these two; neither builds a plan, a context or a Report itself.
`prepare` raises UsageError before any packet is sent; `run` never raises for a network failure.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
import time
from dataclasses import replace
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from edgecheck import __version__
from edgecheck.catalog import load_catalog
from edgecheck.cluster.inputs import ClusterInputs, resolve_cluster_inputs
from edgecheck.errors import UsageError
from edgecheck.model import Mode, Phase, Report
from edgecheck.plan import Nameserver, Plan, Selection, build_plan, parse_host, parse_k8s_version, parse_region
from edgecheck.records import record
from edgecheck.runcontext import RunContext

PROXY_VARIABLES = ("https_proxy", "http_proxy", "no_proxy", "all_proxy")
TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
RESOLV_CONF = "/etc/resolv.conf"  # what glibc reads; RunContext.resolv_conf reads the same


def resolver_inputs(resolv_conf: str = RESOLV_CONF) -> Tuple[Tuple[Nameserver, ...], str]:
    """The nameservers of this host's resolver configuration, and the upstreams behind a local
    stub (SPEC 7.2), read while planning (files and /proc only: nothing is sent), so the plan and
    `edgecheck targets` list one dns:nameserver check each. Returns (nameservers, error)."""
    from edgecheck.probes.nameservers import discover

    setup = discover(resolv_conf)
    if setup.error:
        return (), setup.error
    return tuple(Nameserver(t.address, t.port, t.upstream_of, t.source) for t in setup.targets), ""


def build_selection(options: Mapping[str, Any], cluster: ClusterInputs, default_phase: str = "join",
                    resolver: Tuple[Tuple[Nameserver, ...], str] = ((), "")) -> Selection:
    region = options.get("region")
    if not region:
        raise UsageError("missing --region (or EDGECHECK_REGION): the cluster's region id, e.g. cn-hangzhou")
    tunnel = options.get("tunnel_server")
    return Selection(
        region=parse_region(region),
        mode=Mode(options.get("mode") or Mode.PUBLIC.value),
        phase=Phase(options.get("phase") or default_phase),
        k8s_version=parse_k8s_version(options.get("k8s_version")),
        network_plugin=options.get("network_plugin") or "flannel",
        self_host_ntp=bool(options.get("self_host_ntp")),
        apiserver=cluster.apiserver,
        raven_gateways=tuple(dict.fromkeys(parse_host(h, "--raven-gateway") for h in options.get("raven_gateways") or ())),
        tunnel_server=parse_host(tunnel, "--tunnel-server") if tunnel else None,
        apiserver_hint=cluster.hint,
        components=cluster.components,
        nameservers=resolver[0],
        resolver_error=resolver[1],
    )


def cluster_inputs(options: Mapping[str, Any], default_phase: str = "join") -> ClusterInputs:
    """The API server and CA from the options, a kubeconfig or the node itself (reads files only)."""
    phase = Phase(options.get("phase") or default_phase)
    return resolve_cluster_inputs(options, phase, options.get("node_root") or "/")


def plan_from_options(options: Mapping[str, Any], default_phase: str = "join") -> Tuple[Plan, ClusterInputs]:
    """The plan for these selection options; raises UsageError before any packet."""
    cluster = cluster_inputs(options, default_phase)
    selection = build_selection(options, cluster, default_phase, resolver_inputs())
    return build_plan(load_catalog(options.get("targets_files") or ()), selection), cluster


def selection_params(selection: Selection, options: Mapping[str, Any], cluster: ClusterInputs) -> Dict[str, Any]:
    version = selection.k8s_version
    return {
        "region": selection.region,
        "mode": selection.mode.value,
        "phase": selection.phase.value,
        "k8s_version": f"{version[0]}.{version[1]}" if version else None,
        "network_plugin": selection.network_plugin,
        "self_host_ntp": selection.self_host_ntp,
        "apiserver": str(selection.apiserver) if selection.apiserver else None,
        "raven_gateways": list(selection.raven_gateways),
        "tunnel_server": selection.tunnel_server,
        "targets_files": list(options.get("targets_files") or ()),
        **cluster.params,
    }


def parse_source_cidrs(values: Sequence[str]) -> Tuple[str, ...]:
    """--source-cidr values as networks ("10.0.0.5" is 10.0.0.5/32); UsageError before any packet."""
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise UsageError(f"invalid --source-cidr {value!r}: give an address block like 10.0.0.0/8") from None
    return tuple(dict.fromkeys(out))


def _readable_file(path: str, what: str) -> str:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise UsageError(f"{what} {path!r} is not a readable file")
    return path


def resolve_ca_bundle(option: Optional[str], environ: Mapping[str, str]) -> Tuple[Optional[str], str]:
    """The one trust source every public TLS probe uses, and where it came from."""
    if option:
        return _readable_file(option, "--ca-bundle"), "--ca-bundle"
    for variable in TRUST_VARIABLES:
        if environ.get(variable):
            return _readable_file(environ[variable], variable), variable
    return None, "system trust store"


@record(frozen=True)
class Prepared:
    """A validated run, ready to probe: nothing has been sent yet."""

    plan: Plan
    ctx: RunContext
    params: Dict[str, Any]
    strict: bool
    apiserver_ca_pem: Optional[bytes]  # inline CA data: written to a private file for the run
    started: float  # time.monotonic()
    started_wall: float  # time.time()


def prepare(options: Mapping[str, Any], *, default_phase: str = "join",
            environ: Optional[Mapping[str, str]] = None) -> Prepared:
    """Validate every input and build the plan and the run's context; sends nothing."""
    started_wall, started = time.time(), time.monotonic()
    plan, cluster = plan_from_options(options, default_phase)
    return _prepared(options, plan, cluster, os.environ if environ is None else environ, started, started_wall)


def prepare_reach(options: Mapping[str, Any], nodes: Sequence[str], *,
                  environ: Optional[Mapping[str, str]] = None) -> Prepared:
    """`edgecheck reach NODE...`: the plan's inbound ports on every node (reach:NODE:PORT/PROTO),
    ready to probe through the same engine, diagnosis and renderers as `run`; sends nothing."""
    from edgecheck.reach import protocol as wire
    from edgecheck.reach.targets import needs_token, reach_targets

    started_wall, started = time.time(), time.monotonic()
    names = list(dict.fromkeys(parse_host(n, "NODE") for n in nodes))
    if not names:
        raise UsageError("give at least one NODE: the address or name of a node to probe")
    token = options.get("token") or None
    problem = wire.token_problem(token) if token else None
    if problem:
        raise UsageError(f"invalid --token: {problem}")
    plan, cluster = plan_from_options(options)
    sel = plan.selection
    targets = reach_targets(plan.targets, names, sel.phase, sel.mode.value)
    if not targets:
        raise UsageError("the plan has no inbound port for these options: nothing to probe")
    if token is None and sel.phase is Phase.JOIN and needs_token(targets):
        raise UsageError("before the join `reach` proves each port with the token of `edgecheck listen` on the node: "
                         "pass --token (the listener prints the whole command), or --phase running for a joined node")
    prepared = _prepared(options, replace(plan, targets=targets), cluster, os.environ if environ is None else environ,
                         started, started_wall)
    prepared.params.update(nodes=names, token_fingerprint=wire.key_fingerprint(wire.derive_key(token)) if token else None)
    return replace(prepared, ctx=replace(prepared.ctx, reach_token=token))


def _prepared(options: Mapping[str, Any], plan: Plan, cluster: ClusterInputs, environ: Mapping[str, str],
              started: float, started_wall: float) -> Prepared:
    from edgecheck.engine import hard_deadline, warm

    ca_bundle, trust_source = resolve_ca_bundle(options.get("ca_bundle"), environ)
    apiserver_ca = cluster.ca_file
    if options.get("apiserver_ca"):
        _readable_file(options["apiserver_ca"], "--apiserver-ca")
    timeout = float(options.get("timeout") or 3.0)
    source_cidrs = parse_source_cidrs(options.get("source_cidrs") or ())
    ctx = RunContext(
        timeout=timeout,
        deadline=started + hard_deadline(plan.targets, timeout),
        ca_bundle=ca_bundle,
        ca_origin=trust_source,
        apiserver_ca=apiserver_ca,
        environ={k: v for k, v in environ.items() if k.lower() in PROXY_VARIABLES},
        phase=plan.selection.phase,
        mode=plan.selection.mode,
        source_cidrs=source_cidrs,
        targets=plan.targets,
    )
    params = selection_params(plan.selection, options, cluster)
    strict = bool(options.get("strict"))
    warm(plan.targets, ctx)  # imports the checks and starts what they share (CA files parsed); sends nothing
    params.update(timeout=timeout, trust=trust_source, ca_bundle=ca_bundle, apiserver_ca=apiserver_ca, strict=strict,
                  source_cidrs=list(source_cidrs))
    return Prepared(plan, ctx, params, strict, cluster.ca_pem, started, started_wall)


def run(prepared: Prepared) -> Report:
    """Every check of the plan, diagnosed: the Report every renderer takes."""
    from edgecheck.diagnosis import diagnose
    from edgecheck.engine import run_checks

    if prepared.apiserver_ca_pem is None:  # a CA file, or none: nothing to write
        results = run_checks(prepared.plan.targets, prepared.ctx)
    else:
        from edgecheck.cluster.kubeconfig import ca_file_for

        with ca_file_for(prepared.ctx.apiserver_ca, prepared.apiserver_ca_pem) as apiserver_ca:
            results = run_checks(prepared.plan.targets, replace(prepared.ctx, apiserver_ca=apiserver_ca))
    return diagnose(Report(
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(prepared.started_wall)),
        agent_version=__version__,
        host=host_info(),
        params=prepared.params,
        checks=results,
        warnings=list(prepared.plan.warnings),
        duration_ms=int((time.monotonic() - prepared.started) * 1000),
        strict=prepared.strict,
    ))


def _os_pretty_name(paths: Sequence[str]) -> str:
    from edgecheck.host.distro import read_os_release

    for path in paths:
        osr = read_os_release(path)
        if osr.readable:
            name = osr.pretty_name or " ".join(x for x in (osr.name, osr.version_id) if x)
            if name:
                return name
    return platform.system() or "unknown"


def host_info(os_release: Optional[str] = None) -> Dict[str, str]:
    """hostname, os (PRETTY_NAME from os-release), kernel, arch of this host."""
    paths = (os_release,) if os_release else ("/etc/os-release", "/usr/lib/os-release")
    return {
        "hostname": socket.gethostname(),
        "os": _os_pretty_name(paths),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }
