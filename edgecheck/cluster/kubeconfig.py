"""--kubeconfig: the API server URL and CA of the current context, and nothing else (SPEC 7.4).

What is read, as kubectl (client-go clientcmd) reads it:
- `current-context` -> that entry of `contexts` -> its `cluster` -> that entry of `clusters`:
  `server`, `certificate-authority-data` (base64 PEM; wins over the file, as client-go says:
  "certificate-authority-data will override"), `certificate-authority` (a file; a relative path is
  relative to the kubeconfig's own directory, client-go ResolveLocalPaths), `insecure-skip-tls-
  verify`, `tls-server-name`, and whether `proxy-url` is set.
- Never `users` (tokens, client keys, passwords), never exec or auth-provider plugins: they are
  not looked at, so they cannot reach a result, a log line, an error message or the network.
  The YAML parser necessarily reads the whole file; the parsed data is dropped on return and
  error messages never quote the file (edgecheck/cluster/yamlload.py).

Every problem is a one-line edgecheck.errors.UsageError (exit 2): nothing is probed with a
half-understood kubeconfig.

The CA for the TLS layer: the probes take a CA *file* (ssl.create_default_context(cafile=) for
the raw handshake and requests' verify=, which accepts only a path, so both layers use one trust
source). A `certificate-authority` file is used in place. Inline data is kept as bytes here and
written by `ca_file_for()` to a 0600 file inside a fresh 0700 directory for the length of the run:
a CA certificate is public, the point of the private directory is that no other user can replace
the trust anchor between writing and reading it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import os
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from edgecheck.errors import UsageError
from edgecheck.cluster.yamlload import YamlError, read_yaml_file
from edgecheck.records import record

if TYPE_CHECKING:  # edgecheck.plan pulls in the catalog and the model: imported where used
    from edgecheck.plan import HostPort

MAX_CA_BYTES = 1024 * 1024
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
# YurtHub's local proxy (openyurtio/openyurt pkg/yurthub/util/util.go YurtHubProxyPort) and the
# address of its dummy interface (cmd/yurthub/app/options/options.go DefaultDummyIfIP4): a kubeconfig
# pointing there is kubelet's view of the cluster on an OpenYurt / ACK Edge node, not the API server.
YURTHUB_PROXY_PORTS = (10261, 10268)
YURTHUB_DUMMY_IPS = ("169.254.2.1", "fd00::2:1")
_TRUE_WORDS = ("true", "yes", "on", "y")  # go-yaml (YAML 1.1) booleans kubectl accepts


@record(frozen=True)
class KubeCluster:
    """Where the current context's API server is and what signs its certificate. No credentials."""

    source: str  # e.g. "kubeconfig /root/.kube/config (context 'prod', cluster 'prod')"
    path: str  # the kubeconfig as given (a node path when read under a root)
    context: str
    cluster: str
    server: str  # the server URL as written, without query (never one with user information)
    apiserver: HostPort
    ca_file: Optional[str] = None  # certificate-authority, resolved (and re-rooted), readable, PEM
    ca_pem: Optional[bytes] = field(default=None, repr=False)  # certificate-authority-data, decoded PEM
    insecure_skip_tls_verify: bool = False
    tls_server_name: Optional[str] = None  # client-go verifies the certificate against this name
    notes: Tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """https://HOST:PORT, the form --apiserver accepts (a server path is dropped)."""
        return f"https://{self.apiserver}"

    @property
    def ca_origin(self) -> str:
        """Where the CA comes from, for params/evidence: never the certificate itself."""
        if self.ca_pem is not None:
            return f"certificate-authority-data in {self.path}"
        if self.ca_file is not None:
            return f"certificate-authority {self.ca_file}"
        return "none"

    def params(self) -> Dict[str, Any]:
        """The `params` entries this input contributes to a report."""
        return {
            "apiserver": str(self.apiserver),
            "apiserver_source": self.source,
            "apiserver_ca_source": self.ca_origin,
            "apiserver_insecure_skip_tls_verify": self.insecure_skip_tls_verify,
        }


