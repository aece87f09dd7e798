"""Issue 12 through the real `edgecheck run` CLI in the lab: TLS failure kinds from certificates of
the lab CA (and the clock as their root cause), TLS interception on the system store, nameserver
health (SERVFAIL, a dead first nameserver, a truncated answer with TCP 53 blocked, a local stub).

The path-MTU black hole needs a routed path with a narrow link: tests/pathtrust/test_pmtu_cli.py
runs the same CLI in those namespaces.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Dict, Iterable, List

import pytest

from tests.lab.lab import CLOSED_ADDR, DNS_ADDR, NTP_SKEWED_ADDR, ROGUE_PUBLIC, Lab, RunResult
from tests.lab.pathtrust import (SERVFAIL_DNS_ADDR, STUB_ADDR, big_answer_addresses, fault_certificates,
                                 local_stub, node_resolv_conf, servfail_dns, system_trust_store, tls_servers)
from tests.lab.scenarios import base_args, machine_kernel_check
from tests.lab.test_scenarios import plan_ids, validated

COMBO = ("public", "join", "1.28")


def _in_plan(result: RunResult, hosts: Iterable[str]) -> List[str]:
    ids = {c["id"] for c in result.checks()}
    return [h for h in hosts if f"endpoint:{h}:443/tcp" in ids]


def _rest_unchanged(result: RunResult, changed: Iterable[str]) -> None:
    """No check besides the faulted ones changes from the healthy lab's pass."""
    skip = set(changed)
    for check in result.checks(lambda c: c["id"] not in skip):
        if machine_kernel_check(check):
            continue
        if check["kind"] == "clock":
            assert check["status"] in ("pass", "warn"), check
            continue
        assert (check["status"], check["reason"]) == ("pass", "ok"), result.describe()


def _finding(report: Dict[str, Any], check_id: str) -> Dict[str, Any]:
    return next(f for f in report["findings"] if check_id in f["checks"])


# ================================================================================ TLS failure kinds

@pytest.fixture(scope="module")
def healthy(lab: Lab) -> RunResult:
    return lab.run_edgecheck(base_args(lab, COMBO))


@pytest.fixture(scope="module")
def fault_hosts(healthy: RunResult) -> List[str]:
    """Three catalog names the plan probes over HTTPS, not the first endpoint (the nameserver
    checks ask for the plan's first endpoint name)."""
    endpoints = healthy.checks(lambda c: c["kind"] == "endpoint")
    names = [c["target"]["host"] for c in endpoints[1:] if c["id"].endswith(":443/tcp")
             and not c["target"]["host"][0].isdigit()]
    assert len(names) >= 3, healthy.describe()
    return names[:3]


def test_expired_not_yet_valid_and_wrong_name_certificates(lab: Lab, fault_hosts: List[str]) -> None:
    expired, future, wrong = fault_hosts
    certs = {k: v for k, v in fault_certificates(lab, expired).items() if k == "expired"}
    certs["future"] = fault_certificates(lab, future)["future"]
    certs["wrongname"] = fault_certificates(lab, wrong)["wrongname"]
    with ExitStack() as stack:
        addresses = stack.enter_context(tls_servers(lab, certs))
        stack.enter_context(lab.dns({expired: [addresses["expired"]], future: [addresses["future"]],
                                     wrong: [addresses["wrongname"]]}))
        result = lab.run_edgecheck(base_args(lab, COMBO))
    report = validated(result)
    assert _in_plan(result, fault_hosts) == fault_hosts
    expected = {expired: ("expired", 10, "it has expired"),
                future: ("not-yet-valid", 9, "it is not valid yet"),
                wrong: ("hostname-mismatch", 62, "it is not valid for this name")}
    for host, (kind, code, words) in expected.items():
        check = result.check(f"endpoint:{host}:443/tcp")
        assert (check["status"], check["reason"]) == ("fail", "tls-verify-failed"), check
        tls = check["evidence"]["tls"]
        assert (tls["verify_kind"], tls["verify_code"]) == (kind, code), tls
        assert words in check["message"] and "edgecheck lab CA" in check["message"], check["message"]
        assert _finding(report, check["id"])["cause"].startswith(f"tls-verify-failed:kind={kind},"), report["findings"]
    # With a good clock a date failure is the certificate's own: the advice says it is not the clock.
    assert result.check(f"endpoint:{expired}:443/tcp")["remediation"].startswith("Not the clock")
    _rest_unchanged(result, [f"endpoint:{h}:443/tcp" for h in fault_hosts])


