"""TLS, HTTP and proxy layers against real servers (test CA made with the openssl CLI)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import pytest

from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.model import Reason, Status, Trust
from edgecheck.checks.web import check_http, check_https
from tests.probes.conftest import target
from tests.probes.servers import HttpsServer, make_leaf

GOOD, WRONG_CA, GARBAGE, PROXY = "10.77.0.3", "10.77.0.7", "10.77.0.8", "10.77.0.9"


@pytest.fixture(scope="module")
def web(peer, pki):
    imposter = make_leaf(pki["dir"], pki["other_ca"], "wrongca", ["wrongca.test", WRONG_CA])
    servers = [
        peer.run(HttpsServer, GOOD, 443, pki["leaf"]["cert"], pki["leaf"]["key"]),
        peer.run(HttpsServer, GOOD, 6443, pki["leaf"]["cert"], pki["leaf"]["key"]),
        peer.run(HttpsServer, GOOD, 80, mode="plain"),
        peer.run(HttpsServer, WRONG_CA, 443, imposter["cert"], imposter["key"]),
        peer.run(HttpsServer, WRONG_CA, 6443, imposter["cert"], imposter["key"]),
        peer.run(HttpsServer, GARBAGE, 443, mode="garbage"),
    ]
    yield {"good": servers[0]}
    for s in servers:
        s.close()


@pytest.fixture
def names(zone):
    zone["registry.test"] = {"A": [GOOD]}
    zone["wrongca.test"] = {"A": [WRONG_CA]}
    zone["garbage.test"] = {"A": [GARBAGE]}
    return zone


def test_https_pass_verifies_with_the_given_bundle_and_sends_sni_and_host(ns, web, names, ctx, pki):
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"])
    r = ns.run(check_https, target("https", "registry.test", 443), c)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    tls = r.evidence.to_json()["tls"]
    assert tls["verified"] is True and tls["sni"] == "registry.test" and tls["version"].startswith("TLS")
    assert "CN=test-ca" in tls["peer_certificate"]["issuer"]
    assert r.evidence.to_json()["http"]["status"] == 204
    assert r.evidence.to_json()["trust"]["cafile"] == pki["ca"]["cert"]
    assert b"Host: registry.test\r\n" in web["good"].requests[-1]


def test_system_store_does_not_trust_the_test_ca(ns, web, names, ctx):
    # No --ca-bundle: the system store is used by BOTH layers, and verification is never off.
    r = ns.run(check_https, target("https", "registry.test", 443), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.TLS_VERIFY_FAILED)
    assert r.evidence.to_json()["trust"]["origin"] == "system"


def test_wrong_ca_is_tls_verify_failed_with_peer_certificate(ns, web, names, ctx, pki):
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"])
    r = ns.run(check_https, target("https", "wrongca.test", 443), c)
    assert (r.status, r.reason) == (Status.FAIL, Reason.TLS_VERIFY_FAILED)
    tls = r.evidence.to_json()["tls"]
    assert "unable to get local issuer certificate" in tls["verify_error"]
    assert tls["peer_certificate"]["subject"].startswith("CN=wrongca.test")
    assert "CN=other-ca" in tls["peer_certificate"]["issuer"]
    assert tls["peer_certificate"]["not_after"].endswith("Z")
    assert "other-ca" in r.message and "http" not in r.evidence.to_json()


def test_hostname_mismatch_is_tls_verify_failed(ns, web, names, ctx, pki):
    names["alias.test"] = {"A": [GOOD]}  # served certificate is for registry.test only
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"])
    r = ns.run(check_https, target("https", "alias.test", 443), c)
    assert (r.status, r.reason) == (Status.FAIL, Reason.TLS_VERIFY_FAILED)
    assert "alias.test" in r.evidence.to_json()["tls"]["verify_error"] or "mismatch" in r.evidence.to_json()["tls"]["verify_error"].lower()


def test_not_tls_is_tls_handshake_failed(ns, web, names, ctx, pki):
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"])
    r = ns.run(check_https, target("https", "garbage.test", 443), c)
    assert (r.status, r.reason) == (Status.FAIL, Reason.TLS_HANDSHAKE_FAILED)
    assert r.evidence.to_json()["connect"][0]["ok"] is True


def test_cluster_trust_without_ca_is_reachable_but_says_unverified(ns, web, names, ctx):
    t = target("https", WRONG_CA, 6443, trust=Trust.CLUSTER)
    r = ns.run(check_https, t, ctx)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["tls"]["verified"] is False
    assert "NOT verified" in r.message and "--apiserver-ca" in remediation(r, Scene())
    assert "certificate-authority-data" in remediation(r, Scene())


def test_cluster_trust_with_ca(ns, web, names, ctx, pki):
    c = dataclasses.replace(ctx, apiserver_ca=pki["ca"]["cert"])
    ok = ns.run(check_https, target("https", GOOD, 6443, trust=Trust.CLUSTER), c)
    assert (ok.status, ok.reason) == (Status.PASS, Reason.OK) and ok.evidence.to_json()["tls"]["verified"] is True
    bad = ns.run(check_https, target("https", WRONG_CA, 6443, trust=Trust.CLUSTER), c)
    assert (bad.status, bad.reason) == (Status.FAIL, Reason.TLS_VERIFY_FAILED)


def test_plain_http(ns, web, names, ctx):
    r = ns.run(check_http, target("http", "registry.test", 80), ctx)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["http"]["status"] == 204 and r.evidence.to_json()["route"] == "direct"


def test_https_to_a_closed_port_is_refused(ns, web, names, ctx, pki):
    r = ns.run(check_https, target("https", "registry.test", 8444), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.REFUSED)


# ------------------------------------------------------------------------------------------- proxy
def _tinyproxy_conf(directory: str, port: int, connect_port: int) -> str:
    path = os.path.join(directory, f"tinyproxy-{port}.conf")
    with open(path, "w") as fh:
        fh.write(f"Port {port}\nListen {PROXY}\nTimeout 5\nMaxClients 20\nAllow 10.77.1.0/24\n"
                 f"ConnectPort {connect_port}\nLogLevel Info\nLogFile \"{directory}/tinyproxy-{port}.log\"\n"
                 f"PidFile \"{directory}/tinyproxy-{port}.pid\"\n")
    os.chmod(directory, 0o755)
    return path


def _wait_port(ns, address, port, deadline=5.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if ns.run(_connect_ex, address, port) == 0:  # the socket is created inside the namespace
            return
        time.sleep(0.1)
    raise RuntimeError(f"{address}:{port} never listened")


def _connect_ex(address, port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((address, port))


@pytest.fixture(scope="module")
def proxies(ns, peer, web, tmp_path_factory):
    if not shutil.which("tinyproxy"):
        pytest.fail("tinyproxy is required for the proxy tests (Debian package tinyproxy)")
    d = str(tmp_path_factory.mktemp("proxy"))
    # The proxy resolves target names itself, via /etc/hosts in its namespace (ip netns exec
    # bind-mounts /etc/netns/<name>/hosts): no query ever leaves the test namespaces.
    etc = f"/etc/netns/{peer.name}"
    os.makedirs(etc, exist_ok=True)
    with open(f"{etc}/hosts", "w") as fh:
        fh.write(f"127.0.0.1 localhost\n{GOOD} registry.test\n{WRONG_CA} wrongca.test\n")
    try:
        peer.spawn(["tinyproxy", "-d", "-c", _tinyproxy_conf(d, 8888, 443)])
        peer.spawn(["tinyproxy", "-d", "-c", _tinyproxy_conf(d, 8889, 8443)])
        _wait_port(ns, PROXY, 8888)
        _wait_port(ns, PROXY, 8889)
        yield {"ok": f"http://{PROXY}:8888", "no_connect_443": f"http://{PROXY}:8889"}
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def test_https_through_proxy_verifies_in_the_tunnel_and_hides_credentials(ns, proxies, names, ctx, pki):
    env = {"HTTPS_PROXY": f"http://{PROXY}:1",  # uppercase points nowhere: lowercase must win
           "https_proxy": f"http://user:s3cret@{PROXY}:8888"}
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"], environ=env)
    r = ns.run(check_https, target("https", "registry.test", 443), c)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["route"] == "proxy" and r.evidence.to_json()["proxy"] == f"http://{PROXY}:8888"
    assert "s3cret" not in repr(r.evidence.to_json()) and "s3cret" not in r.message
    assert r.evidence.to_json()["tls"]["verified"] is True and r.evidence.to_json()["http"]["status"] == 204
    assert "connect" not in r.evidence.to_json()  # no direct connection to the endpoint


def test_tls_verify_failure_through_the_proxy_tunnel(ns, proxies, names, ctx, pki):
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"], environ={"https_proxy": proxies["ok"]})
    r = ns.run(check_https, target("https", "wrongca.test", 443), c)
    assert (r.status, r.reason) == (Status.FAIL, Reason.TLS_VERIFY_FAILED)
    assert "CN=other-ca" in r.evidence.to_json()["tls"]["peer_certificate"]["issuer"]


def test_proxy_refusing_connect_is_proxy_error(ns, proxies, names, ctx, pki):
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"], environ={"HTTPS_PROXY": proxies["no_connect_443"]})
    r = ns.run(check_https, target("https", "registry.test", 443), c)
    assert (r.status, r.reason) == (Status.FAIL, Reason.PROXY_ERROR)
    assert "403" in r.message


def test_proxy_not_listening_is_proxy_error(ns, proxies, names, ctx, pki):
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"], environ={"HTTPS_PROXY": f"http://{PROXY}:3128"})
    r = ns.run(check_https, target("https", "registry.test", 443), c)
    assert (r.status, r.reason) == (Status.FAIL, Reason.PROXY_ERROR)
    assert "refused" in r.message


def test_plain_http_through_proxy(ns, proxies, names, ctx):
    c = dataclasses.replace(ctx, environ={"http_proxy": proxies["ok"]})
    r = ns.run(check_http, target("http", "registry.test", 80), c)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["route"] == "proxy"


def test_no_proxy_goes_direct(ns, proxies, names, ctx, pki):
    env = {"HTTPS_PROXY": f"http://{PROXY}:3128", "NO_PROXY": ".test"}
    c = dataclasses.replace(ctx, ca_bundle=pki["ca"]["cert"], environ=env)
    r = ns.run(check_https, target("https", "registry.test", 443), c)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["route"] == "direct"
