"""--kubeconfig: server and CA of the current context; never a credential; one-line usage errors."""

from __future__ import annotations

import base64
import os
import stat
import sys
import subprocess

import pytest

from edgecheck.errors import UsageError
from edgecheck.cluster.kubeconfig import KubeCluster, ca_file_for, load_kubeconfig, parse_kubeconfig
from edgecheck.plan import HostPort

from tests.cluster_inputs.fixtures import TOKEN, b64, kubeconfig, make_ca, no_secret_in, write


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> str:
    return make_ca(str(tmp_path_factory.mktemp("pki")))


def everything(cluster: KubeCluster) -> str:
    return "\n".join([repr(cluster), str(cluster.params()), " ".join(cluster.notes), cluster.source])


def test_inline_ca_data(tmp_path, ca):
    path = write(str(tmp_path), "kc.yaml", kubeconfig("https://47.96.0.10:6443", ca_data=b64(ca)))
    cluster = load_kubeconfig(path)
    assert cluster.apiserver == HostPort("47.96.0.10", 6443)
    assert cluster.server == "https://47.96.0.10:6443"
    assert (cluster.context, cluster.cluster) == ("edge", "edge-cluster")
    assert cluster.ca_pem == open(ca, "rb").read() and cluster.ca_file is None
    assert cluster.source == f"kubeconfig {path} (context 'edge', cluster 'edge-cluster')"
    assert cluster.params() == {
        "apiserver": "47.96.0.10:6443",
        "apiserver_source": cluster.source,
        "apiserver_ca_source": f"certificate-authority-data in {path}",
        "apiserver_insecure_skip_tls_verify": False,
    }
    # the certificate bytes are not in the repr (long, and not what anyone reads there)
    assert "BEGIN CERTIFICATE" not in repr(cluster)
    assert no_secret_in(everything(cluster)) == {}


def test_relative_ca_file_resolves_against_the_kubeconfig_directory(tmp_path, ca, monkeypatch):
    conf_dir = tmp_path / "conf"
    write(str(conf_dir), "pki/ca.crt", open(ca).read())
    path = write(str(conf_dir), "kc.yaml", kubeconfig("https://api.example.test:6443", ca_file="pki/ca.crt"))
    monkeypatch.chdir(tmp_path)  # elsewhere: kubectl resolves against the file, not the cwd
    cluster = load_kubeconfig(path)
    assert cluster.ca_file == str(conf_dir / "pki" / "ca.crt") and cluster.ca_pem is None
    assert cluster.params()["apiserver_ca_source"] == f"certificate-authority {conf_dir / 'pki' / 'ca.crt'}"
    # a relative --kubeconfig path works the same
    cluster = load_kubeconfig(os.path.relpath(path, tmp_path))
    assert cluster.ca_file == str(conf_dir / "pki" / "ca.crt")


def test_absolute_ca_file(tmp_path, ca):
    path = write(str(tmp_path), "kc.yaml", kubeconfig("https://[2001:db8::1]:6443", ca_file=ca))
    cluster = load_kubeconfig(path)
    assert cluster.apiserver == HostPort("2001:db8::1", 6443) and cluster.ca_file == ca


def test_data_wins_over_file_with_a_note(tmp_path, ca):
    path = write(str(tmp_path), "kc.yaml",
                 kubeconfig("https://api.example.test:6443", ca_data=b64(ca), ca_file="/nonexistent/ca.crt"))
    cluster = load_kubeconfig(path)
    assert cluster.ca_pem is not None and cluster.ca_file is None
    assert any("the data wins" in n for n in cluster.notes)


def test_several_contexts_current_one_wins_and_context_can_be_chosen(tmp_path, ca):
    path = write(str(tmp_path), "kc.yaml", kubeconfig("https://47.96.0.10:6443", ca_data=b64(ca)))
    assert load_kubeconfig(path).apiserver == HostPort("47.96.0.10", 6443)
    decoy = load_kubeconfig(path, context="decoy")
    assert decoy.apiserver == HostPort("198.51.100.99", 6443) and decoy.ca_origin == "none"


def test_json_kubeconfig(tmp_path, ca):
    text = ('{"kind": "Config", "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", '
            f'"user": "u"}}}}], "clusters": [{{"name": "k", "cluster": {{"server": "https://10.0.0.1", '
            f'"certificate-authority-data": "{b64(ca)}"}}}}], "users": [{{"name": "u", "user": {{"token": "{TOKEN}"}}}}]}}')
    cluster = load_kubeconfig(write(str(tmp_path), "kc.json", text))
    assert cluster.apiserver == HostPort("10.0.0.1", 443)  # a URL without a port: https's port
    assert no_secret_in(everything(cluster)) == {}


