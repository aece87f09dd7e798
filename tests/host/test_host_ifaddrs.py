"""if_addresses (rtnetlink) lists what getifaddrs does, read through psutil, in a namespace of the
test's own with addresses of every shape the callers meet: IPv4 with a secondary address, IPv6
global and link-local, an IPv4 point-to-point address whose peer differs, and an interface whose
name is not its label."""

from __future__ import annotations

import socket
from typing import Iterator, List, Tuple

import psutil
import pytest

from edgecheck.firewall.localaddr import interface_of, local_networks
from edgecheck.host.ifaddrs import if_addresses
from edgecheck.probes import icmperr, pmtu_measure
from edgecheck.reach import listener

from tests.probes.netns import Netns

Row = Tuple[str, str, int]


@pytest.fixture(scope="module")
def ns() -> Iterator[Netns]:
    ns = Netns()
    try:
        ns.exec("ip", "link", "add", "ecveth0", "type", "veth", "peer", "name", "ecveth1")
        ns.exec("ip", "link", "set", "ecveth0", "up")
        ns.exec("ip", "addr", "add", "10.61.0.5/24", "dev", "ecveth0")
        ns.exec("ip", "addr", "add", "10.61.7.9/16", "dev", "ecveth0", "label", "ecveth0:7")
        ns.exec("ip", "addr", "add", "2001:db8:61::5/64", "dev", "ecveth0", "nodad")
        ns.exec("ip", "addr", "add", "fe80::61/64", "dev", "ecveth0", "nodad")
        ns.exec("ip", "addr", "add", "10.62.0.1", "peer", "10.62.0.2/32", "dev", "ecveth1")
        yield ns
    finally:
        ns.close()


def _psutil_view() -> List[Row]:
    def prefixlen(mask: str) -> int:
        family = socket.AF_INET6 if ":" in mask else socket.AF_INET
        return sum(bin(b).count("1") for b in socket.inet_pton(family, mask))

    # getifaddrs names an IPv4 address by its label ("eth0:7"); the packet filter matches devices
    return sorted((name.split(":")[0], a.address.split("%")[0], prefixlen(a.netmask))
                  for name, addrs in psutil.net_if_addrs().items() for a in addrs
                  if a.family in (socket.AF_INET, socket.AF_INET6) and a.netmask)


def test_netlink_lists_what_getifaddrs_lists(ns: Netns) -> None:
    mine = ns.run(lambda: sorted((a.interface, a.address, a.prefixlen) for a in if_addresses()))
    assert mine == ns.run(_psutil_view)
    assert ("ecveth0", "10.61.7.9", 16) in mine  # a labelled secondary address: the device's name
    assert ("ecveth1", "10.62.0.1", 32) in mine  # point-to-point: the local end, not the peer
    assert ("ecveth0", "fe80::61", 64) in mine and ("lo", "::1", 128) in mine


def test_the_callers_see_every_family(ns: Netns) -> None:
    # psutil's IPv6 netmasks ("ffff:...") never parsed as a prefix, so local_networks used to
    # drop every IPv6 subnet and interface_of could not place an IPv6 neighbour.
    nets = {(n.interface, n.network) for n in ns.run(local_networks)}
    assert {("ecveth0", "10.61.0.0/24"), ("ecveth0", "10.61.0.0/16"), ("ecveth0", "2001:db8:61::/64"),
            ("ecveth1", "10.62.0.1/32")} <= nets
    assert not any(net.startswith(("127.", "::1", "fe80:")) for _, net in nets)
    assert ns.run(interface_of, "2001:db8:61::77") == "ecveth0"
    assert ns.run(interface_of, "10.61.200.1") == "ecveth0"  # the wider secondary subnet
    assert ns.run(interface_of, "192.0.2.1") is None
    assert {"10.61.0.5", "2001:db8:61::5", "fe80::61", "127.0.0.1"} <= ns.run(icmperr.local_addresses)
    shown = ns.run(listener.local_addresses)
    assert sorted(shown) == sorted({"10.61.0.5", "10.61.7.9", "2001:db8:61::5", "10.62.0.1"})
    assert ns.run(pmtu_measure._interface_for_source, "10.62.0.1") == "ecveth1"
