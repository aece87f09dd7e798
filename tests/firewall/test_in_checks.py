"""The firewall engine as the checks and the diagnosis use it (pure: parsed rulesets, made-up
addresses): inbound verdicts from sources, how they combine with the port's own state, outbound
attribution words, cause ids and the advice built from the evidence."""

from __future__ import annotations

import errno

import pytest

from edgecheck.checks.hostfilter import combine_inbound, inbound_sources, inbound_verdict, peers_text
from edgecheck.diagnosis import diagnose
from edgecheck.diagnosis.causes import cause_of, title_of
from edgecheck.diagnosis.firewall import firewall_advice, merged_commands
from edgecheck.errors import UsageError
from edgecheck.evidence import (ALLOWED, BLOCKED, NOT_EVALUATED, PARTIAL, UNKNOWN, FirewallVerdict, InboundEvidence)
from edgecheck.firewall import BaseChainRef, Manager, Opening, parse_iptables_save, remedy
from edgecheck.firewall.hostview import HostFilter
from edgecheck.firewall.localaddr import LocalNet, parse_default_routes
from edgecheck.firewall.reader import ReadResult, Unreadable
from edgecheck.model import CheckResult, Evidence, Kind, Mode, Reason, Report, Status, Target
from edgecheck.probes.icmperr import SO_EE_ORIGIN_ICMP, ExtendedError, attribute_failure
from edgecheck.probes.ike import IkeOutcome, judge_ike
from edgecheck.runcontext import RunContext
from edgecheck.runner import parse_source_cidrs

SAVE = """*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 10250 -s 10.0.0.0/25 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 10250 -j DROP
-A INPUT -p tcp -m tcp --dport 10255 -j REJECT --reject-with icmp-admin-prohibited
-A INPUT -p tcp -m tcp --dport 9445 -m statistic --mode random --probability 0.5 -j DROP
COMMIT
"""
NODE = LocalNet("eth0", "10.0.0.5", "10.0.0.0/24")


def host_filter(text: str = SAVE) -> HostFilter:
    return HostFilter(ReadResult(parse_iptables_save(text, "ip", "iptables-nft")), [NODE], {"ipv4": "eth0"}, "debian")


def inbound_target(port: int, protocol: str = "tcp") -> Target:
    return Target(id=f"inbound:{port}/{protocol}", kind=Kind.INBOUND, probe="inbound", name="kubelet", why="",
                  source="", entry="kubelet", port=port, protocol=protocol, expect="free")


def ctx_with(hf: HostFilter, **kw) -> RunContext:
    ctx = RunContext(timeout=2.0, **kw)
    ctx.facts._filter = hf  # the run's fact, as if read from this host
    return ctx


# ----------------------------------------------------------------------------- inbound verdicts
def test_sources_come_from_the_option_else_the_mode():
    hf = host_filter()
    assert inbound_sources(ctx_with(hf, source_cidrs=("192.168.0.0/16",)), hf) == (("192.168.0.0/16",), "--source-cidr")
    assert inbound_sources(ctx_with(hf, mode=Mode.DEDICATED), hf)[0] == ("0.0.0.0/0",)
    assert inbound_sources(ctx_with(hf), hf)[0] == ("10.0.0.0/24",)


def test_inbound_verdicts_blocked_partial_unknown_allowed():
    hf = host_filter()
    ctx = ctx_with(hf)
    part = inbound_verdict(inbound_target(10250), ctx)
    assert part.verdict == PARTIAL and part.blocked == ("10.0.0.0/24",) and "10.0.0.128" in part.detail
    assert part.manager == Manager("iptables-nft") and part.base is not None and part.base.chain == "INPUT"
    assert part.local_address == "10.0.0.5" and part.interface == "eth0"
    blocked = inbound_verdict(inbound_target(10255), ctx)
    assert blocked.verdict == BLOCKED and blocked.action == "reject (icmp-admin-prohibited)"
    assert "--dport 10255" in blocked.rule and blocked.where == "ip filter chain INPUT rule 3"
    unknown = inbound_verdict(inbound_target(9445), ctx)
    assert unknown.verdict == UNKNOWN and "statistic" in unknown.rule
    assert inbound_verdict(inbound_target(8472, "udp"), ctx).verdict == ALLOWED
    # From the allowed half only (--source-cidr), 10250 is allowed.
    assert inbound_verdict(inbound_target(10250), ctx_with(hf, source_cidrs=("10.0.0.0/25",))).verdict == ALLOWED


