"""Where this run's API server address and CA come from, and which node components to check.

Precedence (SPEC 7.4): --apiserver and --apiserver-ca win over --kubeconfig; without either, a
run in phase running discovers them from the node's own configuration (discovery.py). A
kubeconfig's CA still applies when only --apiserver is given (same cluster, another address);
a discovered CA only with the discovered address. Everything is read here, in prepare: nothing
is sent, and a malformed kubeconfig is a usage error before any probe.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from edgecheck.model import Phase
from edgecheck.netloc import host_port
from edgecheck.plan import DEFAULT_APISERVER_PORT, HostPort, LocalComponent, parse_host_port
from edgecheck.records import record

if TYPE_CHECKING:
    from edgecheck.cluster.discovery import Discovery
    from edgecheck.cluster.kubeconfig import KubeCluster

YURTHUB_PURPOSE = "the node's proxy to the API server (OpenYurt YurtHub)"


@record(frozen=True)
class ClusterInputs:
    apiserver: Optional[HostPort] = None
    ca_file: Optional[str] = None  # a readable PEM file
    ca_pem: Optional[bytes] = field(default=None, repr=False)  # inline CA data (kubeconfig, node file)
    params: Mapping[str, Any] = field(default_factory=dict)  # where each came from, for the report
    components: Tuple[LocalComponent, ...] = ()
    hint: str = ""  # where discovery looked when it found no API server


def resolve_cluster_inputs(options: Mapping[str, Any], phase: Phase, node_root: str = "/") -> ClusterInputs:
    given: Optional[str] = options.get("apiserver")
    ca_option: Optional[str] = options.get("apiserver_ca")
    kube = _kubeconfig(options["kubeconfig"]) if options.get("kubeconfig") else None
    found = _discover(node_root) if phase is Phase.RUNNING else None
    components = _components(found) if found else ()
    if given:
        apiserver = parse_host_port(given, "--apiserver", DEFAULT_APISERVER_PORT)
        params: Dict[str, Any] = {"apiserver_source": "--apiserver"}
        ca_file, ca_pem = (ca_option, None) if ca_option else _kube_ca(kube, params)
    elif kube is not None:
        apiserver, params = kube.apiserver, dict(kube.params())
        ca_file, ca_pem = (ca_option, None) if ca_option else (kube.ca_file, kube.ca_pem)
    elif found is not None and found.found is not None:
        apiserver, params = found.found.apiserver, dict(found.found.params())
        ca_file, ca_pem = (ca_option, None) if ca_option else (found.found.ca_file, found.found.ca_pem)
    else:
        hint = f"Nothing found on this node: {found.places()}." if found is not None else ""
        return ClusterInputs(ca_file=ca_option, params={"apiserver_source": None}, components=components, hint=hint)
    params.pop("apiserver", None)
    if ca_option:
        params["apiserver_ca_source"] = "--apiserver-ca"
    return ClusterInputs(apiserver, ca_file, ca_pem, params, components)


def _kubeconfig(path: str) -> "KubeCluster":
    # Imported when used: a run given --apiserver in phase join reads no kubeconfig and no node file.
    from edgecheck.cluster.kubeconfig import load_kubeconfig

    return load_kubeconfig(path)


def _discover(node_root: str) -> "Discovery":
    from edgecheck.cluster.discovery import discover

    return discover(node_root)


def _kube_ca(kube: Optional["KubeCluster"], params: Dict[str, Any]) -> Tuple[Optional[str], Optional[bytes]]:
    if kube is None:
        return None, None
    params["apiserver_ca_source"] = kube.ca_origin
    return kube.ca_file, kube.ca_pem


def _components(found: "Discovery") -> Tuple[LocalComponent, ...]:
    """YurtHub when it runs here (or kubelet goes through it): its health is a local check."""
    from edgecheck.probes.yurthub import YURTHUB_SERVE_PORT  # loaded by discovery already

    install = found.yurthub
    if install is None and not found.kubelet_uses_yurthub:
        return ()
    if install is None:
        return (LocalComponent("yurthub", "yurthub", YURTHUB_PURPOSE, "kubelet's kubeconfig points at it",
                               "`crictl ps -a --name yurt-hub`, `systemctl status kubelet`", "127.0.0.1",
                               YURTHUB_SERVE_PORT),)
    where = install.probe_address()
    if where is None:
        return (LocalComponent(install.name, "yurthub", YURTHUB_PURPOSE, install.how, install.logs_hint(),
                               unprobed=f"{install.name} serves on {host_port(install.bind_address, install.serve_port)}, not on "
                                        "loopback; edgecheck probes it on loopback only"),)
    return (LocalComponent(install.name, "yurthub", YURTHUB_PURPOSE, install.how, install.logs_hint(), *where),)
