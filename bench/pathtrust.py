"""What the path-MTU retry and the nameserver checks add to a run, measured in test namespaces.

    sudo python3 -m bench.pathtrust [--timeout 3] [--repeat 15]

The path of tests/pathtrust/topology.py (node -- cpe ==1280== isp -- server, the isp's ICMP
"fragmentation needed" toward the black-holed address dropped), real TLS servers, a DNS server on
the server side and one whose UDP 53 is dropped. Runs go through the engine and the diagnosis as
`edgecheck run` does (runner's own pieces), in the node namespace, interleaved A/B:
1. MSS retry: the same plan with the stall watch armed (as shipped) and disarmed:
   a. healthy: an HTTPS endpoint with a small handshake on the healthy path;
   b. black-holed: HTTPS with a long chain (stalls in the handshake) and HTTP with a large response.
2. Nameserver checks: the healthy plan with and without its dns:nameserver checks,
   a. resolv.conf with one working nameserver; b. a dead first nameserver, a working second.
The real CLI's whole-process time is in bench/healthy.py. No packet leaves the namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgecheck.catalog import load_catalog  # noqa: E402
from edgecheck.checks import pathmtu  # noqa: E402
from edgecheck.diagnosis import diagnose  # noqa: E402
from edgecheck.engine import hard_deadline, run_checks  # noqa: E402
from edgecheck.model import CheckResult, Kind, Report, Target  # noqa: E402
from edgecheck.plan import Nameserver, Selection, build_plan  # noqa: E402
from edgecheck.runcontext import RunContext  # noqa: E402

DNS, DEAD_DNS = "10.81.0.53", "10.81.0.54"
TARGETS = """
[[endpoint]]
id = "healthy"
name = "small handshake, healthy path"
host = "good.test"
ports = [9443]
probe = "https"

[[endpoint]]
id = "hole-tls"
name = "long chain behind the black hole"
host = "big.test"
ports = [443]

