"""The real `edgecheck run` CLI in the node namespace against the lab's real servers.

Every report is validated against the shipped JSON Schema, and the exit code against the report
(0 = ready, 1 = a check failed). Scenarios cover both modes, both phases, k8s 1.24 and 1.28.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from typing import Any, Dict, List

import pytest

from tests.lab.lab import (APISERVER_PUBLIC, DNS_ADDR, MUTE_TLS_ADDR, NTP_SKEW_SECONDS, NTP_SKEWED_ADDR, PROXY_ADDR, PROXY_PORT, DEAD_PROXY_PORT, RAVEN_ADDR,
                  REFUSING_DNS_ADDR, TUNNEL_ADDR, Lab, RunResult)
from tests.lab.scenarios import (COMBOS, INBOUND_TCP, REGION, Combo, Fault, Runs, all_inbound_listeners, base_args, checks_for, combo_id,
                        evidence_text, faults_for, host_matching, machine_kernel_check, ready_but_for_the_machine)
from tests.lab.plan import REPO, edgecheck_env
from tests.lab.topology import NODE_ADDR

from tests.schema_check import assert_valid_report


@pytest.fixture(scope="session")
def runs(lab: Lab) -> Runs:
    return Runs(lab)


def validated(result: RunResult) -> Dict[str, Any]:
    """Schema-valid JSON, no traceback, exit code consistent with `ready`."""
    assert result.report is not None, f"no JSON on stdout (exit {result.returncode}):\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    report = assert_valid_report(result.report)
    expected_exit = 0 if report["ready"] else 1
    assert result.returncode == expected_exit, f"exit {result.returncode}, ready={report['ready']}\n{result.describe()}"
    return report


def plan_ids(lab: Lab, args: List[str]) -> List[str]:
    """`edgecheck targets` with the run's selection options (it sends no packet), in the node
    namespace as the run: the plan lists the nameservers of that host's resolver configuration."""
    selection = [a for a in args]
    for opt in ("--timeout", "--apiserver-ca", "--ca-bundle"):
        if opt in selection:
            i = selection.index(opt)
            del selection[i:i + 2]
    argv = lab.topology.node.exec_argv([sys.executable, "-m", "edgecheck", "targets", *selection, "--format", "json"])
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=edgecheck_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [t["id"] for t in json.loads(proc.stdout)["targets"]]


# ====================================================================================== healthy

@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_healthy_lab_every_check_passes(runs: Runs, combo: Combo) -> None:
    result, _ = runs.healthy(combo)
    report = validated(result)
    assert report["checks"] and ready_but_for_the_machine(report), result.describe()
    for check in report["checks"]:
        if machine_kernel_check(check):
            continue
        if check["kind"] == "clock":
            # The host clock's kernel sync flag is the CI machine's business, not the lab's; the
            # offset against the lab's NTP servers must be fine.
            assert check["status"] in ("pass", "warn") and check["reason"] in ("ok", "clock-unsynchronised"), check
            continue
        assert (check["status"], check["reason"]) == ("pass", "ok"), result.describe()


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_healthy_run_checks_exactly_the_plan(lab: Lab, runs: Runs, combo: Combo) -> None:
    result, _ = runs.healthy(combo)
    report = validated(result)
    assert [c["id"] for c in report["checks"]] == plan_ids(lab, base_args(lab, combo))
    mode, phase, version = combo
    ids = {c["id"] for c in report["checks"]}
    control = f"cs-anony.{REGION}.aliyuncs.com" if mode == "public" else f"cs-anony-vpc.{REGION}.aliyuncs.com"
    port, other = (80, 443) if version == "1.24" else (443, 80)  # seeds: TCP 80 before 1.26, 443 after
    assert f"endpoint:{control}:{port}/tcp" in ids and f"endpoint:{control}:{other}/tcp" not in ids
    oss = [i for i in ids if i.startswith(f"endpoint:aliacs-k8s-{REGION}.")]
    assert bool(oss) == (phase == "join"), oss  # install-time endpoints only while joining
    tunnel = [i for i in ids if ":10262/tcp" in i]
    assert bool(tunnel) == (mode == "public" and version == "1.24"), tunnel


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_healthy_addresses_come_from_the_lab_resolver(lab: Lab, runs: Runs, combo: Combo) -> None:
    result, _ = runs.healthy(combo)
    validated(result)
    named = [c for c in result.checks(lambda c: c["kind"] == "endpoint") if (c["target"].get("host") in lab.hosts)]
    assert named
    for check in named:
        ev = check["evidence"]
        assert sorted(ev["addresses"]) == sorted(lab.addresses_of(check["target"]["host"])), check
        assert ev["resolver"]["answered_by"] == DNS_ADDR, check
    if combo[0] == "dedicated":
        registry = result.check(f"endpoint:registry-{REGION}-vpc.ack.aliyuncs.com:443/tcp")
        assert sorted(registry["evidence"]["addresses"]) == ["100.103.7.181", "100.103.9.188"]


