"""Network safety net for the test suite, armed for every test process by tests/conftest.py.

Tests may send packets only to loopback or inside network namespaces they created. This audit
hook enforces it for the test process itself: any connect, send or name lookup aimed at a
non-loopback destination from a thread that is still in the root network namespace raises
before a packet leaves. (Threads that entered a test namespace with setns(2) are free to go.)
"""

from __future__ import annotations

import ipaddress
import os
import sys

_ROOT_NETNS = os.readlink("/proc/self/ns/net")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class NetworkSafetyError(RuntimeError):
    pass


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or host == "":
        return True  # AF_UNIX paths, netlink, wildcard lookups: no packet to another host
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a hostname: resolving it in the root namespace would ask the real resolver


def _in_root_netns() -> bool:
    try:
        return os.readlink("/proc/thread-self/ns/net") == _ROOT_NETNS
    except OSError:
        return True


def _network_guard(event: str, args: tuple) -> None:
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[-1] if event != "socket.connect" else args[1]
        host = address[0] if isinstance(address, tuple) and address else None
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        host = args[0]
    else:
        return
    if host is None or _is_local(host) or not _in_root_netns():
        return
    raise NetworkSafetyError(f"test tried to reach {host!r} from the root network namespace ({event})")


_ARMED = []


def arm() -> None:
    """Install the hook once per process (audit hooks cannot be removed: that is the point)."""
    if not _ARMED:
        sys.addaudithook(_network_guard)
        _ARMED.append(True)
