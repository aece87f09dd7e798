"""Pure parts of nameserver health: resolv.conf, glibc's timing, verdicts, messages, dnsmasq
configuration parsing."""

from __future__ import annotations

import pytest

from edgecheck.probes import dnsstub
from edgecheck.probes import nameservers as N
from edgecheck.probes.resolvconf import parse_resolv_conf
from edgecheck.probes import resolver
from edgecheck.probes.nameservers import NameserverProbe


def test_parse_resolv_conf_options_and_glibc_limits():
    c = parse_resolv_conf(
        "# comment\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver bogus\nsearch example\n"
        "nameserver 10.0.0.3\nnameserver 10.0.0.4 ; fourth\noptions timeout:2 attempts:9 rotate edns0\n"
        "options timeout:45\n", "/x")
    assert c.nameservers == ("10.0.0.1", "fe80::1%eth0", "10.0.0.3", "10.0.0.4")
    assert c.used == ("10.0.0.1", "fe80::1%eth0", "10.0.0.3") and c.ignored == ("10.0.0.4",)
    assert (c.timeout, c.attempts, c.rotate, c.edns0) == (30, 5, True, True)  # capped as glibc does
    d = parse_resolv_conf("nameserver 1.1.1.1\n")
    assert (d.timeout, d.attempts, d.rotate, d.edns0, d.use_vc) == (5, 2, False, False, False)


def test_glibc_per_server_timeouts():
    three = parse_resolv_conf("nameserver 1.0.0.1\nnameserver 1.0.0.2\nnameserver 1.0.0.3\n")
    assert [N.server_timeout(three, i) for i in range(3)] == [5, 3, 6]  # 5, 10//3, 20//3
    two = parse_resolv_conf("nameserver 1.0.0.1\nnameserver 1.0.0.2\noptions timeout:1\n")
    assert [N.server_timeout(two, i) for i in range(2)] == [1, 1]


@pytest.mark.parametrize("states,wait,answered", [
    (["answers"], 0, True),
    (["silent", "answers"], 5, True),
    (["fast-fail", "answers"], 0, True),
    (["answers", "silent"], 0, True),
    (["silent", "silent", "answers"], 5 + 3, True),
    (["silent", "silent"], 2 * (5 + 5), False),
])
def test_lookup_wait(states, wait, answered):
    conf = parse_resolv_conf("".join(f"nameserver 10.0.0.{i + 1}\n" for i in range(len(states))))
    assert N.lookup_wait(conf, states) == (wait, answered)


def test_expected_wait_with_rotate_is_the_mean_over_start_positions():
    conf = parse_resolv_conf("nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions rotate timeout:4\n")
    assert N.expected_wait(conf, ["silent", "answers"]) == 2.0  # half the lookups wait 4 s


def _p(address, outcome, **kw):
    return NameserverProbe(address=address, outcome=outcome, **kw)


def test_judge_dead_first_warns_with_the_wait():
    conf = parse_resolv_conf("nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions timeout:3\n")
    v = {x.address: x for x in N.judge_nameservers(conf, [_p("10.0.0.1", N.TIMEOUT),
                                                         _p("10.0.0.2", N.ANSWERED, rcode="NOERROR")], "a.test")}
    assert (v["10.0.0.1"].status, v["10.0.0.1"].reason, v["10.0.0.1"].wait_s) == ("warn", "dns-timeout", 3)
    assert "waits 3 s" in v["10.0.0.1"].message and "10.0.0.2 answers" in v["10.0.0.1"].message
    assert (v["10.0.0.2"].status, v["10.0.0.2"].reason) == ("pass", "ok")
    assert v["10.0.0.1"].check_id == "dns:nameserver:10.0.0.1"


def test_judge_dead_second_does_not_cost_a_wait():
    conf = parse_resolv_conf("nameserver 10.0.0.1\nnameserver 10.0.0.2\n")
    v = N.judge_nameservers(conf, [_p("10.0.0.1", N.ANSWERED), _p("10.0.0.2", N.TIMEOUT)], "a.test")[1]
    assert v.status == "warn" and v.wait_s == 0 and "do not wait" in v.message


