"""Time `reach` against black-holed nodes: wall time against the probe timeout, and peak RSS.

    sudo python3 -m bench.reach_blackhole [--nodes 250] [--timeout 3] [--method token|joined|tcp]
                                          [--nofile-soft 1024]

Builds two test network namespaces (ecr-*): the prober's, and a far one that owns the whole
10.89.0.0/16 block (a local route) and DROPs every packet in INPUT. Each node gets the five
inbound ports of the plan (TCP 10250, 10255, 9100, 9445 and UDP 8472):
  token   the `listen` token probe on all five (what `reach` does before the join);
  joined  kubelet TLS on 10250, HTTP on 10255/9100/9445, the token on 8472 (a joined node);
  tcp     plain TCP connects only (what the engine's `run` needs for hanging endpoints).
The probes run in a fresh interpreter inside the prober's namespace (`ip netns exec`), so the
peak RSS reported is that process's own: the interpreter, edgecheck.reach and every socket.
No packet leaves the namespaces.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BLOCK = "10.89.0.0/16"
PORTS = ((10250, "tcp"), (10255, "tcp"), (9100, "tcp"), (9445, "tcp"), (8472, "udp"))
JOINED = {10250: "tls", 10255: "http", 9100: "http", 9445: "http", 8472: "token"}


def child(nodes: int, timeout: float, method: str, nofile_soft: int) -> int:
    """Runs inside the prober's namespace; prints one JSON line."""
    from edgecheck.reach.prober import ReachTarget, reach_many

    if nofile_soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    hosts = ipaddress.ip_network(BLOCK).hosts()
    addresses = [str(next(hosts)) for _ in range(nodes)]
    targets = []
    for a in addresses:
        for port, proto in PORTS:
            if method == "tcp" and proto == "udp":
                continue
            m = {"token": "token", "tcp": "tcp", "joined": JOINED[port]}[method]
            targets.append(ReachTarget(a, port, proto, m, node=a))
    stats: list = []
    t0 = time.monotonic()
    results = reach_many(targets, "bench-token-0123456789", timeout, stats=stats)
    wall = time.monotonic() - t0
    out = {
        "probes": len(targets), "wall_s": round(wall, 3), "timeout_s": timeout,
        "outcomes": dict(collections.Counter(r.outcome.value for r in results)),
        "min_ms": min(r.ms for r in results), "max_ms": max(r.ms for r in results),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "stats": stats[0].__dict__,
    }
    print(json.dumps(out))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=250)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--method", choices=("token", "joined", "tcp"), default="token")
    ap.add_argument("--nofile-soft", type=int, default=0,
                    help="start the prober with this soft RLIMIT_NOFILE (e.g. 1024, a common default)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.nodes, args.timeout, args.method, args.nofile_soft)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    from tests.probes.netns import Netns

    prober, far = Netns("ecr-"), None
    try:
        far = Netns("ecr-")
        prober.link(far, "10.88.9.1/24", "10.88.9.2/24")
        prober.exec("ip", "route", "add", BLOCK, "via", "10.88.9.2")
        far.exec("ip", "route", "add", "local", BLOCK, "dev", "lo")  # the far side owns every address...
        far.iptables("-P", "INPUT", "DROP")  # ...and answers nothing: the black hole
        proc = subprocess.run(["ip", "netns", "exec", prober.name, sys.executable, "-m", "bench.reach_blackhole",
                               "--child", "--nodes", str(args.nodes), "--timeout", str(args.timeout),
                               "--method", args.method, "--nofile-soft", str(args.nofile_soft)], cwd=REPO, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if far is not None:
            far.close()
        prober.close()
    over = out["wall_s"] - out["timeout_s"]
    s = out["stats"]
    print(f"reach ({args.method}) against {args.nodes} black-holed nodes: {out['probes']} probes in {out['wall_s']:.2f} s "
          f"with --timeout {args.timeout:g} s (overhead {over:+.2f} s; goal: timeout + 1 s)")
    print("   outcomes: " + ", ".join(f"{k} x{v}" for k, v in sorted(out["outcomes"].items())))
    print(f"   every probe made: started {s['started']}/{s['jobs']}, not started {s['not_started']}, "
          f"abandoned {s['abandoned']}; per-probe time {out['min_ms']}-{out['max_ms']} ms")
    print(f"   one thread, window {s['window']} sockets (peak {s['peak_open']}), RLIMIT_NOFILE soft {s['fd_soft_limit']}"
          + (f" (raised from {s['fd_limit_raised_from']})" if s["fd_limit_raised_from"] else ""))
    print(f"   peak RSS of the probing process: {out['peak_rss_kib'] / 1024:.1f} MiB (goal: < 40 MiB)")
    ok = over < 1.0 and s["not_started"] == 0 and s["abandoned"] == 0 and out["peak_rss_kib"] < 40 * 1024
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
