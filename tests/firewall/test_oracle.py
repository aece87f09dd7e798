"""The kernel is the oracle: real rules in a test namespace, a real packet per case, and the
evaluator's verdict must equal what the kernel did.

Each scenario loads one ruleset into the node namespace (iptables-nft; iptables-legacy; native
nft with sets and verdict maps; ufw itself; firewalld itself), reads it back with the production
reader, and checks every case both ways.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import List, Tuple


from edgecheck.firewall import (
    FIREWALLD,
    IPTABLES_LEGACY,
    IPTABLES_NFT,
    NFTABLES,
    UFW,
    Opening,
    Packet,
    detect_manager,
    evaluate,
    evaluate_sources,
    read_ruleset,
    remedy,
)
from tests.firewall.fwlab import NODE_ADDR, NODE_IF, PEER_ADDR, FwLab, agrees, kernel_verdict, need
from tests.firewall.managers import run_firewalld, tree_digest, ufw_mounts

# (direction, proto, port, peer source address (inbound) / None, expected verdict)
Case = Tuple[str, str, int, str, str]


def check_cases(lab: FwLab, cases: List[Case]) -> object:
    res = lab.node.run(read_ruleset, 5.0)
    assert res.ok, res.unreadable
    rs = res.ruleset
    failures = []
    for direction, proto, port, src, expected in cases:
        if direction == "in":
            kernel = lab.peer.run(kernel_verdict, proto, NODE_ADDR, port, src)
            ev = evaluate(rs, Packet("in", proto, src, NODE_ADDR, port, iifname=NODE_IF))
        else:
            kernel = lab.node.run(kernel_verdict, proto, PEER_ADDR, port, None)
            ev = evaluate(rs, Packet("out", proto, NODE_ADDR, PEER_ADDR, port, oifname=NODE_IF))
        ok = agrees(kernel, ev.verdict) and ev.verdict == expected
        if not ok:
            failures.append(f"{direction} {proto}/{port} from {src}: kernel={kernel} evaluator={ev.verdict} "
                            f"expected={expected}: {ev.describe()}")
    assert not failures, "\n".join(failures)
    return rs


IPTABLES_RULES = """
iptables -A INPUT -p tcp --dport 10250 -s 10.0.0.0/8 -j ACCEPT
iptables -A INPUT -p tcp --dport 10250 -j DROP
iptables -A INPUT -p tcp -m multiport --dports 10255,9100 -j REJECT --reject-with icmp-admin-prohibited
iptables -A INPUT -p udp --dport 8472 -m conntrack --ctstate NEW -s 192.168.50.0/24 -j DROP
iptables -N EDGE
iptables -A EDGE -p tcp --dport 9445 -j RETURN
iptables -A EDGE -p tcp --dport 9445:9500 -j DROP
iptables -A INPUT -j EDGE
iptables -A INPUT -m iprange --src-range 172.20.0.1-172.20.0.9 -p tcp --dport 80 -j REJECT --reject-with tcp-reset
iptables -A INPUT -i ecfw+ -p tcp --dport 7000 -m comment --comment "edge test" -j DROP
iptables -A OUTPUT -p tcp -d 10.88.0.1 --dport 443 -j DROP
iptables -A OUTPUT -p tcp --dport 6443 -j REJECT --reject-with icmp-admin-prohibited
iptables -A OUTPUT -p udp --dport 123 -j DROP
"""

IPTABLES_CASES: List[Case] = [
    ("in", "tcp", 10250, PEER_ADDR, "accept"),
    ("in", "tcp", 10250, "192.168.50.1", "drop"),
    ("in", "tcp", 10255, PEER_ADDR, "reject"),
    ("in", "tcp", 9100, "172.20.0.1", "reject"),
    ("in", "udp", 8472, "192.168.50.1", "drop"),
    ("in", "udp", 8472, PEER_ADDR, "accept"),
    ("in", "tcp", 9445, PEER_ADDR, "accept"),
    ("in", "tcp", 80, "172.20.0.1", "reject"),
    ("in", "tcp", 80, PEER_ADDR, "accept"),
    ("in", "tcp", 7000, PEER_ADDR, "drop"),
    ("out", "tcp", 443, None, "drop"),
    ("out", "tcp", 6443, None, "reject"),
    ("out", "udp", 123, None, "drop"),
    ("out", "tcp", 10280, None, "accept"),
    ("out", "udp", 4500, None, "accept"),
]


def test_iptables_nft_rules_match_the_kernel(lab: FwLab) -> None:
    lab.sh(lab.node, IPTABLES_RULES)
    rs = check_cases(lab, IPTABLES_CASES)
    assert {t.source for t in rs.tables} == {"iptables-nft"}
    ev = evaluate(rs, Packet("in", "tcp", "192.168.50.1", NODE_ADDR, 10250, iifname=NODE_IF))
    assert ev.rule is not None and ev.rule.text == "-A INPUT -p tcp -m tcp --dport 10250 -j DROP"
    assert ev.rule.chain == "INPUT" and ev.base is not None and ev.base.source == "iptables-nft"
    mgr = detect_manager(rs, ev)
    assert mgr.name == IPTABLES_NFT
    fix = remedy(mgr, Opening("in", "tcp", 10250, sources=("192.168.50.0/24",)), ev.base, "debian")
    assert fix.commands == ("iptables -I INPUT 1 -p tcp -s 192.168.50.0/24 --dport 10250 -j ACCEPT",)
    assert "/etc/iptables/rules.v4" in fix.persist
    # Only some of the planned sources reach 10250: partial, naming them.
    sv = evaluate_sources(rs, ["10.88.0.0/24", "192.168.50.0/24"], "tcp", 10250, NODE_ADDR, NODE_IF)
    assert sv.status == "partial" and sv.allowed_cidrs == ["10.88.0.0/24"] and sv.blocked_cidrs == ["192.168.50.0/24"]
    # The applied remedy makes the kernel and the evaluator agree on accept.
    lab.sh(lab.node, fix.commands[0])
    check_cases(lab, [("in", "tcp", 10250, "192.168.50.1", "accept")])


def test_iptables_legacy_rules_match_the_kernel(lab: FwLab) -> None:
    need("iptables-legacy", "iptables-legacy-save")
    lab.sh(lab.node, IPTABLES_RULES.replace("iptables ", "iptables-legacy "))
    rs = check_cases(lab, IPTABLES_CASES)
    assert {t.source for t in rs.tables} == {"iptables-legacy"}
    ev = evaluate(rs, Packet("out", "tcp", NODE_ADDR, PEER_ADDR, 443, oifname=NODE_IF))
    mgr = detect_manager(rs, ev)
    assert mgr.name == IPTABLES_LEGACY
    fix = remedy(mgr, Opening("out", "tcp", 443, destinations=(PEER_ADDR,)), ev.base, "rhel")
    assert fix.commands == (f"iptables-legacy -I OUTPUT 1 -p tcp -d {PEER_ADDR} --dport 443 -j ACCEPT",)
    assert "/etc/sysconfig/iptables" in fix.persist


NFT_RULESET = """
table inet edge {
  set allowed { type ipv4_addr; flags interval; elements = { 10.88.0.0/24, 172.20.0.0/16 } }
  set kports { type inet_service; elements = { 10250, 10255 } }
  map udpv { type inet_service : verdict; elements = { 8472 : jump vx, 4789 : drop } }
  chain input {
    type filter hook input priority 0; policy drop;
    ct state vmap { established : accept, related : accept, invalid : drop }
    iif lo accept
    ip saddr @allowed tcp dport @kports accept
    tcp dport 9100-9445 ip saddr != 192.168.50.0/24 accept
    udp dport vmap @udpv
    ip saddr 10.9.0.0/16 meta l4proto tcp reject with icmpx admin-prohibited
    tcp dport { 80, 7000 } reject with tcp reset
  }
  chain vx {
    ip saddr 10.88.0.1 accept
    ip saddr 172.20.0.0/16 return
    drop
  }
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr . tcp dport { 10.88.0.1 . 443 } drop
    udp dport 123 reject
  }
}
table ip early {
  chain pre {
    type filter hook prerouting priority -150; policy accept;
    ip saddr 172.20.0.0/16 tcp dport 22 drop
  }
}
"""


def test_native_nft_sets_and_verdict_maps_match_the_kernel(lab: FwLab, tmp_path: Path) -> None:
    path = tmp_path / "edge.nft"
    path.write_text(NFT_RULESET)
    lab.sh(lab.node, f"nft -f {path}")
    rs = check_cases(lab, [
        ("in", "tcp", 10250, PEER_ADDR, "accept"),
        ("in", "tcp", 10250, "192.168.50.1", "drop"),
        ("in", "tcp", 10255, "172.20.0.1", "accept"),
        ("in", "tcp", 9100, PEER_ADDR, "accept"),
        ("in", "tcp", 9100, "192.168.50.1", "drop"),
        ("in", "udp", 8472, PEER_ADDR, "accept"),
        ("in", "udp", 8472, "172.20.0.1", "drop"),
        ("in", "udp", 8472, "192.168.50.1", "drop"),
        ("in", "udp", 4789, PEER_ADDR, "drop"),
        ("in", "tcp", 80, PEER_ADDR, "reject"),
        ("in", "tcp", 22, "10.9.0.1", "reject"),
        ("in", "tcp", 22, "172.20.0.1", "drop"),
        ("in", "tcp", 22, PEER_ADDR, "drop"),
        ("out", "tcp", 443, None, "drop"),
        ("out", "tcp", 6443, None, "accept"),
        ("out", "udp", 123, None, "reject"),
        ("out", "udp", 4500, None, "accept"),
    ])
    ev = evaluate(rs, Packet("in", "udp", "172.20.0.1", NODE_ADDR, 8472, iifname=NODE_IF))
    assert ev.verdict == "drop" and ev.rule is not None and ev.rule.index is None  # the input policy
    ev = evaluate(rs, Packet("in", "tcp", "172.20.0.1", NODE_ADDR, 22, iifname=NODE_IF))
    assert ev.base is not None and (ev.base.table, ev.base.chain, ev.base.hook) == ("early", "pre", "prerouting")
    mgr = detect_manager(rs, ev)
    assert mgr.name == NFTABLES
    fix = remedy(mgr, Opening("in", "tcp", 22, sources=("172.20.0.0/16",)), ev.base, "debian")
    assert fix.commands == ("nft insert rule ip early pre ip saddr 172.20.0.0/16 tcp dport 22 accept",)
    sv = evaluate_sources(rs, ["192.168.50.0/24", "172.20.0.0/16"], "tcp", 9100, NODE_ADDR, NODE_IF)
    assert sv.status == "partial" and sv.blocked_cidrs == ["192.168.50.0/24"]


def test_ufw_ruleset_matches_the_kernel(lab: FwLab, tmp_path: Path) -> None:
    need("ufw")
    before = tree_digest("/etc/ufw")
    mounts = ufw_mounts(tmp_path)
    lab.sh(lab.node, """
        ufw --force enable
        ufw default deny outgoing
        ufw allow out 443/tcp
        ufw allow out to 10.88.0.1 port 123 proto udp
        ufw allow from 10.88.0.0/24 to any port 10250 proto tcp
        ufw allow 8472/udp
        ufw deny 9100/tcp
        ufw reject 9445/tcp
        ufw limit 22/tcp
    """, private_mounts=mounts)
    assert tree_digest("/etc/ufw") == before, "ufw touched this machine's /etc/ufw"
    rs = check_cases(lab, [
        ("in", "tcp", 10250, PEER_ADDR, "accept"),
        ("in", "tcp", 10250, "192.168.50.1", "drop"),
        ("in", "udp", 8472, "172.20.0.1", "accept"),
        ("in", "tcp", 9100, PEER_ADDR, "drop"),
        ("in", "tcp", 9445, PEER_ADDR, "reject"),
        ("in", "tcp", 22, PEER_ADDR, "accept"),
        ("in", "tcp", 10255, PEER_ADDR, "drop"),
        ("out", "tcp", 443, None, "accept"),
        ("out", "udp", 123, None, "accept"),
        ("out", "tcp", 6443, None, "drop"),
        ("out", "udp", 4500, None, "drop"),
    ])
    ev = evaluate(rs, Packet("in", "tcp", PEER_ADDR, NODE_ADDR, 10255, iifname=NODE_IF))
    mgr = detect_manager(rs, ev)
    assert mgr.name == UFW
    assert remedy(mgr, Opening("in", "tcp", 10255, sources=("10.88.0.0/24",))).commands == (
        "ufw allow from 10.88.0.0/24 to any port 10255 proto tcp",)
    ev = evaluate(rs, Packet("in", "tcp", PEER_ADDR, NODE_ADDR, 9100, iifname=NODE_IF))
    assert detect_manager(rs, ev).name == UFW and "ufw-user-input" in ev.rule.text


def test_firewalld_default_zone_blocks_the_node_ports(lab: FwLab, tmp_path: Path) -> None:
    before = tree_digest("/etc/firewalld")
    run_firewalld(lab.node.name, tmp_path, "firewall-cmd --get-default-zone")
    assert tree_digest("/etc/firewalld") == before
    rs = check_cases(lab, [
        ("in", "tcp", 10250, PEER_ADDR, "reject"),
        ("in", "tcp", 10255, PEER_ADDR, "reject"),
        ("in", "tcp", 9100, PEER_ADDR, "reject"),
        ("in", "tcp", 9445, PEER_ADDR, "reject"),
        ("in", "udp", 8472, PEER_ADDR, "reject"),
        ("in", "tcp", 22, PEER_ADDR, "accept"),
        ("out", "tcp", 443, None, "accept"),
        ("out", "udp", 123, None, "accept"),
    ])
    ev = evaluate(rs, Packet("in", "tcp", PEER_ADDR, NODE_ADDR, 10250, iifname=NODE_IF))
    assert ev.reject_type == "icmpx admin-prohibited"
    mgr = detect_manager(rs, ev)
    assert (mgr.name, mgr.zone) == (FIREWALLD, "public")
    assert remedy(mgr, Opening("in", "tcp", 10250)).text() == (
        "firewall-cmd --permanent --zone=public --add-port=10250/tcp && firewall-cmd --reload")


def test_firewalld_config_that_allows_the_ports_evaluates_as_accept(lab: FwLab, tmp_path: Path) -> None:
    run_firewalld(lab.node.name, tmp_path, """
        firewall-cmd --permanent --zone=public --add-port=10250/tcp --add-port=10255/tcp --add-port=9100/tcp \
            --add-port=9445/tcp --add-port=8472/udp >/dev/null
        firewall-cmd --permanent --zone=public \
            --add-rich-rule='rule family="ipv4" source address="192.168.50.0/24" port port="10250" protocol="tcp" drop' >/dev/null
        firewall-cmd --permanent --zone=internal --add-source=172.20.0.0/16 >/dev/null
        firewall-cmd --reload >/dev/null
    """)
    rs = check_cases(lab, [
        ("in", "tcp", 10250, PEER_ADDR, "accept"),
        ("in", "tcp", 10255, PEER_ADDR, "accept"),
        ("in", "tcp", 9100, PEER_ADDR, "accept"),
        ("in", "tcp", 9445, PEER_ADDR, "accept"),
        ("in", "udp", 8472, PEER_ADDR, "accept"),
        ("in", "tcp", 10250, "192.168.50.1", "drop"),
        ("in", "tcp", 10250, "172.20.0.1", "reject"),  # source-bound zone "internal" lacks the port
    ])
    sv = evaluate_sources(rs, ["10.88.0.0/24", "192.168.50.0/24", "172.20.0.0/16"], "tcp", 10250, NODE_ADDR, NODE_IF)
    assert sv.status == "partial" and sv.allowed_cidrs == ["10.88.0.0/24"]
    ev = evaluate(rs, Packet("in", "tcp", "172.20.0.1", NODE_ADDR, 10250, iifname=NODE_IF))
    mgr = detect_manager(rs, ev)
    assert (mgr.name, mgr.zone) == (FIREWALLD, "internal")
    assert remedy(mgr, Opening("in", "tcp", 10250, sources=("172.20.0.0/16",))).commands[0] == (
        "firewall-cmd --permanent --zone=internal --add-rich-rule='rule family=\"ipv4\" source "
        "address=\"172.20.0.0/16\" port port=\"10250\" protocol=\"tcp\" accept'")


def test_unreadable_expressions_give_unknown_never_a_guess(lab: FwLab, tmp_path: Path) -> None:
    path = tmp_path / "odd.nft"
    path.write_text("""
