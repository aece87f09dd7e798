"""--apiserver accepts the URL the ACK console shows (SPEC 7.4), and nothing looser."""

from __future__ import annotations

import pytest

from edgecheck.errors import UsageError
from edgecheck.plan import HostPort, parse_host_port


@pytest.mark.parametrize("text, expected", [
    ("https://47.96.0.10:6443", HostPort("47.96.0.10", 6443)),
    ("https://47.96.0.10:6443/", HostPort("47.96.0.10", 6443)),
    ("  https://api.example.test:6443/  ", HostPort("api.example.test", 6443)),
    ("HTTPS://api.example.test:7443", HostPort("api.example.test", 7443)),
    ("https://[2001:db8::1]:6443", HostPort("2001:db8::1", 6443)),
    ("https://[2001:db8::1]/", HostPort("2001:db8::1", 443)),
    # A URL without a port means the scheme's port, as kubectl reads a kubeconfig server.
    ("https://api.example.test", HostPort("api.example.test", 443)),
    # The other forms keep working, with the API server's default port.
    ("api.example.test", HostPort("api.example.test", 6443)),
    ("[2001:db8::1]:7443", HostPort("2001:db8::1", 7443)),
])
def test_url_and_host_port_forms(text, expected):
    assert parse_host_port(text, "--apiserver", 6443) == expected


@pytest.mark.parametrize("bad, says", [
    ("http://47.96.0.10:6443", "only https:// URLs are accepted (the API server only speaks HTTPS)"),
    ("ftp://47.96.0.10", "only https:// URLs are accepted"),
    ("://47.96.0.10", "only https:// URLs are accepted"),
    ("https://47.96.0.10:6443/k8s/clusters/c-1", "a path (/k8s/clusters/c-1) is not allowed"),
    ("https://47.96.0.10:6443//", "a path (//) is not allowed"),
    ("https://admin:secret@47.96.0.10:6443", "user information is not allowed"),
    ("https://47.96.0.10:6443?x=1", "a query is not allowed"),
    ("https://47.96.0.10:6443/#frag", "a fragment is not allowed"),
    ("https://2001:db8::1:6443", "put an IPv6 address in brackets"),
    ("https://47.96.0.10:99999", "port must be a number from 1 to 65535"),
    ("https://", "give a hostname or an IP address"),
    ("https://bad host:6443", "give a hostname or an IP address"),
])
def test_bad_urls_are_one_line_usage_errors(bad, says):
    with pytest.raises(UsageError) as info:
        parse_host_port(bad, "--apiserver", 6443)
    message = str(info.value)
    assert message.startswith(f"invalid --apiserver {bad!r}: ") and says in message
    assert "\n" not in message and info.value.exit_code == 2
