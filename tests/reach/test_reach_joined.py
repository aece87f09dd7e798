"""A joined node: no `listen`, the real components answer. nginx in the node namespace plays the
kubelet (TLS on 10250, its read-only plain-HTTP port 10255) and node-exporter (HTTP on 9100,
HTTPS on 9445), with a certificate from a CA `reach` does not have (openssl CLI). The last test
runs the real `edgecheck reach --phase running` CLI against them."""

from __future__ import annotations

import subprocess
import time

import pytest

from edgecheck.reach.probeloop import TLS_NOT_VERIFIED, Outcome
from edgecheck.reach.prober import ReachTarget, http_answers, reach_many, tcp_connect_many, tls_reachable
from tests.reach.cli import run_reach
from tests.reach.verdicts import reach_evidence, suggest_verdict
from tests.reach.topo import NODE4, NODE6, ReachLab

TIMEOUT = 2.0


def test_kubelet_tls_reachable_without_trusting_it(reach_lab: ReachLab, components: None) -> None:
    r = reach_lab.far.run(tls_reachable, NODE4, 10250, TIMEOUT)
    assert r.outcome is Outcome.OK, r.detail
    assert r.tls["version"] in ("TLSv1.2", "TLSv1.3") and r.tls["verified"] is False
    assert r.tls["verification"] == TLS_NOT_VERIFIED and "reachability, not trust" in r.tls["verification"]
    assert "edge-node-kubelet" in str(r.tls["peer_certificate"])
    v = suggest_verdict(r)
    assert (v.status, v.reason) == ("pass", "ok") and "not verified" in v.message
    assert reach_evidence(r)["tls"]["verified"] is False
    r6 = reach_lab.far.run(tls_reachable, NODE6, 10250, TIMEOUT)
    assert r6.outcome is Outcome.OK, r6.detail


def test_node_exporter_http_answers(reach_lab: ReachLab, components: None) -> None:
    r = reach_lab.far.run(http_answers, NODE4, 9100, TIMEOUT)
    assert r.outcome is Outcome.OK and r.http["status"] == 200, r.detail
    s = reach_lab.far.run(http_answers, NODE4, 9445, TIMEOUT, tls=True)
    assert s.outcome is Outcome.OK and s.method == "https" and s.http["status"] == 200, s.detail
    assert s.tls["verified"] is False


def test_wrong_protocol_is_named(reach_lab: ReachLab, components: None) -> None:
    # The kubelet's 10255 is plain HTTP: a TLS hello gets an HTTP error back, and is named as such.
    plain = reach_lab.far.run(tls_reachable, NODE4, 10255, TIMEOUT)
    assert plain.outcome is Outcome.UNPROVEN and "plain HTTP, not TLS" in plain.detail, plain.detail
    assert suggest_verdict(plain).reason == "tls-handshake-failed"
    # Plain HTTP to a TLS port still gets an HTTP answer (400): the server is there and speaks HTTP.
    http_to_tls = reach_lab.far.run(http_answers, NODE4, 10250, TIMEOUT)
    assert http_to_tls.outcome is Outcome.OK and http_to_tls.http["status"] == 400


def test_joined_node_probes_run_together_with_faults(reach_lab: ReachLab, components: None) -> None:
    targets = [ReachTarget(NODE4, 10250, "tcp", "tls", node="edge-1"),
               ReachTarget(NODE4, 10255, "tcp", "http", node="edge-1"),
               ReachTarget(NODE4, 9100, "tcp", "http", node="edge-1"),
               ReachTarget(NODE4, 9445, "tcp", "https", node="edge-1"),
               ReachTarget(NODE4, 8472, "udp", "token", node="edge-1")]
    with reach_lab.rules(reach_lab.router, ["FORWARD", "-p", "tcp", "--dport", "9100", "-j", "DROP"]):
        t0 = time.monotonic()
        results = reach_lab.far.run(reach_many, targets, "some-token-value", TIMEOUT)
        took = time.monotonic() - t0
    got = {t.check_id: r for t, r in zip(targets, results)}
    assert took < TIMEOUT + 1.0
    assert got["reach:edge-1:10250/tcp"].outcome is Outcome.OK
    assert got["reach:edge-1:10255/tcp"].outcome is Outcome.OK
    assert got["reach:edge-1:9100/tcp"].outcome is Outcome.TIMEOUT
    assert got["reach:edge-1:9445/tcp"].outcome is Outcome.OK
    # No listener, and flannel's kernel socket is not there in this lab: ICMP port unreachable.
    assert got["reach:edge-1:8472/udp"].outcome is Outcome.REFUSED


