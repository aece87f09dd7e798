"""Pure tests: parsers, evaluator, manager/remedies, source CIDRs, reader logic with a fake runner.

Fixtures were captured from real software in a test namespace (firewalld 1.3.3 nftables backend,
ufw 0.36.2 on iptables-nft 1.8.9, nft 1.0.6); the oracle tests re-create them live.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecheck.firewall import (
    FIREWALLD,
    IPTABLES_NFT,
    NFTABLES,
    UFW,
    Manager,
    Opening,
    Packet,
    detect_manager,
    evaluate,
    evaluate_sources,
    firewalld_zone,
    parse_iptables_save,
    parse_nft_json,
    read_ruleset,
    remedy,
)
from edgecheck.firewall.evaluate import MAX_BRANCHES
from edgecheck.firewall.iptsave import parse_rule_tokens
from edgecheck.firewall.ruleset import Opaque, addr_int
from edgecheck.firewall.sources import representatives, source_intervals

FIX = Path(__file__).parent / "fixtures"
NODE = "10.0.0.2"


def load(name: str):
    text = (FIX / name).read_text()
    return parse_nft_json(text) if name.endswith(".json") else parse_iptables_save(text, "ip", "iptables-nft")


def inbound(rs, port, src="198.51.100.7", proto="tcp", iif="eth0"):
    return evaluate(rs, Packet("in", proto, src, NODE, port, iifname=iif))


# --- firewalld -------------------------------------------------------------------------------

def test_firewalld_default_public_zone_rejects_the_node_ports():
    rs = load("firewalld-1.3.3-public-default.json")
    for port, proto in ((10250, "tcp"), (10255, "tcp"), (9100, "tcp"), (9445, "tcp"), (8472, "udp")):
        ev = inbound(rs, port, proto=proto)
        assert ev.verdict == "reject" and ev.reject_type == "icmpx admin-prohibited", ev.describe()
        assert ev.rule.chain == "filter_IN_public" and ev.rule.text == "reject with icmpx admin-prohibited"
        assert ev.path[0] == "inet firewalld filter_INPUT" and ev.path[-1] == "filter_IN_public"
    assert inbound(rs, 22).verdict == "accept"
    assert evaluate(rs, Packet("out", "tcp", NODE, "203.0.113.5", 443, oifname="eth0")).verdict == "accept"
    ev = inbound(rs, 10250)
    mgr = detect_manager(rs, ev)
    assert mgr == Manager(FIREWALLD, "public", "nftables")
    assert remedy(mgr, Opening("in", "udp", 8472)).text() == (
        "firewall-cmd --permanent --zone=public --add-port=8472/udp && firewall-cmd --reload")


def test_firewalld_ports_rich_rules_sources_and_zones():
    rs = load("firewalld-1.3.3-ports-rich-rules.json")
    assert inbound(rs, 10250, "10.1.1.1").verdict == "accept"
    ev = inbound(rs, 10250, "10.9.1.1")
    assert ev.verdict == "drop" and "10.9.0.0/16" in ev.rule.text and ev.rule.chain == "filter_IN_public_deny"
    assert inbound(rs, 10255, "10.200.0.1").verdict == "accept"
    assert inbound(rs, 10255, "11.0.0.1").verdict == "reject"
    assert inbound(rs, 9300).verdict == "accept"  # 9100-9445 range
    assert inbound(rs, 8472, proto="udp").verdict == "accept"
    # Zone dispatch: source binding first, then the interface, then the default zone.
    assert firewalld_zone(rs, Packet("in", "tcp", "172.16.9.9", NODE, 1, iifname="dummy0")) == "internal"
    assert firewalld_zone(rs, Packet("in", "tcp", "10.1.1.1", NODE, 1, iifname="dummy0")) == "trusted"
    assert firewalld_zone(rs, Packet("in", "tcp", "10.1.1.1", NODE, 1, iifname="eth0")) == "public"
    assert inbound(rs, 10250, iif="dummy0").verdict == "accept"  # trusted zone accepts everything
    ev = inbound(rs, 10250, "172.16.0.5")
    assert ev.verdict == "reject" and detect_manager(rs, ev).zone == "internal"
    sv = evaluate_sources(rs, ["10.0.0.0/8"], "tcp", 10250, NODE, "eth0")
    assert sv.status == "partial" and sv.partial_cidrs == ["10.0.0.0/8"]
    assert "10.9.0.0" in [a for a, _ in sv.cidrs[0].blocked]
    assert "only some sources" in sv.describe()


# --- ufw --------------------------------------------------------------------------------------

def test_ufw_rules_from_iptables_save():
    rs = load("ufw-0.36.2-iptables-save.txt")
    assert inbound(rs, 10250, "10.3.3.3").verdict == "accept"
    ev = inbound(rs, 10250, "192.0.2.1")
    assert ev.verdict == "drop" and ev.rule.text == "policy drop" and ev.rule.chain == "INPUT"
    assert detect_manager(rs, ev).name == UFW
    assert inbound(rs, 8472, proto="udp").verdict == "accept"
    ev = inbound(rs, 9100)
    assert ev.verdict == "drop" and ev.rule.chain == "ufw-user-input"
    ev = inbound(rs, 9445)
    assert ev.verdict == "reject" and ev.reject_type == "tcp-reset"
    assert inbound(rs, 22).verdict == "accept"  # `ufw limit`: the first connection is let in
    assert evaluate(rs, Packet("out", "tcp", NODE, "203.0.113.5", 443, oifname="eth0")).verdict == "accept"


def test_ufw_nft_listing_alone_is_unknown_not_a_guess():
    # nft -j shows iptables extensions only as {"xt": ...}: without iptables-nft-save the evaluator
    # must not pretend to know.
    rs = load("ufw-0.36.2-nft.json")
    ev = inbound(rs, 10250, "10.3.3.3")
    assert ev.verdict == "unknown" and ev.rule is not None


# --- native nft -------------------------------------------------------------------------------

def test_sets_maps_concat_flags_and_comparisons():
    rs = load("sets-vmaps.json")  # tests/firewall/fixtures/sets-vmaps.nft
    assert inbound(rs, 22, "10.1.1.1").verdict == "accept"  # ip saddr . tcp dport @cc
    assert inbound(rs, 10255).verdict == "drop"  # tcp dport vmap @pm
    ev = inbound(rs, 8472, "10.9.9.9")
    assert ev.verdict == "accept" and ev.rule.text == "tcp dport vmap @pm"
    assert inbound(rs, 10250, "192.168.1.15").verdict == "accept"  # @allowed4 range . @ports
    # tcp dport < 1024 and != {22, 80}: reject with tcp reset; `meta skuid` (unknown inbound) is
    # after it, so port 443 is decided there.
    ev = inbound(rs, 443, "198.51.100.1")
    assert ev.verdict == "reject" and ev.reject_type == "tcp reset"
    # udp 53 -> goto sub -> return (from a goto: back to the caller's caller, i.e. the base chain's end)
    ev = inbound(rs, 53, proto="udp")
    assert ev.verdict == "drop" and ev.rule.text == "policy drop"
    ev = inbound(rs, 4789, proto="udp")  # jump sub -> not 53 -> drop in sub
    assert ev.verdict == "drop" and ev.rule.chain == "sub"
    # `meta skuid 0 accept`: the field is unknown for an inbound packet, so both ways are followed.
    # To 10.0.0.2 both end in accept (the last rule accepts 10.0.0.0/24): accept, skuid noted.
    ev = inbound(rs, 5000, "198.51.100.1")
    assert ev.verdict == "accept" and any("skuid" in u.text for u in ev.uncertain)
    # To another local address: accept vs the policy's drop -> unknown, naming that rule.
    ev = evaluate(rs, Packet("in", "tcp", "198.51.100.1", "10.0.1.2", 5000, iifname="eth0"))
    assert ev.verdict == "unknown" and "skuid" in ev.rule.text


def test_mark_set_and_match():
    rs = parse_iptables_save("""*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