def test_unreadable_filter_and_no_address_are_not_evaluated():
    unread = HostFilter(ReadResult(None, Unreadable("reading the packet filter needs CAP_NET_ADMIN", "hint")), [], {})
    fw = inbound_verdict(inbound_target(10250), ctx_with(unread))
    assert fw.verdict == NOT_EVALUATED and "run as root or install the firewall-read.conf drop-in" in fw.detail
    lonely = HostFilter(ReadResult(parse_iptables_save(SAVE, "ip", "iptables-nft")), [], {})
    fw = inbound_verdict(inbound_target(10250), ctx_with(lonely))
    assert fw.verdict == NOT_EVALUATED and "no address" in fw.detail


@pytest.mark.parametrize("socket_state,verdict,expected", [
    ((Status.PASS, Reason.OK, "TCP 10250 is free."), BLOCKED, (Status.FAIL, Reason.HOST_FIREWALL)),
    ((Status.PASS, Reason.OK, "TCP 10250 is free."), PARTIAL, (Status.WARN, Reason.HOST_FIREWALL)),
    ((Status.PASS, Reason.OK, "TCP 10250 is free."), UNKNOWN, (Status.WARN, Reason.HOST_FIREWALL)),
    ((Status.PASS, Reason.OK, "TCP 10250 is free."), ALLOWED, (Status.PASS, Reason.OK)),
    ((Status.PASS, Reason.OK, "TCP 10250 is free."), NOT_EVALUATED, (Status.PASS, Reason.OK)),
    ((Status.FAIL, Reason.PORT_IN_USE, "TCP 10250 is in use by x."), PARTIAL, (Status.FAIL, Reason.PORT_IN_USE)),
    ((Status.FAIL, Reason.PORT_IN_USE, "TCP 10250 is in use by x."), BLOCKED, (Status.FAIL, Reason.PORT_IN_USE)),
    ((Status.WARN, Reason.LOOPBACK_ONLY, "TCP 10250 listens on loopback only."), BLOCKED,
     (Status.FAIL, Reason.HOST_FIREWALL)),
])
def test_the_worse_of_port_and_filter_wins_and_the_message_says_both(socket_state, verdict, expected):
    fw = FirewallVerdict("in", "tcp", 10250, verdict, peers=("10.0.0.0/24",), blocked=("10.0.0.0/24",),
                         action="drop", rule="-A INPUT -p tcp --dport 10250 -j DROP", where="ip filter chain INPUT rule 1",
                         detail=("needs CAP_NET_ADMIN: run as root or install the firewall-read.conf drop-in"
                                 if verdict == NOT_EVALUATED else "within 10.0.0.0/24 only some"))
    status, reason, message = combine_inbound(*socket_state, fw)
    assert (status, reason) == expected
    assert message.startswith(socket_state[2].rstrip(".")) and "packet filter" in message
    if verdict == NOT_EVALUATED:
        assert "was not evaluated (needs CAP_NET_ADMIN" in message


def test_peers_text_names_any_source():
    assert peers_text(["0.0.0.0/0"]) == "any source (0.0.0.0/0)"
    assert peers_text(["10.0.0.0/8", "192.168.0.0/16"]) == "10.0.0.0/8, 192.168.0.0/16"


# --------------------------------------------------------------------------------- outbound
def test_icmp_attribution_words():
    local = ExtendedError(111, SO_EE_ORIGIN_ICMP, 3, 3, 0, 0, "10.0.0.5")
    reason, words, icmp = attribute_failure(errno.ECONNREFUSED, [local], lambda: {"10.0.0.5"})
    assert reason is Reason.HOST_FIREWALL and "generated by this host" in words and icmp is not None and icmp.local
    remote = ExtendedError(113, SO_EE_ORIGIN_ICMP, 3, 13, 0, 0, "198.51.100.1")
    reason, words, icmp = attribute_failure(errno.EHOSTUNREACH, [remote], lambda: {"10.0.0.5"})
    assert reason is None and "a firewall at 198.51.100.1" in words and icmp.admin_prohibited and not icmp.local
    assert attribute_failure(errno.EPERM, [], lambda: set())[0] is Reason.HOST_FIREWALL
    assert attribute_failure(errno.ETIMEDOUT, [], lambda: pytest.fail("not asked"))[0] is None


