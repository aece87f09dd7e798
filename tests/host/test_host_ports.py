from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from edgecheck.checks.inbound import check_inbound, decide_inbound
from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.evidence import InboundEvidence, PortHolder
from edgecheck.host import sockets
from edgecheck.model import CheckResult, Evidence, Mode, Phase, Reason, Status
from edgecheck.runcontext import RunContext

from tests.host.hostfixtures import bound_socket, free_port, inbound_target, wait_listening

ME = psutil.Process()


def advice(check: CheckResult, mode: Mode = Mode.PUBLIC, phase: Phase = Phase.JOIN) -> str:
    return remediation(check, Scene(mode, phase))


def decided(expect, protocol, port, holders, owners_visible=True, component="kubelet", mode="public"):
    """A pure decision turned into the CheckResult the check would return, for the advice too."""
    target = inbound_target(port, protocol, expect, component=component, mode=mode)
    status, reason, message = decide_inbound(target, expect, holders, owners_visible)
    evidence = Evidence(InboundEvidence(expect, "psutil", owners_visible, tuple(holders)))
    return CheckResult(target, status, reason, message, evidence=evidence)


def _ipv6_loopback() -> bool:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def _only(result):
    socks = result.evidence.to_json()["sockets"]
    assert len(socks) == 1, socks
    return socks[0]


# --- phase join: the port must be free -------------------------------------------------------


@pytest.mark.parametrize("protocol, host", [("tcp", "127.0.0.1"), ("tcp", "0.0.0.0"), ("udp", "127.0.0.1"), ("udp", "0.0.0.0")])
def test_join_port_held_by_this_process_names_it(protocol, host):
    s, port = bound_socket(protocol, host)
    try:
        r = check_inbound(inbound_target(port, protocol, "free"), RunContext(phase=Phase.JOIN))
    finally:
        s.close()
    assert (r.status, r.reason) == (Status.FAIL, Reason.PORT_IN_USE)
    sock = _only(r)
    assert sock["pid"] == os.getpid()
    assert sock["process"] == ME.name()
    assert sock["user"] == ME.username()
    assert sock["address"] == host and sock["port"] == port
    assert f"pid {os.getpid()}" in r.message and host in r.message
    # The advice names the holder's .service when it runs in one (a CI runner may), else its pid.
    unit = sockets.unit_from_cgroup(open(f"/proc/{os.getpid()}/cgroup").read())
    assert (f"`systemctl disable --now {unit}`" if unit else f"`kill {os.getpid()}`") in advice(r), advice(r)