-A PREROUTING -p tcp --dport 10250 -j MARK --set-xmark 0x4000/0xffffffff
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -m mark --mark 0x4000/0x4000 -j DROP
COMMIT
""")
    assert inbound(rs, 10250).verdict == "drop"
    assert inbound(rs, 10251).verdict == "accept"


# --- iptables-save parsing ----------------------------------------------------------------------

@pytest.mark.parametrize("rule,port,src,verdict", [
    ("-p tcp -m multiport --ports 10250,9000:9100 -j DROP", 9050, "1.1.1.1", "drop"),
    ("! -s 10.0.0.0/8 -p tcp --dport 10250 -j DROP", 10250, "10.1.1.1", "accept"),
    ("! -s 10.0.0.0/8 -p tcp --dport 10250 -j DROP", 10250, "11.1.1.1", "drop"),
    ("-p tcp --syn --dport 10250 -j DROP", 10250, "1.1.1.1", "drop"),
    ("-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j DROP", 10250, "1.1.1.1", "accept"),
    ("-p tcp -m addrtype ! --dst-type LOCAL -j DROP", 10250, "1.1.1.1", "accept"),
    ("-m addrtype --dst-type LOCAL -p tcp --dport 10250 -j REJECT", 10250, "1.1.1.1", "reject"),
    ("-p tcp -m hashlimit --hashlimit-above 10/sec --hashlimit-name x -j DROP", 10250, "1.1.1.1", "accept"),
    ("-p tcp -m state --state ESTABLISHED,RELATED -j DROP", 10250, "1.1.1.1", "accept"),
    ("-p tcp -m conntrack --ctstate NEW --ctorigdstport 10250 -j DROP", 10250, "1.1.1.1", "drop"),
    ("-i eth+ -p tcp -j DROP", 10250, "1.1.1.1", "drop"),
    ("-i lo -p tcp -j DROP", 10250, "1.1.1.1", "accept"),
    ("-p udp --dport 10250 -j DROP", 10250, "1.1.1.1", "accept"),
    ("-p tcp -m set --match-set blocked src -j DROP", 10250, "1.1.1.1", "unknown"),
    ("-p tcp -j NFQUEUE --queue-num 1", 10250, "1.1.1.1", "unknown"),
    ("-s 10.0.0.0/255.0.0.0 -j DROP", 10250, "10.2.3.4", "drop"),
])
def test_iptables_rule_semantics(rule, port, src, verdict):
    rs = parse_iptables_save(f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n")
    ev = inbound(rs, port, src)
    assert ev.verdict == verdict, ev.describe()


def test_goto_and_return_in_iptables():
    rs = parse_iptables_save("""*filter
