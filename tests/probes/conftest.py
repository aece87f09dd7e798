"""Fixtures: two test network namespaces per session, linked by a veth pair, with real peers.

`ns` (the client: probes run here)                `peer` (the far side: servers run here)
  127.0.0.1:53  DNS server (mutable zone), the       10.77.1.2/24 on the veth
                only nameserver in resolv.conf       10.77.0.1-9  server addresses (on lo)
  10.77.1.1/24  veth; 10.77.0.0/24 routed via peer   10.77.0.10   INPUT DROP   -> timeout / no-response
  10.99.0.0/16  no route at all -> unreachable       10.77.0.11   REJECT icmp-host-unreachable -> unreachable
Nothing is added to the root namespace.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from edgecheck.model import Kind, Target
from edgecheck.runcontext import RunContext
from tests.probes.netns import Netns
from tests.probes.servers import DnsServer, make_ca, make_leaf

DROPPED = "10.77.0.10"
HOST_UNREACHABLE = "10.77.0.11"
NO_ROUTE = "10.99.0.1"


def _need_root() -> None:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"):
        pytest.skip("needs root, iproute2 and iptables to build a test network namespace")


@pytest.fixture(scope="session")
def netns_pair() -> Iterator[tuple]:
    _need_root()
    client = Netns()
    try:
        far = Netns()
    except Exception:
        client.close()
        raise
    try:
        client.link(far, "10.77.1.1/24", "10.77.1.2/24")
        # Every ICMP error the far side owes is sent: the kernel's rate limit (per namespace)
        # would otherwise turn a quick "port unreachable" into a timeout when tests run back to back.
        far.exec("sysctl", "-q", "-w", "net.ipv4.icmp_ratemask=0")
        client.exec("ip", "route", "add", "10.77.0.0/24", "via", "10.77.1.2")
        for i in range(1, 12):
            far.add_address(f"10.77.0.{i}/32")
        far.iptables("-A", "INPUT", "-d", DROPPED, "-j", "DROP")
        far.iptables("-A", "INPUT", "-d", HOST_UNREACHABLE, "-j", "REJECT", "--reject-with", "icmp-host-unreachable")
        yield client, far
    finally:
        far.close()
        client.close()


@pytest.fixture(scope="session")
def ns(netns_pair: tuple) -> Netns:
    return netns_pair[0]


@pytest.fixture(scope="session")
def peer(netns_pair: tuple) -> Netns:
    return netns_pair[1]


@pytest.fixture(scope="session")
def dns_server(ns: Netns) -> Iterator[DnsServer]:
    server = ns.run(DnsServer, "127.0.0.1", 53)
    yield server
    server.close()


@pytest.fixture
def zone(dns_server: DnsServer) -> Iterator[dict]:
    dns_server.zone.clear()
    yield dns_server.zone
    dns_server.zone.clear()


@pytest.fixture(scope="session")
def resolv_conf(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dns") / "resolv.conf"
    path.write_text("nameserver 127.0.0.1\noptions timeout:1\n")
    return str(path)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = str(tmp_path_factory.mktemp("pki"))
    good_ca, other_ca = make_ca(d, "test-ca"), make_ca(d, "other-ca")
    return {
        "dir": d,
        "ca": good_ca,
        "other_ca": other_ca,
        "leaf": make_leaf(d, good_ca, "endpoint", ["registry.test", "10.77.0.3"]),
        "wrong_ca_leaf": make_leaf(d, other_ca, "imposter", ["registry.test"]),
    }


@pytest.fixture
def ctx(resolv_conf: str, dns_server: DnsServer) -> RunContext:
    return RunContext(timeout=1.5, resolv_conf=resolv_conf)


def target(probe: str, host: str, port: int, protocol: str = "tcp", **kw) -> Target:
    return Target(id=f"endpoint:{host}:{port}/{protocol}", kind=Kind.ENDPOINT, probe=probe,
                  name=kw.pop("name", f"test {host}"), why="test", source="test", entry="test",
                  host=host, port=port, protocol=protocol, **kw)
