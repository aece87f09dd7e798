"""The listener as a door opened on purpose: only free plan ports, bounded life, signals, no
privileges needed above 1024, and garbage, truncated messages and floods as logged noise."""

from __future__ import annotations

import json
import os
import pwd
import random
import signal
import socket
import threading
import time
import traceback
from typing import List

import pytest

from edgecheck.reach import protocol as wire
from edgecheck.reach.listener import MAX_CONNECTIONS, BindState, Listener, PortSpec
from edgecheck.reach.probeloop import Outcome
from edgecheck.reach.prober import ReachTarget, reach_many
from tests.probes.netns import Netns
from tests.reach.cli import ListenProcess
from tests.reach.conftest import TOKEN
from tests.reach.topo import FAR4, NODE4, PLAN_PORTS, BackgroundListener, ReachLab

RSS_GOAL_KIB = 40 * 1024
IDLE_CONNECTIONS = MAX_CONNECTIONS + 44


def _reach(lab: ReachLab, specs, token: str = TOKEN, timeout: float = 2.0):
    return lab.far.run(reach_many, [ReachTarget(NODE4, s.port, s.protocol) for s in specs], token, timeout)


def test_held_ports_are_reported_and_left_alone(reach_lab: ReachLab) -> None:
    def hold() -> List[socket.socket]:
        tcp = socket.create_server(("0.0.0.0", 10250))  # IPv4 only: our IPv6 bind would succeed
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # dual-stack UDP, like a VXLAN socket
        udp.bind(("::", 8472))
        return [tcp, udp]

    holders = reach_lab.node.run(hold)
    try:
        bl = BackgroundListener(reach_lab.node, PLAN_PORTS, TOKEN)
        states = {(b.spec.port, b.spec.protocol): b for b in bl.bindings}
        held_tcp, held_udp = states[(10250, "tcp")], states[(8472, "udp")]
        # While it serves: nothing of ours on the held ports, in either family.
        ss = reach_lab.listening(reach_lab.node)
        summary = bl.stop()
        after = reach_lab.listening(reach_lab.node)
    finally:
        for s in holders:
            s.close()
    assert held_tcp.state == BindState.HELD and "already in use" in held_tcp.detail and held_tcp.families == ()
    assert held_udp.state == BindState.HELD and held_udp.families == ()
    assert all(b.state == BindState.BOUND for k, b in states.items() if k not in ((10250, "tcp"), (8472, "udp")))
    assert ss.count(":10250 ") == 1 and "[::]:10250" not in ss, ss  # only the holder's socket
    assert ss.count(":8472 ") == 1, ss
    assert ":10250 " in after and ":8472 " in after  # the holders were never disturbed
    assert ":9100 " not in after and ":10255 " not in after
    assert [p.state for p in summary.ports if p.spec.port in (10250, 8472)] == ["held", "held"]


def test_duration_bounds_the_session_and_nothing_stays_bound(reach_lab: ReachLab) -> None:
    def run() -> tuple:
        with Listener(PLAN_PORTS, TOKEN) as listener:
            bound = [b.state for b in listener.bindings]
            t0 = time.monotonic()
            summary = listener.serve(1.0)
            return bound, time.monotonic() - t0, summary, listener.open_sockets

    bound, took, summary, left = reach_lab.node.run(run)
    assert bound == ["bound"] * len(PLAN_PORTS)
    assert 0.95 <= took < 2.0, took
    assert summary.stop_reason == "duration" and left == 0
    ss = reach_lab.listening(reach_lab.node)
    assert not any(f":{s.port} " in ss for s in PLAN_PORTS), ss


def test_stop_is_idempotent_and_a_broken_event_sink_costs_only_log_lines(reach_lab: ReachLab) -> None:
    def sink(event) -> None:
        raise RuntimeError("broken sink")

    bl = BackgroundListener(reach_lab.node, PLAN_PORTS[:1], TOKEN, on_event=sink)
    results = _reach(reach_lab, PLAN_PORTS[:1])
    bl.listener.stop("first")
    summary = bl.stop("second")
    assert results[0].outcome is Outcome.OK
    assert summary.stop_reason == "first" and summary.ports[0].reached
    assert bl.listener.callback_errors >= 1


