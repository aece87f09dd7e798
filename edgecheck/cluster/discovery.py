"""The API server address and CA from a joined node's own configuration (SPEC 7.4).

On an OpenYurt / ACK Edge node kubelet does not talk to the API server: its kubeconfig points at
YurtHub's local proxy (http://127.0.0.1:10261), and YurtHub holds the real addresses. Where each
piece lives (openyurtio/openyurt, read at fbefb6b):

- YurtHub's command line `--server-addr=https://HOST:PORT[,https://...]`: "the address of
  Kubernetes kube-apiserver" (cmd/yurthub/app/options/options.go); a bare HOST:PORT means https
  (cmd/yurthub/app/config/config.go parseRemoteServers). It is what YurtHub dials
  (pkg/yurthub/certificate/token/token.go findActiveRemoteServer), so it comes first.
  * as a static pod: /etc/kubernetes/manifests/yurthub.yaml (pkg/yurtadm/constants/constants.go
    StaticPodPath, YurthubStaticPodManifest "yurthub"; YurthubTemplate; charts/yurthub
    staticPodManifest: yurthub). The chart's placeholder https://127.0.0.1:6443 is replaced by
    yurtadm (pkg/yurtadm/util/yurthub/yurthub.go useRealServerAddr); a loopback address left
    there is ignored.
  * as a systemd service: /etc/systemd/system/yurthub.service.d/10-yurthub.conf, ExecStart with
    --server-addr and Environment= args (constants.go YurthubServiceConfPath, YurtHubUnitConfig).
    `--working-mode=local` gives an in-cluster service address instead: not used.
- YurtHub's work dir /var/lib/yurthub (--root-dir; pkg/yurthub/certificate/manager/manager.go
  DefaultWorkDir): yurthub.conf (its kubeconfig: the cluster server and CA data),
  bootstrap-hub.conf (the bootstrap kubeconfig written by yurtadm join: server, CA data and a
  token, which is not read), pki/ca.crt (the cluster CA YurtHub verifies the API server with,
  written from the bootstrap CA data; token.go prepareConfigAndCaFile).
- In kubelet-certificate bootstrap mode (node-servant convert, yurthub-cloud) YurtHub uses
  /etc/kubernetes/kubelet.conf and /etc/kubernetes/pki/ca.crt (manager.go KubeConfFile,
  KubeletCAFile), and kubelet is redirected to /var/lib/openyurt/kubelet.conf
  (pkg/node-servant/components/kubelet.go, constants.go KubeletConfForNode: server
  http://127.0.0.1:10261).
- ACK Edge builds the same code as "edge-hub": the hub name is projectPrefix + "hub"
  (pkg/projectinfo/projectinfo.go GetHubName, set at link time by PROJECT_PREFIX,
  hack/lib/common.sh), and Alibaba's ACK Edge 1.16 release notes move edge-hub's files to
  /var/lib/edge-hub with edge-hub.conf and bootstrap-hub.conf
  (https://www.alibabacloud.com/help/zh/doc-detail/201450.htm). Both names are looked for.
- A plain kubeadm node: /etc/kubernetes/kubelet.conf holds the real server (and CA data), the CA
  file is /etc/kubernetes/pki/ca.crt; /etc/kubernetes/bootstrap-kubelet.conf until TLS bootstrap
  completes.

Raven gateway addresses are not discovered: raven-agent keeps only its proxy certificates and a
socket in /var/lib/raven on the host (openyurtio/raven charts/raven-agent/templates/daemonset.yaml,
pkg/utils/constants.go); the gateways are Gateway objects in the API (and, at best, in YurtHub's
cache under /etc/kubernetes/cache/raven-agent-ds/, whose endpoints are gateway nodes' public IPs,
not necessarily the SLB the seeds ask to allow). The hint stays.

Nothing here sends a packet; every file is read under `root` so tests can build a fake node.
Credentials in these files (bootstrap tokens, client keys) are never read into a result.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from dataclasses import field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edgecheck.errors import UsageError
from edgecheck.cluster.kubeconfig import (
    KubeCluster, current_server, is_yurthub_proxy, on_node, parse_kubeconfig, parse_server, read_ca_file,
    read_kubeconfig_document, verify_ca,
)
from edgecheck.cluster.yamlload import YamlError, read_yaml_file
from edgecheck.probes.yurthub import YURTHUB_SERVE_PORT
from edgecheck.records import record

if TYPE_CHECKING:
    from edgecheck.plan import HostPort

HUB_NAMES = ("yurthub", "edge-hub")
MANIFESTS_DIR = "/etc/kubernetes/manifests"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
KUBELET_BOOTSTRAP_CONF = "/etc/kubernetes/bootstrap-kubelet.conf"
OPENYURT_KUBELET_CONF = "/var/lib/openyurt/kubelet.conf"
KUBEADM_CA = "/etc/kubernetes/pki/ca.crt"
YURTHUB_BIND_ADDRESS = "127.0.0.1"  # options.go NewYurtHubOptions YurtHubHost
_SYSTEMD_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json", ".manifest")
_ENV_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@record(frozen=True)
class Place:
    """One file or directory looked at, and what it told (one line, never a credential)."""

    path: str  # path on the node
    found: str

    def __str__(self) -> str:
        return f"{self.path}: {self.found}"


@record(frozen=True)
class YurtHubInstall:
    """How YurtHub (or ACK Edge's edge-hub) is set up on this node, from its own command line."""

    name: str  # "yurthub" or "edge-hub"
    how: str  # e.g. "static pod /etc/kubernetes/manifests/yurthub.yaml"
    path: str  # that file, on the node
    servers: Tuple[str, ...]  # --server-addr entries as URLs, in YurtHub's order
    working_mode: str = "edge"
    bind_address: str = YURTHUB_BIND_ADDRESS  # where healthz/readyz/metrics are served
    serve_port: int = YURTHUB_SERVE_PORT
    work_dir: str = ""  # --root-dir, default /var/lib/<name>
    bootstrap_mode: str = "token"

    def probe_address(self) -> Optional[Tuple[str, int]]:
        """Where its serve port answers on loopback; None when it is bound elsewhere only."""
        try:
            bound = ipaddress.ip_address(self.bind_address)
        except ValueError:
            return None
        if bound.is_unspecified:  # 0.0.0.0 / :: include loopback
            return ("::1" if bound.version == 6 else "127.0.0.1"), self.serve_port
        if bound.is_loopback:
            return str(bound), self.serve_port
        return None

    def logs_hint(self) -> str:
        """How an operator sees whether it runs and why not."""
        if self.how.startswith("systemd"):
            unit = self.path.rsplit("/", 1)[-1]
            return f"`systemctl status {unit}` and `journalctl -u {unit}`"
        container = "yurt-hub" if self.name == "yurthub" else self.name
        return (f"`crictl ps -a --name {container}` and `crictl logs <container id>` (static pod {self.path}, "
                "started by kubelet), `systemctl status kubelet`")


@record(frozen=True)
class DiscoveredApiserver:
    apiserver: HostPort
    server: str  # the URL as the node's file has it
    source: str  # exactly which file and which field, e.g. "yurthub static pod /etc/...yaml (--server-addr)"
    ca_file: Optional[str] = None  # local path of a readable PEM CA (under root)
    ca_pem: Optional[bytes] = field(default=None, repr=False)  # inline CA data when there is no file
    ca_source: str = "none"  # node path of the CA file, or "certificate-authority-data in FILE"
    alternates: Tuple[HostPort, ...] = ()  # further --server-addr entries
    notes: Tuple[str, ...] = ()

    def params(self) -> Dict[str, Any]:
        """The `params` entries of a run that used this discovery."""
        return {
            "apiserver": str(self.apiserver),
            "apiserver_source": f"discovered: {self.source}",
            "apiserver_ca_source": self.ca_source,
        }


@record(frozen=True)
class Discovery:
    found: Optional[DiscoveredApiserver]
    yurthub: Optional[YurtHubInstall]  # YurtHub's own setup, for the local YurtHub check
    kubelet_uses_yurthub: bool  # kubelet's kubeconfig points at YurtHub's local proxy
    looked: Tuple[Place, ...]  # every place looked at, in order, with what it told

    def places(self) -> str:
        """One line for a skip hint: where edgecheck looked and why nothing there was used."""
        return "; ".join(str(p) for p in self.looked)


# ---------------------------------------------------------------------------------------------
# Discovery (reads files under root; sends nothing)
# ---------------------------------------------------------------------------------------------


def discover(root: str = "/") -> Discovery:
    """The node's API server and CA, in order of preference, and YurtHub's setup if it runs here."""
    looked: List[Place] = []
    installs = find_yurthub(root, looked)
    hub = installs[0] if installs else None
    found: Optional[DiscoveredApiserver] = None
    for install in installs:
        found = found or _from_hub_command_line(install, root, looked)
    for name, work_dir in _hub_work_dirs(installs):
        for filename in (f"{name}.conf", "bootstrap-hub.conf"):
            if found is None:
                found = _from_kubeconfig(os.path.join(work_dir, filename), f"{name} kubeconfig", root, looked,
                                         fallback_cas=(os.path.join(work_dir, "pki", "ca.crt"), KUBEADM_CA))
    kubelet_uses_yurthub = False
    for path, label in ((KUBELET_CONF, "kubelet kubeconfig"), (OPENYURT_KUBELET_CONF, "kubelet kubeconfig (OpenYurt)"),
                        (KUBELET_BOOTSTRAP_CONF, "kubelet bootstrap kubeconfig")):
        result = _from_kubeconfig(path, label, root, looked, fallback_cas=(KUBEADM_CA,), use=found is None)
        if result == "yurthub":
            kubelet_uses_yurthub = True
        elif isinstance(result, DiscoveredApiserver):
            found = result
    return Discovery(found=found, yurthub=hub, kubelet_uses_yurthub=kubelet_uses_yurthub, looked=tuple(looked))


def find_yurthub(root: str, looked: List[Place]) -> List[YurtHubInstall]:
    """YurtHub static pods first (yurtadm's default), then systemd units."""
    installs: List[YurtHubInstall] = []
    manifests = on_node(MANIFESTS_DIR, root)
    try:
        names = sorted(n for n in os.listdir(manifests) if n.endswith(_MANIFEST_SUFFIXES))
    except OSError as exc:
        looked.append(Place(MANIFESTS_DIR, "absent" if isinstance(exc, FileNotFoundError) else f"not readable ({exc.strerror})"))
        names = []
    seen_hub_manifest = False
    for name in names:
        node_path = f"{MANIFESTS_DIR}/{name}"
        try:
            document = read_yaml_file(os.path.join(manifests, name))
        except (OSError, YamlError) as exc:
            if _hub_name_in(name):
                looked.append(Place(node_path, f"not readable: {exc}"))
            continue
        for argv in pod_commands(document):
            install = install_from_argv(argv, f"static pod {node_path}", node_path)
            if install is not None:
                seen_hub_manifest = True
                installs.append(install)
                looked.append(Place(node_path, f"{install.name} static pod, --server-addr {_servers(install)}"))
    if names and not seen_hub_manifest:
        looked.append(Place(MANIFESTS_DIR, "no YurtHub static pod"))
    units_before = len(installs)
    for hub in HUB_NAMES:
        for directory in _SYSTEMD_DIRS:
            unit = f"{directory}/{hub}.service"
            texts = _unit_texts(unit, root)
            if not texts:
                continue
            argv = unit_command(texts, root)
            install = install_from_argv(argv, f"systemd unit {unit}", unit) if argv else None
            if install is not None:
                installs.append(install)
                looked.append(Place(unit, f"{install.name} service, --server-addr {_servers(install)}"))
            else:
                looked.append(Place(unit, "no yurthub command line with --server-addr"))
            break
    if len(installs) == units_before and not any(p.path.endswith(".service") for p in looked):
        looked.append(Place(f"{{{','.join(_SYSTEMD_DIRS)}}}/{{{','.join(HUB_NAMES)}}}.service", "absent"))
    return installs


def _from_hub_command_line(install: YurtHubInstall, root: str, looked: List[Place]) -> Optional[DiscoveredApiserver]:
    where = f"{install.name} {install.how}"
    if install.working_mode == "local":
        looked.append(Place(install.path, "working mode local: --server-addr is an in-cluster service address, not used"))
        return None
    usable: List[Tuple[str, HostPort]] = []
    notes: List[str] = []
    for server in install.servers:
        try:
            hostport, _ = parse_server(server, where)
        except UsageError as exc:
            notes.append(f"--server-addr entry not usable: {exc}")
            continue
        if _is_loopback(hostport.host):
            notes.append(f"--server-addr {server} is a loopback placeholder, ignored")
            continue
        usable.append((server, hostport))
    if not usable:
        looked.append(Place(install.path, "no usable --server-addr" + (f" ({'; '.join(notes)})" if notes else "")))
        return None
    server, hostport = usable[0]
    ca_file, ca_source = _first_ca(_hub_cas(install), root, looked)
    ca_pem = None
    if ca_file is None:
        # YurtHub's own kubeconfigs carry the CA as data when pki/ca.crt is not written yet.
        for filename in (f"{install.name}.conf", "bootstrap-hub.conf"):
            cluster = _quiet_kubeconfig(os.path.join(install.work_dir, filename), root)
            if cluster is not None and (cluster.ca_pem or cluster.ca_file):
                ca_file, ca_pem, ca_source = cluster.ca_file, cluster.ca_pem, cluster.ca_origin
                break
    return DiscoveredApiserver(
        apiserver=hostport, server=server, source=f"{where} (--server-addr)", ca_file=ca_file, ca_pem=ca_pem,
        ca_source=ca_source, alternates=tuple(hp for _, hp in usable[1:]), notes=tuple(notes))


def _from_kubeconfig(path: str, label: str, root: str, looked: List[Place], *, fallback_cas: Sequence[str],
                     use: bool = True) -> Any:
    """A DiscoveredApiserver, "yurthub" when the file points at YurtHub's proxy, or None."""
    if not os.path.exists(on_node(path, root)):
        looked.append(Place(path, "absent"))
        return None
    try:
        document = read_kubeconfig_document(path, root=root, label=label)
    except UsageError as exc:
        looked.append(Place(path, _after_path(str(exc), path)))
        return None
    server = current_server(document)
    if server and is_yurthub_proxy(_authority(server)):
        looked.append(Place(path, f"points at YurtHub's local proxy {server}, not at the API server"))
        return "yurthub"
    if not use:
        looked.append(Place(path, f"server {server}, not needed"))
        return None
    try:
        cluster = verify_ca(parse_kubeconfig(document, path=path, label=label), root=root, label=label)
    except UsageError as exc:
        looked.append(Place(path, _after_path(str(exc), path)))
        return None
    if _is_loopback(cluster.apiserver.host):
        looked.append(Place(path, f"server {cluster.server} is on loopback, not the cloud API server"))
        return None
    looked.append(Place(path, f"server {cluster.server}"))
    ca_file, ca_pem, ca_source = cluster.ca_file, cluster.ca_pem, cluster.ca_origin
    if ca_file is None and ca_pem is None:
        ca_file, ca_source = _first_ca(fallback_cas, root, looked)
    elif ca_file is not None:
        ca_source = cluster.ca_origin.replace(ca_file, _node_path(ca_file, root))
    return DiscoveredApiserver(
        apiserver=cluster.apiserver, server=cluster.server, source=f"{label} {path} (cluster server)",
        ca_file=ca_file, ca_pem=ca_pem, ca_source=ca_source, notes=cluster.notes)


def _quiet_kubeconfig(path: str, root: str) -> Optional[KubeCluster]:
    try:
        document = read_kubeconfig_document(path, root=root)
        return verify_ca(parse_kubeconfig(document, path=path), root=root)
    except UsageError:
        return None


def _first_ca(candidates: Sequence[str], root: str, looked: List[Place]) -> Tuple[Optional[str], str]:
    for path in candidates:
        local = on_node(path, root)
        if not os.path.exists(local):
            continue
        try:
            read_ca_file(local, path)
        except UsageError as exc:
            looked.append(Place(path, _after_path(str(exc), path)))
            continue
        return local, path
    return None, "none"


def _hub_cas(install: YurtHubInstall) -> Tuple[str, ...]:
    own = os.path.join(install.work_dir, "pki", "ca.crt")
    # kubelet-certificate bootstrap mode verifies with kubeadm's CA (manager.go KubeletCAFile)
    return (KUBEADM_CA, own) if install.bootstrap_mode == "kubeletcertificate" else (own, KUBEADM_CA)


def _hub_work_dirs(installs: Sequence[YurtHubInstall]) -> List[Tuple[str, str]]:
    dirs = [(i.name, i.work_dir) for i in installs]
    for name in HUB_NAMES:
        if (name, f"/var/lib/{name}") not in dirs:
            dirs.append((name, f"/var/lib/{name}"))
    return dirs


# ---------------------------------------------------------------------------------------------
# Command lines (pure)
# ---------------------------------------------------------------------------------------------


def pod_commands(document: Any) -> List[List[str]]:
    """command + args of every container of a static pod manifest."""
    if not isinstance(document, Mapping):
        return []
    spec = document.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    out: List[List[str]] = []
    for container in containers if isinstance(containers, list) else []:
        if not isinstance(container, Mapping):
            continue
        argv = [str(a) for key in ("command", "args") for a in (container.get(key) or []) if isinstance(a, (str, int))]
        if argv and not container.get("command"):
            # args only: the program is the image's entrypoint, named after its repository
            image = str(container.get("image") or "")
            argv.insert(0, image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0])
        if argv:
            out.append(argv)
    return out