# ---------------------------------------------------------------------------------------------
# Loading (I/O at the edge) and parsing (pure)
# ---------------------------------------------------------------------------------------------


def load_kubeconfig(path: str, *, context: Optional[str] = None, root: Optional[str] = None,
                    label: str = "kubeconfig") -> KubeCluster:
    """Read PATH and return its current (or the given) context's cluster. UsageError otherwise.

    With `root`, PATH and every absolute path inside the file are paths on a node whose file
    system is mounted at `root` (node discovery and its tests); without it they are used as is.
    """
    document = read_kubeconfig_document(path, root=root, label=label)
    cluster = parse_kubeconfig(document, path=path, context=context, label=label)
    return verify_ca(cluster, root=root, label=label)


def read_kubeconfig_document(path: str, *, root: Optional[str] = None, label: str = "kubeconfig") -> Any:
    """The parsed file (plain data, to be dropped by the caller); UsageError if unreadable or not YAML."""
    where = f"{label} {path}"
    try:
        return read_yaml_file(on_node(path, root))
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except YamlError as exc:
        raise UsageError(f"{where}: not a valid kubeconfig: {exc}") from None


def verify_ca(cluster: KubeCluster, *, root: Optional[str] = None, label: str = "kubeconfig") -> KubeCluster:
    """Check the CA loads as the TLS layer will load it; a CA file path becomes the local path."""
    where = f"{label} {cluster.path}"
    if cluster.ca_pem is not None:
        check_ca_pem(cluster.ca_pem, f"{where}: certificate-authority-data of cluster {cluster.cluster!r}")
        return cluster
    if cluster.ca_file is not None:
        local = on_node(cluster.ca_file, root)
        read_ca_file(local, f"{where}: certificate-authority {cluster.ca_file}")
        return replace(cluster, ca_file=local)
    return cluster


def current_server(document: Any) -> Optional[str]:
    """The current context's server URL, or None when the file does not say. Never raises."""
    try:
        contexts = {c["name"]: c.get("context") or {} for c in document.get("contexts") or []}
        clusters = {c["name"]: c.get("cluster") or {} for c in document.get("clusters") or []}
        server = clusters[contexts[document["current-context"]]["cluster"]]["server"]
    except (AttributeError, KeyError, TypeError):
        return None
    return server.strip() if isinstance(server, str) else None


def parse_kubeconfig(document: Any, *, path: str, context: Optional[str] = None,
                     label: str = "kubeconfig") -> KubeCluster:
    """The cluster of the current (or given) context from parsed kubeconfig data. Pure."""
    where = f"{label} {path}"
    name, cluster_name, entry = _current_cluster(document, path, context, where)
    subject = f"{where}: cluster {cluster_name!r}"
    server_text = entry.get("server")
    if not server_text or not isinstance(server_text, str):
        raise UsageError(f"{subject} has no server")
    apiserver, server_notes = parse_server(server_text.strip(), subject)
    ca_file, ca_pem, ca_notes = _cluster_ca(entry, path, subject)
    notes: List[str] = list(server_notes) + ca_notes
    insecure = _truthy(entry.get("insecure-skip-tls-verify"))
    if insecure:
        notes.append("insecure-skip-tls-verify is set: the node's client does not verify the API server "
                     "certificate" + (", although a CA is given" if (ca_pem or ca_file) else ""))
    tls_server_name = entry.get("tls-server-name") or None
    if tls_server_name is not None and not isinstance(tls_server_name, str):
        raise UsageError(f"{subject}: tls-server-name is not a string")
    if entry.get("proxy-url"):
        # The URL itself is not kept: it may carry proxy credentials.
        notes.append("proxy-url is set: kubectl reaches this API server through a proxy; edgecheck probes it directly")
    return KubeCluster(
        source=f"{label} {path} (context {name!r}, cluster {cluster_name!r})",
        path=path,
        context=name,
        cluster=cluster_name,
        server=server_text.strip().split("?", 1)[0].split("#", 1)[0],  # a query is never kept
        apiserver=apiserver,
        ca_file=ca_file,
        ca_pem=ca_pem,
        insecure_skip_tls_verify=insecure,
        tls_server_name=tls_server_name,
        notes=tuple(notes),
    )