def test_ike_blocked_here_is_a_failure_not_no_response():
    v = judge_ike([IkeOutcome("192.0.2.1", False, Reason.HOST_FIREWALL, "EPERM")])
    assert (v.status, v.reason) == (Status.FAIL, Reason.HOST_FIREWALL)


def test_default_routes_from_proc():
    v4 = ("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
          "eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
          "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    v6 = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
          "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n")
    assert parse_default_routes(v4, v6) == {"ipv4": "eth0", "ipv6": "eth0"}


# ------------------------------------------------------------------------------- diagnosis
FIREWALLD = Manager("firewalld", "public", "nftables")
BASE = BaseChainRef("nftables", "inet", "firewalld", "filter_INPUT", "input", 10)


def _blocked(port: int, protocol: str = "tcp") -> CheckResult:
    fw = FirewallVerdict("in", protocol, port, BLOCKED, peers=("10.0.0.0/24",), peers_origin="subnets",
                         blocked=("10.0.0.0/24",), action="reject (icmpx admin-prohibited)",
                         rule="reject with icmpx admin-prohibited",
                         where="inet firewalld chain filter_IN_public handle 9", manager=FIREWALLD, base=BASE,
                         distro_family="rhel")
    return CheckResult(inbound_target(port, protocol), Status.FAIL, Reason.HOST_FIREWALL, "blocked",
                       Evidence(InboundEvidence("free", "psutil", True), fw))


def test_one_zone_blocking_five_ports_is_one_finding_with_one_reload():
    checks = [_blocked(p) for p in (10250, 10255, 9100, 9445)] + [_blocked(8472, "udp")]
    causes = {cause_of(c) for c in checks}
    assert len(causes) == 1
    (cause,) = causes
    assert cause.id == "host-firewall:direction=in,verdict=blocked,manager=firewalld,zone=public,chain=inet:firewalld:filter_INPUT"
    assert title_of(cause, checks) == "This host's packet filter blocks inbound traffic (firewalld, zone public)"
    paragraphs, command = firewall_advice(checks)
    assert "rejects TCP 10250, TCP 10255, TCP 9100, TCP 9445 and UDP 8472 in from 10.0.0.0/24" in paragraphs[0]
    assert command.count("firewall-cmd --reload") == 1 and command.endswith("firewall-cmd --reload")
    assert 'port port="8472" protocol="udp" accept' in command
    report = diagnose(Report("2026-01-01T00:00:00Z", "0", {}, {"mode": "public"}, checks))
    (finding,) = report.findings
    assert finding.command == command and len(finding.checks) == 5


def test_merged_commands_keep_order_and_one_closing_command():
    a = remedy(FIREWALLD, Opening("in", "tcp", 10250))
    b = remedy(FIREWALLD, Opening("in", "tcp", 10255))
    assert merged_commands([a, b]) == ["firewall-cmd --permanent --zone=public --add-port=10250/tcp",
                                       "firewall-cmd --permanent --zone=public --add-port=10255/tcp",
                                       "firewall-cmd --reload"]
    u = remedy(Manager("ufw"), Opening("in", "tcp", 10250))
    assert merged_commands([u, u]) == ["ufw allow 10250/tcp"]


