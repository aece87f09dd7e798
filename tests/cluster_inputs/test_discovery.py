"""Discovery on a joined node: API server + CA + source from the node's own files, under a test root."""

from __future__ import annotations

import os

import pytest

from edgecheck.cluster.discovery import discover, flags, install_from_argv, unit_command
from edgecheck.plan import HostPort

from tests.cluster_inputs.fixtures import b64, make_ca, no_secret_in, write
from tests.cluster_inputs import nodetrees as trees


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> str:
    return make_ca(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def root(tmp_path) -> str:
    return str(tmp_path / "node")


def full_text(discovery) -> str:
    return "\n".join([repr(discovery), discovery.places(), str(discovery.found.params() if discovery.found else "")])


def test_yurtadm_static_pod_node(root, ca):
    trees.yurtadm_static_pod_node(root, ca)
    d = discover(root)
    found = d.found
    assert found is not None
    assert found.apiserver == HostPort("47.96.0.10", 6443) and found.server == trees.SERVER
    assert found.alternates == (HostPort("47.96.0.11", 6443),)
    assert found.source == "yurthub static pod /etc/kubernetes/manifests/yurthub.yaml (--server-addr)"
    assert found.ca_file == os.path.join(root, "var/lib/yurthub/pki/ca.crt") and found.ca_pem is None
    assert found.ca_source == "/var/lib/yurthub/pki/ca.crt"
    assert found.params() == {
        "apiserver": "47.96.0.10:6443",
        "apiserver_source": "discovered: yurthub static pod /etc/kubernetes/manifests/yurthub.yaml (--server-addr)",
        "apiserver_ca_source": "/var/lib/yurthub/pki/ca.crt",
    }
    hub = d.yurthub
    assert hub is not None and (hub.name, hub.bind_address, hub.serve_port, hub.working_mode) == (
        "yurthub", "127.0.0.1", 10267, "edge")
    assert hub.servers == (trees.SERVER, trees.SERVER2) and hub.work_dir == "/var/lib/yurthub"
    assert d.kubelet_uses_yurthub
    assert any(p.path == "/etc/kubernetes/kubelet.conf" and "YurtHub's local proxy http://127.0.0.1:10261" in p.found
               for p in d.looked)
    # the bootstrap token and the client key in YurtHub's files never surface
    assert no_secret_in(full_text(d)) == {}


def test_yurthub_ca_from_its_kubeconfig_when_pki_is_not_written_yet(root, ca):
    trees.yurtadm_static_pod_node(root, ca, with_pki=False)
    found = discover(root).found
    assert found is not None and found.source.endswith("yurthub.yaml (--server-addr)")
    assert found.ca_file is None and found.ca_pem == open(ca, "rb").read()
    assert found.ca_source == "certificate-authority-data in /var/lib/yurthub/yurthub.conf"


def test_placeholder_server_addr_falls_back_to_yurthubs_kubeconfig(root, ca):
    # charts/yurthub values: kubernetesServerAddr https://127.0.0.1:6443, replaced by yurtadm; left as is here
    trees.yurtadm_static_pod_node(root, ca, servers="https://127.0.0.1:6443")
    d = discover(root)
    assert d.found is not None
    assert d.found.source == "yurthub kubeconfig /var/lib/yurthub/yurthub.conf (cluster server)"
    assert d.found.apiserver == HostPort("47.96.0.10", 6443)
    assert d.yurthub is not None  # YurtHub is still there for the local check
    assert any("loopback placeholder" in p.found for p in d.looked)


def test_local_working_mode_server_addr_is_not_the_api_server(root, ca):
    trees.yurtadm_static_pod_node(root, ca, mode="local")
    d = discover(root)
    assert any("working mode local" in p.found for p in d.looked)
    assert d.found is not None and d.found.source.startswith("yurthub kubeconfig")


def test_converted_node_with_yurthub_as_systemd_service(root, ca):
    trees.converted_systemd_node(root, ca)
    d = discover(root)
    assert d.found is not None
    assert d.found.source == "yurthub systemd unit /etc/systemd/system/yurthub.service (--server-addr)"
    assert d.found.apiserver == HostPort("47.96.0.10", 6443)
    # kubelet-certificate bootstrap mode: YurtHub verifies with kubeadm's CA (manager.go KubeletCAFile)
    assert d.found.ca_source == "/etc/kubernetes/pki/ca.crt"
    assert d.yurthub is not None and d.yurthub.bootstrap_mode == "kubeletcertificate"
    assert d.yurthub.bind_address == "127.0.0.1" and d.yurthub.working_mode == "edge"
    assert d.kubelet_uses_yurthub  # through /var/lib/openyurt/kubelet.conf
    assert no_secret_in(full_text(d)) == {}


def test_edge_hub_work_dir_as_ack_edge_names_it(root, ca):
    write(root, "/var/lib/edge-hub/edge-hub.conf", trees.hub_conf(trees.SERVER, b64(ca), hub="edge-hub"))
    write(root, "/etc/kubernetes/kubelet.conf", trees.KUBELET_CONF_FOR_NODE)
    d = discover(root)
    assert d.found is not None
    assert d.found.source == "edge-hub kubeconfig /var/lib/edge-hub/edge-hub.conf (cluster server)"
    assert d.found.ca_source == "certificate-authority-data in /var/lib/edge-hub/edge-hub.conf"
    assert d.kubelet_uses_yurthub and d.yurthub is None


def test_edge_hub_static_pod(root, ca):
    manifest = trees.YURTHUB_MANIFEST.format(servers=trees.SERVER, mode="edge").replace(
        "    - yurthub\n", "    - /usr/local/bin/edge-hub\n").replace("/var/lib/yurthub", "/var/lib/edge-hub")
    write(root, "/etc/kubernetes/manifests/edge-hub.yaml", manifest)
    write(root, "/var/lib/edge-hub/pki/ca.crt", open(ca).read())
    d = discover(root)
    assert d.found is not None and d.found.source.startswith("edge-hub static pod /etc/kubernetes/manifests/edge-hub.yaml")
    assert d.found.ca_source == "/var/lib/edge-hub/pki/ca.crt" and d.yurthub.name == "edge-hub"


def test_hub_manifest_with_args_only_uses_the_image_entrypoint(root, ca):
    manifest = ("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: edge-hub\n"
                "    image: registry.example.test/acs/edge-hub:v1.6@sha256:abc\n"
                f"    args: ['--server-addr={trees.SERVER}', '--v=2']\n")
    write(root, "/etc/kubernetes/manifests/edge-hub.yaml", manifest)
    d = discover(root)
    assert d.yurthub is not None and d.yurthub.name == "edge-hub"
    assert d.found is not None and d.found.apiserver == HostPort("47.96.0.10", 6443)


def test_plain_kubeadm_node(root, ca):
    trees.kubeadm_node(root, ca)
    d = discover(root)
    assert d.found is not None
    assert d.found.source == "kubelet kubeconfig /etc/kubernetes/kubelet.conf (cluster server)"
    assert d.found.apiserver == HostPort("47.96.0.10", 6443)
    assert d.found.ca_pem == open(ca, "rb").read()
    assert d.found.ca_source == "certificate-authority-data in /etc/kubernetes/kubelet.conf"
    assert d.yurthub is None and not d.kubelet_uses_yurthub
    assert no_secret_in(full_text(d)) == {}  # kubelet's client-key-data stays in the file


def test_kubeadm_node_ca_file_fallback(root, ca):
    text = trees.kubeadm_kubelet_conf(trees.SERVER, b64(ca)).replace(f"    certificate-authority-data: {b64(ca)}\n", "")
    write(root, "/etc/kubernetes/kubelet.conf", text)
    write(root, "/etc/kubernetes/pki/ca.crt", open(ca).read())
    found = discover(root).found
    assert found is not None and found.ca_file == os.path.join(root, "etc/kubernetes/pki/ca.crt")
    assert found.ca_source == "/etc/kubernetes/pki/ca.crt"


def test_empty_tree_gives_none_and_the_places_looked_at(root):
    os.makedirs(root)
    d = discover(root)
    assert d.found is None and d.yurthub is None and not d.kubelet_uses_yurthub
    paths = [p.path for p in d.looked]
    for expected in ("/etc/kubernetes/manifests", "/var/lib/yurthub/yurthub.conf", "/var/lib/yurthub/bootstrap-hub.conf",
                     "/var/lib/edge-hub/edge-hub.conf", "/etc/kubernetes/kubelet.conf", "/var/lib/openyurt/kubelet.conf",
                     "/etc/kubernetes/bootstrap-kubelet.conf"):
        assert expected in paths
    assert all(p.found == "absent" for p in d.looked)
    assert "/etc/kubernetes/kubelet.conf: absent" in d.places()


def test_yurthub_only_and_nothing_usable(root):
    """kubelet points at YurtHub, YurtHub's files are gone: nothing found, the reason is named."""
    write(root, "/etc/kubernetes/kubelet.conf", trees.KUBELET_CONF_FOR_NODE)
    write(root, "/var/lib/yurthub/yurthub.conf", "clusters: [\n")
    d = discover(root)
    assert d.found is None and d.kubelet_uses_yurthub
    assert "/var/lib/yurthub/yurthub.conf: not a valid kubeconfig: YAML error at line 2" in d.places()


def test_unreadable_hub_manifest_is_named(root, ca):
    write(root, "/etc/kubernetes/manifests/yurthub.yaml", "spec: [\n")
    trees.kubeadm_node(root, ca)
    d = discover(root)
    assert any(p.path == "/etc/kubernetes/manifests/yurthub.yaml" and "YAML error" in p.found for p in d.looked)
    assert d.found is not None and d.found.source.startswith("kubelet kubeconfig")


# --- pure pieces ---------------------------------------------------------------------------------


def test_flags_both_pflag_forms():
    assert flags(["--server-addr", "https://a:6443", "--v=2", "--bind-address=127.0.0.1", "--x"]) == {
        "server-addr": "https://a:6443", "v": "2", "bind-address": "127.0.0.1", "x": ""}


def test_install_from_argv():
    hub = install_from_argv(["yurthub", "--server-addr=47.96.0.10:6443,https://h:6443", "--serve-port=20267",
                             "--root-dir=/data/hub"], "static pod X", "X")
    assert hub is not None and hub.servers == ("https://47.96.0.10:6443", "https://h:6443")
    assert hub.serve_port == 20267 and hub.work_dir == "/data/hub"
    assert install_from_argv(["kube-proxy", "--server-addr=x"], "static pod X", "X") is None
    assert install_from_argv(["sleep", "1"], "static pod X", "X") is None


def test_unit_command_resets_and_expands():
    texts = ["[Service]\nExecStart=/usr/local/bin/yurthub\n",
             '[Service]\nEnvironment="A=--a=1 --b=2" "B=--c"\nExecStart=\nExecStart=/usr/local/bin/yurthub $A ${B} \\\n  --d=4\n']
    assert unit_command(texts) == ["/usr/local/bin/yurthub", "--a=1", "--b=2", "--c", "--d=4"]
