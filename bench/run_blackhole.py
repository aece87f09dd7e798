"""Time `edgecheck run` with 500 hanging endpoints from a --targets-file, on top of the catalog's
own plan, every address black-holed: the whole CLI process against the probe timeout, every
probe really made, and the process's peak RSS.

    sudo python3 -m bench.run_blackhole [--endpoints 500] [--timeout 3]

Builds two test network namespaces (ecb-*): the client's, with its own DNS server on 127.0.0.1
answering every name with black-holed addresses, and a far one that owns 10.89.0.0/16 and DROPs
every packet. The targets file holds ENDPOINTS raw-TCP endpoints by IP address (with --names half
of them by name, each answered by the in-namespace DNS server), on ports 20000 and up; the plan adds
the catalog's endpoints for cn-hangzhou, k8s 1.24 (HTTP 80 and the tunnel server in), an API
server, two Raven gateways and a tunnel server, all black-holed too.
Goal (issue 13): within timeout + 1 s with every probe made, peak RSS <= 40 MiB, and the
existing black-hole bench (bench/blackhole.py) still holds. No packet leaves the namespaces.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.nsprocess import compile_bytecode, load_average, run_cli, summarise_checks  # noqa: E402

BLOCK = "10.89.0.0/16"
DROPPED = ["10.89.0.20", "10.89.0.21"]
APISERVER, RAVEN, TUNNEL = "10.89.0.30", ("10.89.0.31", "10.89.0.32"), "10.89.0.33"
RSS_GOAL_KIB = 40 * 1024


def targets_file(path: Path, count: int, names: bool = False) -> None:
    entries = []
    for i in range(count):
        host = f"hang-{i}.bench.test" if names and i % 2 else f"10.89.{1 + i // 250}.{1 + i % 250}"
        entries.append(f'[[endpoint]]\nid = "hang-{i}"\nname = "hanging endpoint {i}"\nhost = "{host}"\n'
                       f"ports = [{20000 + i}]\n")
    path.write_text("schema = 1\n\n" + "\n".join(entries))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--names", action="store_true", help="half of the endpoints by name (each looked up first)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    compile_bytecode()
    from tests.probes.netns import Netns
    from tests.probes.servers import DnsServer

    client, far = Netns("ecb-"), None
    etc = Path("/etc/netns") / client.name
    try:
        far = Netns("ecb-")
        client.link(far, "10.88.8.1/24", "10.88.8.2/24")
        client.exec("ip", "route", "add", BLOCK, "via", "10.88.8.2")
        far.exec("ip", "route", "add", "local", BLOCK, "dev", "lo")
        far.iptables("-P", "INPUT", "DROP")
        dns = client.run(DnsServer, "127.0.0.1", 53)
        dns.zone["*"] = {"A": DROPPED}
        etc.mkdir(parents=True, exist_ok=True)  # `ip netns exec` mounts it over /etc/resolv.conf
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        with tempfile.TemporaryDirectory(prefix="ecb-bench-") as d:
            path = Path(d) / "hanging.toml"
            targets_file(path, args.endpoints, args.names)
            measured = run_cli(client.name, ["run", "--region", "cn-hangzhou", "--k8s-version", "1.24",
                                             "--apiserver", APISERVER, "--raven-gateway", ",".join(RAVEN),
                                             "--tunnel-server", TUNNEL, "--targets-file", str(path),
                                             "--timeout", str(args.timeout), "--format", "json"])
        dns.sock.close()
    finally:
        if etc.exists():
            for f in etc.iterdir():
                f.unlink()
            etc.rmdir()
        if far is not None:
            far.close()
        client.close()
    if measured.report is None:
        print(f"no report (exit {measured.returncode}): {measured.stderr[-2000:]}", file=sys.stderr)
        return 1
    out = summarise_checks(measured.report, args.timeout)
    over = measured.wall_s - args.timeout
    print(f"run with {args.endpoints} hanging endpoints (targets file) + the catalog plan: {out['checks']} checks, "
          f"whole process {measured.wall_s:.2f} s with --timeout {args.timeout:g} s (overhead {over:+.2f} s; goal: "
          f"timeout + 1 s); report duration {out['report_ms'] / 1000:.2f} s")
    print("   results: " + ", ".join(f"{k} x{v}" for k, v in out["reasons"].items()))
    print(f"   every probe made: deadline-exceeded {out['deadline_exceeded']}, each waited "
          f"{out['min_wait_ms']}-{out['max_ms']} ms (full timeout: {out['full_timeout']})")
    print(f"   process CPU {measured.cpu_s:.2f} s (load average {load_average()}); "
          f"peak RSS {measured.peak_rss_kib / 1024:.1f} MiB (goal: <= 40 MiB)")
    ok = (over < 1.0 and out["deadline_exceeded"] == 0 and out["full_timeout"]
          and measured.peak_rss_kib <= RSS_GOAL_KIB)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