def _current_cluster(document: Any, path: str, context: Optional[str],
                     where: str) -> Tuple[str, str, Mapping[str, Any]]:
    """(context name, cluster name, cluster entry) the kubeconfig's current context points at."""
    if document is None:
        document = {}  # an empty file is an empty config, as for kubectl
    if not isinstance(document, Mapping):
        raise UsageError(f"{where}: not a valid kubeconfig: the top level is not a mapping")
    kind = document.get("kind")
    if kind not in (None, "", "Config"):
        raise UsageError(f"{where}: not a kubeconfig (kind is {_short(kind)!r}, not 'Config')")
    contexts = _named(document, "contexts", "context", where)
    clusters = _named(document, "clusters", "cluster", where)
    name = context if context is not None else document.get("current-context")
    if not name:
        raise UsageError(f"{where}: no current-context; set one with "
                         f"`kubectl config use-context NAME --kubeconfig {path}`")
    if not isinstance(name, str):
        raise UsageError(f"{where}: not a valid kubeconfig: current-context is not a string")
    if name not in contexts:
        raise UsageError(f"{where}: context {name!r} is not among its contexts ({_names(contexts)})")
    cluster_name = contexts[name].get("cluster")
    if not cluster_name or not isinstance(cluster_name, str):
        raise UsageError(f"{where}: context {name!r} names no cluster")
    if cluster_name not in clusters:
        raise UsageError(f"{where}: context {name!r} names cluster {cluster_name!r}, which is not among its clusters "
                         f"({_names(clusters)})")
    return name, cluster_name, clusters[cluster_name]


def _cluster_ca(entry: Mapping[str, Any], path: str, subject: str) -> Tuple[Optional[str], Optional[bytes], List[str]]:
    """(CA file, CA data, notes): the data wins over the file, as in kubectl."""
    data = entry.get("certificate-authority-data")
    file_ref = entry.get("certificate-authority")
    if data:
        notes = (["both certificate-authority-data and certificate-authority are set; the data wins, as in kubectl"]
                 if file_ref else [])
        return None, decode_ca_data(data, f"{subject}: certificate-authority-data"), notes
    if file_ref:
        if not isinstance(file_ref, str):
            raise UsageError(f"{subject}: certificate-authority is not a path")
        # client-go ResolveLocalPaths: relative to the directory of the file that holds it.
        base = os.path.dirname(os.path.abspath(path))
        return os.path.normpath(os.path.join(base, file_ref)), None, []
    return None, None, []


def parse_server(server: str, subject: str) -> Tuple[HostPort, Tuple[str, ...]]:
    """A kubeconfig `server:` -> host and port. https only; a path is noted, not an error.

    Unlike --apiserver, a kubeconfig may carry a path (a proxy in front of the API server, e.g.
    https://rancher.example/k8s/clusters/c-1): reachability and the certificate are host:port
    matters, so the path is ignored with a note.
    """
    from edgecheck.plan import URL_DEFAULT_PORTS, parse_host_port

    text = server if "://" in server else f"https://{server}"  # client-go: no scheme means https
    parts = urlsplit(text)
    if "@" in parts.netloc:
        raise UsageError(f"{subject}: its server URL carries user information (not shown); remove it")
    shown = f"{parts.scheme}://{parts.netloc}"  # never a query: nothing but the address is echoed
    scheme = parts.scheme.lower()
    if scheme not in URL_DEFAULT_PORTS:
        hint = ""
        if scheme == "http" and is_yurthub_proxy(parts.netloc):
            hint = (": it points at YurtHub on this node, not at the API server; on a joined node drop "
                    "--kubeconfig (the API server is discovered) or give --apiserver")
        raise UsageError(f"{subject}: server {shown!r} is not https{hint}")
    notes: List[str] = []
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        notes.append(f"server path {parts.path or ''}{'?…' if parts.query else ''} ignored: "
                     "reachability and the certificate are checked on host:port")
    authority = parts.netloc
    try:
        apiserver = parse_host_port(f"https://{authority}", f"{subject}: server", URL_DEFAULT_PORTS["https"])
    except UsageError:
        raise UsageError(f"{subject}: server {shown!r} is not a valid https://HOST[:PORT] URL") from None
    return apiserver, tuple(notes)