def test_insecure_skip_tls_verify_and_tls_server_name_and_proxy_url_are_noted(tmp_path):
    extra = ("    insecure-skip-tls-verify: true\n    tls-server-name: kubernetes.default\n"
             f"    proxy-url: http://user:{TOKEN}@proxy.example.test:3128\n")
    cluster = load_kubeconfig(write(str(tmp_path), "kc.yaml", kubeconfig("https://10.0.0.1:6443", extra_cluster=extra)))
    assert cluster.insecure_skip_tls_verify and cluster.tls_server_name == "kubernetes.default"
    assert any("insecure-skip-tls-verify" in n for n in cluster.notes)
    assert any("proxy-url is set" in n for n in cluster.notes)
    assert cluster.params()["apiserver_insecure_skip_tls_verify"] is True
    assert no_secret_in(everything(cluster)) == {}  # the proxy URL's credentials are not kept


def test_yaml_1_1_booleans_as_kubectl_reads_them(tmp_path):
    cluster = load_kubeconfig(write(str(tmp_path), "kc.yaml",
                                    kubeconfig("https://10.0.0.1:6443", extra_cluster="    insecure-skip-tls-verify: yes\n")))
    assert cluster.insecure_skip_tls_verify


def test_server_path_is_ignored_with_a_note(tmp_path):
    cluster = load_kubeconfig(write(str(tmp_path), "kc.yaml", kubeconfig("https://rancher.example.test/k8s/clusters/c-1")))
    assert cluster.apiserver == HostPort("rancher.example.test", 443)
    assert cluster.url == "https://rancher.example.test:443"
    assert any("server path /k8s/clusters/c-1 ignored" in n for n in cluster.notes)


@pytest.mark.parametrize("text, says", [
    ("clusters: [\n", "not a valid kubeconfig: YAML error at line 2, column 1"),
    ("a: b: c\n", "not a valid kubeconfig: YAML error at line 1, column 5: mapping values are not allowed here"),
    ("- just\n- a list\n", "the top level is not a mapping"),
    ("kind: Pod\n", "not a kubeconfig (kind is 'Pod', not 'Config')"),
    ("clusters: 3\ncurrent-context: x\n", "clusters is not a list"),
    ("clusters:\n- cluster: {server: https://x}\n", "an entry of clusters has no name"),
    ("", "no current-context; set one with `kubectl config use-context NAME --kubeconfig"),
    ("x: !!python/object/apply:os.system [echo]\n", "YAML error at line 1"),
    ("\x00\x01binary", "YAML error"),
])
def test_malformed_kubeconfigs_are_one_line_usage_errors(tmp_path, text, says):
    path = write(str(tmp_path), "kc.yaml", text)
    with pytest.raises(UsageError) as info:
        load_kubeconfig(path)
    message = str(info.value)
    assert message.startswith(f"kubeconfig {path}: ") and says in message, message
    assert "\n" not in message and info.value.exit_code == 2
    # no chained parser error (its text quotes the file)
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


@pytest.mark.parametrize("server, current, says", [
    ("https://10.0.0.1:6443", None, "no current-context"),
    ("https://10.0.0.1:6443", "gone", "context 'gone' is not among its contexts ('decoy', 'edge')"),
    ("http://127.0.0.1:10261", "edge", "server 'http://127.0.0.1:10261' is not https: it points at YurtHub on this node"),
    ("http://10.0.0.1:8080", "edge", "server 'http://10.0.0.1:8080' is not https"),
    ("https://10.0.0.1:99999", "edge", "is not a valid https://HOST[:PORT] URL"),
    (f"https://admin:{TOKEN}@10.0.0.1:6443", "edge", "carries user information (not shown)"),
])
def test_context_and_server_problems(tmp_path, server, current, says):
    path = write(str(tmp_path), "kc.yaml", kubeconfig(server, current=current))
    with pytest.raises(UsageError) as info:
        load_kubeconfig(path)
    assert says in str(info.value) and "\n" not in str(info.value)
    assert no_secret_in(str(info.value)) == {}


