"""DNS and TCP layers against real peers inside the test namespace."""

from __future__ import annotations

import time

from edgecheck.model import Reason, Status
from edgecheck.runcontext import RunContext
from edgecheck.checks.tcp import check_tcp
from tests.probes.conftest import DROPPED, HOST_UNREACHABLE, NO_ROUTE, target
from tests.probes.servers import HttpsServer


def test_tcp_pass_reports_resolver_and_cname_chain(ns, peer, zone, ctx, dns_server):
    server = peer.run(HttpsServer, "10.77.0.1", 8443, mode="plain")
    try:
        zone["api.test"] = {"CNAME": "lb.test"}
        zone["lb.test"] = {"A": ["10.77.0.1"]}
        r = ns.run(check_tcp, target("tcp", "api.test", 8443), ctx)
    finally:
        server.close()
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["addresses"] == ["10.77.0.1"]
    assert r.evidence.to_json()["cname_chain"] == ["lb.test"]
    assert r.evidence.to_json()["resolver"] == {"source": ctx.resolv_conf, "nameservers": ["127.0.0.1"], "answered_by": "127.0.0.1"}
    assert r.evidence.to_json()["route"] == "direct"
    assert r.evidence.to_json()["connect"][0]["ok"] is True


def test_nxdomain_is_not_probed_further(ns, peer, zone, ctx):
    zone["missing.test"] = "NXDOMAIN"
    r = ns.run(check_tcp, target("tcp", "missing.test", 443), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.NXDOMAIN)
    assert "connect" not in r.evidence.to_json()
    assert "missing.test" in r.message and "NXDOMAIN" in r.message


def test_nxdomain_on_optional_endpoint_is_a_warning(ns, peer, zone, ctx):
    zone["maybe.test"] = "NXDOMAIN"
    r = ns.run(check_tcp, target("tcp", "maybe.test", 443, optional=True), ctx)
    assert (r.status, r.reason) == (Status.WARN, Reason.NXDOMAIN)


def test_servfail_refused_and_empty_answers_are_dns_error(ns, peer, zone, ctx):
    zone["broken.test"] = "SERVFAIL"
    zone["denied.test"] = "REFUSED"
    zone["empty.test"] = {"TXT": ["x"]}
    for host, word in (("broken.test", "SERVFAIL"), ("denied.test", "REFUSED"), ("empty.test", "no A or AAAA")):
        r = ns.run(check_tcp, target("tcp", host, 443), ctx)
        assert (r.status, r.reason) == (Status.FAIL, Reason.DNS_ERROR), host
        assert word in r.message, r.message


def test_silent_nameserver_is_dns_timeout_within_budget(ns, peer, zone, ctx):
    zone["silent.test"] = "DROP"
    t0 = time.monotonic()
    r = ns.run(check_tcp, target("tcp", "silent.test", 443), ctx)
    took = time.monotonic() - t0
    assert (r.status, r.reason) == (Status.FAIL, Reason.DNS_TIMEOUT)
    assert took < 1.6 * ctx.timeout  # one budget, not a retry (2x) on top


def test_ip_literal_skips_dns(ns, peer, zone, ctx, dns_server):
    server = peer.run(HttpsServer, "10.77.0.2", 6443, mode="plain")
    try:
        before = len(dns_server.queries)
        r = ns.run(check_tcp, target("tcp", "10.77.0.2", 6443), ctx)
    finally:
        server.close()
    assert r.status is Status.PASS
    assert len(dns_server.queries) == before
    assert "resolver" not in r.evidence.to_json()


def test_closed_port_is_refused(ns, peer, zone, ctx):
    zone["closed.test"] = {"A": ["10.77.0.4"]}
    r = ns.run(check_tcp, target("tcp", "closed.test", 10280), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.REFUSED)
    assert r.evidence.to_json()["connect"][0]["reason"] == "refused"


def test_dropped_address_is_timeout_and_bounded(ns, peer, zone, ctx):
    zone["dropped.test"] = {"A": [DROPPED]}
    t0 = time.monotonic()
    r = ns.run(check_tcp, target("tcp", "dropped.test", 443), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.TIMEOUT)
    assert time.monotonic() - t0 < 1.6 * ctx.timeout  # one budget, not a retry (2x) on top


