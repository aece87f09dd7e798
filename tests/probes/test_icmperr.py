"""ICMP-error attribution: this host's filter (EPERM, or an ICMP error generated here) vs a
firewall on the path (admin-prohibited from another address) vs the network.

Three namespaces: node --- router --- far. Rules are loaded in the node (local REJECT/DROP) and in
the router (a REJECT between two namespaces); the node probes the far side.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import struct
from typing import Iterator

import pytest

from edgecheck.firewall import Packet, evaluate, read_ruleset
from edgecheck.probes.icmperr import (
    HOST_FILTER_EPERM,
    HOST_FILTER_REJECT,
    ICMP_UNREACHABLE,
    IP_RECVERR,
    NONE,
    REMOTE_FILTER,
    SO_EE_ORIGIN_ICMP,
    SO_EE_ORIGIN_ICMP6,
    SOL_IP,
    ExtendedError,
    classify,
    parse_extended_err,
)
from tests.probes.icmpprobe import tcp_connect, udp_exchange
from tests.probes.netns import Netns

NODE, ROUTER_IN, ROUTER_OUT, FAR = "10.61.1.1", "10.61.1.2", "10.61.2.1", "10.61.2.2"


def _ee(origin, typ, code, offender=None, err=113) -> bytes:
    data = struct.pack("=IBBBBII", err, origin, typ, code, 0, 0, 0)
    if offender:
        data += struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(offender))
    return data


def test_parse_extended_err_v4_and_v6():
    e = parse_extended_err(SOL_IP, IP_RECVERR, _ee(SO_EE_ORIGIN_ICMP, 3, 13, "192.0.2.9"))
    assert e == ExtendedError(113, SO_EE_ORIGIN_ICMP, 3, 13, 0, 0, "192.0.2.9") and e.admin_prohibited
    v6 = struct.pack("=IBBBBII", 13, SO_EE_ORIGIN_ICMP6, 1, 1, 0, 0, 0) + struct.pack(
        "=HHI16sI", socket.AF_INET6, 0, 0, socket.inet_pton(socket.AF_INET6, "2001:db8::1"), 0)
    e6 = parse_extended_err(41, 25, v6)
    assert e6.offender == "2001:db8::1" and e6.admin_prohibited and "ICMPv6" in e6.icmp_name
    assert parse_extended_err(SOL_IP, 99, b"") is None


def test_classify_pure():
    local = {"10.0.0.2"}
    assert classify(errno.EPERM, [], local).kind == HOST_FILTER_EPERM
    here = ExtendedError(113, SO_EE_ORIGIN_ICMP, 3, 3, 0, 0, "10.0.0.2")
    assert classify(113, [here], local).kind == HOST_FILTER_REJECT
    remote = ExtendedError(113, SO_EE_ORIGIN_ICMP, 3, 10, 0, 0, "198.51.100.1")
    a = classify(113, [remote], local)
    assert a.kind == REMOTE_FILTER and a.offender == "198.51.100.1" and not a.host_firewall
    assert "firewall at 198.51.100.1" in a.message
    unreach = ExtendedError(113, SO_EE_ORIGIN_ICMP, 3, 1, 0, 0, "198.51.100.1")
    assert classify(113, [unreach], local).kind == ICMP_UNREACHABLE
    assert classify(110, [], local).kind == NONE


@pytest.fixture(scope="module")
def path3() -> Iterator[tuple]:
    if os.geteuid() != 0 or not shutil.which("iptables"):
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("needs root and iptables")
        pytest.skip("needs root and iptables")
    node, router, far = Netns("ecie-"), Netns("ecie-"), Netns("ecie-")
    try:
        node.exec("ip", "link", "add", "ecn0", "type", "veth", "peer", "name", "ecr0", "netns", router.name)
        router.exec("ip", "link", "add", "ecr1", "type", "veth", "peer", "name", "ecf0", "netns", far.name)
        node.exec("ip", "addr", "add", f"{NODE}/24", "dev", "ecn0")
        router.exec("ip", "addr", "add", f"{ROUTER_IN}/24", "dev", "ecr0")
        router.exec("ip", "addr", "add", f"{ROUTER_OUT}/24", "dev", "ecr1")
        far.exec("ip", "addr", "add", f"{FAR}/24", "dev", "ecf0")
        for ns, dev in ((node, "ecn0"), (router, "ecr0"), (router, "ecr1"), (far, "ecf0")):
            ns.exec("ip", "link", "set", dev, "up")
        node.exec("ip", "route", "add", "default", "via", ROUTER_IN)
        far.exec("ip", "route", "add", "default", "via", ROUTER_OUT)
        router.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for proto in ("tcp", "udp"):
            node.iptables("-A", "OUTPUT", "-p", proto, "--dport", "81", "-j", "REJECT",
                          "--reject-with", "icmp-admin-prohibited")
            node.iptables("-A", "OUTPUT", "-p", proto, "--dport", "82", "-j", "DROP")
            router.iptables("-A", "FORWARD", "-p", proto, "--dport", "83", "-j", "REJECT",
                            "--reject-with", "icmp-admin-prohibited")
            router.iptables("-A", "FORWARD", "-p", proto, "--dport", "85", "-j", "REJECT",
                            "--reject-with", "icmp-host-unreachable")
        yield node, router, far
    finally:
        for ns in (far, router, node):
            ns.close()


def test_local_reject_is_this_host(path3):
    node = path3[0]
    o = node.run(tcp_connect, FAR, 81, 1.0)
    assert o.attribution.kind == HOST_FILTER_REJECT and o.attribution.offender == NODE
    assert o.attribution.icmp == (3, 13)
    o = node.run(udp_exchange, FAR, 81, b"x", 1.0)
    assert o.attribution.host_firewall  # UDP: REJECT answers, then the send itself fails with EPERM
    # ... and the evaluation names the rule.
    rs = node.run(read_ruleset, 5.0).ruleset
    ev = evaluate(rs, Packet("out", "tcp", NODE, FAR, 81, oifname="ecn0"))
    assert ev.verdict == "reject" and "--dport 81" in ev.rule.text


def test_local_drop_is_eperm_for_udp_and_only_the_ruleset_tells_for_tcp(path3):
    node = path3[0]
    o = node.run(udp_exchange, FAR, 82, b"x", 1.0)
    assert o.attribution.kind == HOST_FILTER_EPERM and o.errno == errno.EPERM
    # TCP retransmits the SYN after the filter's EPERM: connect() just times out. Only evaluating
    # the ruleset finds the cause.
    o = node.run(tcp_connect, FAR, 82, 1.0)
    assert o.errno == errno.ETIMEDOUT and o.attribution.kind == NONE
    rs = node.run(read_ruleset, 5.0).ruleset
    assert evaluate(rs, Packet("out", "tcp", NODE, FAR, 82, oifname="ecn0")).verdict == "drop"


def test_reject_in_a_router_is_a_remote_firewall(path3):
    node = path3[0]
    for probe in (lambda: tcp_connect(FAR, 83, 1.0), lambda: udp_exchange(FAR, 83, b"x", 1.0)):
        o = node.run(probe)
        assert o.attribution.kind == REMOTE_FILTER and o.attribution.offender == ROUTER_IN, o
        assert not o.attribution.host_firewall
    o = node.run(tcp_connect, FAR, 85, 1.0)
    assert o.attribution.kind == ICMP_UNREACHABLE and o.attribution.offender == ROUTER_IN
    o = node.run(udp_exchange, FAR, 86, b"x", 1.0)  # nothing listens on the far side
    assert o.attribution.kind == ICMP_UNREACHABLE and o.attribution.icmp == (3, 3) and o.attribution.offender == FAR