def test_context_naming_a_missing_cluster(tmp_path):
    text = kubeconfig("https://10.0.0.1:6443").replace("cluster: edge-cluster", "cluster: nowhere")
    with pytest.raises(UsageError, match="context 'edge' names cluster 'nowhere', which is not among its clusters"):
        load_kubeconfig(write(str(tmp_path), "kc.yaml", text))


def test_cluster_without_server(tmp_path):
    text = kubeconfig("https://10.0.0.1:6443").replace("    server: https://10.0.0.1:6443\n", "")
    with pytest.raises(UsageError, match="cluster 'edge-cluster' has no server"):
        load_kubeconfig(write(str(tmp_path), "kc.yaml", text))


@pytest.mark.parametrize("ca_data, says", [
    ("not base64 at all!", "certificate-authority-data is not valid base64"),
    (base64.b64encode(b"just some bytes").decode(), "certificate-authority-data does not hold a PEM certificate"),
    (base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").decode(),
     "does not hold a usable PEM CA certificate"),
])
def test_bad_ca_data(tmp_path, ca_data, says):
    with pytest.raises(UsageError, match=says):
        load_kubeconfig(write(str(tmp_path), "kc.yaml", kubeconfig("https://10.0.0.1:6443", ca_data=ca_data)))


def test_missing_or_bad_ca_file(tmp_path):
    path = write(str(tmp_path), "kc.yaml", kubeconfig("https://10.0.0.1:6443", ca_file="missing.crt"))
    with pytest.raises(UsageError, match=r"certificate-authority .*missing\.crt: cannot read it \(No such file"):
        load_kubeconfig(path)
    write(str(tmp_path), "missing.crt", "not a certificate")
    with pytest.raises(UsageError, match="does not hold a PEM certificate"):
        load_kubeconfig(path)


def test_unreadable_kubeconfig(tmp_path):
    with pytest.raises(UsageError, match=r"kubeconfig .*nope\.yaml: cannot read it \(No such file or directory\)"):
        load_kubeconfig(str(tmp_path / "nope.yaml"))


def test_secrets_never_reach_results_or_errors(tmp_path, ca):
    """Tokens, client keys, passwords and exec plugins are in the file; none gets out."""
    good = write(str(tmp_path), "good.yaml", kubeconfig("https://10.0.0.1:6443", ca_data=b64(ca)))
    cluster = load_kubeconfig(good)
    assert no_secret_in(everything(cluster), cluster.ca_pem) == {}
    # duplicate keys: the parser's own message would quote both values
    dup = write(str(tmp_path), "dup.yaml",
                kubeconfig("https://10.0.0.1:6443") + f"x:\n  token: {TOKEN}\n  token: {TOKEN}-2\n")
    with pytest.raises(UsageError) as info:
        load_kubeconfig(dup)
    assert "duplicate key" in str(info.value) and no_secret_in(str(info.value)) == {}
    # a syntax error on the token's own line: the parser's snippet would show the line
    broken = write(str(tmp_path), "broken.yaml", kubeconfig("https://10.0.0.1:6443").replace(
        f"token: {TOKEN}", f"token: {TOKEN}: {TOKEN}"))
    with pytest.raises(UsageError) as info:
        load_kubeconfig(broken)
    assert "YAML error at line" in str(info.value) and no_secret_in(str(info.value)) == {}


def test_parse_kubeconfig_is_pure_and_keeps_no_users():
    document = {"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": TOKEN}}]}
    cluster = parse_kubeconfig(document, path="/nonexistent/kc")
    assert cluster.apiserver == HostPort("10.0.0.1", 6443) and cluster.ca_origin == "none"
    assert no_secret_in(everything(cluster)) == {}


def test_ca_file_for_inline_data_is_private_and_removed(tmp_path, ca):
    pem = open(ca, "rb").read()
    with ca_file_for(None, pem) as path:
        assert path is not None and open(path, "rb").read() == pem
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
    with pytest.raises(RuntimeError):
        with ca_file_for(None, pem) as path:
            raise RuntimeError("the run failed")
    assert not os.path.exists(os.path.dirname(path))
    with ca_file_for(ca, None) as path:
        assert path == ca  # a referenced file is used in place
    with ca_file_for(None, None) as path:
        assert path is None


def test_loading_does_not_import_yaml_until_needed():
    code = ("import sys, edgecheck.cluster.kubeconfig, edgecheck.plan, edgecheck.cli\n"
            "print([m for m in sys.modules if m.startswith('ruamel')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
