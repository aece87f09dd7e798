"""Nameserver health against real dnsmasq servers in test namespaces (conftest.DnsLab)."""

from __future__ import annotations

import time

from edgecheck.probes import nameservers as N
from edgecheck.probes import resolver
from edgecheck.probes.budget import Budget
from tests.pathtrust.conftest import CLOSED, DROPPED, GOOD1, GOOD2, NO_TCP, STRIPPER

BUDGET = 1.5


def _check(dns_lab, conf, qname, **kw):
    start = time.monotonic()
    report = dns_lab.node.run(N.check_nameservers, conf, qname, Budget(start + BUDGET), **kw)
    return report, time.monotonic() - start


def _by(report):
    return {(v.address, v.upstream_of): v for v in report.verdicts}


def test_healthy_nameservers_pass_quickly(dns_lab):
    conf = dns_lab.resolv_conf("healthy", [GOOD1, GOOD2])
    report, wall = _check(dns_lab, conf, "www.plan.test")
    assert [(v.address, v.status, v.reason) for v in report.verdicts] == [(GOOD1, "pass", "ok"), (GOOD2, "pass", "ok")]
    assert wall < 0.5  # concurrent, one round trip each
    ev = report.evidence_for(GOOD1)
    assert ev["probe"]["rcode"] == "NOERROR" and ev["query"] == {"name": "www.plan.test", "type": "A"}


def test_nxdomain_counts_as_answered(dns_lab):
    conf = dns_lab.resolv_conf("nx", [GOOD1])
    report, _ = _check(dns_lab, conf, "nothing-here.plan.test")
    v = report.verdicts[0]
    assert v.status == "pass" and report.probes[0].rcode == "NXDOMAIN"


def test_dead_first_nameserver_with_a_working_second(dns_lab):
    conf = dns_lab.resolv_conf("deadfirst", [DROPPED, GOOD1], options="timeout:2 attempts:2")
    report, wall = _check(dns_lab, conf, "www.plan.test")
    v = _by(report)
    dead, good = v[(DROPPED, None)], v[(GOOD1, None)]
    assert (dead.status, dead.reason, dead.wait_s) == ("warn", "dns-timeout", 2)
    assert "waits 2 s" in dead.message and GOOD1 in dead.message
    assert good.status == "pass"
    assert wall < BUDGET + 0.5  # a dead server costs the probe budget, never more


def test_stopped_nameserver_is_refused_without_a_wait(dns_lab):
    conf = dns_lab.resolv_conf("closed", [CLOSED, GOOD1])
    report, wall = _check(dns_lab, conf, "www.plan.test")
    v = _by(report)[(CLOSED, None)]
    assert (v.status, v.reason, v.wait_s) == ("warn", "dns-error", 0)
    assert "ICMP port unreachable" in v.message
    assert wall < 0.5


def test_no_nameserver_answers_fails(dns_lab):
    conf = dns_lab.resolv_conf("none", [DROPPED, CLOSED])
    report, wall = _check(dns_lab, conf, "www.plan.test")
    assert [(v.status, v.reason) for v in report.verdicts] == [("fail", "dns-timeout"), ("fail", "dns-error")]
    assert wall < BUDGET + 0.5


def test_servfail_is_named(dns_lab):
    # The lab's validating forwarder answers SERVFAIL for fail.test (its upstream strips DNSSEC);
    # the stripper itself answers the name.
    conf = dns_lab.resolv_conf("servfail", [GOOD1, STRIPPER])
    report, _ = _check(dns_lab, conf, "a.fail.test")
    v = _by(report)
    assert report.probes[0].rcode == "SERVFAIL"
    assert (v[(GOOD1, None)].status, v[(GOOD1, None)].reason) == ("warn", "dns-error")
    assert "answers SERVFAIL" in v[(GOOD1, None)].message and v[(GOOD1, None)].wait_s == 0
    alone = dns_lab.resolv_conf("servfail-alone", [GOOD1])
    report, _ = _check(dns_lab, alone, "a.fail.test")
    assert (report.verdicts[0].status, report.verdicts[0].reason) == ("fail", "dns-error")


def test_dns_error_message_from_a_real_resolution(dns_lab):
    conf = dns_lab.resolv_conf("servfail-msg", [GOOD1])
    res = dns_lab.node.run(resolver.resolve, "a.fail.test", conf, Budget(time.monotonic() + 2))
    assert res.reason.value == "dns-error"
    assert res.error.startswith("nameserver 10.82.0.1 answered SERVFAIL (the nameserver could not get an answer"), res.error