def test_not_yet_valid_while_the_clock_is_off_is_the_clocks_finding(lab: Lab, fault_hosts: List[str]) -> None:
    """The NTP names point at a server 300 s ahead: by the true time the certificate (valid from
    150 s after now) is valid, so the clock is its root cause. An expired one stays the certificate's."""
    lab.wait_ntp_skew()
    expired, future, _ = fault_hosts
    certs = {"expired": fault_certificates(lab, expired)["expired"],
             "future": fault_certificates(lab, future, not_before_in=150.0)["future"]}
    ntp_names = [h for h, r in lab.hosts.items() if "ntp" in r.probes]
    with ExitStack() as stack:
        addresses = stack.enter_context(tls_servers(lab, certs))
        stack.enter_context(lab.dns({expired: [addresses["expired"]], future: [addresses["future"]],
                                     **{h: [NTP_SKEWED_ADDR] for h in ntp_names}}))
        result = lab.run_edgecheck(base_args(lab, COMBO))
    report = validated(result)
    clock = result.check("clock:local")
    assert (clock["status"], clock["reason"]) == ("fail", "clock-offset"), clock
    future_id, expired_id = f"endpoint:{future}:443/tcp", f"endpoint:{expired}:443/tcp"
    tls = result.check(future_id)
    assert (tls["status"], tls["reason"], tls["evidence"]["tls"]["verify_kind"]) == (
        "fail", "tls-verify-failed", "not-yet-valid"), tls
    finding = _finding(report, future_id)
    assert finding["cause"] == "clock-offset" and "clock:local" in finding["checks"], finding
    assert any("come from this clock" in a for a in finding["advice"]), finding
    assert tls["remediation"].startswith("Step the clock") and "come from this clock" in tls["remediation"]
    assert _finding(report, expired_id)["cause"].startswith("tls-verify-failed:kind=expired"), report["findings"]


# ================================================================================ interception

def test_an_inspecting_ca_in_the_system_store_is_a_warning_with_its_issuer(lab: Lab, fault_hosts: List[str]) -> None:
    """No --ca-bundle: the system store (certifi's public roots plus the lab CA and an inspecting
    appliance's CA) verifies every chain, but the public roots do not: re-signed on the way."""
    inspected = fault_hosts[0]
    with ExitStack() as stack:
        stack.enter_context(system_trust_store(lab, [lab.ca.cert, lab.rogue_ca.cert]))
        stack.enter_context(lab.dns({inspected: [ROGUE_PUBLIC]}))
        result = lab.run_edgecheck(base_args(lab, COMBO), ca_bundle=False)
    report = validated(result)
    assert result.returncode == 0 and report["ready"], result.describe()  # warnings only
    https = result.checks(lambda c: c["id"].endswith(":443/tcp") and c["kind"] == "endpoint")
    assert len(https) >= 3
    for check in https:
        assert (check["status"], check["reason"]) == ("warn", "tls-intercepted"), check
        seen = check["evidence"]["tls_interception"]
        assert seen["intercepted"] is True and check["evidence"]["trust"]["origin"] == "system", check
        assert "containerd" in check["message"] and "re-signed by" in check["message"]
        assert "containerd" in check["remediation"] and "kubelet" in check["remediation"]
    rogue = result.check(f"endpoint:{inspected}:443/tcp")
    assert "Untrusted middlebox CA" in rogue["message"] and "Untrusted middlebox CA" in rogue["remediation"]
    causes = {f["cause"] for f in report["findings"] if f["reason"] == "tls-intercepted"}
    assert causes == {"tls-intercepted:anchor=CN=edgecheck lab CA", "tls-intercepted:anchor=CN=Untrusted middlebox CA"}
    apiserver = result.check("endpoint:203.0.113.6:6443/tcp")  # the cluster CA: never an interception note
    assert (apiserver["status"], apiserver["reason"]) == ("pass", "ok"), apiserver


@pytest.mark.parametrize("how", ["--ca-bundle", "SSL_CERT_FILE"])
def test_a_chosen_trust_source_gets_no_interception_note(lab: Lab, fault_hosts: List[str], how: str) -> None:
    bundle = lab.workdir / "chosen-bundle.pem"
    bundle.write_text(lab.ca.cert.read_text() + lab.rogue_ca.cert.read_text())
    args = base_args(lab, COMBO) + (["--ca-bundle", str(bundle)] if how == "--ca-bundle" else [])
    env = {"SSL_CERT_FILE": str(bundle)} if how == "SSL_CERT_FILE" else None
    with ExitStack() as stack:
        stack.enter_context(system_trust_store(lab, [lab.ca.cert, lab.rogue_ca.cert]))
        stack.enter_context(lab.dns({fault_hosts[0]: [ROGUE_PUBLIC]}))
        result = lab.run_edgecheck(args, ca_bundle=False, env=env)
    validated(result)
    for check in result.checks(lambda c: c["id"].endswith(":443/tcp") and c["kind"] == "endpoint"):
        assert (check["status"], check["reason"]) == ("pass", "ok"), check
        assert "tls_interception" not in check["evidence"], check
        assert check["evidence"]["trust"]["origin"] == how, check
    _rest_unchanged(result, [])


# ================================================================================ nameservers