def test_join_port_held_by_a_subprocess_names_its_pid():
    port = free_port("tcp")
    proc = subprocess.Popen(
        ["socat", "-u", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "/dev/null"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, "tcp")
        r = check_inbound(inbound_target(port, "tcp", "free"), RunContext())
    finally:
        proc.kill()
        proc.wait()
    assert (r.status, r.reason) == (Status.FAIL, Reason.PORT_IN_USE)
    sock = _only(r)
    assert sock["pid"] == proc.pid and sock["process"] == "socat"
    assert "socat" in sock["cmdline"]
    assert f"socat (pid {proc.pid}" in r.message


def test_join_udp_held_by_a_python_subprocess():
    code = "import socket,sys,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1], flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        r = check_inbound(inbound_target(port, "udp", "free"), RunContext())
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert r.reason is Reason.PORT_IN_USE
    assert _only(r)["pid"] == proc.pid


def test_join_free_port_passes_and_tcp_does_not_count_udp():
    s, port = bound_socket("udp", "127.0.0.1")
    try:
        r_tcp = check_inbound(inbound_target(port, "tcp", "free"), RunContext())
    finally:
        s.close()
    assert (r_tcp.status, r_tcp.reason) == (Status.PASS, Reason.OK)
    assert r_tcp.evidence.to_json()["sockets"] == []


def test_join_bound_but_not_listening_tcp_is_free():
    s, port = bound_socket("tcp", "127.0.0.1", listen=False)
    try:
        r = check_inbound(inbound_target(port, "tcp", "free"), RunContext())
    finally:
        s.close()
    assert r.status is Status.PASS


# --- phase running: the port must be listening, reachably -------------------------------------


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_running_listening_on_wildcard_passes_with_the_listener(protocol):
    s, port = bound_socket(protocol, "0.0.0.0")
    try:
        r = check_inbound(inbound_target(port, protocol, "listening"), RunContext(phase=Phase.RUNNING))
    finally:
        s.close()
    assert (r.status, r.reason) == (Status.PASS, Reason.OK)
    assert _only(r)["pid"] == os.getpid()
    assert "is listening" in r.message and f"pid {os.getpid()}" in r.message


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_running_not_listening_fails(protocol):
    port = free_port(protocol)
    r = check_inbound(inbound_target(port, protocol, "listening"), RunContext(phase=Phase.RUNNING))
    assert (r.status, r.reason) == (Status.FAIL, Reason.PORT_NOT_LISTENING)
    assert "kubelet" in advice(r) and "host CIDR block" in advice(r)


def test_running_loopback_only_warns():
    s, port = bound_socket("tcp", "127.0.0.1")
    try:
        r = check_inbound(inbound_target(port, "tcp", "listening"), RunContext(phase=Phase.RUNNING))
    finally:
        s.close()
    assert (r.status, r.reason) == (Status.WARN, Reason.LOOPBACK_ONLY)
    assert _only(r)["loopback"] is True
    assert "address: 0.0.0.0" in advice(r)  # kubelet's own setting


def test_running_ipv6_loopback_only_warns():
    if not _ipv6_loopback():
        # No IPv6 in this namespace (CI fails on skips): the decision itself must still hold.
        h = PortHolder("tcp", "::1", 10250, loopback=True, pid=1, process="kubelet")
        d = decided("listening", "tcp", 10250, [h])
        assert d.reason is Reason.LOOPBACK_ONLY and "[::1]:10250" in d.message
        return
    s, port = bound_socket("tcp", "::1")
    try:
        r = check_inbound(inbound_target(port, "tcp", "listening"), RunContext(phase=Phase.RUNNING))
    finally:
        s.close()
    assert r.reason is Reason.LOOPBACK_ONLY
    assert "[::1]" in r.message


def test_ipv4_mapped_loopback_counts_as_loopback():
    assert sockets.is_loopback("::ffff:127.0.0.1") and sockets.is_loopback("127.0.0.53")
    assert not sockets.is_loopback("::") and not sockets.is_loopback("0.0.0.0") and not sockets.is_loopback("10.0.0.1")


def test_expect_defaults_from_phase_when_target_has_none():
    s, port = bound_socket("tcp", "0.0.0.0")
    try:
        t = inbound_target(port, "tcp", "free")
        t = dataclasses.replace(t, expect=None)
        assert check_inbound(t, RunContext(phase=Phase.JOIN)).reason is Reason.PORT_IN_USE
        assert check_inbound(t, RunContext(phase=Phase.RUNNING)).reason is Reason.OK
    finally:
        s.close()


# --- one socket table per run -----------------------------------------------------------------


def test_socket_table_is_read_once_per_run(monkeypatch):
    reads = []
    real = sockets.read_socket_table
    monkeypatch.setattr(sockets, "read_socket_table", lambda: reads.append(1) or real())
    ctx = RunContext(deadline=time.monotonic() + 30)
    for p in (free_port(), free_port(), free_port()):
        check_inbound(inbound_target(p, "tcp", "free"), ctx)
    assert len(reads) == 1
    # Another run reads afresh, so a socket bound meanwhile is seen.
    s, port = bound_socket("tcp", "127.0.0.1")
    try:
        assert check_inbound(inbound_target(port, "tcp", "free"), RunContext()).status is Status.FAIL
    finally:
        s.close()
    assert len(reads) == 2


# --- unreadable socket table: bind-test fallback ------------------------------------------------


def test_unreadable_socket_table_falls_back_to_a_bind_test(monkeypatch):
    def denied(kind="inet"):
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "net_connections", denied)
    s, port = bound_socket("tcp", "0.0.0.0")
    try:
        r = check_inbound(inbound_target(port, "tcp", "free"), RunContext())
    finally:
        s.close()
    assert (r.status, r.reason) == (Status.FAIL, Reason.PORT_IN_USE)
    assert r.evidence.to_json()["bind_test"] == "in-use" and "holder and its address are unknown" in r.message
    r = check_inbound(inbound_target(free_port(), "tcp", "free"), RunContext())
    assert (r.status, r.evidence.to_json()["bind_test"]) == (Status.PASS, "free")