def test_judge_none_answers_fails_and_names_the_rcode():
    conf = parse_resolv_conf("nameserver 10.0.0.1\nnameserver 10.0.0.2\n")
    vs = N.judge_nameservers(conf, [_p("10.0.0.1", N.RCODE, rcode="SERVFAIL"), _p("10.0.0.2", N.REFUSED)], "a.test")
    assert [(v.status, v.reason) for v in vs] == [("fail", "dns-error"), ("fail", "dns-error")]
    assert "SERVFAIL" in vs[0].message and "ICMP port unreachable" in vs[1].message


def test_judge_refused_first_moves_on_at_once():
    conf = parse_resolv_conf("nameserver 10.0.0.1\nnameserver 10.0.0.2\n")
    v = N.judge_nameservers(conf, [_p("10.0.0.1", N.REFUSED), _p("10.0.0.2", N.ANSWERED)], "a.test")[0]
    assert v.status == "warn" and v.reason == "dns-error" and v.wait_s == 0


def test_judge_tcp_blocked():
    conf = parse_resolv_conf("nameserver 10.0.0.1\n")
    v = N.judge_nameservers(conf, [_p("10.0.0.1", N.TCP_BLOCKED, truncated=True, tcp="timeout")], "big.test")[0]
    assert (v.status, v.reason) == ("fail", "dns-error") and "TCP 53" in v.message and "512" in v.message


def test_judge_groups_stub_upstreams_separately_and_flags_ignored_servers():
    conf = parse_resolv_conf("nameserver 127.0.0.53\n")
    vs = N.judge_nameservers(conf, [_p("127.0.0.53", N.ANSWERED),
                                    _p("10.0.0.1", N.TIMEOUT, upstream_of="127.0.0.53"),
                                    _p("10.0.0.2", N.ANSWERED, upstream_of="127.0.0.53")], "a.test")
    by = {v.address: v for v in vs}
    assert by["127.0.0.53"].status == "pass"
    assert by["10.0.0.1"].status == "warn" and "upstream of the local stub 127.0.0.53" in by["10.0.0.1"].message
    assert by["10.0.0.1"].wait_s is None  # pods reach it through CoreDNS, not glibc's loop
    conf4 = parse_resolv_conf("".join(f"nameserver 10.0.0.{i}\n" for i in range(1, 5)))
    v4 = N.judge_nameservers(conf4, [_p(f"10.0.0.{i}", N.ANSWERED) for i in range(1, 5)], "a.test")[3]
    assert not v4.used_by_glibc and "only the first 3" in v4.message


def test_dns_error_words_name_the_rcode():
    assert resolver.describe_rcodes({"10.0.0.1": "SERVFAIL"}) == (
        "nameserver 10.0.0.1 answered SERVFAIL (the nameserver could not get an "
        "answer (its upstream or the domain's own nameservers failed or did not answer, or DNSSEC validation "
        "failed))")
    m = resolver.describe_rcodes({"10.0.0.1": "REFUSED", "10.0.0.2": "refused (ICMP port unreachable: no DNS service listens there)"})
    assert "10.0.0.1 answered REFUSED" in m and "10.0.0.2: refused (ICMP port unreachable" in m


def test_every_nameserver_failing_names_each_rcode():
    failure = resolver.Failure("nameservers", [("10.0.0.1", False, "SERVFAIL"),
                                               ("10.0.0.2", False, "refused (ICMP port unreachable: no DNS service listens there)")])
    reason, words = resolver.describe_failure(failure)
    assert reason.value == "dns-error"
    assert words == ("10.0.0.1 answered SERVFAIL; 10.0.0.2: refused (ICMP port unreachable: no DNS service "
                     "listens there)")
    alone = resolver.Failure("nameservers", [("10.0.0.1", False, "SERVFAIL"), ("10.0.0.1", False, "SERVFAIL")])
    assert resolver.describe_failure(alone)[1].startswith("nameserver 10.0.0.1 answered SERVFAIL (the nameserver")


