"""The real CLIs in the reach lab: `edgecheck listen` as a process in the node namespace,
`edgecheck reach` as a process in the far one (`ip netns exec`, so the audit hook of the test
process is not needed: nothing runs in the root namespace).

Both get a clean environment (no EDGECHECK_* variable or proxy from the machine) and their JSON
is validated against the schemas the package ships.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import jsonschema

from edgecheck.reach.summary import listen_schema
from tests.probes.netns import Netns
from tests.reach.conftest import TOKEN
from tests.schema_check import assert_valid_report

REPO = Path(__file__).resolve().parents[2]
REGION = ("--region", "cn-hangzhou")


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGECHECK_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(extra or {})
    return env


class ListenProcess:
    """`edgecheck listen --format json` in a namespace: the banner and one line per probe on stderr
    (collected on a thread), the JSON summary on stdout when it ends."""

    def __init__(self, ns: Netns, *args: str, token: Optional[str] = TOKEN, duration: float = 120,
                 address: str = "", env: Optional[Dict[str, str]] = None) -> None:
        argv = [sys.executable, "-m", "edgecheck", "listen", *REGION, "--duration", str(duration), "--format", "json",
                *(["--token", token] if token else []), *(["--address", address] if address else []), *args]
        self.proc = ns.spawn(argv, env=clean_env(env), cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.lines: List[str] = []
        self.ready = threading.Event()
        self._after_run = False
        # stderr belongs to this thread alone: were communicate() to read it too at the end, the
        # last lines (the per-probe ones) would land in whichever reader won the race.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.ready.wait(20):
            self.proc.kill()
            raise AssertionError("listener did not start:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if self._after_run or line.startswith("No port could be opened"):
                self.ready.set()
            self._after_run = line.rstrip().endswith("run:")
        self.ready.set()

    @property
    def command(self) -> str:
        """The `reach` command the banner prints."""
        i = next(i for i, line in enumerate(self.lines) if line.rstrip().endswith("run:"))
        return self.lines[i + 1].strip()

    def peak_rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def finish(self, sig: Optional[int] = None, limit: float = 15.0) -> Dict[str, Any]:
        """Signal it (or let the duration end it); its JSON summary, validated. Sets .returncode."""
        if sig is not None:
            self.proc.send_signal(sig)
        assert self.proc.stdout is not None
        watchdog = threading.Timer(limit, self.proc.kill)  # a hung listener fails the test, not the suite
        watchdog.start()
        try:
            out = self.proc.stdout.read()  # EOF when it exits
            self.returncode = self.proc.wait()
            self._reader.join(limit)
        finally:
            watchdog.cancel()
        assert out.strip(), "no summary on stdout:\n" + "\n".join(self.lines[-30:])
        doc: Dict[str, Any] = json.loads(out)
        jsonschema.validate(doc, listen_schema())
        self.stdout = out
        return doc


@dataclass
class ReachRun:
    argv: List[str]
    returncode: int
    stdout: str
    stderr: str
    wall: float
    report: Optional[Dict[str, Any]]

    def check(self, check_id: str) -> Dict[str, Any]:
        assert self.report is not None, self.stderr
        for c in self.report["checks"]:
            if c["id"] == check_id:
                return c
        raise AssertionError(f"no {check_id} in {[c['id'] for c in self.report['checks']]}")

    def by_port(self) -> Dict[str, Dict[str, Any]]:
        assert self.report is not None, self.stderr
        return {c["id"].rsplit(":", 1)[1]: c for c in self.report["checks"]}


def run_reach(ns: Netns, nodes: Sequence[str], *args: str, token: Optional[str] = TOKEN, timeout: float = 1.5,
              fmt: str = "json", limit: float = 60.0) -> ReachRun:
    """`edgecheck reach` in a namespace; its JSON report validated against the shipped schema."""
    argv = ["ip", "netns", "exec", ns.name, sys.executable, "-m", "edgecheck", "reach", *REGION,
            "--timeout", str(timeout), "--format", fmt, *(["--token", token] if token else []), *args, *nodes]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), env=clean_env(), timeout=limit)
    wall = time.monotonic() - t0
    report = json.loads(proc.stdout) if fmt == "json" and proc.stdout.strip().startswith("{") else None
    if report is not None:
        assert_valid_report(report)
    return ReachRun(argv, proc.returncode, proc.stdout, proc.stderr, wall, report)