# --- pure decisions and parsers ------------------------------------------------------------------


def test_leftover_kubelet_is_named_with_its_unit():
    h = PortHolder("tcp", "0.0.0.0", 10250, pid=4242, process="kubelet", user="root", unit="kubelet.service")
    d = decided("free", "tcp", 10250, [h])
    assert (d.status, d.reason) == (Status.FAIL, Reason.PORT_IN_USE)
    assert "kubelet (pid 4242, user root, kubelet.service) on 0.0.0.0:10250" in d.message
    assert "systemctl disable --now kubelet.service" in advice(d)
    assert "earlier installation" in advice(d)


def test_hidden_owner_is_said_honestly():
    h = PortHolder("tcp", "0.0.0.0", 10250, user="root", uid=0)
    d = decided("free", "tcp", 10250, [h], owners_visible=False)
    assert "owned by root" in d.message
    assert "not visible without root (CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE)" in d.message
    assert "ss -ltnp 'sport = :10250'" in advice(d)


def test_kernel_socket_is_not_blamed_on_privileges():
    h = PortHolder("udp", "0.0.0.0", 8472, kernel_socket=True)
    d = decided("listening", "udp", 8472, [h], owners_visible=False, component="flannel", mode="dedicated")
    assert d.status is Status.PASS and "kernel socket" in d.message and "root" not in d.message
    silent = decided("listening", "udp", 8472, [], component="flannel", mode="dedicated")
    assert "the CIDR blocks of the VPC and of the nodes" in advice(silent, Mode.DEDICATED, Phase.RUNNING)


def test_components_come_from_the_catalog():
    from edgecheck.catalog import load_catalog
    from edgecheck.plan import Selection, build_plan

    plan = build_plan(load_catalog(), Selection("cn-hangzhou", mode=Mode.DEDICATED, phase=Phase.RUNNING))
    components = {t.id: t.component.name for t in plan.targets if t.component}
    assert components == {"inbound:10250/tcp": "kubelet", "inbound:10255/tcp": "kubelet",
                          "inbound:9100/tcp": "node-exporter", "inbound:9445/tcp": "node-exporter",
                          "inbound:8472/udp": "flannel"}
    d = decided("listening", "tcp", 9100, [], component=None, mode="dedicated")
    assert "the component that serves this port" in d.message
    assert "Start the component that serves this port" in advice(d, Mode.DEDICATED, Phase.RUNNING)


def test_proc_net_parsing():
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:2A7A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1\n"
        "   1: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 0 2\n"
    )
    tcp = sockets.parse_proc_net(text, "tcp")
    assert (tcp[0].address, tcp[0].port, tcp[0].listening, tcp[0].uid, tcp[0].inode) == ("127.0.0.1", 10874, True, 0, 12345)
    assert tcp[1].listening is False
    udp = sockets.parse_proc_net(text, "udp")
    assert (udp[1].port, udp[1].listening, udp[1].inode) == (8472, True, 0)
    v6 = "  sl\n 0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0:0 0:0 0 1000 0 7 1\n"
    assert sockets.parse_proc_net(v6, "tcp")[0].address == "::1"


def test_unit_from_cgroup():
    assert sockets.unit_from_cgroup("0::/system.slice/kubelet.service\n") == "kubelet.service"
    assert sockets.unit_from_cgroup("0::/user.slice/user-0.slice/user@0.service/init.scope\n") is None
    assert sockets.unit_from_cgroup("12:pids:/kubepods/besteffort/pod1/abc\n") is None


def test_leftover_vxlan_device_blocks_the_join():
    h = PortHolder("udp", "0.0.0.0", 8472, kernel_socket=True)
    d = decided("free", "udp", 8472, [h], component="flannel")
    assert (d.status, d.reason) == (Status.FAIL, Reason.PORT_IN_USE)
    assert "ip -d link show type vxlan" in advice(d) and "ip link delete" in advice(d)
