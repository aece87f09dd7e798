"""Both sides through the real CLIs: `edgecheck listen` in the node namespace, `edgecheck reach` in
the far one, a router between them. Every case of issue 13: all ports reached (NODE by name,
through the resolver); a drop and a reject in the far side's forward path and in the node's input
chain; a wrong token; nothing listening; a NAT in between (SNAT in the far namespace). The joined
node with real TLS and HTTP servers is in test_reach_joined.py (it shares their nginx). Both
commands' JSON validates against the shipped schemas.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.probes.servers import DnsServer
from tests.reach.cli import REPO, ListenProcess, ReachRun, clean_env, run_reach
from tests.reach.conftest import TOKEN
from tests.reach.topo import FAR4, NODE4, ROUTER_FAR4, ReachLab

TIMEOUT = 1.5
NODE_NAME = "edge-node-1.lab.test"
TCP_PORTS = "10250,10255,9100,9445"
PORTS = ("10250/tcp", "10255/tcp", "9100/tcp", "9445/tcp", "8472/udp")
SNAT_SOURCE = "10.88.1.9"


@pytest.fixture(scope="module")
def node_name(reach_lab: ReachLab) -> Iterator[str]:
    """NODE as a name: the far side's resolver (its own DNS server) answers it."""
    dns = reach_lab.far.run(DnsServer, "127.0.0.1", 53)
    dns.zone[NODE_NAME] = {"A": [NODE4]}
    etc = Path("/etc/netns") / reach_lab.far.name  # `ip netns exec` mounts this over /etc/resolv.conf
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    try:
        yield NODE_NAME
    finally:
        (etc / "resolv.conf").unlink()
        etc.rmdir()
        dns.close()


@pytest.fixture
def listener(reach_lab: ReachLab) -> Iterator[ListenProcess]:
    lp = ListenProcess(reach_lab.node, address=NODE4)
    try:
        yield lp
    finally:
        if lp.proc.poll() is None:
            lp.proc.send_signal(signal.SIGTERM)
            lp.proc.communicate(timeout=15)
        assert ":10250 " not in reach_lab.listening(reach_lab.node), "listen left a port bound"


def _statuses(run: ReachRun) -> dict:
    return {port: (c["status"], c["reason"]) for port, c in run.by_port().items()}


def _advice(run: ReachRun) -> str:
    assert run.report is not None
    return " ".join(" ".join(f["advice"]) for f in run.report["findings"])


def test_all_ports_reached_by_name_with_the_printed_command(reach_lab: ReachLab, node_name: str,
                                                           listener: ListenProcess) -> None:
    printed = shlex.split(listener.command)
    assert printed == ["edgecheck", "reach", "--region", "cn-hangzhou", "--token", TOKEN, NODE4]
    # The printed command as a user pastes it (only NODE swapped for the node's DNS name).
    argv = ["ip", "netns", "exec", reach_lab.far.name, sys.executable, "-m", "edgecheck", *printed[1:-1], node_name,
            "--timeout", str(TIMEOUT)]
    text = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), env=clean_env(), timeout=60)
    assert text.returncode == 0 and "READY" in text.stdout, text.stdout + text.stderr
    run = run_reach(reach_lab.far, [node_name], timeout=TIMEOUT)
    assert run.returncode == 0, run.stdout
    assert [c["id"] for c in run.report["checks"]] == [f"reach:{NODE_NAME}:{p}" for p in PORTS]
    for c in run.report["checks"]:
        assert (c["kind"], c["status"], c["reason"]) == ("reach", "pass", "ok"), c
        assert "token proven" in c["message"] and FAR4 in c["message"] and "NAT" not in c["message"]
        ev = c["evidence"]
        assert ev["addresses"] == [NODE4] and ev["resolver"]["nameservers"] == ["127.0.0.1"]
        assert ev["seen_source"]["address"] == FAR4 and ev["nat"] == "none" and len(ev["token_fingerprint"]) == 8
    assert run.report["params"]["nodes"] == [NODE_NAME] and TOKEN not in run.stdout
    doc = listener.finish(signal.SIGINT)
    assert listener.returncode == 0 and doc["stop_reason"] == "SIGINT"
    assert [p["id"] for p in doc["ports"]] == [f"listen:{p}" for p in PORTS]
    assert all(p["reached"] and p["sources"][0]["address"] == FAR4 and p["counts"] == {"valid": 2}
               for p in doc["ports"]), doc["ports"]
    assert sum(1 for line in listener.lines if "valid token, answered" in line) == 10  # one line per probe