def test_tls_to_a_closed_port_and_to_silence(reach_lab: ReachLab, components: None) -> None:
    closed = reach_lab.far.run(tls_reachable, NODE4, 10256, TIMEOUT)
    assert closed.outcome is Outcome.REFUSED
    with reach_lab.rules(reach_lab.node, ["INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP"]):
        dropped = reach_lab.far.run(tls_reachable, NODE4, 10250, 1.0)
    assert dropped.outcome is Outcome.TIMEOUT and 900 <= dropped.ms < 2000


def test_plain_tcp_connects_many_at_once(reach_lab: ReachLab, components: None) -> None:
    results = reach_lab.far.run(tcp_connect_many, [(NODE4, 10250), (NODE4, 9100), (NODE4, 10256)], TIMEOUT)
    assert [r.outcome for r in results] == [Outcome.OK, Outcome.OK, Outcome.REFUSED]
    assert all(r.connect_ms is not None for r in results[:2])


def test_token_probe_to_a_real_vxlan_device_is_harmless(reach_lab: ReachLab) -> None:
    """On a joined node UDP 8472 is flannel's kernel VXLAN socket: our probe must be dropped there,
    never decapsulated into the overlay, and `reach` says it cannot confirm (no-response)."""
    node = reach_lab.node
    add = subprocess.run(["ip", "-n", node.name, "link", "add", "ecrvx0", "type", "vxlan", "id", "1", "dstport",
                          "8472", "local", NODE4, "dev", reach_lab.node_if], capture_output=True, text=True)
    if add.returncode != 0:
        pytest.skip(f"no VXLAN support in this kernel: {add.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", node.name, "link", "set", "ecrvx0", "up"], check=True)
        r = reach_lab.far.run(reach_many, [ReachTarget(NODE4, 8472, "udp", "token")], "some-token-value", 1.5)[0]
        stats = subprocess.run(["ip", "-n", node.name, "-s", "link", "show", "ecrvx0"], capture_output=True,
                               text=True).stdout.splitlines()
    finally:
        subprocess.run(["ip", "-n", node.name, "link", "del", "ecrvx0"], capture_output=True)
    assert r.outcome is Outcome.NO_RESPONSE and r.sends >= 2, r.detail
    assert suggest_verdict(r).status == "warn"
    rx = stats[stats.index(next(line for line in stats if "RX:" in line)) + 1].split()
    assert rx[1] == "0", stats  # not one packet entered the overlay


def test_a_joined_node_answers_with_its_components(reach_lab: ReachLab, components: None) -> None:
    """--phase running: kubelet's TLS on 10250 and HTTP on 10255, node-exporter's HTTP on 9100/9445
    (real nginx servers); UDP 8472 is flannel's kernel VXLAN socket, which answers nothing."""
    node = reach_lab.node
    vxlan = subprocess.run(["ip", "-n", node.name, "link", "add", "ecrvx1", "type", "vxlan", "id", "1", "dstport",
                            "8472", "local", NODE4, "dev", reach_lab.node_if], capture_output=True, text=True)
    try:
        if vxlan.returncode == 0:
            subprocess.run(["ip", "-n", node.name, "link", "set", "ecrvx1", "up"], check=True)
        run = run_reach(reach_lab.far, [NODE4], "--phase", "running", token=None, timeout=TIMEOUT)
        text = run_reach(reach_lab.far, [NODE4], "--phase", "running", token=None, timeout=TIMEOUT, fmt="text")
    finally:
        subprocess.run(["ip", "-n", node.name, "link", "del", "ecrvx1"], capture_output=True)
    kubelet = run.check(f"reach:{NODE4}:10250/tcp")
    assert (kubelet["status"], kubelet["evidence"]["method"]) == ("pass", "tls")
    assert "reachability, not trust" in kubelet["message"] and kubelet["evidence"]["tls"]["verified"] is False
    for port in ("10255/tcp", "9100/tcp", "9445/tcp"):
        c = run.check(f"reach:{NODE4}:{port}")
        assert (c["status"], c["evidence"]["method"]) == ("pass", "http") and "answered over HTTP" in c["message"]
    flannel = run.check(f"reach:{NODE4}:8472/udp")
    if vxlan.returncode == 0:
        assert (flannel["status"], flannel["reason"]) == ("warn", "no-response") and "unconfirmed" in flannel["message"]
        assert run.returncode == 0 and text.returncode == 0 and "READY" in text.stdout
    else:  # no VXLAN in this kernel: nothing holds 8472 and the node says port unreachable
        assert (flannel["status"], flannel["reason"]) == ("fail", "refused")
    assert f"reach:{NODE4}:10250/tcp" in text.stdout.split("PASSED")[1]  # the same run, for a person
