"""This host's own packet filter (`host-firewall`) and kernel settings (`kernel-setting`) through the
real `edgecheck run` CLI, in both modes and both phases (issue 11, SPEC 7.1/7.2).

The rules are real (iptables-nft and native nft in the node namespace, an ICMP admin-prohibited
reject in the cloud, firewalld and ufw themselves) and the kernel is the oracle: for every case a
real packet shows what the kernel does, and edgecheck's verdict must say the same.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Dict, List, Tuple

import pytest

from tests.lab.hostfw import cloud_sources, firewalld, node_nft, node_sysctls, oracle, passes_filter, ufw
from tests.lab.lab import Lab, RunResult
from tests.lab.scenarios import (INBOUND_TCP, MODES, PHASES, Combo, Runs, all_inbound_listeners, base_args, combo_id,
                                 host_matching, machine_kernel_check, ready_but_for_the_machine)
from tests.lab.test_scenarios import validated
from tests.lab.topology import CLOUD_ADDR, NODE_ADDR, NODE_IF

COMBOS = [(mode, phase, "1.28") for mode in MODES for phase in PHASES]
HALF_IN, HALF_OUT = "10.199.0.0/25", "10.199.0.200"  # 9100 is allowed from the lower half of the node's subnet
FAR_SOURCE = "192.168.77.1"  # a source beyond the node's subnet (--source-cidr)

# Which endpoint each node-side rule hits, per mode (operation endpoints: in both phases).
HOSTS = {
    "public": {"tcp-drop": r"cs-anony\.aliyuncs\.com", "tcp-reject": r"cs-anony\.{region}\.aliyuncs\.com",
               "tcp-reset": r"dockerauth-ee\.{region}\.aliyuncs\.com",
               "remote-reject": r"dockerauth\.{region}\.aliyuncs\.com",
               "control": r"registry-{region}\.ack\.aliyuncs\.com", "udp-drop": r"ntp1\.aliyun\.com"},
    "dedicated": {"tcp-drop": r"cs-anony-vpc\.{region}\.aliyuncs\.com",
                  "tcp-reject": r"dockerauth-vpc\.{region}\.aliyuncs\.com",
                  "tcp-reset": r"aliregistry-{region}\.oss-{region}-internal\.aliyuncs\.com",
                  "remote-reject": r"registry-{region}-vpc\.ack\.aliyuncs\.com",
                  "control": r"dockerauth-ee-vpc\.{region}\.aliyuncs\.com", "udp-drop": r"ntp1\.aliyun\.com"},
}

NODE_NFT = """
table inet ectest {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport 10255 drop
    tcp dport 9100 ip saddr 10.199.0.0/25 accept
    tcp dport 9100 drop
    ip ttl 64 tcp dport 9445 drop
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    ip daddr {{ {reset} }} tcp dport 443 reject with tcp reset
  }}
}}
"""


@pytest.fixture(scope="session")
def runs(lab: Lab) -> Runs:
    return Runs(lab)


def _rules(lab: Lab, hosts: Dict[str, str]) -> Tuple[List[List[str]], List[List[str]]]:
    def addrs(key: str) -> List[str]:
        return lab.addresses_of(hosts[key])
    node = [["INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP"]]
    node += [["OUTPUT", "-d", a, "-p", "tcp", "-j", "DROP"] for a in addrs("tcp-drop")]
    node += [["OUTPUT", "-d", a, "-p", "tcp", "-j", "REJECT"] for a in addrs("tcp-reject")]
    node += [["OUTPUT", "-d", a, "-p", "udp", "--dport", "123", "-j", "DROP"] for a in addrs("udp-drop")]
    cloud = [["INPUT", "-d", a, "-p", "tcp", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]
             for a in addrs("remote-reject")]
    return node, cloud


def _oracles(lab: Lab, hosts: Dict[str, str]) -> Dict[str, Any]:
    inbound = {
        "10250": ("tcp", NODE_ADDR, 10250, CLOUD_ADDR), "10255": ("tcp", NODE_ADDR, 10255, CLOUD_ADDR),
        "9100-in": ("tcp", NODE_ADDR, 9100, CLOUD_ADDR), "9100-out": ("tcp", NODE_ADDR, 9100, HALF_OUT),
        "9445": ("tcp", NODE_ADDR, 9445, CLOUD_ADDR),
    }
    outbound = {k: ("udp" if k == "udp-drop" else "tcp", lab.addresses_of(h)[0], 123 if k == "udp-drop" else 443, None)
                for k, h in hosts.items()}
    got_in = oracle(lab.topology.cloud, list(inbound.values()))
    got_out = oracle(lab.topology.node, list(outbound.values()))
    return {**dict(zip(inbound, got_in)), **dict(zip(outbound, got_out))}


def firewall_run(runs: Runs, combo: Combo) -> Tuple[RunResult, Dict[str, Any]]:
    lab = runs.lab

    def run() -> Tuple[RunResult, Dict[str, Any]]:
        hosts = {k: host_matching(lab, v) for k, v in HOSTS[combo[0]].items()}
        node_rules, cloud_rules = _rules(lab, hosts)
        with ExitStack() as stack:
            if combo[1] == "running":
                stack.enter_context(lab.node_listeners(all_inbound_listeners()))
            stack.enter_context(lab.node_firewall(node_rules))
            reset = ", ".join(lab.addresses_of(hosts["tcp-reset"]))
            stack.enter_context(node_nft(lab, NODE_NFT.format(reset=reset)))
            stack.enter_context(lab.cloud_firewall(cloud_rules))
            stack.enter_context(node_sysctls(lab, {"net.ipv4.ip_forward": "0",
                                                   f"net.ipv4.conf.{NODE_IF}.rp_filter": "1"}))
            stack.enter_context(cloud_sources(lab, on_link=[HALF_OUT]))
            result = lab.run_edgecheck(base_args(lab, combo))
            return result, {"hosts": hosts, "kernel": _oracles(lab, hosts)}
    return runs.get(("host-firewall", combo), run)


def _check(result: RunResult, check_id: str, status: str, reason: str) -> Dict[str, Any]:
    check = result.check(check_id)
    assert (check["status"], check["reason"]) == (status, reason), check
    return check


# =================================================================================== inbound

@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_inbound_drop_via_iptables_and_via_nft(runs: Runs, combo: Combo) -> None:
    result, info = firewall_run(runs, combo)
    validated(result)
    assert info["kernel"]["10250"] == "drop" and info["kernel"]["10255"] == "drop"
    sources = "-s 10.199.0.0/24 " if combo[0] == "public" else ""
    check = _check(result, "inbound:10250/tcp", "fail", "host-firewall")
    assert "--dport 10250 -j DROP" in check["message"] and "ip filter chain INPUT" in check["message"], check
    assert f"iptables -I INPUT 1 -p tcp {sources}--dport 10250 -j ACCEPT" in check["remediation"], check
    assert check["evidence"]["firewall"]["manager"]["name"] == "iptables-nft"
    check = _check(result, "inbound:10255/tcp", "fail", "host-firewall")
    assert "tcp dport 10255 drop" in check["message"] and "inet ectest chain input" in check["message"], check
    assert "nft insert rule inet ectest input" in check["remediation"] and "tcp dport 10255 accept" in check["remediation"]
    # The port's own state is still judged and said.
    expected = "is free" if combo[1] == "join" else "is listening"
    assert expected in check["message"], check
    # One finding per rule's chain and manager: iptables' INPUT and nft's inet ectest input.
    causes = {f["cause"] for f in result.report["findings"] if f["reason"] == "host-firewall" and f["status"] == "fail"}
    assert "host-firewall:direction=in,verdict=blocked,manager=iptables-nft,chain=ip:filter:INPUT" in causes
    assert "host-firewall:direction=in,verdict=blocked,manager=nftables,chain=inet:ectest:input" in causes


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_inbound_allowed_only_from_some_sources_is_a_warning_naming_them(runs: Runs, combo: Combo) -> None:
    result, info = firewall_run(runs, combo)
    validated(result)
    assert passes_filter(info["kernel"]["9100-in"]) and info["kernel"]["9100-out"] == "drop"
    check = _check(result, "inbound:9100/tcp", "warn", "host-firewall")
    fw = check["evidence"]["firewall"]
    assert fw["verdict"] == "partial", fw
    expected_sources = ["10.199.0.0/24"] if combo[0] == "public" else ["0.0.0.0/0"]
    assert fw["peers"] == expected_sources and fw["blocked"] == expected_sources, fw
    assert "only from some of the sources" in check["message"] and expected_sources[0] in check["message"], check
    assert "nft insert rule inet ectest input" in check["remediation"], check


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_a_rule_that_cannot_be_evaluated_is_a_warning_never_a_pass(runs: Runs, combo: Combo) -> None:
    result, info = firewall_run(runs, combo)
    validated(result)
    assert info["kernel"]["9445"] == "drop"  # the kernel drops it (TTL 64); edgecheck cannot read `ip ttl`
    check = _check(result, "inbound:9445/tcp", "warn", "host-firewall")
    assert "cannot evaluate rule" in check["message"] and "ip ttl 64" in check["message"], check
    assert check["evidence"]["firewall"]["verdict"] == "unknown"
    assert "nft -a list ruleset" in check["remediation"], check
    udp = _check(result, "inbound:8472/udp", "pass", "ok")
    assert udp["evidence"]["firewall"]["verdict"] == "allowed"


# ================================================================================== outbound

@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_outbound_blocked_by_this_host_is_host_firewall(runs: Runs, combo: Combo) -> None:
    result, info = firewall_run(runs, combo)
    validated(result)
    hosts, kernel = info["hosts"], info["kernel"]
    assert kernel["tcp-drop"] == "drop" and kernel["tcp-reject"] == "reject" and kernel["tcp-reset"] == "reject"
    assert kernel["udp-drop"] == "blocked" and kernel["control"] == "accept"
    for key, rule in (("tcp-drop", "-j DROP"), ("tcp-reject", "-j REJECT")):
        check = _check(result, f"endpoint:{hosts[key]}:443/tcp", "fail", "host-firewall")
        assert "this host's own packet filter" in check["message"] and rule in check["message"], check
        assert "iptables -I OUTPUT 1 -p tcp -d" in check["remediation"], check
    check = _check(result, f"endpoint:{hosts['tcp-reset']}:443/tcp", "fail", "host-firewall")
    assert "reject with tcp reset" in check["message"], check
    assert "nft insert rule inet ectest output" in check["remediation"], check
    check = _check(result, f"endpoint:{hosts['udp-drop']}:123/udp", "fail", "host-firewall")
    assert "EPERM" in check["message"] and "--dport 123 -j DROP" in check["message"], check
    assert "iptables -I OUTPUT 1 -p udp -d" in check["remediation"], check
    _check(result, f"endpoint:{hosts['control']}:443/tcp", "pass", "ok")


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_remote_admin_prohibited_reject_is_not_this_host(runs: Runs, combo: Combo) -> None:
    result, info = firewall_run(runs, combo)
    validated(result)
    assert info["kernel"]["remote-reject"] == "reject"
    host = info["hosts"]["remote-reject"]
    check = _check(result, f"endpoint:{host}:443/tcp", "fail", "unreachable")
    assert "a firewall at" in check["message"] and "administratively prohibited" in check["message"], check
    icmp = [a["icmp"] for a in check["evidence"]["connect"] if "icmp" in a]
    assert icmp and all(i["admin_prohibited"] and not i["from_this_host"] for i in icmp), check
    assert check["remediation"].startswith("A firewall at"), check


# ==================================================================================== kernel

@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_kernel_settings_are_phase_aware(runs: Runs, combo: Combo) -> None:
    result, _ = firewall_run(runs, combo)
    validated(result)
    status = "warn" if combo[1] == "join" else "fail"
    check = _check(result, "system:net.ipv4.ip_forward", status, "kernel-setting")
    assert "sysctl -w net.ipv4.ip_forward=1" in check["remediation"], check
    assert "/etc/sysctl.d/90-ack-edge.conf" in check["remediation"], check
    check = _check(result, "system:rp_filter", "warn", "kernel-setting")
    assert f"sysctl -w net.ipv4.conf.{NODE_IF}.rp_filter=2" in check["remediation"], check


# ============================================================================ --source-cidr

def test_source_cidr_names_the_sources_left_out(lab: Lab, runs: Runs) -> None:
    combo = ("public", "running", "1.28")

    def run() -> Tuple[RunResult, Dict[str, Any]]:
        with ExitStack() as stack:
            stack.enter_context(lab.node_listeners(all_inbound_listeners()))
            stack.enter_context(node_nft(lab, NODE_NFT.format(reset="192.0.2.254")))
            stack.enter_context(cloud_sources(lab, routed=[FAR_SOURCE]))
            result = lab.run_edgecheck(base_args(lab, combo),
                                       env={"EDGECHECK_SOURCE_CIDR": f"{HALF_IN},192.168.77.0/24"})
            kernel = oracle(lab.topology.cloud, [("tcp", NODE_ADDR, 9100, CLOUD_ADDR),
                                                 ("tcp", NODE_ADDR, 9100, FAR_SOURCE)])
            return result, {"kernel": kernel}
    result, info = runs.get("source-cidr", run)
    report = validated(result)
    assert info["kernel"] == ["accept", "drop"]
    assert report["params"]["source_cidrs"] == [HALF_IN, "192.168.77.0/24"]
    check = _check(result, "inbound:9100/tcp", "warn", "host-firewall")
    fw = check["evidence"]["firewall"]
    assert fw["peers_origin"] == "--source-cidr" and fw["allowed"] == [HALF_IN] and fw["blocked"] == ["192.168.77.0/24"]
    assert "192.168.77.0/24" in check["message"], check
    assert "ip saddr 192.168.77.0/24 tcp dport 9100 accept" in check["remediation"], check
    _check(result, "inbound:10250/tcp", "pass", "ok")


def test_a_bad_source_cidr_is_a_usage_error(lab: Lab) -> None:
    result = lab.run_edgecheck(["--region", "cn-hangzhou", "--source-cidr", "10.0.0.0/33"])
    assert result.returncode == 2 and "--source-cidr" in result.stderr, result.describe()


# ==================================================================== firewalld and ufw

def _ready_with_every_port_open(result: RunResult) -> None:
    report = validated(result)
    assert ready_but_for_the_machine(report), result.describe()
    for check in report["checks"]:
        if machine_kernel_check(check) or check["kind"] == "clock":
            continue
        assert (check["status"], check["reason"]) == ("pass", "ok"), result.describe()
    for port in INBOUND_TCP:
        assert result.check(f"inbound:{port}/tcp")["evidence"]["firewall"]["verdict"] == "allowed"


FIREWALLD_OPEN = ("firewall-cmd --permanent --zone=public --add-port=10250/tcp --add-port=10255/tcp "
                  "--add-port=9100/tcp --add-port=9445/tcp --add-port=8472/udp >/dev/null && firewall-cmd --reload")


def test_firewalld_default_zone_blocks_the_node_ports_then_opening_them_is_ready(lab: Lab, runs: Runs) -> None:
    combo = ("public", "running", "1.28")

    def run(commands: str) -> Tuple[RunResult, Dict[str, Any]]:
        with lab.node_listeners(all_inbound_listeners()), firewalld(lab, commands):
            result = lab.run_edgecheck(base_args(lab, combo))
            kernel = oracle(lab.topology.cloud, [("tcp", NODE_ADDR, p, CLOUD_ADDR) for p in INBOUND_TCP])
            return result, {"kernel": kernel}
    result, info = runs.get("firewalld-default", lambda: run("true"))
    validated(result)
    assert set(info["kernel"]) == {"reject"}  # the zone's `reject with icmpx admin-prohibited`
    for port in INBOUND_TCP:
        check = _check(result, f"inbound:{port}/tcp", "fail", "host-firewall")
        assert "firewalld zone public" in check["message"], check
        assert "firewall-cmd --permanent --zone=public --add-rich-rule" in check["remediation"], check
    (finding,) = [f for f in result.report["findings"] if f["reason"] == "host-firewall"]
    assert finding["cause"].startswith("host-firewall:direction=in,verdict=blocked,manager=firewalld,zone=public")
    assert len(finding["checks"]) == 5 and finding["command"].endswith("&& firewall-cmd --reload")
    assert finding["command"].count("firewall-cmd --reload") == 1

    result, info = runs.get("firewalld-open", lambda: run(FIREWALLD_OPEN))
    assert set(info["kernel"]) == {"accept"}
    _ready_with_every_port_open(result)


def test_ufw_allowing_the_node_ports_is_ready(lab: Lab, runs: Runs) -> None:
    combo = ("dedicated", "join", "1.28")

    def run() -> Tuple[RunResult, Dict[str, Any]]:
        commands = ("ufw --force enable\nufw allow 10250/tcp\nufw allow 10255/tcp\nufw allow 9100/tcp\n"
                    "ufw allow 9445/tcp\nufw allow 8472/udp\n")
        with ufw(lab, commands):
            result = lab.run_edgecheck(base_args(lab, combo))
            kernel = oracle(lab.topology.cloud, [("tcp", NODE_ADDR, p, CLOUD_ADDR) for p in INBOUND_TCP]
                            + [("tcp", NODE_ADDR, 22, CLOUD_ADDR)])
            return result, {"kernel": kernel}
    result, info = runs.get("ufw-open", run)
    # Free ports answer with a reset: the packets got through; port 22 is ufw's default deny.
    assert info["kernel"][:-1] == ["reject"] * len(INBOUND_TCP) and info["kernel"][-1] == "drop"
    _ready_with_every_port_open(result)