def test_no_ipv6_on_the_host_means_ipv4_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespace)")
    ns = Netns("ecr-")
    try:
        ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
        ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.lo.disable_ipv6=1")

        def run():
            with Listener(PLAN_PORTS[:2], TOKEN) as listener:
                return [b.families for b in listener.bindings]

        assert ns.run(run) == [("ipv4",), ("ipv4",)]
    finally:
        ns.close()


# --- a real process: signals, privileges, floods ------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_session_with_a_summary(reach_lab: ReachLab, sig: int) -> None:
    lp = ListenProcess(reach_lab.node, address=NODE4)
    assert TOKEN in "\n".join(lp.lines)
    assert lp.command == f"edgecheck reach --region cn-hangzhou --token {TOKEN} {NODE4}"
    results = _reach(reach_lab, PLAN_PORTS)
    assert [r.outcome for r in results] == [Outcome.OK] * len(PLAN_PORTS), [r.detail for r in results]
    t0 = time.monotonic()
    doc = lp.finish(sig)
    assert time.monotonic() - t0 < 3.0 and lp.returncode == 0  # every opened port was reached
    assert doc["stop_reason"] == signal.Signals(sig).name
    assert doc["summary"]["reached"] == 5 and doc["token_fingerprint"] == wire.key_fingerprint(wire.derive_key(TOKEN))
    assert TOKEN not in lp.stdout  # the token itself is never written down
    assert [p["sources"][0]["address"] for p in doc["ports"]] == [FAR4] * 5
    assert any("valid token, answered" in line and f"from {FAR4}:" in line for line in lp.lines)
    ss = reach_lab.listening(reach_lab.node)
    assert ":10250 " not in ss and ":8472 " not in ss, ss


def _serve_as_nobody(ns_name: str, specs: List[PortSpec], duration: float) -> dict:
    """Fork; the child enters the namespace, drops to nobody (no capabilities), binds and serves."""
    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        payload: dict
        try:
            Netns.enter(type("N", (), {"name": ns_name})())  # setns on this (only) thread
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            with Listener(specs, TOKEN) as listener:
                states = {f"{b.spec}": [b.state, b.detail] for b in listener.bindings}
                summary = listener.serve(duration)
            payload = {"uid": os.getuid(), "states": states,
                       "reached": {f"{p.spec}": p.reached for p in summary.ports}}
        except BaseException:
            payload = {"crash": traceback.format_exc()}
        with os.fdopen(w, "w") as fh:
            json.dump(payload, fh)
        os._exit(0)
    os.close(w)
    box: dict = {}

    def collect() -> None:
        with os.fdopen(r) as fh:
            box["out"] = json.loads(fh.read() or "{}")
        os.waitpid(pid, 0)

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    box["thread"] = t
    return box


def test_unprivileged_above_1024_denied_below(reach_lab: ReachLab) -> None:
    specs = [PortSpec(10250, "tcp"), PortSpec(8472, "udp"), PortSpec(1000, "tcp")]
    box = _serve_as_nobody(reach_lab.node.name, specs, duration=3.0)
    time.sleep(0.5)  # let the child bind (polling ss would race the same way)
    deadline = time.monotonic() + 5
    while ":10250 " not in reach_lab.listening(reach_lab.node) and time.monotonic() < deadline:
        time.sleep(0.05)
    results = _reach(reach_lab, specs[:2])
    box["thread"].join(10)
    out = box["out"]
    assert "crash" not in out, out.get("crash")
    assert out["uid"] == pwd.getpwnam("nobody").pw_uid
    assert out["states"]["10250/tcp"][0] == "bound" and out["states"]["8472/udp"][0] == "bound"
    assert out["states"]["1000/tcp"][0] == "denied" and "CAP_NET_BIND_SERVICE" in out["states"]["1000/tcp"][1]
    assert [r.outcome for r in results] == [Outcome.OK, Outcome.OK]
    assert out["reached"] == {"10250/tcp": True, "8472/udp": True, "1000/tcp": False}


