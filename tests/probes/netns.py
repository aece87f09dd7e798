"""Test network namespaces (ecp-*): created, populated and torn down by the tests themselves.

Probe code runs *inside* the namespace on a thread that called setns(2): threads it starts
inherit the namespace, so the engine's worker threads and the servers stay inside too. Nothing
here touches the root namespace's addresses, routes or firewall.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import threading
from typing import Any, Callable, List, Optional, Sequence

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Netns:
    def __init__(self, prefix: str = "ecp-") -> None:
        self.name = prefix + secrets.token_hex(4)
        self.procs: List[subprocess.Popen] = []
        _sh("ip", "netns", "add", self.name)
        try:
            self.exec("ip", "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def exec(self, *argv: str) -> None:
        _sh("ip", "netns", "exec", self.name, *argv)

    def link(self, other: "Netns", own_cidr: str, other_cidr: str) -> None:
        """A veth pair created directly inside the two namespaces (nothing appears in the root one)."""
        tag = secrets.token_hex(3)
        mine, theirs = f"ecv{tag}a", f"ecv{tag}b"
        self.exec("ip", "link", "add", mine, "type", "veth", "peer", "name", theirs, "netns", other.name)
        self.exec("ip", "addr", "add", own_cidr, "dev", mine)
        other.exec("ip", "addr", "add", other_cidr, "dev", theirs)
        self.exec("ip", "link", "set", mine, "up")
        other.exec("ip", "link", "set", theirs, "up")

    def add_address(self, cidr: str) -> None:
        self.exec("ip", "addr", "add", cidr, "dev", "lo")

    def iptables(self, *rule: str, v6: bool = False) -> None:
        self.exec("ip6tables" if v6 else "iptables", *rule)

    def enter(self) -> None:
        """Move the calling thread into this namespace."""
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
        finally:
            os.close(fd)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args) on a fresh thread inside the namespace; returns its result or raises its error."""
        box: dict = {}

        def body() -> None:
            try:
                self.enter()
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller
                box["error"] = exc

        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def spawn(self, argv: Sequence[str], env: Optional[dict] = None, **kw: Any) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], env=env,
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # our own session: the pid we started
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        subprocess.run(["ip", "netns", "del", self.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