def test_host_unreachable_and_no_route_are_unreachable(ns, peer, zone, ctx):
    zone["hostunreach.test"] = {"A": [HOST_UNREACHABLE]}
    zone["noroute.test"] = {"A": [NO_ROUTE]}
    for host in ("hostunreach.test", "noroute.test"):
        r = ns.run(check_tcp, target("tcp", host, 443), ctx)
        assert (r.status, r.reason) == (Status.FAIL, Reason.UNREACHABLE), (host, r.message)


def test_one_blocked_vip_of_two_fails_and_names_both(ns, peer, zone, ctx):
    server = peer.run(HttpsServer, "10.77.0.5", 443, mode="plain")
    try:
        zone["twovip.test"] = {"A": ["10.77.0.5", DROPPED]}
        r = ns.run(check_tcp, target("tcp", "twovip.test", 443), ctx)
    finally:
        server.close()
    assert (r.status, r.reason) == (Status.FAIL, Reason.TIMEOUT)
    assert "10.77.0.5" in r.message and DROPPED in r.message and "intermittent" in r.message
    oks = {c["address"]: c["ok"] for c in r.evidence.to_json()["connect"]}
    assert oks == {"10.77.0.5": True, DROPPED: False}


def test_dedicated_mode_address_outside_expected_cidr(ns, peer, zone, ctx):
    server = peer.run(HttpsServer, "10.77.0.6", 443, mode="plain")
    try:
        zone["registry-vpc.test"] = {"A": ["10.77.0.6"]}
        t = target("tcp", "registry-vpc.test", 443, expected_cidrs=("100.103.9.188/32", "100.0.0.0/8"),
                   cidr_source="seed 003 registry routes")
        r = ns.run(check_tcp, t, ctx)
    finally:
        server.close()
    assert (r.status, r.reason) == (Status.FAIL, Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR)
    assert "10.77.0.6" in r.message and "100.103.9.188/32" in r.message and "seed 003" in r.message
    assert r.evidence.to_json()["outside_expected"] == ["10.77.0.6"]


def test_dedicated_mode_address_inside_expected_cidr_passes(ns, peer, zone, ctx):
    server = peer.run(HttpsServer, "10.77.0.6", 444, mode="plain")
    try:
        zone["inside.test"] = {"A": ["10.77.0.6"]}
        r = ns.run(check_tcp, target("tcp", "inside.test", 444, expected_cidrs=("10.77.0.0/24",)), ctx)
    finally:
        server.close()
    assert r.status is Status.PASS and r.evidence.to_json()["outside_expected"] == []


def test_stopped_nameserver_is_dns_error_refused_not_a_timeout(ns, peer, tmp_path):
    # 10.77.0.2 exists in the peer namespace but runs no DNS service: ICMP port unreachable.
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.77.0.2\noptions timeout:4\n")
    ctx = RunContext(timeout=6.0, resolv_conf=str(conf))
    t0 = time.monotonic()
    r = ns.run(check_tcp, target("tcp", "anything.test", 443), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.DNS_ERROR), r.message
    assert "refused" in r.evidence.to_json()["dns_error"]
    # The ICMP answer ends the lookup: far less than the nameserver's own timeout, let alone the budget.
    assert time.monotonic() - t0 < 4 / 2


def test_silence_after_a_refusal_in_the_same_run_is_named_a_refusal():
    from edgecheck.evidence import Resolution
    from edgecheck.probes.resolver import _explain_silence

    silent = Resolution(host="a.test", nameservers=["10.0.0.53"], reason=Reason.DNS_TIMEOUT, error="no answer")
    assert _explain_silence(silent, {"10.0.0.53"}).reason is Reason.DNS_ERROR
    other = Resolution(host="b.test", nameservers=["10.0.0.53", "10.0.0.54"], reason=Reason.DNS_TIMEOUT)
    assert _explain_silence(other, {"10.0.0.53"}).reason is Reason.DNS_TIMEOUT
