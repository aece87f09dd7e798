"""The real CLI as a subprocess inside an empty network namespace: the one way tests start it.

A subprocess is outside the in-process network guard (tests/netguard.py), so a CLI test that
regresses into probing (a usage error that no longer stops the run, a variable read as a real
hostname) would otherwise resolve and connect from this machine. Inside this namespace there is
only `lo`, no route, and a resolv.conf naming 127.0.0.1 where nothing listens: every lookup and
connect fails locally and at once, and no packet can leave.

One namespace per test process, made on first use and deleted by tests/conftest.py at the end of
the session (and at interpreter exit). Without root the calling test is skipped (tests/run runs
as root and turns any skip into a failure).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import pytest

from tests.probes.netns import Netns

REPO = Path(__file__).resolve().parents[1]
NETNS_ETC = Path("/etc/netns")
# Variables a test must set itself when it wants them: never inherited from the caller's shell.
INHERITED_NEVER = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
                   "SSL_CERT_DIR", "CURL_CA_BUNDLE", "STATE_DIRECTORY", "CACHE_DIRECTORY")

_lock = threading.Lock()
_shared: Dict[str, "EmptyNetns"] = {}


class EmptyNetns:
    """`ip netns add` + `lo` up + /etc/netns/<name>/resolv.conf -> 127.0.0.1 (nothing listens)."""

    def __init__(self) -> None:
        self.ns = Netns(prefix="ece-")
        self.name = self.ns.name
        self.etc = NETNS_ETC / self.name
        try:
            self.etc.mkdir(parents=True)
            # `ip netns exec` bind-mounts this over /etc/resolv.conf for the command it runs.
            (self.etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        except BaseException:
            self.close()
            raise

    def argv(self, command: Sequence[str]) -> list:
        return ["ip", "netns", "exec", self.name, *command]

    def close(self) -> None:
        shutil.rmtree(self.etc, ignore_errors=True)
        self.ns.close()


def shared() -> EmptyNetns:
    """This process's empty namespace (skips the calling test without root or iproute2)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("the CLI runs in an empty network namespace: needs root and iproute2 (tests/run has both)")
    with _lock:
        if "ns" not in _shared:
            _shared["ns"] = EmptyNetns()
            atexit.register(close_shared)
        return _shared["ns"]


def close_shared() -> None:
    with _lock:
        ns = _shared.pop("ns", None)
    if ns is not None:
        ns.close()


def clean_env(env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """This process's environment without EDGECHECK_*, proxy and trust variables, plus `env`."""
    out = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGECHECK_") and k.upper() not in INHERITED_NEVER}
    out["PYTHONPATH"] = str(REPO) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    out.update(env or {})
    return out


def cli(*args: str, env: Optional[Mapping[str, str]] = None, timeout: float = 120,
        python: Sequence[str] = (), cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    """`python3 -m edgecheck ARGS` inside the empty namespace. `python` replaces `-m edgecheck`
    (e.g. ["-c", code] to run the entry point with a fault injected)."""
    command = [sys.executable, *(python or ("-m", "edgecheck")), *args]
    return subprocess.run(shared().argv(command), capture_output=True, text=True, env=clean_env(env),
                          timeout=timeout, cwd=cwd or str(REPO), stdin=subprocess.DEVNULL)