def test_unknown_and_unread_advice_say_how_to_check_by_hand():
    unknown = FirewallVerdict("in", "tcp", 9445, UNKNOWN, peers=("10.0.0.0/24",), rule="ip ttl 64 drop",
                              where="inet t chain input handle 4", detail="cannot read ip ttl", local_address="10.0.0.5")
    c = CheckResult(inbound_target(9445), Status.WARN, Reason.HOST_FIREWALL, "?", Evidence(unknown))
    paragraphs, command = firewall_advice([c])
    assert "cannot evaluate rule `ip ttl 64 drop`" in paragraphs[0] and "nc -vz 10.0.0.5 9445" in paragraphs[1]
    assert command == ""
    unread = FirewallVerdict("out", "udp", 123, NOT_EVALUATED, detail="needs CAP_NET_ADMIN", blocked=("192.0.2.1",),
                             kernel="the kernel refused to send it (EPERM)")
    t = Target(id="endpoint:ntp:123/udp", kind=Kind.ENDPOINT, probe="ntp", name="", why="", source="", entry="",
               host="ntp", port=123, protocol="udp")
    paragraphs, _ = firewall_advice([CheckResult(t, Status.FAIL, Reason.HOST_FIREWALL, "?", Evidence(unread))])
    assert "UDP 123 to 192.0.2.1 (the kernel refused to send it (EPERM))" in paragraphs[0]
    assert "firewall-read.conf" in paragraphs[1]


def test_a_passed_port_whose_filter_was_not_read_says_how_to_complete_it():
    from edgecheck.report import render_text

    checks = [CheckResult(inbound_target(p), Status.PASS, Reason.OK, f"TCP {p} is free.",
                          Evidence(FirewallVerdict("in", "tcp", p, NOT_EVALUATED, detail="needs CAP_NET_ADMIN: ...")))
              for p in (10250, 10255)]
    report = diagnose(Report("2026-01-01T00:00:00Z", "0", {}, {"mode": "public"}, checks))
    assert all("firewall-read.conf" in c.remediation for c in report.checks)
    text = render_text(report)
    assert text.count("note: This host's packet filter was not evaluated") == 1  # shown once for both ports
    assert render_text(report, verbose=True).count("note: This host's packet filter was not evaluated") == 2


# ------------------------------------------------------------------------------------ input
def test_source_cidrs_are_normalised_and_bad_ones_are_usage_errors():
    assert parse_source_cidrs(["10.1.2.3/8", "192.168.1.1", "10.0.0.0/8"]) == ("10.0.0.0/8", "192.168.1.1/32")
    with pytest.raises(UsageError, match="--source-cidr"):
        parse_source_cidrs(["10.0.0.0/33"])


# ------------------------------------------------------------------------- read once, lazily
def test_the_ruleset_is_read_once_and_only_when_a_probe_fails(monkeypatch):
    import os
    import shutil
    import socket

    from edgecheck.checks.tcp import check_tcp
    from edgecheck.firewall import hostview
    from tests.firewall.fwlab import in_ci
    from tests.probes.netns import Netns

    if os.geteuid() != 0 or not shutil.which("nft"):
        (pytest.fail if in_ci() else pytest.skip)("needs root and nft")
    reads = []
    real = hostview.read_host_filter
    monkeypatch.setattr(hostview, "read_host_filter", lambda *a, **k: reads.append(1) or real(*a, **k))

    def target(port: int) -> Target:
        return Target(id=f"endpoint:127.0.0.1:{port}/tcp", kind=Kind.ENDPOINT, probe="tcp", name="", why="",
                      source="", entry="", host="127.0.0.1", port=port, protocol="tcp")

    def scenario():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: a connect is reset
        ctx = RunContext(timeout=1.0)
        try:
            ok = check_tcp(target(listener.getsockname()[1]), ctx)
            after_ok = len(reads)
            refused = [check_tcp(target(closed.getsockname()[1]), ctx) for _ in range(3)]
            return ok, after_ok, refused
        finally:
            listener.close()
            closed.close()

    ns = Netns("ecfr-")
    try:
        ok, after_ok, refused = ns.run(scenario)
    finally:
        ns.close()
    assert ok.status is Status.PASS and after_ok == 0  # a healthy probe never reads the ruleset
    assert len(reads) == 1  # three failed probes: one read
    for r in refused:
        # An empty filter lets it out: the reset came from elsewhere, so the reason stays `refused`.
        assert r.reason is Reason.REFUSED and r.evidence.to_json()["firewall"]["verdict"] == ALLOWED