# ------------------------------------------------------------------------------ dnsmasq config
def test_dnsmasq_options_long_and_short():
    argv = ["dnsmasq", "-k", "--server=10.0.0.1", "-S", "10.0.0.2#5353", "-S10.0.0.3", "-C", "/etc/x.conf",
            "--conf-dir=/etc/dnsmasq.d,*.conf", "-R", "--resolv-file=/run/up.conf", "--enable-dbus"]
    opts = dnsstub.dnsmasq_options(argv)
    assert ("server", "10.0.0.1") in opts and ("server", "10.0.0.2#5353") in opts and ("server", "10.0.0.3") in opts
    assert ("conf-file", "/etc/x.conf") in opts and ("conf-dir", "/etc/dnsmasq.d,*.conf") in opts
    assert ("no-resolv", "") in opts and ("resolv-file", "/run/up.conf") in opts


def test_dnsmasq_upstreams_follow_config_files_and_resolv_file():
    files = {
        "/etc/dnsmasq.conf": "# default\nconf-dir=/etc/dnsmasq.d/,*.conf\nserver=192.0.2.10\n",
        "/etc/dnsmasq.d/a.conf": "server=/corp.example/192.0.2.20\nserver=192.0.2.11#5353\nserver=/local/\n",
        "/etc/dnsmasq.d/b.txt": "server=192.0.2.99\n",
        "/etc/resolv.conf": "nameserver 127.0.0.1\nnameserver 192.0.2.12\n",
    }
    up = dnsstub.dnsmasq_upstreams(["dnsmasq"], files.get, lambda d: ["a.conf", "b.txt", ".hidden.conf"])
    servers = [(u.address, u.port, u.domain) for u in up.servers]
    assert servers == [("192.0.2.10", 53, None), ("192.0.2.20", 53, "corp.example"), ("192.0.2.11", 5353, None)]
    assert up.resolv_files == ["/etc/resolv.conf"]
    assert up.sources == ["cmdline", "/etc/dnsmasq.conf", "/etc/dnsmasq.d/a.conf"]
    none = dnsstub.dnsmasq_upstreams(["dnsmasq", "--conf-file=/dev/null", "--no-resolv", "-S", "192.0.2.1"],
                                     files.get)
    assert [u.address for u in none.servers] == ["192.0.2.1"] and none.resolv_files == []


def test_resolv_conf_nameservers():
    assert dnsstub.resolv_conf_nameservers("nameserver 1.1.1.1 # x\n;nameserver 2.2.2.2\nnameserver ::1\n") == [
        "1.1.1.1", "::1"]


def test_systemd_resolved_stub_reads_its_upstream_file():
    files = {"/run/systemd/resolve/resolv.conf": "nameserver 192.0.2.53\nnameserver 127.0.0.1\n"}
    info = dnsstub.discover_stub("127.0.0.53", read=files.get)
    assert info.kind == "systemd-resolved" and [u.address for u in info.upstreams] == ["192.0.2.53"]
    assert info.sources == ["/run/systemd/resolve/resolv.conf"]
    missing = dnsstub.discover_stub("127.0.0.53", read=lambda p: None)
    assert missing.upstreams == [] and "missing" in missing.note



def test_stub_note_says_what_was_done():
    found = dnsstub.StubInfo("127.0.0.53", "systemd-resolved", [dnsstub.Upstream("192.0.2.53")],
                             ["/run/systemd/resolve/resolv.conf"])
    assert N.stub_note([found]) == (
        "resolv.conf points only at a local stub (127.0.0.53: systemd-resolved); kubelet and CoreDNS cannot use "
        "a loopback stub, so its upstreams (192.0.2.53) were read from /run/systemd/resolve/resolv.conf and "
        "tested too")
    lost = dnsstub.StubInfo("127.0.0.1", "unknown", note="no process found serving DNS on 127.0.0.1")
    assert "could not be found: no process found" in N.stub_note([lost])


def test_truncated_answer_whose_tcp_retry_fails_is_tcp_53_blocked():
    failure = resolver.Failure("nameservers", [("10.0.0.1", True, "timed out")], truncated_on={"10.0.0.1"})
    reason, words = resolver.describe_failure(failure)
    assert reason.value == "dns-error"
    assert "truncated" in words and "TCP 53 to 10.0.0.1 is blocked" in words and "timed out" in words
    # A plain timeout without a truncated answer stays a timeout.
    plain = resolver.Failure("timeout", [("10.0.0.1", False, "timed out")])
    assert resolver.describe_failure(plain)[0].value == "dns-timeout"
