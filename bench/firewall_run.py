"""What reading and evaluating this host's packet filter costs a healthy run, through the real CLI
in the integration lab (root):

    sudo python3 -m bench.firewall_run [--rules 5000] [--repeat 3]

Runs `edgecheck run` (public and dedicated mode, phase join) in the lab's node namespace with:
  none       no ruleset at all;
  5000-other a 5,000-rule nft table whose rules are on other ports (every evaluation walks them all);
  5000-same  the same with every rule on TCP 10250 (each source prefix is a boundary: worst case
             for the source sweep, which is then sampled and cut at the probe timeout).
Reports the run's wall time, the inbound checks' time, and the firewall evidence (read_ms: reading
and parsing once per run; ms: evaluating one port from its sources). Packets stay in the lab.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lab.hostfw import node_nft  # noqa: E402
from tests.lab.lab import Lab  # noqa: E402
from tests.lab.scenarios import base_args  # noqa: E402


def ruleset(n: int, port: int) -> str:
    """A big but harmless table: established traffic first, then n per-subnet accepts, policy accept."""
    lines = ["table inet bench {", "  chain input {", "    type filter hook input priority 0; policy accept;",
             "    ct state established,related accept"]
    for i in range(n - 1):
        a, b = (i // 250) % 250, i % 250
        p = port or 20000 + i % 30000
        proto = "tcp" if port or i % 3 else "udp"
        lines.append(f"    ip saddr 10.{a}.{b}.0/24 {proto} dport {p} accept")
    return "\n".join(lines + ["  }", "}"]) + "\n"


def measure(lab: Lab, mode: str, repeat: int) -> Dict[str, List[float]]:
    out: Dict[str, List[float]] = {"wall_s": [], "inbound_ms": [], "read_ms": [], "eval_ms": []}
    for _ in range(repeat):
        started = time.monotonic()
        result = lab.run_edgecheck(base_args(lab, (mode, "join", "1.28")))
        out["wall_s"].append(time.monotonic() - started)
        assert result.report is not None, result.stderr
        inbound = [c for c in result.report["checks"] if c["kind"] == "inbound"]
        out["inbound_ms"].append(max(c["duration_ms"] for c in inbound))
        fw = [c["evidence"]["firewall"] for c in inbound]
        out["read_ms"].append(max(f.get("read_ms", 0) for f in fw))
        out["eval_ms"].append(max(f.get("ms", 0) for f in fw))
        out.setdefault("verdicts", []).append(",".join(sorted({f["verdict"] for f in fw})))  # type: ignore[arg-type]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lab = Lab(regions=("cn-hangzhou",))
    lab.start()
    try:
        for label, text in (("none", ""), (f"{args.rules}-other", ruleset(args.rules, 0)),
                            (f"{args.rules}-same", ruleset(args.rules, 10250))):
            for mode in ("public", "dedicated"):
                with ExitStack() as stack:
                    if text:
                        stack.enter_context(node_nft(lab, text))
                    m = measure(lab, mode, args.repeat)
                med = {k: statistics.median(v) for k, v in m.items() if k != "verdicts"}
                print(f"{label:11} {mode:9}: run {med['wall_s']:.2f} s (max {max(m['wall_s']):.2f}), slowest inbound "
                      f"check {med['inbound_ms']:.0f} ms, read+parse {med['read_ms']:.0f} ms, evaluate one port "
                      f"{med['eval_ms']:.0f} ms; verdicts {set(m['verdicts'])}")
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