def is_yurthub_proxy(authority: str) -> bool:
    """True for YurtHub's local proxy: loopback or its dummy interface, port 10261 or 10268."""
    host, _, port = authority.rpartition(":")
    if not port.isdigit() or int(port) not in YURTHUB_PROXY_PORTS:
        return False
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or str(address) in YURTHUB_DUMMY_IPS


def decode_ca_data(data: Any, subject: str) -> bytes:
    """base64 certificate-authority-data -> PEM bytes; UsageError without quoting the data."""
    if not isinstance(data, str):
        raise UsageError(f"{subject} is not a base64 string")
    try:
        pem = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{subject} is not valid base64") from None
    if PEM_CERTIFICATE not in pem:
        raise UsageError(f"{subject} does not hold a PEM certificate")
    return pem


def check_ca_pem(pem: bytes, subject: str) -> None:
    """Load the certificates the way the TLS layer will; UsageError if OpenSSL refuses them."""
    import ssl  # lazily: not needed for --help or `targets`

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise UsageError(f"{subject} does not hold a usable PEM CA certificate") from None


def read_ca_file(path: str, subject: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            pem = fh.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{subject}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    if len(pem) > MAX_CA_BYTES or PEM_CERTIFICATE not in pem:
        raise UsageError(f"{subject} does not hold a PEM certificate")
    check_ca_pem(pem, subject)
    return pem


def on_node(path: str, root: Optional[str]) -> str:
    """PATH as seen from here when the node's file system is at ROOT (None or '/': as is)."""
    if not root or root == "/":
        return path
    return os.path.join(root, path.lstrip("/")) if os.path.isabs(path) else path


def _named(document: Mapping[str, Any], key: str, inner: str, where: str) -> Dict[str, Mapping[str, Any]]:
    """kubeconfig list of {name, <inner>: {...}} -> {name: {...}}; a later duplicate wins (client-go)."""
    items = document.get(key) or []
    if not isinstance(items, list):
        raise UsageError(f"{where}: not a valid kubeconfig: {key} is not a list")
    out: Dict[str, Mapping[str, Any]] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise UsageError(f"{where}: not a valid kubeconfig: an entry of {key} has no name")
        body = item.get(inner) or {}
        if not isinstance(body, Mapping):
            raise UsageError(f"{where}: not a valid kubeconfig: {key} entry {item['name']!r} has no {inner} mapping")
        out[item["name"]] = body
    return out


def _names(entries: Mapping[str, Any]) -> str:
    names = sorted(entries)
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:5])
    return shown + (f", … {len(names) - 5} more" if len(names) > 5 else "")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in _TRUE_WORDS


# ---------------------------------------------------------------------------------------------
# The CA as a file for the TLS layer
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ca_file_for(ca_file: Optional[str], ca_pem: Optional[bytes]) -> Iterator[Optional[str]]:
    """A CA file path for RunContext.apiserver_ca while the block runs.

    A referenced file is used in place. Inline data is written to a 0600 file in a fresh 0700
    directory (tempfile.mkdtemp/mkstemp), removed when the block ends, however it ends.
    """
    import shutil
    import tempfile

    if ca_pem is None:
        yield ca_file
        return
    directory = tempfile.mkdtemp(prefix="edgecheck-ca-")
    try:
        fd, path = tempfile.mkstemp(prefix="apiserver-ca-", suffix=".crt", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(ca_pem)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
