"""What the path-MTU retry and the nameserver checks cost, measured in test namespaces.

    sudo python3 -m bench.pathtrust [--timeout 3] [--repeat 5]

1. MSS retry (tests/pathtrust/topology.py: node -- cpe ==1280== isp -- server, a long chain):
   a. black-holed handshake, without and with StallWatch: the extra wall time of a stalled probe;
   b. healthy handshake, without and with StallWatch: the cost per healthy probe.
2. Nameserver checks (tests/pathtrust/conftest.DnsLab, real dnsmasq):
   a. check_nameservers alone: healthy resolv.conf, dead-first, black-holed;
   b. the catalog's own plan (join, k8s 1.24, API server, Raven, tunnel) through the current engine,
      alone and with check_nameservers running next to it: what it adds to a healthy-DNS run and
      to a run whose DNS is black-holed.
No packet leaves the namespaces; every name is answered (or dropped) by the lab's own servers.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgecheck.probes import nameservers, pmtu  # noqa: E402
from edgecheck.probes.budget import Budget  # noqa: E402


def _median_ms(values: List[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


def _handshake(address: str, context: ssl.SSLContext, timeout: float, watch: bool) -> float:
    start = time.monotonic()
    budget = Budget(start + timeout)
    sock = socket.create_connection((address, 443), timeout=timeout)
    w = pmtu.StallWatch(address, 443, "big.test", context, budget, sock=sock) if watch else None
    stalled = False
    try:
        sock.settimeout(budget.left())
        with context.wrap_socket(sock, server_hostname="big.test"):
            pass
    except (socket.timeout, TimeoutError):
        stalled = True
    if w is not None:
        w.finish(stalled)
    return time.monotonic() - start


def bench_pmtu(timeout: float, repeat: int) -> None:
    from tests.pathtrust.conftest import serve_chain
    from tests.pathtrust.pki import Pki
    from tests.pathtrust.topology import PathLab

    with tempfile.TemporaryDirectory(prefix="ecp-bench-") as d:
        p = Pki(d)
        root = p.root("bench-root", rsa=True)
        leaf, *rest = p.chain(root, 4, "big", ["big.test"])
        lab = PathLab()
        try:
            hole, _ = lab.add_endpoint(10)
            ok, _ = lab.add_endpoint(11)
            lab.black_hole(hole)
            servers = [serve_chain(lab.server, a, 443, leaf, rest, d) for a in (hole, ok)]
            ctx = ssl.create_default_context(cafile=root.cert)
            run = lambda a, w: lab.node.run(_handshake, a, ctx, timeout, w)  # noqa: E731
            plain, watched = [], []
            for _ in range(repeat):
                plain.append(run(hole, False))
                watched.append(run(hole, True))
            print(f"1a. black-holed handshake, --timeout {timeout:g}: without retry {_median_ms(plain)}, "
                  f"with retry {_median_ms(watched)} (extra {_median_ms([w - p for w, p in zip(watched, plain)])}, "
                  f"max with retry {max(watched) * 1000:.0f} ms)")
            budget = Budget(time.monotonic() + timeout)
            retry = lab.node.run(lambda: pmtu.try_sizes(hole, 443, "big.test", ctx, budget))
            small = [a for a in retry.attempts if a.ok]
            print("    the small-MSS attempts themselves: " + ", ".join(
                f"MSS {a.mss} done in {a.ms} ms" for a in small) + f"; retry starts after "
                f"{pmtu.stall_delay(timeout):g} s of stall")
            n = max(20, repeat * 4)
            run(ok, False), run(ok, True)  # warm
            healthy_plain, healthy_watch = [], []
            for _ in range(n):
                healthy_plain.append(run(ok, False))
                healthy_watch.append(run(ok, True))
            print(f"1b. healthy handshake x{n}: without watch {_median_ms(healthy_plain)}, with watch "
                  f"{_median_ms(healthy_watch)} (per probe: one Timer thread, one dup'd fd; no packet)")
            for s in servers:
                s.close()
        finally:
            lab.close()


def _timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def bench_nameservers(timeout: float, repeat: int) -> None:
    from tests.pathtrust.conftest import DROPPED, GOOD1, GOOD2, DnsLab

    with tempfile.TemporaryDirectory(prefix="ecp-bench-dns-") as d:
        lab = DnsLab(d)
        try:
            def check(conf: str) -> float:
                return lab.node.run(lambda: _timed(lambda: nameservers.check_nameservers(
                    conf, "www.plan.test", Budget(time.monotonic() + timeout))))

            healthy = lab.resolv_conf("healthy", [GOOD1, GOOD2])
            dead_first = lab.resolv_conf("deadfirst", [DROPPED, GOOD1])
            holed = lab.resolv_conf("holed", [DROPPED])
            n = max(20, repeat * 4)
            print(f"2a. check_nameservers alone: healthy (2 servers) {_median_ms([check(healthy) for _ in range(n)])}"
                  f" (x{n}); dead first + good second {_median_ms([check(dead_first) for _ in range(repeat)])}; "
                  f"black-holed {_median_ms([check(holed) for _ in range(repeat)])} (--timeout {timeout:g})")
            try:
                bench_run(lab, timeout, repeat, {"healthy DNS": healthy, "black-holed DNS": holed})
            except ImportError as exc:
                print(f"2b. skipped: the engine API changed ({exc})")
        finally:
            lab.close()


def bench_run(lab, timeout: float, repeat: int, confs) -> None:
    from bench.blackhole import _plan
    from edgecheck.cli import hard_deadline
    from edgecheck.engine import run_checks
    from edgecheck.model import RunContext

    targets = _plan("cn-hangzhou")
    qname = next(t.host for t in targets if t.host and not t.host[0].isdigit())

    inside: List[float] = []

    def one(conf: str, with_ns: bool) -> float:
        def body() -> float:
            start = time.monotonic()
            ctx = RunContext(timeout=timeout, deadline=start + hard_deadline(timeout), resolv_conf=conf,
                             targets=tuple(targets))
            box: dict = {}
            t = None
            if with_ns:
                t = threading.Thread(target=lambda: box.setdefault("ns", _timed(lambda: nameservers.check_nameservers(
                    conf, qname, Budget(min(start + timeout, ctx.deadline))))))
                t.start()
            run_checks(targets, ctx)
            if t is not None:
                t.join()
                inside.append(box["ns"])
            return time.monotonic() - start
        return lab.node.run(body)

    for label, conf in confs.items():
        one(conf, True)  # warm: imports, first-time thread pools
        alone, both = [], []
        inside.clear()
        for _ in range(repeat):  # interleaved, so drift hits both sides alike
            alone.append(one(conf, False))
            both.append(one(conf, True))
        print(f"2b. plan run ({len(targets)} checks), {label}: alone {_median_ms(alone)}, with nameserver checks "
              f"{_median_ms(both)} (added {_median_ms([b - a for a, b in zip(alone, both)])}; the nameserver "
              f"checks themselves took {_median_ms(inside)} alongside the run; spread of the runs alone "
              f"{(max(alone) - min(alone)) * 1000:.0f} ms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    bench_pmtu(args.timeout, args.repeat)
    bench_nameservers(args.timeout, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