def _rules(lab: ReachLab, where: str, target: list) -> tuple:
    ns, chain = (lab.router, "FORWARD") if where == "path" else (lab.node, "INPUT")
    return ns, [[chain, "-p", "tcp", "-m", "multiport", "--dports", TCP_PORTS, *target],
                [chain, "-p", "udp", "--dport", "8472", *target]]


@pytest.mark.parametrize("where", ["path", "node"])
def test_a_drop_times_out_and_udp_is_unconfirmed(reach_lab: ReachLab, listener: ListenProcess, where: str) -> None:
    ns, rules = _rules(reach_lab, where, ["-j", "DROP"])
    with reach_lab.rules(ns, *rules):
        run = run_reach(reach_lab.far, [NODE4], timeout=TIMEOUT)
    assert run.returncode == 1
    statuses = _statuses(run)
    assert statuses.pop("8472/udp") == ("warn", "no-response")  # no port proved the listener: cannot tell
    assert set(statuses.values()) == {("fail", "timeout")}
    assert all(c["duration_ms"] >= TIMEOUT * 1000 * 0.9 for c in run.report["checks"])  # really waited
    causes = [f["cause"] for f in run.report["findings"]]
    assert causes == ["timeout:protocol=tcp,route=inbound", "no-response:protocol=udp,route=inbound"]
    assert "dropped without an answer" in _advice(run) and "host CIDR block of the edge node" in _advice(run)
    doc = listener.finish(signal.SIGTERM)
    assert listener.returncode == 1 and doc["summary"]["reached"] == 0


@pytest.mark.parametrize("where, sender", [("path", ROUTER_FAR4), ("node", NODE4)])
def test_a_reject_names_who_rejected(reach_lab: ReachLab, listener: ListenProcess, where: str, sender: str) -> None:
    ns, rules = _rules(reach_lab, where, ["-j", "REJECT"])
    with reach_lab.rules(ns, *rules):
        run = run_reach(reach_lab.far, [NODE4], "--mode", "dedicated", timeout=TIMEOUT)
    assert run.returncode == 1
    assert set(_statuses(run).values()) == {("fail", "refused")}
    for c in run.report["checks"]:
        assert c["evidence"]["icmp"]["from"] == sender and c["evidence"]["icmp"]["from_target"] is (where == "node")
        assert ("on the path (not the node)" if where == "path" else "the node itself") in c["message"]
        assert c["duration_ms"] < TIMEOUT * 1000  # an active refusal, not a wait
    advice = _advice(run)
    if where == "path":
        assert f"The rejection came from {sender}" in advice
    else:
        assert "REJECT rule in its packet filter" in advice
    # Dedicated mode: the dedicated-connection page's device order, sources from the catalog.
    steps = ["data-centre firewall", "core switch and the VBR", "CEN/ECR", "VPC route table", "VPC security group"]
    positions = [advice.index(s) for s in steps]
    assert positions == sorted(positions) and "the VPC CIDR block" in advice


def test_a_wrong_token_is_not_proof(reach_lab: ReachLab, listener: ListenProcess) -> None:
    run = run_reach(reach_lab.far, [NODE4], token="not-the-listeners-token", timeout=TIMEOUT)
    assert run.returncode == 1
    statuses = _statuses(run)
    assert statuses.pop("8472/udp") == ("warn", "no-response")  # the listener says nothing to a wrong token
    assert set(statuses.values()) == {("fail", "unproven")}
    assert "compare the fingerprints" in _advice(run)
    doc = listener.finish(signal.SIGTERM)
    assert all(p["counts"].get("invalid-token", 0) >= 1 and not p["reached"] for p in doc["ports"]), doc["ports"]
    assert any("wrong token, not answered" in line for line in listener.lines)


def test_nothing_listening(reach_lab: ReachLab) -> None:
    run = run_reach(reach_lab.far, [NODE4], timeout=TIMEOUT)
    assert run.returncode == 1
    assert set(_statuses(run).values()) == {("fail", "refused")}
    assert "TCP reset" in run.check(f"reach:{NODE4}:10250/tcp")["message"]
    advice = _advice(run)
    assert "Nothing accepted TCP 10250, TCP 10255, TCP 9100 and TCP 9445" in advice
    assert "start `edgecheck listen`" in advice and "Nothing listens on UDP 8472" in advice