[[endpoint]]
id = "hole-http"
name = "large response behind the black hole"
host = "big.test"
ports = [80]
"""


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


class _Disarmed:
    def finish(self, stalled: bool, grace: float = 0.5) -> None:
        return None


@contextlib.contextmanager
def _retry(armed: bool) -> Iterator[None]:
    original = pathmtu.watch
    if not armed:
        pathmtu.watch = lambda *a, **k: _Disarmed()  # type: ignore[assignment,return-value]
    try:
        yield
    finally:
        pathmtu.watch = original  # type: ignore[assignment]


def _plan(targets_file: str, entries: Sequence[str], nameservers: Sequence[str]) -> List[Target]:
    sel = Selection(region="cn-hangzhou", nameservers=tuple(Nameserver(a, 53, None, "bench") for a in nameservers))
    plan = build_plan(load_catalog([targets_file]), sel)
    return [t for t in plan.targets if t.entry in entries or t.kind is Kind.DNS]


def _run(lab: Any, targets: List[Target], conf: str, timeout: float, ca: str) -> Tuple[float, List[CheckResult]]:
    def body() -> Tuple[float, List[CheckResult]]:
        start = time.monotonic()
        ctx = RunContext(timeout=timeout, deadline=start + hard_deadline(targets, timeout), resolv_conf=conf,
                         ca_bundle=ca, targets=tuple(targets))
        results = run_checks(targets, ctx)
        diagnose(Report("2026-01-01T00:00:00Z", "bench", {}, {"mode": "public", "phase": "join"}, results))
        return time.monotonic() - start, results
    return lab.node.run(body)


def _flush(lab: Any) -> None:
    for ns in (lab.server, lab.node):
        ns.exec("ip", "route", "flush", "cache")


def bench_retry(lab: Any, files: Dict[str, str], timeout: float, repeat: int) -> None:
    healthy = _plan(files["targets"], ["healthy"], [DNS])
    holed = _plan(files["targets"], ["hole-tls", "hole-http"], [DNS])
    for label, targets, n in (("healthy", healthy, repeat * 2), ("black-holed", holed, max(3, repeat // 3))):
        walls: Dict[bool, List[float]] = {True: [], False: []}
        per_check: Dict[bool, List[float]] = {True: [], False: []}
        outcome: Dict[bool, str] = {}
        _run(lab, targets, files["healthy-conf"], timeout, files["ca"])  # warm: imports, contexts
        for _ in range(n):
            for armed in (False, True):
                _flush(lab)
                with _retry(armed):
                    wall, results = _run(lab, targets, files["healthy-conf"], timeout, files["ca"])
                walls[armed].append(wall)
                web = [r for r in results if r.kind is Kind.ENDPOINT]
                per_check[armed] += [r.duration_ms / 1000 for r in web]
                outcome[armed] = ", ".join(sorted({f"{r.status.value}/{r.reason.value}" for r in web}))
        extra = [a - b for a, b in zip(walls[True], walls[False])]
        print(f"1. MSS retry, {label} run ({len(targets)} checks, --timeout {timeout:g}, x{n} interleaved): "
              f"without {_ms(walls[False])} [{outcome[False]}], with {_ms(walls[True])} [{outcome[True]}]; "
              f"added {_ms(extra)} per run; endpoint check median {_ms(per_check[False])} -> {_ms(per_check[True])}")


def bench_nameservers(lab: Any, files: Dict[str, str], timeout: float, repeat: int) -> None:
    for label, conf, servers in (("one working nameserver", files["healthy-conf"], [DNS]),
                                 ("dead first, working second", files["dead-conf"], [DEAD_DNS, DNS])):
        without = _plan(files["targets"], ["healthy"], [])
        with_ns = _plan(files["targets"], ["healthy"], servers)
        _run(lab, with_ns, conf, timeout, files["ca"])
        walls: Dict[bool, List[float]] = {True: [], False: []}
        ns_ms: List[float] = []
        for _ in range(repeat):
            for on, targets in ((False, without), (True, with_ns)):
                wall, results = _run(lab, targets, conf, timeout, files["ca"])
                walls[on].append(wall)
                if on:
                    ns_ms += [r.duration_ms / 1000 for r in results if r.kind is Kind.DNS]
        extra = [a - b for a, b in zip(walls[True], walls[False])]
        print(f"2. nameserver checks, {label} (resolv.conf timeout:1, x{repeat} interleaved): run without "
              f"{_ms(walls[False])}, with {_ms(walls[True])} (added {_ms(extra)}); the dns:nameserver checks "
              f"themselves {_ms(ns_ms)}")


@contextlib.contextmanager
def _lab(d: str) -> Iterator[Tuple[Any, Dict[str, str]]]:
    from tests.pathtrust.conftest import BigResponseServer, serve_chain
    from tests.pathtrust.pki import Pki
    from tests.pathtrust.topology import PathLab
    from tests.probes.servers import DnsServer, HttpsServer

    pki = Pki(d)
    root = pki.root("lab-root", rsa=True)
    leaf, *chain = pki.chain(root, 4, "big", ["big.test"], rsa=True)
    good = pki.issue(root, "good", sans=["good.test"])
    lab = PathLab()
    servers: List[Any] = []
    try:
        hole4, _ = lab.add_endpoint(10)
        ok4, _ = lab.add_endpoint(11)
        lab.black_hole(hole4)
        servers.append(serve_chain(lab.server, hole4, 443, leaf, chain, d))
        servers.append(lab.server.run(BigResponseServer, hole4, 80))
        servers.append(lab.server.run(HttpsServer, ok4, 9443, good.cert, good.key))
        for address in (DNS, DEAD_DNS):
            lab.server.add_address(f"{address}/32")
        lab.server.iptables("-A", "INPUT", "-d", DEAD_DNS, "-p", "udp", "--dport", "53", "-j", "DROP")
        dns = lab.server.run(DnsServer, DNS, 53)
        dns.zone.update({"big.test": {"A": [hole4]}, "good.test": {"A": [ok4]}, "*": "NXDOMAIN"})
        servers.append(dns)
        files = {"targets": os.path.join(d, "targets.toml"), "ca": root.cert,
                 "healthy-conf": os.path.join(d, "resolv-healthy.conf"), "dead-conf": os.path.join(d, "resolv-dead.conf")}
        with open(files["targets"], "w") as fh:
            fh.write(TARGETS)
        with open(files["healthy-conf"], "w") as fh:
            fh.write(f"nameserver {DNS}\noptions timeout:1 attempts:1\n")
        with open(files["dead-conf"], "w") as fh:
            fh.write(f"nameserver {DEAD_DNS}\nnameserver {DNS}\noptions timeout:1 attempts:1\n")
        yield lab, files
    finally:
        for s in servers:
            s.close()
        lab.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ecp-bench-") as d, _lab(d) as (lab, files):
        bench_retry(lab, files, args.timeout, args.repeat)
        bench_nameservers(lab, files, args.timeout, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