def flags(argv: Sequence[str]) -> Dict[str, str]:
    """--name=value and --name value (pflag's two forms); the last one wins, as in pflag."""
    out: Dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value, i = argv[i + 1], i + 1
            out[name] = value
        i += 1
    return out


def install_from_argv(argv: Sequence[str], how: str, path: str) -> Optional[YurtHubInstall]:
    """A YurtHub install from its command line; None when it is not YurtHub's."""
    if not argv:
        return None
    program = os.path.basename(argv[0])
    name = next((h for h in HUB_NAMES if program == h), None)
    opts = flags(argv[1:])
    if name is None and not ("server-addr" in opts and _hub_name_in(program)):
        return None
    name = name or ("edge-hub" if "edge" in program else "yurthub")
    servers = tuple(_as_url(s.strip()) for s in opts.get("server-addr", "").split(",") if s.strip())
    port_text = opts.get("serve-port", "")
    return YurtHubInstall(
        name=name,
        how=how,
        path=path,
        servers=servers,
        working_mode=opts.get("working-mode", "edge") or "edge",
        bind_address=opts.get("bind-address", YURTHUB_BIND_ADDRESS) or YURTHUB_BIND_ADDRESS,
        serve_port=int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else YURTHUB_SERVE_PORT,
        work_dir=opts.get("root-dir") or f"/var/lib/{name}",
        bootstrap_mode=opts.get("bootstrap-mode", "token") or "token",
    )