def test_usage_errors_send_nothing(reach_lab: ReachLab) -> None:
    no_token = run_reach(reach_lab.far, [NODE4], token=None)
    assert no_token.returncode == 2 and "--token" in no_token.stderr and no_token.report is None
    bad = run_reach(reach_lab.far, [NODE4], token="short")
    assert bad.returncode == 2 and "at least 12 characters" in bad.stderr
    listen_bad = subprocess.run(["ip", "netns", "exec", reach_lab.node.name, sys.executable, "-m", "edgecheck",
                                 "listen", "--region", "cn-hangzhou", "--token", "bad token!"], capture_output=True,
                                text=True, cwd=str(REPO), env=clean_env(), timeout=60)
    assert listen_bad.returncode == 2 and "--token" in listen_bad.stderr


def test_snat_in_the_far_namespace_is_detected(reach_lab: ReachLab, listener: ListenProcess) -> None:
    far = reach_lab.far
    far.exec("ip", "addr", "add", f"{SNAT_SOURCE}/24", "dev", reach_lab.far_if)
    try:
        with reach_lab.rules(far, ["-t", "nat", "POSTROUTING", "-d", NODE4, "-j", "SNAT", "--to-source", SNAT_SOURCE]):
            run = run_reach(far, [NODE4], timeout=TIMEOUT)
    finally:
        far.exec("ip", "addr", "del", f"{SNAT_SOURCE}/24", "dev", reach_lab.far_if)
    assert run.returncode == 0, run.stdout
    for c in run.report["checks"]:
        assert c["status"] == "pass" and "NATed" in c["message"] and SNAT_SOURCE in c["message"], c["message"]
        assert c["evidence"]["nat"] == "address" and c["evidence"]["seen_source"]["address"] == SNAT_SOURCE
        assert c["evidence"]["local"]["address"] == FAR4
        assert SNAT_SOURCE in c["remediation"] and "allow" in c["remediation"].lower()
    doc = listener.finish(signal.SIGTERM)
    assert all(p["sources"][0]["address"] == SNAT_SOURCE for p in doc["ports"])


def test_listen_leaves_held_ports_alone_and_ends_after_its_duration(reach_lab: ReachLab) -> None:
    """A port already held (on a joined node: node-exporter) is reported and left alone; the
    session ends by itself after --duration, with the text summary, and nothing stays bound."""
    import socket
    import time

    holder = reach_lab.node.run(socket.create_server, (NODE4, 9100))
    try:
        argv = ["ip", "netns", "exec", reach_lab.node.name, sys.executable, "-m", "edgecheck", "listen", "--region",
                "cn-hangzhou", "--duration", "1.5", "--address", NODE4]
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), env=clean_env(), timeout=60)
        took = time.monotonic() - t0
    finally:
        holder.close()
    out = proc.stdout
    assert proc.returncode == 1 and took < 10, (proc.returncode, took, proc.stderr)  # nothing reached it
    token = next(line.split()[1] for line in out.splitlines() if line.startswith("token: "))
    assert f"edgecheck reach --region cn-hangzhou --token {token} {NODE4}" in out  # a fresh token, printed
    assert "9100/tcp   held: already in use" in out and "--phase running" in out
    assert "stopped by duration" in out and "10250/tcp  NOT REACHED" in out and "9100/tcp   HELD" in out
    assert ":10250 " not in reach_lab.listening(reach_lab.node)


def test_running_phase_with_listen_on_the_free_ports(reach_lab: ReachLab, listener: ListenProcess) -> None:
    """On a joined node `listen` holds what the components leave free: with the token,
    `reach --phase running` still proves those ports (the component probe finds the listener,
    then the token proves it), and says that the listener answered in place of the component."""
    run = run_reach(reach_lab.far, [NODE4], "--phase", "running", timeout=TIMEOUT)
    assert run.returncode == 0, run.stdout
    for c in run.report["checks"]:
        assert c["status"] == "pass" and c["evidence"]["method"] == "token", c
    kubelet = run.check(f"reach:{NODE4}:10250/tcp")
    assert "holds the port instead of kubelet" in kubelet["message"]
    doc = listener.finish(signal.SIGTERM)
    assert all(p["reached"] for p in doc["ports"])
    assert any(p["counts"].get("garbage", 0) for p in doc["ports"])  # the component probes, logged as noise
