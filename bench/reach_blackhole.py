"""Time `edgecheck reach` against black-holed nodes: the whole CLI process against the probe
timeout, every probe really made, and the process's peak RSS.

    sudo python3 -m bench.reach_blackhole [--nodes 250] [--timeout 3] [--phase join|running]
                                          [--nofile-soft 1024]

Builds two test network namespaces (ecr-*): the prober's, and a far one that owns the whole
10.89.0.0/16 block (a local route) and DROPs every packet in INPUT. `edgecheck reach` runs in the
prober's namespace (`ip netns exec`) with NODES addresses of that block, each with the plan's five
inbound ports (TCP 10250, 10255, 9100, 9445 and UDP 8472):
  join     the token probe of `edgecheck listen` on all five (before the join);
  running  a joined node: the catalog's probes (kubelet TLS, HTTP) and the token on 8472.
Goal (issue 13): within timeout + 1 s with every probe made, peak RSS <= 40 MiB. The process is
timed as a whole: interpreter start-up, imports, plan, probes, diagnosis and the JSON report.
No packet leaves the namespaces.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.nsprocess import compile_bytecode, load_average, run_cli, summarise_checks  # noqa: E402

BLOCK = "10.89.0.0/16"
TOKEN = "bench-token-0123456789"
RSS_GOAL_KIB = 40 * 1024


def nodes(count: int) -> list:
    hosts = ipaddress.ip_network(BLOCK).hosts()
    return [str(next(hosts)) for _ in range(count)]


def measure(ns_name: str, count: int, timeout: float, phase: str, nofile_soft: int = 0) -> dict:
    args = ["reach", "--region", "cn-hangzhou", "--phase", phase, "--timeout", str(timeout), "--format", "json",
            "--token", TOKEN, *nodes(count)]
    measured = run_cli(ns_name, args, nofile_soft=nofile_soft)
    if measured.report is None:
        raise RuntimeError(f"no report (exit {measured.returncode}): {measured.stderr[-2000:]}")
    out = summarise_checks(measured.report, timeout)
    out.update(wall_s=round(measured.wall_s, 3), peak_rss_kib=measured.peak_rss_kib, returncode=measured.returncode,
               cpu_s=round(measured.cpu_s, 2))
    return out


def build() -> tuple:
    from tests.probes.netns import Netns

    prober, far = Netns("ecr-"), None
    try:
        far = Netns("ecr-")
        prober.link(far, "10.88.9.1/24", "10.88.9.2/24")
        prober.exec("ip", "route", "add", BLOCK, "via", "10.88.9.2")
        far.exec("ip", "route", "add", "local", BLOCK, "dev", "lo")  # the far side owns every address...
        far.iptables("-P", "INPUT", "DROP")  # ...and answers nothing: the black hole
    except Exception:
        if far is not None:
            far.close()
        prober.close()
        raise
    return prober, far


def report(out: dict, count: int, timeout: float, phase: str) -> bool:
    over = out["wall_s"] - timeout
    print(f"reach --phase {phase} against {count} black-holed nodes: {out['checks']} checks, whole process "
          f"{out['wall_s']:.2f} s with --timeout {timeout:g} s (overhead {over:+.2f} s; goal: timeout + 1 s); "
          f"report duration {out['report_ms'] / 1000:.2f} s")
    print("   results: " + ", ".join(f"{k} x{v}" for k, v in out["reasons"].items()))
    print(f"   every probe made: deadline-exceeded {out['deadline_exceeded']}, each waited "
          f"{out['min_wait_ms']}-{out['max_ms']} ms (full timeout: {out['full_timeout']})")
    print(f"   process CPU {out['cpu_s']:.2f} s (load average {load_average()}); "
          f"peak RSS {out['peak_rss_kib'] / 1024:.1f} MiB (goal: <= 40 MiB)")
    return (over < 1.0 and out["deadline_exceeded"] == 0 and out["full_timeout"]
            and out["peak_rss_kib"] <= RSS_GOAL_KIB)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=250)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--phase", choices=("join", "running"), default="join")
    ap.add_argument("--nofile-soft", type=int, default=0,
                    help="start the process with this soft RLIMIT_NOFILE (e.g. 1024, a common default)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    compile_bytecode()
    prober, far = build()
    try:
        out = measure(prober.name, args.nodes, args.timeout, args.phase, args.nofile_soft)
    finally:
        far.close()
        prober.close()
    return 0 if report(out, args.nodes, args.timeout, args.phase) else 1


if __name__ == "__main__":
    sys.exit(main())