def unit_command(texts: Sequence[str], root: str = "/") -> List[str]:
    """The effective ExecStart of a unit and its drop-ins, with Environment=/EnvironmentFile= expanded.

    systemd semantics kept: an empty `ExecStart=` resets the list, the last ExecStart wins for a
    simple service, later assignments of a variable override earlier ones.
    """
    env: Dict[str, str] = {}
    exec_start = ""
    for text in texts:
        for key, value in _unit_assignments(text):
            if key == "Environment":
                for word in _split(value):
                    name, eq, val = word.partition("=")
                    if eq:
                        env[name] = val
            elif key == "EnvironmentFile":
                env.update(_environment_file(value.lstrip("-").strip(), root))
            elif key == "ExecStart":
                exec_start = value.lstrip("@-:+!")
    if not exec_start:
        return []
    expanded = _ENV_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), exec_start)
    return _split(expanded)


def _unit_assignments(text: str) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    logical = text.replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, eq, value = line.partition("=")
        if eq:
            out.append((key.strip(), value.strip()))
    return out


def _environment_file(path: str, root: str) -> Dict[str, str]:
    env: Dict[str, str] = {}
    try:
        with open(on_node(path, root), encoding="utf-8", errors="replace") as fh:
            for line in fh.read(65536).splitlines():
                line = line.strip()
                if line and not line.startswith(("#", ";")) and "=" in line:
                    key, _, value = line.partition("=")
                    env[key.strip()] = value.strip().strip("\"'")
    except OSError:
        pass
    return env


