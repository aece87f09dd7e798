"""Wall time and peak RSS of `edgecheck fleet` over generated sites of 1,000 and 10,000 reports.

    python3 -m bench.fleet [--counts 1000,10000] [--workdir /tmp/edgecheck-fleet-bench]

Reports come from bench/fleet_reports.py (realistic v1 reports with findings, 10% without, ~1%
stale, 30% behind one shared firewall). Each measurement is one fresh process,
`python -m edgecheck.fleet.command DIR --format F > out.F`, timed with a monotonic clock;
peak RSS is that child's ru_maxrss from wait4(2). The baseline is the same interpreter importing
the command and exiting, so the difference is what the reports cost. Sends no packet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.fleet_reports import plan_fleet, write_fleet  # noqa: E402


def measure(argv: List[str], stdout_path: str = os.devnull) -> Tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB, exit status) of one child process; stdout to a file."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    start = time.monotonic()
    with open(stdout_path, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, proc.returncode


def site(workdir: str, count: int) -> Tuple[str, int]:
    directory = os.path.join(workdir, f"site-{count}")
    marker = os.path.join(directory, ".complete")
    if not os.path.exists(marker):
        shutil.rmtree(directory, ignore_errors=True)
        write_fleet(directory, plan_fleet(count, seed=7))
        open(marker, "w").close()
    size = sum(e.stat().st_size for e in os.scandir(directory) if e.name.endswith(".json"))
    return directory, size


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--formats", default="text,json,html")
    parser.add_argument("--workdir", default="/tmp/edgecheck-fleet-bench")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    python = sys.executable
    wall, rss, _ = measure([python, "-c", "import edgecheck.fleet.command, edgecheck.fleet"])
    print(f"baseline (interpreter + click + edgecheck.fleet imported): {wall:.2f} s, peak RSS {rss / 1024:.1f} MiB")
    for count in (int(c) for c in args.counts.split(",")):
        directory, size = site(args.workdir, count)
        print(f"{count:,} reports, {size / 1024 / 1024:.0f} MiB ({size / count / 1024:.1f} KiB each):")
        for fmt in args.formats.split(","):
            out = os.path.join(args.workdir, f"fleet-{count}.{'txt' if fmt == 'text' else fmt}")
            wall, rss, code = measure([python, "-m", "edgecheck.fleet.command", directory, "--format", fmt], out)
            print(f"  --format {fmt:<4}  {wall:6.2f} s  peak RSS {rss / 1024:6.1f} MiB  exit {code}  "
                  f"output {os.path.getsize(out) / 1024:,.0f} KiB ({count / wall:,.0f} reports/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
