"""The suite's network safety net is armed: no test can reach past loopback from the root netns."""

from __future__ import annotations

import socket

import pytest

from tests.netguard import NetworkSafetyError


def test_connect_to_a_non_loopback_address_is_refused_before_sending():
    with socket.socket() as s, pytest.raises(NetworkSafetyError):
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never reached, the hook raises first


def test_udp_send_and_name_lookup_are_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(NetworkSafetyError):
        s.sendto(b"x", ("198.51.100.1", 123))
    with pytest.raises(NetworkSafetyError):
        socket.getaddrinfo("cs-anony.aliyuncs.com", 443)


def test_loopback_stays_allowed():
    with socket.socket() as s:
        s.settimeout(0.5)
        assert s.connect_ex(("127.0.0.1", 9)) != 0  # refused by loopback, but not blocked