def test_healthy_running_inbound_names_the_listener(runs: Runs) -> None:
    result, info = runs.healthy(("public", "running", "1.28"))
    validated(result)
    for port in INBOUND_TCP:
        check = result.check(f"inbound:{port}/tcp")
        assert (check["status"], check["reason"]) == ("pass", "ok")
        assert str(info["listeners"]) in evidence_text(check), check


@pytest.mark.parametrize("combo", [("public", "join", "1.28"), ("dedicated", "running", "1.24")], ids=combo_id)
def test_second_region_zhangjiakou_healthy(lab: Lab, runs: Runs, combo: Combo) -> None:
    """Seed 001: Zhangjiakou spells the registry auth endpoint dockerauth-{region}; seed 003 gives
    it its own registry /32 routes and OSS blocks. The lab serves them from the plan."""
    region = "cn-zhangjiakou"

    def run():
        args = base_args(lab, combo)
        args[args.index("--region") + 1] = region
        with ExitStack() as stack:
            if combo[1] == "running":  # a joined node: kubelet & co. listen
                stack.enter_context(lab.node_listeners(all_inbound_listeners()))
            return lab.run_edgecheck(args), {}
    result = runs.get(("zhangjiakou", combo), run)[0]
    report = validated(result)
    assert ready_but_for_the_machine(report), result.describe()
    ids = {c["id"] for c in report["checks"]}
    if combo[0] == "public":
        assert f"endpoint:dockerauth-{region}.aliyuncs.com:443/tcp" in ids
        assert not any(i.startswith(f"endpoint:dockerauth.{region}.") for i in ids)
    else:
        registry = result.check(f"endpoint:registry-{region}-vpc.ack.aliyuncs.com:443/tcp")
        assert sorted(registry["evidence"]["addresses"]) == ["100.100.1.179", "100.100.80.152"]
    for check in report["checks"]:
        if check["kind"] == "endpoint":
            assert (check["status"], check["reason"]) == ("pass", "ok"), check


# ====================================================================================== faults

FAULT_PARAMS = [pytest.param(combo, fault, id=f"{combo_id(combo)}-{fault.name}")
                for combo in COMBOS for fault in faults_for(combo)]


