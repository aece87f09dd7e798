"""Cost of reading and evaluating a large ruleset (5,000 rules by default).

    python3 -m bench.firewall_eval [--rules 5000] [--live]

Generated rulesets, the shape a big hand-written or tool-generated filter has: per-subnet accepts
on varied ports (no match for the probe packet, so every rule is walked), one named interval set,
a verdict map, a user chain reached by jump, and the policy deciding at the end:
  A. nft JSON (what `nft -j list ruleset` prints), one inet table;
  B. iptables-save text with the same rules (iptables-nft with extensions, iptables-legacy).
Timed: parsing, one evaluate() (worst case: the packet walks every rule), and evaluate_sources()
for a /8. In the worst-case variant every rule is on the probed port, so all 5,000 source
prefixes are boundaries and the /8 is sampled at the maximum (256 addresses).
With --live (root): the same ruleset is loaded with `nft -f` into a throw-away network namespace
and the production reader (`nft -j list ruleset` + parse) is timed there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgecheck.firewall import Packet, evaluate, evaluate_sources, parse_iptables_save, parse_nft_json  # noqa: E402
from edgecheck.firewall.reader import read_ruleset  # noqa: E402


def nft_text(n: int) -> str:
    lines = ["table inet bench {",
             "  set blocked { type ipv4_addr; flags interval; elements = { "
             + ", ".join(f"172.{16 + i // 250}.{i % 250}.0/24" for i in range(200)) + " } }",
             "  map pv { type inet_service : verdict; elements = { 7001 : accept, 7002 : drop } }",
             "  chain sub { tcp dport 7100 accept; udp dport 7101 drop; }",
             "  chain input { type filter hook input priority 0; policy drop;",
             "    ct state established,related accept",
             "    ip saddr @blocked drop",
             "    tcp dport vmap @pv",
             "    jump sub"]
    for i in range(n - 5):
        a, b = (i // 250) % 250, i % 250
        port = 20000 + i % 30000
        proto = "tcp" if i % 3 else "udp"
        lines.append(f"    ip saddr 10.{a}.{b}.0/24 {proto} dport {port} accept")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def nft_json(n: int, same_port: bool = False) -> str:
    """The JSON nft would print for nft_text(n), built directly (no nft needed)."""
    items = [{"metainfo": {"json_schema_version": 1}},
             {"table": {"family": "inet", "name": "bench", "handle": 1}},
             {"set": {"family": "inet", "table": "bench", "name": "blocked", "type": "ipv4_addr", "flags": ["interval"],
                      "elem": [{"prefix": {"addr": f"172.{16 + i // 250}.{i % 250}.0", "len": 24}} for i in range(200)]}},
             {"map": {"family": "inet", "table": "bench", "name": "pv", "type": "inet_service", "map": "verdict",
                      "elem": [[7001, {"accept": None}], [7002, {"drop": None}]]}},
             {"chain": {"family": "inet", "table": "bench", "name": "sub"}},
             {"chain": {"family": "inet", "table": "bench", "name": "input", "type": "filter", "hook": "input",
                        "prio": 0, "policy": "drop"}}]

    def rule(chain, expr, h):
        return {"rule": {"family": "inet", "table": "bench", "chain": chain, "handle": h, "expr": expr}}

    def m(left, right, op="=="):
        return {"match": {"op": op, "left": left, "right": right}}

    h = 10
    items.append(rule("sub", [m({"payload": {"protocol": "tcp", "field": "dport"}}, 7100), {"accept": None}], h))
    items.append(rule("sub", [m({"payload": {"protocol": "udp", "field": "dport"}}, 7101), {"drop": None}], h + 1))
    items.append(rule("input", [m({"ct": {"key": "state"}}, {"set": ["established", "related"]}, "in"),
                                {"accept": None}], h + 2))
    items.append(rule("input", [m({"payload": {"protocol": "ip", "field": "saddr"}}, "@blocked"), {"drop": None}], h + 3))
    items.append(rule("input", [{"vmap": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": "@pv"}}], h + 4))
    items.append(rule("input", [{"jump": {"target": "sub"}}], h + 5))
    h += 6
    for i in range(n - 5):
        a, b = (i // 250) % 250, i % 250
        port = 10250 if same_port else 20000 + i % 30000
        proto = "tcp" if same_port or i % 3 else "udp"
        items.append(rule("input", [
            m({"payload": {"protocol": "ip", "field": "saddr"}}, {"prefix": {"addr": f"10.{a}.{b}.0", "len": 24}}),
            m({"payload": {"protocol": proto, "field": "dport"}}, port),
            {"accept": None}], h))
        h += 1
    return json.dumps({"nftables": items})


def ipt_save(n: int) -> str:
    lines = ["*filter", ":INPUT DROP [0:0]", ":SUB - [0:0]",
             "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
             "-A INPUT -m iprange --src-range 172.16.0.0-172.16.200.255 -j DROP",
             "-A INPUT -p tcp -m multiport --dports 7001,7002 -j DROP",
             "-A INPUT -j SUB", "-A SUB -p tcp -m tcp --dport 7100 -j ACCEPT"]
    for i in range(n - 5):
        a, b = (i // 250) % 250, i % 250
        proto = "tcp" if i % 3 else "udp"
        lines.append(f"-A INPUT -s 10.{a}.{b}.0/24 -p {proto} -m {proto} --dport {20000 + i % 30000} -j ACCEPT")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, min(times) * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--live", action="store_true", help="also time the live reader in a test namespace (root)")
    args = ap.parse_args()
    n = args.rules
    pkt = Packet("in", "tcp", "198.51.100.7", "10.199.0.2", 10250, iifname="eth0")
    for label, text, parse in (("nft JSON", nft_json(n), parse_nft_json),
                               ("nft JSON, every rule on the probed port (worst case for sources)",
                                nft_json(n, same_port=True), parse_nft_json),
                               ("iptables-save", ipt_save(n), lambda t: parse_iptables_save(t, "ip", "iptables-nft"))):
        med, best, rs = timed(lambda: parse(text), args.repeat)
        print(f"{label}: {rs.rule_count()} rules, {len(text) / 1e6:.2f} MB")
        print(f"  parse                      median {med:8.1f} ms  (best {best:.1f})")
        med, best, ev = timed(lambda: evaluate(rs, pkt), args.repeat)
        print(f"  evaluate (walks every rule) median {med:8.1f} ms  (best {best:.1f})  -> {ev.verdict} by {ev.rule.text}")
        med, best, sv = timed(lambda: evaluate_sources(rs, ["10.0.0.0/8"], "tcp", 10250, "10.199.0.2", "eth0"), 1)
        samples = sum(len(c.allowed) + len(c.blocked) for c in sv.cidrs)
        print(f"  evaluate_sources 10.0.0.0/8 {med:8.1f} ms  ({samples} sample addresses, sampled={sv.cidrs[0].sampled}) -> {sv.status}")
    if args.live:
        from tests.probes.netns import Netns

        ns = Netns("ecb-")
        try:
            with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
                f.write(nft_text(n))
            t = time.perf_counter()
            subprocess.run(["ip", "netns", "exec", ns.name, "nft", "-f", f.name], check=True)
            load_ms = (time.perf_counter() - t) * 1000
            os.unlink(f.name)
            med, best, res = timed(lambda: ns.run(read_ruleset, 30.0), 3)
            print(f"live nft ({n} rules loaded with nft -f in {load_ms:.0f} ms): read_ruleset median {med:.1f} ms "
                  f"(best {best:.1f}); {res.ruleset.rule_count()} rules; evaluate -> "
                  f"{evaluate(res.ruleset, pkt).verdict}")
        finally:
            ns.close()


if __name__ == "__main__":
    main()
