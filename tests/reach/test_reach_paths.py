"""`listen` in the node namespace, `reach` in the far one, a router between: every path case.

Faults are real iptables rules in the router (the far side's forward path) or in the node's
INPUT chain; NAT is MASQUERADE / DNAT in the router.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Dict, Iterator, List, Sequence, Tuple

import pytest

from edgecheck.reach import protocol as wire
from edgecheck.reach.listener import PortSpec
from edgecheck.reach.probeloop import Outcome, ProbeResult
from edgecheck.reach.prober import ReachTarget, reach_many
from edgecheck.reach.protocol import Endpoint
from tests.reach.conftest import TOKEN
from tests.reach.topo import (FAR4, FAR6, NODE4, NODE6, PLAN_PORTS, ROUTER_FAR4, ROUTER_NODE4, BackgroundListener,
                              ReachLab)
from tests.reach.verdicts import reach_evidence, remediation, suggest_verdict

TIMEOUT = 1.5
TCP_PORTS = "10250,10255,9100,9445"

Results = Dict[Tuple[int, str], ProbeResult]


def probe(lab: ReachLab, address: str, token: str = TOKEN, specs: Sequence[PortSpec] = PLAN_PORTS,
          timeout: float = TIMEOUT) -> Results:
    targets = [ReachTarget(address, s.port, s.protocol, "token", node="node") for s in specs]
    results = lab.far.run(reach_many, targets, token, timeout)
    for r in results:
        reach_evidence(r, key_fingerprint="0123abcd")  # validates against the report schema
    return {(r.port, r.protocol): r for r in results}


@pytest.fixture
def listening(reach_lab: ReachLab) -> Iterator[BackgroundListener]:
    bl = BackgroundListener(reach_lab.node, PLAN_PORTS, TOKEN)
    try:
        yield bl
    finally:
        if bl.thread.is_alive():
            bl.stop()
    assert ":10250" not in reach_lab.listening(reach_lab.node), "the listener left a port bound"


def _tcp(results: Results) -> List[ProbeResult]:
    return [r for (_p, proto), r in results.items() if proto == "tcp"]


def test_all_ports_reached_over_ipv4(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    results = probe(reach_lab, NODE4)
    summary = listening.stop()
    for (port, proto), r in results.items():
        assert r.outcome is Outcome.OK, (port, proto, r.detail)
        assert r.seen_source is not None and r.seen_source.address == FAR4
        assert r.local is not None and r.seen_source.port == r.local.port
        assert r.seen_destination == Endpoint(NODE4, port)
        assert r.nat == "none" and r.destination_rewritten == "none"
        assert abs(r.clock_offset_s or 0) < 1
        verdict = suggest_verdict(r)
        assert (verdict.status, verdict.reason) == ("pass", "ok")
        assert "NAT" not in verdict.message
    assert results[(8472, "udp")].sends >= 1
    for port in summary.ports:
        assert port.state == "bound" and "ipv4" in port.families
        assert port.reached and port.reached_from == [FAR4], port
    valid = [e for e in listening.events if e.kind == wire.Verdict.VALID]
    assert {(e.port, e.protocol) for e in valid} == {(s.port, s.protocol) for s in PLAN_PORTS}
    assert all(e.source.address == FAR4 and e.answered for e in valid)


def test_all_ports_reached_over_ipv6(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    assert all(b.families == ("ipv4", "ipv6") for b in listening.bindings), listening.bindings
    results = probe(reach_lab, NODE6)
    summary = listening.stop()
    for r in results.values():
        assert r.outcome is Outcome.OK, (r.port, r.protocol, r.detail)
        assert r.seen_source.address == FAR6 and r.seen_destination == Endpoint(NODE6, r.port)
        assert r.nat == "none"
    assert all(p.reached_from == [FAR6] for p in summary.ports)


# --- blocks on the path and on the node -----------------------------------------------------------

def _block(lab: ReachLab, where: str, target: List[str]) -> Tuple[object, List[List[str]]]:
    ns, chain = (lab.router, "FORWARD") if where == "path" else (lab.node, "INPUT")
    rules = [[chain, "-p", "tcp", "-m", "multiport", "--dports", TCP_PORTS, *target],
             [chain, "-p", "udp", "--dport", "8472", *target]]
    return ns, rules


@pytest.mark.parametrize("where", ["path", "node"])
def test_drop_is_timeout_and_no_response(reach_lab: ReachLab, listening: BackgroundListener, where: str) -> None:
    ns, rules = _block(reach_lab, where, ["-j", "DROP"])
    started = time.monotonic()
    with reach_lab.rules(ns, *rules):
        results = probe(reach_lab, NODE4)
    took = time.monotonic() - started
    summary = listening.stop()
    assert took < TIMEOUT + 1.0, took  # all ports at once, not one after another
    for r in _tcp(results):
        assert r.outcome is Outcome.TIMEOUT, r.detail
        assert (suggest_verdict(r).status, suggest_verdict(r).reason) == ("fail", "timeout")
    udp = results[(8472, "udp")]
    assert udp.outcome is Outcome.NO_RESPONSE and udp.sends >= 1
    # No TCP port proved the listener: a silent UDP port cannot be confirmed (SPEC 7.3).
    assert (suggest_verdict(udp).status, suggest_verdict(udp).reason) == ("warn", "no-response")
    assert not any(p.reached for p in summary.ports)
    assert not [e for e in listening.events if e.kind == wire.Verdict.VALID]


def test_udp_dropped_alone_fails_once_the_listener_is_proven(reach_lab: ReachLab,
                                                            listening: BackgroundListener) -> None:
    with reach_lab.rules(reach_lab.router, ["FORWARD", "-p", "udp", "--dport", "8472", "-j", "DROP"]):
        results = probe(reach_lab, NODE4)
    proven = any(r.outcome is Outcome.OK for r in _tcp(results))
    udp = results[(8472, "udp")]
    assert proven and udp.outcome is Outcome.NO_RESPONSE
    v = suggest_verdict(udp, listener_proven_on_node=proven)
    assert (v.status, v.reason) == ("fail", "no-response")


@pytest.mark.parametrize("where, sender", [("path", ROUTER_FAR4), ("node", NODE4)])
def test_reject_names_who_rejected(reach_lab: ReachLab, listening: BackgroundListener, where: str,
                                   sender: str) -> None:
    ns, rules = _block(reach_lab, where, ["-j", "REJECT"])  # default: ICMP port unreachable
    with reach_lab.rules(ns, *rules):
        results = probe(reach_lab, NODE4)
    summary = listening.stop()
    for r in results.values():
        assert r.outcome is Outcome.REFUSED, (r.port, r.protocol, r.detail)
        assert r.icmp is not None and r.icmp.port_unreachable and r.icmp.sender == sender, r.icmp
        ev = reach_evidence(r)
        assert ev["icmp"]["from"] == sender and ev["icmp"]["from_target"] is (where == "node")
        assert r.ms < TIMEOUT * 1000  # an active refusal, not a wait
        text = remediation(r, mode="public", node="node")
        if where == "path":
            assert "on the path (not the node)" in r.detail
            assert f"came from {sender}" in text
        else:
            assert "the node itself" in r.detail
            assert "REJECT rule in its packet filter" in text or "Nothing listens on UDP 8472" in text
    assert "REJECT rule" in results[(10250, "tcp")].detail if where == "node" else True
    assert not any(p.reached for p in summary.ports)


def test_admin_prohibited_on_the_path_is_unreachable(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    ns, rules = _block(reach_lab, "path", ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"])
    with reach_lab.rules(ns, *rules):
        results = probe(reach_lab, NODE4)
    for r in results.values():
        assert r.outcome is Outcome.UNREACHABLE, r.detail
        assert r.icmp.description == "communication administratively prohibited"
        assert r.icmp.sender == ROUTER_FAR4
        v = suggest_verdict(r)
        assert (v.status, v.reason) == ("fail", "unreachable")


def test_tcp_reset_from_a_firewall_reads_as_refused_without_icmp(reach_lab: ReachLab,
                                                                 listening: BackgroundListener) -> None:
    with reach_lab.rules(reach_lab.node, ["INPUT", "-p", "tcp", "--dport", "10250", "-j", "REJECT",
                                          "--reject-with", "tcp-reset"]):
        results = probe(reach_lab, NODE4, specs=[PortSpec(10250, "tcp")])
    r = results[(10250, "tcp")]
    assert r.outcome is Outcome.REFUSED and r.icmp is None
    assert "TCP reset" in r.detail


def test_this_hosts_own_filter_is_named(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    # A REJECT in our own OUTPUT chain answers with ICMP from our own address; a DROP makes UDP's
    # send fail with EPERM. (A TCP SYN dropped in OUTPUT only times out: finding that rule is the
    # ruleset evaluation's job, SPEC 7.2.)
    with reach_lab.rules(reach_lab.far, ["OUTPUT", "-d", NODE4, "-p", "tcp", "-j", "REJECT"],
                         ["OUTPUT", "-d", NODE4, "-p", "udp", "-j", "DROP"]):
        results = probe(reach_lab, NODE4)
    for r in results.values():
        assert r.blocked_locally, (r.port, r.outcome, r.detail)
        assert "this host's own packet filter" in r.detail
        v = suggest_verdict(r)
        assert v.reason == "host-firewall" and "this host's own packet filter" in v.message
        assert "OUTPUT chain" in remediation(r, mode="public", node="node")
    assert results[(10250, "tcp")].icmp.sender == FAR4
    assert reach_evidence(results[(10250, "tcp")])["icmp"]["from_self"] is True
    assert results[(8472, "udp")].errno == 1  # EPERM


# --- who answers ------------------------------------------------------------------------------

def test_wrong_token_gets_no_answer_and_is_logged(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    results = probe(reach_lab, NODE4, token="not-the-right-token-at-all")
    summary = listening.stop()
    for r in _tcp(results):
        assert r.outcome is Outcome.UNPROVEN, r.detail
        assert "without a proof" in r.detail and "another token" in r.detail
        assert (suggest_verdict(r).status, suggest_verdict(r).reason) == ("fail", "unproven")
    udp = results[(8472, "udp")]
    assert udp.outcome is Outcome.NO_RESPONSE and udp.sends >= 1
    for port in summary.ports:
        assert not port.reached
        assert port.counts.get(wire.Verdict.BAD_TOKEN, 0) >= 1
        assert [s.address for s in port.sources] == [FAR4]
    bad = [e for e in listening.events if e.kind == wire.Verdict.BAD_TOKEN]
    assert bad and not any(e.answered for e in listening.events)


def test_nothing_listening(reach_lab: ReachLab) -> None:
    results = probe(reach_lab, NODE4)
    for r in _tcp(results):
        assert r.outcome is Outcome.REFUSED and r.icmp is None, r.detail
        assert "nothing listens" in r.detail
        assert "start `edgecheck listen`" in remediation(r, mode="dedicated", node="node")
    udp = results[(8472, "udp")]
    assert udp.outcome is Outcome.REFUSED and udp.icmp is not None and udp.icmp.sender == NODE4


def test_nat_on_the_path_is_detected(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    with reach_lab.rules(reach_lab.router, ["-t", "nat", "POSTROUTING", "-o", reach_lab.router_node_if,
                                            "-j", "MASQUERADE"]):
        results = probe(reach_lab, NODE4)
    summary = listening.stop()
    for r in results.values():
        assert r.outcome is Outcome.OK, r.detail
        assert r.local.address == FAR4 and r.seen_source.address == ROUTER_NODE4
        assert r.nat == "address"
        v = suggest_verdict(r)
        assert v.status == "pass" and "NATed" in v.message and ROUTER_NODE4 in v.message
        assert reach_evidence(r)["nat"] == "address"
    assert all(p.reached_from == [ROUTER_NODE4] for p in summary.ports)


def test_port_forwarding_is_visible_in_the_destination(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    # The far side aims at the router's 20250; the router forwards to the node's 10250.
    with reach_lab.rules(reach_lab.router, ["-t", "nat", "PREROUTING", "-d", ROUTER_FAR4, "-p", "tcp", "--dport",
                                            "20250", "-j", "DNAT", "--to-destination", f"{NODE4}:10250"]):
        results = probe(reach_lab, ROUTER_FAR4, specs=[PortSpec(20250, "tcp")])
    summary = listening.stop()
    r = results[(20250, "tcp")]
    assert r.outcome is Outcome.OK, r.detail
    assert r.seen_destination == Endpoint(NODE4, 10250) and r.destination_rewritten == "address"
    kubelet = next(p for p in summary.ports if p.spec.port == 10250)
    assert kubelet.reached
    assert any("port forwarding" in e.detail for e in listening.events if e.port == 10250)


class _Impostor:
    """What a middlebox can do without the token: complete handshakes, echo, or keep quiet.

    Short socket timeouts and joined threads: a socket closed while another thread is blocked
    in recv on it stays bound until that call returns, and would still hold the port next test.
    """

    def __init__(self) -> None:
        self.tcp_echo = socket.create_server((NODE4, 10250))
        self.tcp_silent = socket.create_server((NODE4, 9100))
        self.udp_echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp_echo.bind((NODE4, 8472))
        for s in (self.tcp_echo, self.tcp_silent, self.udp_echo):
            s.settimeout(0.1)
        self.held: List[socket.socket] = []
        self.stopped = False
        self.threads = [threading.Thread(target=fn, daemon=True) for fn in (self._echo_tcp, self._hold_tcp,
                                                                             self._echo_udp)]
        for t in self.threads:
            t.start()

    def _loop(self, step) -> None:
        while not self.stopped:
            try:
                step()
            except socket.timeout:
                continue
            except OSError:
                return

    def _echo_tcp(self) -> None:
        def step() -> None:
            conn, _ = self.tcp_echo.accept()
            with conn:
                conn.settimeout(1.0)
                conn.sendall(conn.recv(4096))
        self._loop(step)

    def _hold_tcp(self) -> None:
        self._loop(lambda: self.held.append(self.tcp_silent.accept()[0]))

    def _echo_udp(self) -> None:
        def step() -> None:
            data, peer = self.udp_echo.recvfrom(4096)
            self.udp_echo.sendto(data, peer)
        self._loop(step)

    def close(self) -> None:
        self.stopped = True
        for t in self.threads:
            t.join(5)
        for s in (self.tcp_echo, self.tcp_silent, self.udp_echo, *self.held):
            s.close()


def test_a_middlebox_without_the_token_cannot_pass(reach_lab: ReachLab) -> None:
    impostor = reach_lab.node.run(_Impostor)
    try:
        results = probe(reach_lab, NODE4, specs=[PortSpec(10250, "tcp"), PortSpec(9100, "tcp"),
                                                 PortSpec(8472, "udp")])
    finally:
        impostor.close()
    echo, silent, udp = results[(10250, "tcp")], results[(9100, "tcp")], results[(8472, "udp")]
    assert echo.outcome is Outcome.UNPROVEN and "without a valid proof" in echo.detail, echo.detail
    assert silent.outcome is Outcome.UNPROVEN and "no proof within" in silent.detail, silent.detail
    assert udp.outcome is Outcome.UNPROVEN and "without a valid proof" in udp.detail, udp.detail
    for r in results.values():
        assert not r.answered and suggest_verdict(r).status == "fail"


def test_clock_skew_is_named_not_timed_out(reach_lab: ReachLab) -> None:
    bl = BackgroundListener(reach_lab.node, PLAN_PORTS, TOKEN, wall_clock=lambda: time.time() + 1000)
    try:
        assert all(b.state == "bound" for b in bl.bindings), bl.bindings
        results = probe(reach_lab, NODE4)
    finally:
        summary = bl.stop()
    for r in results.values():
        assert r.outcome is Outcome.CLOCK_SKEW, r.detail
        assert 990 < (r.clock_offset_s or 0) < 1010
        v = suggest_verdict(r)
        assert (v.status, v.reason) == ("warn", "clock-offset")
    assert not any(p.reached for p in summary.ports)
    assert all(p.counts.get(wire.Verdict.STALE) for p in summary.ports)


def test_a_replayed_probe_gets_no_second_answer(reach_lab: ReachLab, listening: BackgroundListener) -> None:
    key = wire.derive_key(TOKEN)
    datagram = wire.build_probe(key, 8472, "udp", int(time.time() * 1000)).wire

    def send_twice() -> List[bool]:
        answers = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((NODE4, 8472))
            s.settimeout(1.0)
            for _ in range(2):
                s.send(datagram)
                try:
                    answers.append(len(s.recv(4096)) == wire.REPLY_SIZE)
                except socket.timeout:
                    answers.append(False)
        return answers

    assert reach_lab.far.run(send_twice) == [True, False]
    summary = listening.stop()
    flannel = next(p for p in summary.ports if p.spec.port == 8472)
    assert flannel.counts == {wire.Verdict.VALID: 1, wire.Verdict.REPLAY: 1}