@pytest.mark.parametrize("combo,fault", FAULT_PARAMS)
def test_fault_is_named_precisely(lab: Lab, runs: Runs, combo: Combo, fault: Fault) -> None:
    result, info = runs.faulty(combo)
    validated(result)
    host = info["hosts"][fault.name]
    checks = checks_for(result, host, fault)
    assert checks, f"no {fault.protocol} check for {host} ports={fault.ports}\n{result.describe()}"
    for check in checks:
        assert (check["status"], check["reason"]) == (fault.status, fault.reason), (
            f"{fault.name}: {check['id']}: got {check['status']}/{check['reason']}: {check['message']}")
        assert check["message"], check
        if fault.status == "fail":
            assert check["remediation"], f"a failure must say what to do: {check}"
        if fault.evidence:
            assert fault.evidence(lab, host) in evidence_text(check), check


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_fault_run_is_not_ready_and_untouched_checks_pass(lab: Lab, runs: Runs, combo: Combo) -> None:
    result, info = runs.faulty(combo)
    report = validated(result)
    assert result.returncode == 1 and not report["ready"], result.describe()
    faulted = set(info["hosts"].values())
    endpoint_checks = result.checks(lambda c: c["kind"] == "endpoint")
    assert endpoint_checks, result.describe()  # (some combos fault every host: then only the verdict is checked)
    for check in endpoint_checks:
        if check["target"].get("host") not in faulted:
            assert (check["status"], check["reason"]) == ("pass", "ok"), f"collateral damage: {check}"


@pytest.mark.parametrize("combo", [c for c in COMBOS if c[1] == "join"], ids=combo_id)
def test_join_port_in_use_names_the_process(runs: Runs, combo: Combo) -> None:
    result, info = runs.faulty(combo)
    validated(result)
    check = result.check("inbound:10250/tcp")
    assert (check["status"], check["reason"]) == ("fail", "port-in-use"), check
    assert str(info["listener_pid"]) in evidence_text(check) + check["message"], check
    for port in INBOUND_TCP[1:]:
        assert result.check(f"inbound:{port}/tcp")["status"] == "pass"


@pytest.mark.parametrize("combo", [c for c in COMBOS if c[1] == "running"], ids=combo_id)
def test_running_port_not_listening(runs: Runs, combo: Combo) -> None:
    result, _ = runs.faulty(combo)
    validated(result)
    for port, expected in ((10250, ("pass", "ok")), (9100, ("pass", "ok")),
                           (10255, ("fail", "port-not-listening")), (9445, ("fail", "port-not-listening"))):
        check = result.check(f"inbound:{port}/tcp")
        assert (check["status"], check["reason"]) == expected, check
    udp = result.check("inbound:8472/udp")
    assert (udp["status"], udp["reason"]) == ("fail", "port-not-listening"), udp


# ====================================================================================== DNS layer

PUBLIC_JOIN = ("public", "join", "1.28")
DEDICATED_RUNNING = ("dedicated", "running", "1.24")


def named_endpoint_checks(lab: Lab, result: RunResult) -> List[Dict[str, Any]]:
    return [c for c in result.checks(lambda c: c["kind"] == "endpoint") if c["target"].get("host") in lab.hosts]


def ip_endpoint_checks(lab: Lab, result: RunResult) -> List[Dict[str, Any]]:
    return [c for c in result.checks(lambda c: c["kind"] == "endpoint")
            if c["target"].get("host") and c["target"]["host"] not in lab.hosts]


@pytest.fixture(scope="module")
def dns_timeout_run(lab: Lab, runs: Runs) -> RunResult:
    def run():
        # The DNS server's host firewall swallows every query: the resolver never answers.
        with lab.cloud_firewall([["INPUT", "-d", DNS_ADDR, "-p", proto, "--dport", "53", "-j", "DROP"]
                                 for proto in ("udp", "tcp")]):
            return lab.run_edgecheck(base_args(lab, PUBLIC_JOIN)), {}
    return runs.get("dns-timeout", run)[0]


def test_dns_timeout_when_the_resolver_never_answers(lab: Lab, dns_timeout_run: RunResult) -> None:
    validated(dns_timeout_run)
    checks = named_endpoint_checks(lab, dns_timeout_run)
    assert checks
    for check in checks:
        assert (check["status"], check["reason"]) == ("fail", "dns-timeout"), check