def _unit_texts(unit: str, root: str) -> List[str]:
    texts: List[str] = []
    for path in [unit] + sorted(_dropins(unit, root)):
        try:
            with open(on_node(path, root), encoding="utf-8", errors="replace") as fh:
                texts.append(fh.read(262144))
        except OSError:
            continue
    # drop-ins without the unit itself define no service
    return texts if os.path.isfile(on_node(unit, root)) else []


def _dropins(unit: str, root: str) -> List[str]:
    out: List[str] = []
    for directory in _SYSTEMD_DIRS:
        dropin = f"{directory}/{os.path.basename(unit)}.d"
        try:
            out.extend(f"{dropin}/{n}" for n in os.listdir(on_node(dropin, root)) if n.endswith(".conf"))
        except OSError:
            continue
    return out


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _split(text: str) -> List[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _as_url(server: str) -> str:
    return server if "://" in server else f"https://{server}"


def _authority(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hub_name_in(text: str) -> bool:
    return any(h in text for h in HUB_NAMES) or "yurt-hub" in text


def _servers(install: YurtHubInstall) -> str:
    return ",".join(install.servers) or "(none)"


def _node_path(local: str, root: str) -> str:
    if not root or root == "/":
        return local
    prefix = os.path.join(root, "")
    return "/" + local[len(prefix):] if local.startswith(prefix) else local


def _after_path(message: str, path: str) -> str:
    """A UsageError message without its leading 'LABEL PATH: ' (the Place names the path)."""
    marker = f"{path}: "
    return message.split(marker, 1)[1] if marker in message else message