def test_large_answer_with_tcp_53_blocked(dns_lab):
    conf = dns_lab.resolv_conf("bigtcp", [NO_TCP, GOOD1])
    report, wall = _check(dns_lab, conf, "big.plan.test")
    blocked, good = report.probes
    assert blocked.truncated and blocked.outcome == "tcp-blocked" and blocked.tcp == "timeout"
    assert good.truncated and good.tcp == "ok" and good.answers == 60
    v = _by(report)[(NO_TCP, None)]
    assert (v.status, v.reason) == ("warn", "dns-error") and "TCP 53" in v.message
    # The same server answers small names over UDP: only large answers are affected.
    small, _ = _check(dns_lab, dns_lab.resolv_conf("smalltcp", [NO_TCP]), "www.plan.test")
    assert small.verdicts[0].status == "pass"
    # With `options edns0` the answer fits in one UDP datagram, as glibc would then ask.
    edns, _ = _check(dns_lab, dns_lab.resolv_conf("edns", [NO_TCP], options="edns0 timeout:1"), "big.plan.test")
    assert edns.verdicts[0].status == "pass" and not edns.probes[0].truncated
    alone, _ = _check(dns_lab, dns_lab.resolv_conf("bigtcp-alone", [NO_TCP]), "big.plan.test")
    assert alone.verdicts[0].status == "fail"


def test_local_dnsmasq_stub_upstreams_are_found_and_tested(dns_lab):
    conf = dns_lab.resolv_conf("stub", ["127.0.0.1"])
    report, wall = _check(dns_lab, conf, "www.plan.test")
    stub = report.stubs[0]
    assert stub.kind == "dnsmasq" and stub.pid is not None
    assert "matched by name" not in stub.note  # found by its socket inode in this namespace
    # --server on the command line and server= in its --conf-file; the domain-only server is left out.
    assert [u.address for u in stub.upstreams] == [GOOD1, GOOD2]
    assert f"/proc/{stub.pid}/cmdline" in stub.sources and any(s.endswith("stub.conf") for s in stub.sources)
    v = _by(report)
    assert v[("127.0.0.1", None)].status == "pass"
    assert v[(GOOD1, "127.0.0.1")].status == "pass" and v[(GOOD2, "127.0.0.1")].status == "pass"
    assert "kubelet and CoreDNS cannot use a loopback stub" in report.note and "tested too" in report.note
    ev = report.evidence_for(GOOD1, "127.0.0.1")
    assert ev["local_stub"]["kind"] == "dnsmasq" and ev["local_stub"]["upstreams"] == [GOOD1, GOOD2]
    assert wall < 1.0


def test_local_stub_with_a_dead_upstream(dns_lab):
    conf = dns_lab.resolv_conf("stub2", ["127.0.0.2"])
    report, _ = _check(dns_lab, conf, "www.plan.test")
    assert [u.address for u in report.stubs[0].upstreams] == [DROPPED, GOOD1]  # from its --resolv-file
    v = _by(report)
    assert v[(DROPPED, "127.0.0.2")].status == "warn" and v[(GOOD1, "127.0.0.2")].status == "pass"


def test_systemd_resolved_stub_upstreams(dns_lab):
    conf = dns_lab.resolv_conf("resolved", ["127.0.0.53"], options="edns0 trust-ad")
    report, _ = _check(dns_lab, conf, "www.plan.test", resolved_file=dns_lab.resolved_file)
    stub = report.stubs[0]
    assert stub.kind == "systemd-resolved" and stub.sources == [dns_lab.resolved_file]
    v = _by(report)
    assert v[("127.0.0.53", None)].status == "pass"
    assert v[(GOOD1, "127.0.0.53")].status == "pass" and v[(DROPPED, "127.0.0.53")].status == "warn"


def test_no_nameserver_line_means_localhost_and_a_missing_file_is_an_error(dns_lab):
    empty = dns_lab.resolv_conf("empty", [], options="")
    report, _ = _check(dns_lab, empty, "www.plan.test")
    assert report.conf.nameservers == ("127.0.0.1",) and "no nameserver line" in report.note
    assert _by(report)[("127.0.0.1", None)].status == "pass"  # the node's dnsmasq stub answers there
    missing, _ = _check(dns_lab, empty + ".missing", "www.plan.test")
    assert missing.error.startswith("cannot read") and missing.probes == [] and missing.verdicts == []