def _flood(address: str, seconds: float) -> dict:
    """Garbage, truncated, oversized, wrong-token and flooding input from the far side."""
    key, other = wire.derive_key(TOKEN), wire.derive_key("some-other-token-000")
    now = int(time.time() * 1000)
    good_udp = wire.build_probe(key, 8472, "udp", now).wire
    good_tcp = wire.build_probe(key, 9100, "tcp", now).wire
    rnd = random.Random(13)
    datagrams = [b"", b"\x00", rnd.randbytes(1400), good_udp[:60], good_udp + b"tail" * 300,
                 wire.build_probe(other, 8472, "udp", now).wire, b"GET / HTTP/1.1\r\n\r\n", rnd.randbytes(128),
                 wire.MAGIC + b"\x07" + bytes(123), wire.build_probe(key, 8472, "tcp", now).wire]
    sent = 0
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    end = time.monotonic() + seconds
    while time.monotonic() < end and sent < 40000:
        try:
            udp.sendto(datagrams[sent % len(datagrams)], (address, 8472))
            sent += 1
        except (BlockingIOError, ConnectionRefusedError):
            time.sleep(0.001)
    udp.close()
    idle: List[socket.socket] = []
    for i in range(IDLE_CONNECTIONS):  # slow readers holding connections, a partial header each
        s = socket.create_connection((address, 10250), timeout=2)
        s.send(wire.MAGIC[:3])
        idle.append(s)
    wrong_tcp = wire.build_probe(other, 9100, "tcp", now).wire
    kinds = {"wrong-token-and-tail": 0, "truncated": 0, "connect-only": 0, "garbage": 0, "replayed": 0}
    for i in range(250):
        try:
            with socket.create_connection((address, 9100), timeout=2) as s:
                kind = tuple(kinds)[i % len(kinds)]
                if kind == "wrong-token-and-tail":
                    s.sendall(wrong_tcp + rnd.randbytes(8192))
                elif kind == "replayed":  # the same authentic probe, again and again
                    s.sendall(good_tcp)
                elif kind == "truncated":
                    s.sendall(good_tcp[:64])
                elif kind == "garbage":
                    s.sendall(rnd.randbytes(300))
                kinds[kind] += 1
        except OSError:
            pass
    return {"datagrams": sent, "idle": idle, "tcp": kinds}


def test_garbage_truncation_and_floods_are_noise(reach_lab: ReachLab) -> None:
    lp = ListenProcess(reach_lab.node, address=NODE4)
    banner_lines = len(lp.lines)
    flood = reach_lab.far.run(_flood, NODE4, 3.0)
    try:
        assert lp.proc.poll() is None, "the listener died:\n" + "\n".join(lp.lines[-20:])
        # The idle connections are still open: a real prober must still get through.
        results = _reach(reach_lab, [PortSpec(10250, "tcp"), PortSpec(9100, "tcp"), PortSpec(8472, "udp")])
        assert [r.outcome for r in results] == [Outcome.OK] * 3, [r.detail for r in results]
        peak = lp.peak_rss_kib()
    finally:
        for s in flood["idle"]:
            s.close()
    doc = lp.finish(signal.SIGTERM)
    counts = {p["id"]: p["counts"] for p in doc["ports"]}
    udp, kubelet, exporter = counts["listen:8472/udp"], counts["listen:10250/tcp"], counts["listen:9100/tcp"]
    assert flood["datagrams"] > 1000
    for kind in ("truncated", "oversized", "garbage", "invalid-token", "unsupported-version", "wrong-protocol"):
        assert udp.get(kind, 0) > 0, (kind, udp)
    assert udp["valid"] >= 1 and udp.get("replay", 0) == 0
    assert kubelet.get("connection-limit", 0) >= IDLE_CONNECTIONS - MAX_CONNECTIONS, kubelet  # oldest evicted
    assert kubelet["valid"] == 1
    for kind in ("truncated", "connect-only", "garbage", "invalid-token", "replay"):
        assert exporter.get(kind, 0) > 0, (kind, exporter)
    assert exporter["valid"] == 2  # the replayed probe once, then the real prober
    assert doc["errors"] == []
    # Logging stayed bounded while every request was still counted.
    event_lines = len(lp.lines) - banner_lines
    total = sum(sum(c.values()) for c in counts.values())
    assert total > 1000 and event_lines < 200, (total, event_lines)
    assert doc["log_suppressed"] > 0 and any("not shown (log rate limit)" in line for line in lp.lines)
    print(f"flood: {flood['datagrams']} datagrams, {total} requests counted, {event_lines} event lines, peak RSS {peak} KiB")
    assert peak < RSS_GOAL_KIB, f"listener peak RSS {peak} KiB"
