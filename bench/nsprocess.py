"""Run the real CLI inside a test network namespace and measure it as a whole process.

Wall time from fork to exit (interpreter start-up, imports, plan, probes, diagnosis and the JSON
report included), its CPU time, and the process's peak RSS (wait4's ru_maxrss: the child alone).
On a loaded machine the wall time includes waiting for a CPU; the CPU time does not, and the
machine's load average is printed next to the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_rss_kib: int
    cpu_s: float  # user + system CPU of the process: its overhead on an idle machine, whatever the load now
    report: Optional[Dict[str, Any]]
    stderr: str


def compile_bytecode() -> None:
    """Byte-compile edgecheck and the environment's packages once, as any install does (pip, the
    .deb and the zipapp ship them compiled): a measured run must not pay for compiling sources."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for path in (os.path.join(REPO, "edgecheck"), *site_dirs()):
        subprocess.run([sys.executable, "-m", "compileall", "-q", path], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def site_dirs() -> List[str]:
    import site

    return [d for d in site.getsitepackages() if os.access(d, os.W_OK)]


def run_cli(ns_name: str, args: Sequence[str], *, env: Optional[Dict[str, str]] = None,
            nofile_soft: int = 0) -> Measured:
    """`ip netns exec NS python -m edgecheck ARGS` with stdout captured to a file (no pipe stalls).
    `nofile_soft`: start it with this soft RLIMIT_NOFILE (prlimit execs the command: same pid)."""
    limit = ["prlimit", f"--nofile={nofile_soft}:"] if nofile_soft else []
    argv: List[str] = ["ip", "netns", "exec", ns_name, *limit, sys.executable, "-m", "edgecheck", *args]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGECHECK_") and "proxy" not in k.lower()
             and k != "PYTHONDONTWRITEBYTECODE"}
    clean.update(env or {})
    out_path = f"/tmp/edgecheck-bench-{os.getpid()}.json"
    with open(out_path, "w+") as out, open(out_path + ".err", "w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=clean)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    for path in (out_path, out_path + ".err"):
        os.unlink(path)
    report = json.loads(text) if text.strip().startswith("{") else None
    return Measured(proc.returncode, wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, report, errors)


def summarise_checks(report: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """What the report says about every probe: reasons, and whether each really waited its time."""
    import collections

    checks = report["checks"]
    reasons = collections.Counter(f"{c['status']}/{c['reason']}" for c in checks)
    waited = [c["duration_ms"] for c in checks if c["reason"] in ("timeout", "no-response")]
    return {"checks": len(checks), "reasons": dict(sorted(reasons.items())),
            "deadline_exceeded": reasons.get("fail/deadline-exceeded", 0),
            "min_wait_ms": min(waited) if waited else None, "max_ms": max((c["duration_ms"] for c in checks), default=0),
            "report_ms": report["duration_ms"], "full_timeout": all(ms >= timeout * 1000 * 0.95 for ms in waited)}


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