:INPUT DROP [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -g A
-A INPUT -j ACCEPT
-A A -j B
-A A -p tcp --dport 1 -j ACCEPT
-A B -j RETURN
COMMIT
""")
    assert inbound(rs, 1).verdict == "accept"
    ev = inbound(rs, 2)  # goto A: falling off A returns past INPUT's `-j ACCEPT` -> policy drop
    assert ev.verdict == "drop" and ev.rule.text == "policy drop"


def test_unparseable_rule_is_opaque():
    exprs = parse_rule_tokens(["-p", "tcp", "--dport"])
    assert isinstance(exprs[0], Opaque)


def test_branch_budget_gives_unknown():
    lines = "\n".join(f"-A INPUT -p tcp -m u32 --u32 0x{i}=0x1 -j ACCEPT" for i in range(MAX_BRANCHES + 5))
    rs = parse_iptables_save(f"*filter\n:INPUT DROP [0:0]\n{lines}\nCOMMIT\n")
    assert inbound(rs, 1).verdict == "unknown"


def test_policy_accept_and_empty_ruleset():
    assert inbound(parse_nft_json('{"nftables": []}'), 1).verdict == "accept"
    assert inbound(parse_nft_json('{"nftables": []}'), 1).rule is None


# --- sources ----------------------------------------------------------------------------------

def test_representatives_cover_every_boundary():
    rs = parse_iptables_save("""*filter
:INPUT ACCEPT [0:0]
-A INPUT -s 10.0.5.0/24 -j DROP
-A INPUT -m iprange --src-range 10.0.9.7-10.0.9.9 -j DROP
COMMIT
""")
    pts, sampled = representatives("10.0.0.0/16", source_intervals(rs))
    assert not sampled
    for p in ("10.0.0.0", "10.0.255.255", "10.0.4.255", "10.0.5.0", "10.0.5.255", "10.0.6.0",
              "10.0.9.6", "10.0.9.7", "10.0.9.9", "10.0.9.10"):
        assert p in pts
    sv = evaluate_sources(rs, ["10.0.0.0/16", "10.0.9.8/32", "192.168.0.0/24"], "tcp", 1, NODE)
    assert [c.status for c in sv.cidrs] == ["partial", "blocked", "allowed"]
    assert sv.status == "partial"
    many = [(a, a) for a in (addr_int(f"10.1.{i // 256}.{i % 256}") for i in range(600))]
    pts, sampled = representatives("10.0.0.0/8", many, 64)
    assert sampled and len(pts) <= 64


# --- manager and remedies ------------------------------------------------------------------------

def test_remedies_per_manager():
    op_in = Opening("in", "tcp", 10250, sources=("10.0.0.0/8",))
    op_out = Opening("out", "udp", 123, destinations=("203.0.113.9",))
    assert remedy(Manager(UFW), op_in).commands == ("ufw allow from 10.0.0.0/8 to any port 10250 proto tcp",)
    assert remedy(Manager(UFW), op_out).commands == ("ufw allow out to 203.0.113.9 port 123 proto udp",)
    fw = remedy(Manager(FIREWALLD, "work"), op_out)
    assert fw.commands[-1] == "firewall-cmd --reload" and any("--add-ingress-zone=HOST" in c for c in fw.commands)
    assert any("destination address=\"203.0.113.9\" port port=\"123\" protocol=\"udp\" accept" in c for c in fw.commands)
    nft = remedy(Manager(NFTABLES), op_out, None, "rhel")
    assert nft.commands == ("nft insert rule inet filter output ip daddr 203.0.113.9 udp dport 123 accept",)
    assert "/etc/sysconfig/nftables.conf" in nft.persist
    ipt = remedy(Manager(IPTABLES_NFT), Opening("in", "udp", 8472, sources=("10.0.0.0/8", "fd00::/8")))
    assert ipt.commands == ("iptables -I INPUT 1 -p udp -s 10.0.0.0/8 --dport 8472 -j ACCEPT",
                            "ip6tables -I INPUT 1 -p udp -s fd00::/8 --dport 8472 -j ACCEPT")
    assert "Debian/Ubuntu" in ipt.persist and "RHEL" in ipt.persist


def test_manager_without_evaluation():
    assert detect_manager(load("firewalld-1.3.3-public-default.json")).name == FIREWALLD
    assert detect_manager(load("ufw-0.36.2-iptables-save.txt")).name == UFW
    assert detect_manager(load("sets-vmaps.json")).name == NFTABLES


# --- reader with a fake runner ------------------------------------------------------------------

class FakeHost:
    def __init__(self, outputs, tools=("nft", "iptables", "iptables-nft-save", "ip6tables-nft-save")):
        self.outputs, self.tools, self.calls = outputs, tools, []

    def tool(self, name):
        return f"/usr/sbin/{name}" if name in self.tools else None

    def run(self, argv, timeout):
        name = argv[0].rsplit("/", 1)[-1]
        key = " ".join([name] + list(argv[1:]))
        self.calls.append(key)
        return self.outputs.get(key, (1, "", f"no fake output for {key}"))


def test_reader_denied_is_unreadable_with_a_hint(tmp_path):
    host = FakeHost({"iptables -V": (0, "iptables v1.8.9 (nf_tables)", ""),
                     "nft -j list ruleset": (1, "", "netlink: Error: cache initialization failed: Operation not permitted")})
    res = read_ruleset(runner=host.run, tool=host.tool, proc_net=str(tmp_path), cap=True)
    assert not res.ok and "CAP_NET_ADMIN" in res.unreadable.reason and "firewall-read.conf" in res.unreadable.hint
    assert not read_ruleset(runner=host.run, tool=host.tool, cap=False).ok


def test_reader_merges_iptables_nft_save_for_xt_tables(tmp_path):
    host = FakeHost({
        "iptables -V": (0, "iptables v1.8.9 (nf_tables)", ""),
        "nft -j list ruleset": (0, (FIX / "ufw-0.36.2-nft.json").read_text(), ""),
        "iptables-nft-save": (0, (FIX / "ufw-0.36.2-iptables-save.txt").read_text(), ""),
        "ip6tables-nft-save": (0, "", ""),
    })
    res = read_ruleset(runner=host.run, tool=host.tool, proc_net=str(tmp_path), cap=True)
    assert res.ok and res.commands[:2] == ["nft -j list ruleset", "iptables-nft-save"]
    rs = res.ruleset
    assert rs.table("ip", "filter").source == "iptables-nft"
    assert inbound(rs, 10250, "10.3.3.3").verdict == "accept"


def test_reader_reads_legacy_tables_when_loaded(tmp_path):
    (tmp_path / "ip_tables_names").write_text("filter\n")
    host = FakeHost({
        "iptables -V": (0, "iptables v1.4.21", ""),  # CentOS 7: plain iptables-save is legacy
        "iptables-save": (0, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 10250 -j DROP\nCOMMIT\n", ""),
    }, tools=("iptables", "iptables-save"))
    res = read_ruleset(runner=host.run, tool=host.tool, proc_net=str(tmp_path), cap=True)
    assert res.ok and [t.source for t in res.ruleset.tables] == ["iptables-legacy"]
    assert "nft is not installed" in res.ruleset.notes[0]
    assert inbound(res.ruleset, 10250).verdict == "drop"


def test_reader_without_any_tool_is_unreadable(tmp_path):
    host = FakeHost({}, tools=())
    res = read_ruleset(runner=host.run, tool=host.tool, proc_net=str(tmp_path), cap=True)
    assert not res.ok and "neither nft nor iptables-save" in res.unreadable.reason


def test_sources_deadline_cuts_sampling_short():
    import time

    lines = "\n".join(f"-A INPUT -s 10.{i // 250}.{i % 250}.0/24 -p tcp --dport 1 -j DROP" for i in range(600))
    rs = parse_iptables_save(f"*filter\n:INPUT DROP [0:0]\n{lines}\nCOMMIT\n")
    sv = evaluate_sources(rs, ["10.0.0.0/8"], "tcp", 1, NODE, deadline=time.monotonic() - 1)
    c = sv.cidrs[0]
    assert c.sampled and len(c.blocked) == 1 and sv.status == "blocked"
