"""host:port as a URL's authority writes it: the one formatting of an address and a port.

An IPv6 literal goes in brackets (RFC 3986 section 3.2.2: "[2001:db8::1]:7443"); without them
"2001:db8::1:7443" could be address 2001:db8::1:7443 or 2001:db8::1 port 7443. Check ids, the
Prometheus labels made from them and every "host:port" in a message use this, so one target is
written one way everywhere.
"""

from __future__ import annotations

import ipaddress
from typing import Optional


def bracketed(host: str) -> str:
    """'[2001:db8::1]' for an IPv6 literal (already bracketed stays as is); names and IPv4 unchanged."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def authority(host: str, port: int, scheme: str) -> str:
    """A URL's authority and the Host header: host_port without the scheme's default port
    (RFC 9110 section 7.2), e.g. 'cs-anony.aliyuncs.com', '[2001:db8::1]:6443'."""
    return bracketed(host) if port == (443 if scheme == "https" else 80) else host_port(host, port)


def host_port(host: str, port: object) -> str:
    """'cs-anony.aliyuncs.com:443', '192.0.2.1:6443', '[2001:db8::1]:7443'; port may be a range
    text ('10280-10284') for a plan placeholder."""
    return f"{bracketed(host)}:{port}"


def ip_literal(host: str) -> Optional[str]:
    """The canonical address if host is an IPv4/IPv6 literal (brackets allowed), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