def test_servfail_is_named_in_the_dns_error(lab: Lab, fault_hosts: List[str]) -> None:
    broken = fault_hosts[1]
    with servfail_dns(lab, broken):
        result = lab.run_edgecheck(base_args(lab, COMBO))
    validated(result)
    check = result.check(f"endpoint:{broken}:443/tcp")
    assert (check["status"], check["reason"]) == ("fail", "dns-error"), check
    assert f"nameserver {SERVFAIL_DNS_ADDR} answered SERVFAIL (the nameserver could not get an answer" in check["message"]
    ns = result.check(f"dns:nameserver:{SERVFAIL_DNS_ADDR}")  # it answers the plan's first name
    assert (ns["status"], ns["reason"]) == ("pass", "ok"), ns
    _rest_unchanged(result, [check["id"]])


@pytest.mark.parametrize("dead", ["dropped", "closed"])
def test_a_dead_first_nameserver_with_a_working_second(lab: Lab, dead: str) -> None:
    with ExitStack() as stack:
        stack.enter_context(node_resolv_conf(lab, [CLOSED_ADDR, DNS_ADDR]))
        if dead == "dropped":
            stack.enter_context(lab.cloud_firewall([["INPUT", "-d", CLOSED_ADDR, "-p", p, "--dport", "53", "-j", "DROP"]
                                                    for p in ("udp", "tcp")]))
        result = lab.run_edgecheck(base_args(lab, COMBO))
    report = validated(result)
    assert report["ready"], result.describe()
    first, second = result.check(f"dns:nameserver:{CLOSED_ADDR}"), result.check(f"dns:nameserver:{DNS_ADDR}")
    assert (second["status"], second["reason"]) == ("pass", "ok"), second
    if dead == "dropped":
        assert (first["status"], first["reason"]) == ("warn", "dns-timeout"), first
        assert "every lookup of the node's components waits 1 s on it first" in first["message"], first["message"]
        assert first["evidence"]["lookup_wait_s"] == 1
        assert "every lookup waits 1 s on it first" in first["remediation"] and "/etc/resolv.conf" in first["remediation"]
    else:  # ICMP port unreachable: glibc moves on at once
        assert (first["status"], first["reason"]) == ("warn", "dns-error"), first
        assert "refuses queries" in first["message"] and first["evidence"]["lookup_wait_s"] == 0
    assert _finding(report, first["id"])["status"] == "warn"
    _rest_unchanged(result, [first["id"]])


def test_a_large_answer_with_tcp_53_blocked(lab: Lab, fault_hosts: List[str]) -> None:
    big = fault_hosts[2]
    with ExitStack() as stack:
        stack.enter_context(lab.dns({big: big_answer_addresses()}))
        stack.enter_context(lab.cloud_firewall([["INPUT", "-d", DNS_ADDR, "-p", "tcp", "--dport", "53", "-j", "DROP"]]))
        result = lab.run_edgecheck(base_args(lab, COMBO))
    validated(result)
    check = result.check(f"endpoint:{big}:443/tcp")
    assert (check["status"], check["reason"]) == ("fail", "dns-error"), check
    assert "truncated" in check["message"] and f"TCP 53 to {DNS_ADDR} is blocked" in check["message"], check["message"]
    ns = result.check(f"dns:nameserver:{DNS_ADDR}")
    assert (ns["status"], ns["reason"]) == ("pass", "ok"), ns
    _rest_unchanged(result, [check["id"]])


def test_a_local_stub_and_its_real_upstream_are_both_checked(lab: Lab) -> None:
    with local_stub(lab) as pid:
        result = lab.run_edgecheck(base_args(lab, COMBO))
        planned = plan_ids(lab, base_args(lab, COMBO))
    validated(result)
    assert [c["id"] for c in result.checks()] == planned
    stub, upstream = result.check(f"dns:nameserver:{STUB_ADDR}"), result.check(f"dns:nameserver:{DNS_ADDR}")
    for check in (stub, upstream):
        assert (check["status"], check["reason"]) == ("pass", "ok"), check
    assert "local stub (dnsmasq)" in stub["message"] and "kubelet and CoreDNS cannot use a loopback stub" in stub["message"]
    assert f"({DNS_ADDR})" in stub["message"] and f"/proc/{pid}/cmdline" in stub["message"], stub["message"]
    assert upstream["name"] == f"nameserver {DNS_ADDR}, upstream of the local stub {STUB_ADDR}"
    assert upstream["evidence"]["probe"]["upstream_of"] == STUB_ADDR
    _rest_unchanged(result, [])


def test_the_healthy_plan_checks_its_nameserver(healthy: RunResult) -> None:
    result = healthy
    validated(result)
    first = result.checks()[0]
    assert first["id"] == f"dns:nameserver:{DNS_ADDR}" and first["kind"] == "dns", first
    assert (first["status"], first["reason"]) == ("pass", "ok") and first["evidence"]["probe"]["rcode"] == "NOERROR"
    _rest_unchanged(result, [])