table inet odd {
  chain input {
    type filter hook input priority 0; policy accept;
    ip ttl 64 tcp dport 10250 drop
    tcp dport 10255 meta cpu 0 accept
    tcp dport 10255 drop
    ip dscp cs1 tcp dport 9100 accept
  }
}
""")
    lab.sh(lab.node, f"nft -f {path}")
    lab.sh(lab.node, "iptables -A INPUT -p tcp --dport 9445 -m statistic --mode random --probability 0.5 -j DROP")
    res = lab.node.run(read_ruleset, 5.0)
    rs = res.ruleset
    # The kernel drops 10250 (the peer's TTL is 64); the evaluator cannot read `ip ttl` and says so.
    assert lab.peer.run(kernel_verdict, "tcp", NODE_ADDR, 10250, PEER_ADDR) == "drop"
    ev = evaluate(rs, Packet("in", "tcp", PEER_ADDR, NODE_ADDR, 10250, iifname=NODE_IF))
    assert ev.verdict == "unknown" and ev.rule is not None and "ip ttl 64" in ev.rule.text
    assert "cannot evaluate rule" in ev.describe()
    ev = evaluate(rs, Packet("in", "tcp", PEER_ADDR, NODE_ADDR, 10255, iifname=NODE_IF))
    assert ev.verdict == "unknown" and "meta cpu" in ev.rule.text
    ev = evaluate(rs, Packet("in", "tcp", PEER_ADDR, NODE_ADDR, 9445, iifname=NODE_IF))
    assert ev.verdict == "unknown" and "statistic" in ev.rule.text
    # An unreadable match that cannot change the outcome does not hide a readable verdict.
    assert lab.peer.run(kernel_verdict, "tcp", NODE_ADDR, 9100, PEER_ADDR) == "accept"
    ev = evaluate(rs, Packet("in", "tcp", PEER_ADDR, NODE_ADDR, 9100, iifname=NODE_IF))
    assert ev.verdict == "accept" and any("dscp" in u.text for u in ev.uncertain)


def test_reading_without_cap_net_admin_is_unreadable_not_an_error(lab: FwLab) -> None:
    need("setpriv")
    code = ("from edgecheck.firewall.reader import read_ruleset;"
            "r = read_ruleset(cap={cap}); print('OK' if r.ok else 'UNREADABLE', r.unreadable and r.unreadable.reason)")
    base = ["ip", "netns", "exec", lab.node.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    import sys
    for cap in ("None", "True"):  # detected from CapEff / forced past the check: nft itself refuses
        out = subprocess.run(base + ["--inh-caps=-all", sys.executable, "-c", code.format(cap=cap)],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("UNREADABLE") and "CAP_NET_ADMIN" in out.stdout, out.stdout
    # What the systemd drop-in grants (a non-root user with ambient CAP_NET_ADMIN + CAP_NET_RAW) is enough.
    lab.sh(lab.node, IPTABLES_RULES)
    out = subprocess.run(base + ["--inh-caps=+net_admin,+net_raw", "--ambient-caps=+net_admin,+net_raw",
                                 sys.executable, "-c", code.format(cap="None")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.startswith("OK"), out.stdout + out.stderr


def test_local_address_helpers_name_the_interface(lab: FwLab) -> None:
    from edgecheck.firewall.localaddr import interface_of, route_to

    assert lab.node.run(interface_of, NODE_ADDR) == NODE_IF
    assert lab.node.run(interface_of, "10.88.0.77") == NODE_IF  # inside the interface's subnet
    assert lab.node.run(interface_of, "203.0.113.1") is None
    assert lab.node.run(route_to, PEER_ADDR) == (NODE_ADDR, NODE_IF)
    assert lab.node.run(route_to, "192.168.50.1") == (NODE_ADDR, NODE_IF)  # via the peer
