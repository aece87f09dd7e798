"""Two test namespaces for firewall oracle tests: a node (rules go here) and a peer.

    [node ns]  ecfwn0 10.88.0.2/24  ----------  ecfwp0 10.88.0.1/24  [peer ns]
               routes to the peer's extra       lo: 192.168.50.1, 172.20.0.1, 10.9.0.1 (sources)
               sources via 10.88.0.1

The veth is created inside the node namespace with its peer moved straight into the peer
namespace; nothing touches the root namespace. iptables/nft/ufw/firewalld run only under
`ip netns exec` (ufw and firewalld additionally in a private mount namespace with their own
configuration directories, so this machine's /etc/ufw and /etc/firewalld are never written).

The kernel is the oracle: `kernel_verdict` sends a real packet and reports what happened.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

from tests.probes.netns import Netns

HERE = Path(__file__).parent
NODE_IF, PEER_IF = "ecfwn0", "ecfwp0"
NODE_ADDR, PEER_ADDR = "10.88.0.2", "10.88.0.1"
PEER_SOURCES = ("192.168.50.1", "172.20.0.1", "10.9.0.1")
NODE_TCP = (10250, 10255, 9100, 9445, 22, 80, 7000)
NODE_UDP = (8472, 4789, 53)
PEER_TCP = (443, 6443, 10280, 80)
PEER_UDP = (123, 4500)
TIMEOUT = 1.0
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def need(*tools: str) -> None:
    missing = [t for t in tools if not (shutil.which(t) or shutil.which(t, path=os.pathsep.join(SBIN)))]
    if os.geteuid() != 0:
        missing.append("root")
    if missing:
        msg = f"needs {', '.join(missing)} (Debian: nftables iptables ufw firewalld dbus)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)


class FwLab:
    def __init__(self) -> None:
        self.node = Netns("ecfw-")
        try:
            self.peer = Netns("ecfw-")
        except Exception:
            self.node.close()
            raise
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _build(self) -> None:
        self.node.exec("ip", "link", "add", NODE_IF, "type", "veth", "peer", "name", PEER_IF, "netns", self.peer.name)
        self.node.exec("ip", "addr", "add", f"{NODE_ADDR}/24", "dev", NODE_IF)
        self.peer.exec("ip", "addr", "add", f"{PEER_ADDR}/24", "dev", PEER_IF)
        self.node.exec("ip", "link", "set", NODE_IF, "up")
        self.peer.exec("ip", "link", "set", PEER_IF, "up")
        for ns in (self.node, self.peer):
            ns.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        for src in PEER_SOURCES:
            self.peer.exec("ip", "addr", "add", f"{src}/32", "dev", "lo")
            self.node.exec("ip", "route", "add", f"{src}/32", "via", PEER_ADDR)
        self._listen(self.node, [f"tcp:{p}" for p in NODE_TCP] + [f"udp:{p}" for p in NODE_UDP])
        self._listen(self.peer, [f"tcp:{p}" for p in PEER_TCP] + [f"udp:{p}" for p in PEER_UDP])

    def _listen(self, ns: Netns, specs: List[str]) -> None:
        proc = ns.spawn([sys.executable, str(HERE / "echo.py"), *specs], stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "ready", f"listener in {ns.name} did not start"

    def sh(self, ns: Netns, script: str, private_mounts: str = "") -> subprocess.CompletedProcess:
        """Run a shell script in `ns` (plus a private mount namespace when mounts are given)."""
        argv = ["ip", "netns", "exec", ns.name]
        if private_mounts:
            argv += ["unshare", "-m", "--propagation", "private", "sh", "-ec", private_mounts + "\n" + script]
        else:
            argv += ["sh", "-ec", script]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def close(self) -> None:
        self.peer.close()
        self.node.close()


def kernel_verdict(proto: str, dst: str, port: int, src: Optional[str] = None, timeout: float = TIMEOUT) -> str:
    """What the kernel did with a real new connection/datagram: accept | drop | reject | blocked.

    "blocked" = refused by the sender's own filter with EPERM, which the kernel reports the same
    way for a drop and for a reject (REJECT answers and then drops the original packet).
    """
    fam = socket.AF_INET
    if proto == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            if src:
                s.bind((src, 0))
            s.settimeout(timeout)
            s.connect((dst, port))
            return "accept"
        except (socket.timeout, TimeoutError):
            return "drop"
        except OSError as exc:
            if exc.errno == errno.EPERM:
                return "blocked"
            return "reject"  # RST (ECONNREFUSED; every tested port has a listener) or an ICMP error
        finally:
            s.close()
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)  # see every ICMP error
        if src:
            s.bind((src, 0))
        s.connect((dst, port))
        deadline = time.monotonic() + timeout
        try:
            s.send(b"edgecheck-oracle")
        except OSError as exc:
            return "blocked" if exc.errno == errno.EPERM else "reject"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "drop"
            s.settimeout(left)
            try:
                if s.recv(2048) == b"edgecheck-oracle":
                    return "accept"
            except (socket.timeout, TimeoutError):
                return "drop"
            except OSError:
                return "reject"
    finally:
        s.close()


def agrees(kernel: str, verdict: str) -> bool:
    if kernel == "blocked":
        return verdict in ("drop", "reject")
    return kernel == verdict