def test_dns_failure_does_not_touch_ip_targets(lab: Lab, dns_timeout_run: RunResult) -> None:
    checks = ip_endpoint_checks(lab, dns_timeout_run)
    assert {c["target"]["host"] for c in checks} == {APISERVER_PUBLIC, RAVEN_ADDR}
    for check in checks:
        assert (check["status"], check["reason"]) == ("pass", "ok"), check


def test_dns_error_when_the_forwarder_refuses(lab: Lab, runs: Runs) -> None:
    def run():
        with lab.node_resolver(REFUSING_DNS_ADDR):
            return lab.run_edgecheck(base_args(lab, DEDICATED_RUNNING)), {}
    result = runs.get("dns-refused", run)[0]
    validated(result)
    checks = named_endpoint_checks(lab, result)
    assert checks
    for check in checks:
        assert (check["status"], check["reason"]) == ("fail", "dns-error"), check
        assert REFUSING_DNS_ADDR in check["message"] + evidence_text(check), check


def test_dns_server_down_is_a_dns_error_not_a_timeout(lab: Lab, runs: Runs) -> None:
    """dnsmasq killed: the node gets ICMP port unreachable for port 53 at once."""
    def run():
        with lab.stopped("dnsmasq"):
            return lab.run_edgecheck(base_args(lab, ("public", "running", "1.24"))), {}
    result = runs.get("dns-down", run)[0]
    validated(result)
    assert named_endpoint_checks(lab, result)
    for check in named_endpoint_checks(lab, result):
        assert (check["status"], check["reason"]) == ("fail", "dns-error"), check
        # Queries beyond the host's ICMP rate limit get silence; they are still named refused.
        assert "refused" in check["message"] + evidence_text(check), check


# ====================================================================================== clock

def test_clock_offset_against_a_skewed_ntp_server(lab: Lab, runs: Runs) -> None:
    """Both NTP names point at a real chronyd that serves time 300 s ahead."""
    lab.wait_ntp_skew()
    ntp_names = [h for h, r in lab.hosts.items() if "ntp" in r.probes]
    assert ntp_names

    def run():
        with lab.dns({h: [NTP_SKEWED_ADDR] for h in ntp_names}):
            return lab.run_edgecheck(base_args(lab, ("dedicated", "join", "1.28"))), {}
    result = runs.get("clock-offset", run)[0]
    validated(result)
    clock = result.check("clock:local")
    assert (clock["status"], clock["reason"]) == ("fail", "clock-offset"), clock
    assert abs(abs(clock["evidence"]["offset_s"]) - NTP_SKEW_SECONDS) < 1.0, clock
    for name in ntp_names:
        check = result.check(f"endpoint:{name}:123/udp")
        assert (check["status"], check["reason"]) == ("fail", "clock-offset"), check


def test_self_host_ntp_skips_ntp_endpoints_but_checks_the_clock(lab: Lab, runs: Runs) -> None:
    def run():
        return lab.run_edgecheck(base_args(lab, ("dedicated", "running", "1.28")) + ["--self-host-ntp"]), {}
    result = runs.get("self-host-ntp", run)[0]
    validated(result)
    ntp = result.checks(lambda c: c["kind"] == "endpoint" and c["target"].get("port") == 123)
    assert ntp
    for check in ntp:
        assert (check["status"], check["reason"]) == ("skip", "not-applicable"), check
    assert result.check("clock:local")["status"] in ("pass", "warn", "fail")


# ====================================================================================== proxy

def perimeter_only_proxy(lab: Lab, ports: List[int]) -> Any:
    """The site firewall (in the cloud ns, in front of everything): the node may reach the DNS
    server and the proxy, nothing else. The proxy itself runs in the cloud and is not filtered."""
    rules = [["INPUT", "-s", NODE_ADDR, "-d", DNS_ADDR, "-p", p, "--dport", "53", "-j", "ACCEPT"] for p in ("udp", "tcp")]
    rules += [["INPUT", "-s", NODE_ADDR, "-d", PROXY_ADDR, "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"]
              for port in ports]
    rules += [["INPUT", "-s", NODE_ADDR, "-j", "DROP"]]
    # iptables_rules inserts at the top, so insert in reverse to keep this order.
    return lab.cloud_firewall(list(reversed(rules)))


