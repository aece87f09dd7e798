"""Time a full, real plan with every endpoint black-holed, against the probe timeout.

    sudo python3 -m bench.blackhole [--timeout 3] [--region cn-hangzhou]

Builds two test network namespaces (ecp-*) linked by a veth pair; the far one DROPs every packet.
The plan is the catalog's own (join phase, k8s 1.24 so HTTP 80 and the tunnel server are in,
API server, two Raven gateways, tunnel server), and is run twice:
  A. DNS answers every name (in-namespace server) with two addresses that are dropped;
  B. DNS itself is black-holed (the only nameserver is behind the DROP).
No packet leaves the namespaces; every name is answered by the bench's own DNS server.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgecheck import registry  # noqa: E402
from edgecheck.catalog import load_catalog  # noqa: E402
from edgecheck.engine import hard_deadline, run_checks  # noqa: E402
from edgecheck.plan import HostPort, Nameserver, Selection, build_plan  # noqa: E402
from edgecheck.runcontext import RunContext  # noqa: E402
from tests.probes.netns import Netns  # noqa: E402
from tests.probes.servers import DnsServer  # noqa: E402

BLACKHOLE_A = ["10.77.0.20", "10.77.0.21"]
APISERVER, RAVEN, TUNNEL = "10.77.0.30", ("10.77.0.31", "10.77.0.32"), "10.77.0.33"
DEAD_NAMESERVER = "10.77.0.53"


def _plan(region: str, nameserver: str):
    """The catalog's plan, with the dns:nameserver check `run` adds for the resolver's nameserver."""
    sel = Selection(region=region, k8s_version=(1, 24), apiserver=HostPort(APISERVER, 6443),
                    raven_gateways=RAVEN, tunnel_server=TUNNEL,
                    nameservers=(Nameserver(nameserver, 53, None, "resolv.conf"),))
    return build_plan(load_catalog(), sel).targets


def _run(client: Netns, targets, resolv_conf: str, timeout: float):
    start = time.monotonic()
    ctx = RunContext(timeout=timeout, deadline=start + hard_deadline(targets, timeout), resolv_conf=resolv_conf,
                     targets=tuple(targets))
    results = client.run(run_checks, targets, ctx)
    return time.monotonic() - start, results


def _report(label: str, wall: float, timeout: float, targets, results) -> None:
    network = [r for t, r in zip(targets, results) if registry.get(t.probe).network and t.skip is None]
    reasons = collections.Counter(f"{r.status.value}/{r.reason.value}" for r in network)
    slowest = max((r.duration_ms for r in network), default=0)
    print(f"{label}: {len(targets)} checks ({len(network)} network probes) in {wall:.2f} s "
          f"with --timeout {timeout:g} s (wall/timeout = {wall / timeout:.2f}, overhead {wall - timeout:+.2f} s; "
          f"hard deadline {hard_deadline(targets, timeout):g} s); slowest probe {slowest} ms")
    print("   network results: " + ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--region", default="cn-hangzhou")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    client, far = Netns(), None
    try:
        far = Netns()
        client.link(far, "10.77.1.1/24", "10.77.1.2/24")
        client.exec("ip", "route", "add", "10.77.0.0/24", "via", "10.77.1.2")
        far.iptables("-P", "INPUT", "DROP")  # the black hole: every packet to the far side vanishes
        dns = client.run(DnsServer, "127.0.0.1", 53)
        dns.zone["*"] = {"A": BLACKHOLE_A}
        with tempfile.TemporaryDirectory(prefix="ecp-bench-") as d:
            live, dead = os.path.join(d, "resolv-live.conf"), os.path.join(d, "resolv-dead.conf")
            with open(live, "w") as fh:
                fh.write("nameserver 127.0.0.1\n")
            with open(dead, "w") as fh:
                fh.write(f"nameserver {DEAD_NAMESERVER}\n")
            targets = _plan(args.region, "127.0.0.1")
            wall, results = _run(client, targets, live, args.timeout)
            _report("A (DNS answers, endpoints dropped)", wall, args.timeout, targets, results)
            targets = _plan(args.region, DEAD_NAMESERVER)
            wall, results = _run(client, targets, dead, args.timeout)
            _report("B (DNS dropped too)              ", wall, args.timeout, targets, results)
        dns.close()
    finally:
        if far is not None:
            far.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