@pytest.fixture(scope="module")
def proxy_run(lab: Lab, runs: Runs) -> RunResult:
    denied = f"dockerauth-ee.{REGION}.aliyuncs.com"

    def run():
        proxy = f"http://{PROXY_ADDR}:{PROXY_PORT}"
        with perimeter_only_proxy(lab, [PROXY_PORT]), lab.proxy_filter([denied]):
            return lab.run_edgecheck(base_args(lab, ("public", "join", "1.24"), apiserver=None),
                                     env={"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}), {}
    return runs.get("proxy", run)[0]


def test_proxy_as_the_only_way_out_https_and_http_pass_through_it(lab: Lab, proxy_run: RunResult) -> None:
    validated(proxy_run)
    web = [c for c in named_endpoint_checks(lab, proxy_run)
           if c["target"]["protocol"] == "tcp" and not c["target"]["host"].startswith("dockerauth-ee.")]
    assert {c["target"]["port"] for c in web} == {80, 443}
    for check in web:
        assert (check["status"], check["reason"]) == ("pass", "ok"), check
        assert check["evidence"].get("route") == "proxy" and PROXY_ADDR in evidence_text(check), check


def test_proxy_refusing_a_name_is_a_proxy_error(lab: Lab, proxy_run: RunResult) -> None:
    check = proxy_run.check(f"endpoint:dockerauth-ee.{REGION}.aliyuncs.com:443/tcp")
    assert (check["status"], check["reason"]) == ("fail", "proxy-error"), check
    assert "403" in check["message"] + evidence_text(check), check


def test_proxy_does_not_carry_raw_tcp_udp_and_the_report_says_direct(lab: Lab, proxy_run: RunResult) -> None:
    raven = proxy_run.checks(lambda c: c["target"].get("host") == RAVEN_ADDR and c["target"].get("protocol") == "tcp")
    assert raven
    for check in raven + [proxy_run.check(f"endpoint:{TUNNEL_ADDR}:10262/tcp")]:
        assert (check["status"], check["reason"]) == ("fail", "timeout"), check
        assert check["evidence"].get("route") == "direct", check
    ntp_names = [h for h, r in lab.hosts.items() if "ntp" in r.probes]
    assert ntp_names
    for name in ntp_names:
        check = proxy_run.check(f"endpoint:{name}:123/udp")
        assert (check["status"], check["reason"]) == ("fail", "timeout"), check
    ike = proxy_run.check(f"endpoint:{RAVEN_ADDR}:4500/udp")
    assert (ike["status"], ike["reason"]) == ("warn", "no-response"), ike


def test_proxy_without_apiserver_is_missing_input(proxy_run: RunResult) -> None:
    skipped = proxy_run.checks(lambda c: c["id"].startswith("endpoint:apiserver"))
    assert len(skipped) == 1 and (skipped[0]["status"], skipped[0]["reason"]) == ("skip", "missing-input"), skipped
    assert "--apiserver" in skipped[0]["message"]


def test_proxy_down_is_a_proxy_error(lab: Lab, runs: Runs) -> None:
    def run():
        proxy = f"http://{PROXY_ADDR}:{DEAD_PROXY_PORT}"  # allowed through, nothing listens: RST
        with perimeter_only_proxy(lab, [DEAD_PROXY_PORT]):
            return lab.run_edgecheck(base_args(lab, ("dedicated", "running", "1.28"), apiserver=None),
                                     env={"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}), {}
    result = runs.get("proxy-down", run)[0]
    validated(result)
    web = [c for c in named_endpoint_checks(lab, result) if c["target"]["protocol"] == "tcp"]
    assert web
    for check in web:
        assert (check["status"], check["reason"]) == ("fail", "proxy-error"), check
        assert str(DEAD_PROXY_PORT) in check["message"] + evidence_text(check), check


def test_proxy_upstream_that_never_answers_http_is_a_timeout(lab: Lab, runs: Runs) -> None:
    """TLS through the proxy's tunnel verifies, then the upstream never answers the request: the
    HTTP layer's timeout, not an internal error (the proxied path once crashed here)."""
    name = host_matching(lab, r"registry-{region}\.ack\.aliyuncs\.com")

    def run():
        proxy = f"http://{PROXY_ADDR}:{PROXY_PORT}"
        with perimeter_only_proxy(lab, [PROXY_PORT]), lab.dns({name: [MUTE_TLS_ADDR]}):
            return lab.run_edgecheck(base_args(lab, ("public", "join", "1.28"), apiserver=None) + ["--timeout", "2"],
                                     env={"HTTPS_PROXY": proxy}), {}
    result = runs.get("proxy-mute-upstream", run)[0]
    validated(result)
    check = result.check(f"endpoint:{name}:443/tcp")
    assert (check["status"], check["reason"]) == ("fail", "timeout"), check
    assert check["evidence"]["route"] == "proxy" and check["evidence"]["tls"]["verified"] is True, check
    assert "no response" in check["message"] and check["remediation"], check
    assert not result.checks(lambda c: c["reason"] == "internal-error"), result.describe()


# ====================================================================================== node side

def test_node_own_firewall(lab: Lab, runs: Runs) -> None:
    """The node's own OUTPUT chain is this host's doing (SPEC 7.2: host-firewall), however the kernel
    shows it: a dropped TCP SYN is retransmitted silently (found by evaluating the ruleset), a
    local REJECT answers with an ICMP error from this host, a dropped UDP datagram fails at send()
    with EPERM. Each message names the rule. (tests/lab/test_host_firewall.py covers every mode
    and phase, with the kernel as the oracle.)"""
    dropped_tcp = host_matching(lab, r"cs-anony\.aliyuncs\.com")
    rejected_tcp = host_matching(lab, r"cs-anony\.{region}\.aliyuncs\.com")
    dropped_udp = host_matching(lab, r"ntp1\.aliyun\.com")

    def run():
        rules = [["OUTPUT", "-d", a, "-p", "tcp", "-j", "DROP"] for a in lab.addresses_of(dropped_tcp)]
        rules += [["OUTPUT", "-d", a, "-p", "tcp", "-j", "REJECT"] for a in lab.addresses_of(rejected_tcp)]
        rules += [["OUTPUT", "-d", a, "-p", "udp", "--dport", "123", "-j", "DROP"] for a in lab.addresses_of(dropped_udp)]
        with lab.node_firewall(rules):
            return lab.run_edgecheck(base_args(lab, PUBLIC_JOIN)), {}
    result = runs.get("node-firewall", run)[0]
    validated(result)
    for check_id, rule in ((f"endpoint:{dropped_tcp}:443/tcp", "-p tcp -j DROP"),
                           (f"endpoint:{rejected_tcp}:443/tcp", "-p tcp -j REJECT"),
                           (f"endpoint:{dropped_udp}:123/udp", "--dport 123 -j DROP")):
        check = result.check(check_id)
        assert (check["status"], check["reason"]) == ("fail", "host-firewall"), check
        assert "packet filter" in check["message"] and rule in check["message"], check
        assert "iptables -I OUTPUT 1" in check["remediation"], check


def test_usage_error_exits_2_and_sends_nothing(lab: Lab) -> None:
    log = lab.workdir / "dns" / "dnsmasq-queries.log"
    before = log.stat().st_size
    result = lab.run_edgecheck(["--region", "Hangzhou!", "--mode", "public"])
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr
    assert log.stat().st_size == before, "a usage error must not send a single DNS query"
