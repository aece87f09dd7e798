"""The lab itself, checked with plain tools from the node namespace (no edgecheck code): if one of
these fails, a scenario failure would say nothing about edgecheck."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.lab import (APISERVER_DEDICATED, APISERVER_PUBLIC, CLOSED_ADDR, DNS_ADDR, NTP_SKEW_SECONDS, NTP_SKEWED_ADDR,
                  PLAIN_PUBLIC, PROXY_ADDR, PROXY_PORT, RAVEN_ADDR, RAVEN_TCP_PORTS, REFUSING_DNS_ADDR, ROGUE_PUBLIC,
                  TUNNEL_ADDR, TUNNEL_TCP_PORTS, Lab)
from tests.lab.conftest import require_prerequisites
from tests.lab.topology import CLOUD_IF, NODE_IF, PREFIX, leftovers

HERE = Path(__file__).resolve().parent

DNS_QUERY = """
import dns.message, dns.query, dns.rcode, json, sys
server, names = sys.argv[1], sys.argv[2:]
out = {}
for name in names:
    r = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=2)
    out[name] = [dns.rcode.to_text(r.rcode()), sorted(rr.address for rrset in r.answer for rr in rrset)]
print(json.dumps(out))
"""

NTP_QUERY = """
import json, ntplib, sys
out = {}
for a in sys.argv[1:]:
    r = ntplib.NTPClient().request(a, version=4, timeout=2)
    out[a] = {"offset": r.offset, "stratum": r.stratum, "leap": r.leap}
print(json.dumps(out))
"""

TCP_CONNECT = """
import json, socket, sys
out = {}
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    s = socket.socket(); s.settimeout(1)
    try:
        s.connect((host, int(port))); out[spec] = "open"
    except ConnectionRefusedError:
        out[spec] = "refused"
    except OSError as e:
        out[spec] = type(e).__name__
    finally:
        s.close()
print(json.dumps(out))
"""


def node_python(lab: Lab, script: str, *args: str) -> dict:
    proc = lab.topology.node.run([sys.executable, "-c", script, *args], check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def s_client(lab: Lab, address: str, port: int, servername: str, cafile: Path) -> subprocess.CompletedProcess:
    return lab.topology.node.run(
        ["openssl", "s_client", "-connect", f"{address}:{port}", "-servername", servername,
         "-CAfile", str(cafile), "-verify_return_error", "-brief"],
        check=False, timeout=15)


# ------------------------------------------------------------------------------------ topology

def test_node_has_no_way_out_but_the_veth(lab: Lab) -> None:
    routes = lab.topology.node.ip("-4", "route", "show").stdout.strip().splitlines()
    assert any(r.startswith("default via 10.199.0.1 dev " + NODE_IF) for r in routes), routes
    assert all(NODE_IF in r for r in routes), routes
    links = lab.topology.node.ip("-o", "link", "show").stdout
    assert sorted(l.split(":")[1].strip().split("@")[0] for l in links.splitlines()) == sorted(["lo", NODE_IF])


def test_cloud_has_no_link_to_the_root_namespace(lab: Lab) -> None:
    links = lab.topology.cloud.ip("-o", "link", "show").stdout
    assert sorted(l.split(":")[1].strip().split("@")[0] for l in links.splitlines()) == sorted(["lo", CLOUD_IF])
    assert lab.topology.cloud.ip("-4", "route", "show", "default").stdout.strip() == ""
    assert lab.topology.cloud.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"


def test_node_resolver_is_the_lab_dns(lab: Lab) -> None:
    out = lab.topology.node.run(["cat", "/etc/resolv.conf"]).stdout
    assert f"nameserver {DNS_ADDR}" in out.splitlines()
    assert [l for l in out.splitlines() if l.startswith("nameserver")] == [f"nameserver {DNS_ADDR}"]


# ------------------------------------------------------------------------------------ DNS

def test_dns_serves_every_catalog_name_from_the_plan(lab: Lab) -> None:
    names = sorted(lab.hosts)
    assert "registry-cn-hangzhou-vpc.ack.aliyuncs.com" in names and "cs-anony.aliyuncs.com" in names
    answers = node_python(lab, DNS_QUERY, DNS_ADDR, *names)
    for name in names:
        assert answers[name] == ["NOERROR", sorted(lab.addresses_of(name))], name
    assert answers["registry-cn-hangzhou-vpc.ack.aliyuncs.com"][1] == ["100.103.7.181", "100.103.9.188"]


def test_dedicated_names_sit_inside_their_seed_blocks(lab: Lab) -> None:
    import ipaddress
    assert lab.hosts and all(rec.addresses for rec in lab.hosts.values()), lab.hosts
    assert [rec for rec in lab.hosts.values() if rec.cidrs], "no dedicated-mode name in the lab"
    for rec in lab.hosts.values():
        for address in rec.addresses:
            if rec.cidrs:
                assert any(ipaddress.ip_address(address) in ipaddress.ip_network(c) for c in rec.cidrs), rec
            else:
                assert ipaddress.ip_address(address) in ipaddress.ip_network("192.0.2.0/24"), rec
    assert any(c.startswith("100.118.28.0/24") for c in lab.host(
        "aliacs-k8s-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com").cidrs)


def test_dns_answers_nxdomain_for_anything_else_and_never_forwards(lab: Lab) -> None:
    answers = node_python(lab, DNS_QUERY, DNS_ADDR, "cs-anony.cn-nowhere.aliyuncs.com", "example.com")
    assert answers == {"cs-anony.cn-nowhere.aliyuncs.com": ["NXDOMAIN", []], "example.com": ["NXDOMAIN", []]}
    log = (lab.workdir / "dns" / "dnsmasq-queries.log").read_text()
    assert "config example.com is NXDOMAIN" in log
    assert "forwarded" not in log


def test_refusing_forwarder_answers_refused(lab: Lab) -> None:
    answers = node_python(lab, DNS_QUERY, REFUSING_DNS_ADDR, "cs-anony.aliyuncs.com")
    assert answers == {"cs-anony.aliyuncs.com": ["REFUSED", []]}


def test_dns_fault_switch_changes_and_restores_records(lab: Lab) -> None:
    name = "dockerauth.cn-hangzhou.aliyuncs.com"
    with lab.dns({name: None}):
        assert node_python(lab, DNS_QUERY, DNS_ADDR, name)[name] == ["NXDOMAIN", []]
    assert node_python(lab, DNS_QUERY, DNS_ADDR, name)[name] == ["NOERROR", lab.addresses_of(name)]


# ------------------------------------------------------------------------------------ TLS / HTTP

def test_https_endpoints_verify_with_the_lab_ca(lab: Lab) -> None:
    for name in ("cs-anony.cn-hangzhou.aliyuncs.com", "registry-cn-hangzhou-vpc.ack.aliyuncs.com"):
        assert lab.addresses_of(name), name
        for address in lab.addresses_of(name):
            proc = s_client(lab, address, 443, name, lab.ca.cert)
            assert proc.returncode == 0 and "Verification: OK" in proc.stderr + proc.stdout, proc.stderr


def test_curl_gets_http_and_https_through_the_lab_resolver(lab: Lab) -> None:
    for url in ("https://aliacs-k8s-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com/",
                "http://cs-anony.aliyuncs.com/"):
        proc = lab.topology.node.run(["curl", "-sS", "-m", "5", "--cacert", str(lab.ca.cert), url], check=False)
        assert proc.returncode == 0 and proc.stdout == "edgecheck lab endpoint\n", (url, proc.stderr)


def test_wrong_ca_endpoint_fails_verification(lab: Lab) -> None:
    proc = s_client(lab, ROGUE_PUBLIC, 443, "cs-anony.aliyuncs.com", lab.ca.cert)
    assert proc.returncode != 0 and "unable to get local issuer certificate" in proc.stderr + proc.stdout


def test_plain_http_on_443_fails_the_handshake(lab: Lab) -> None:
    proc = s_client(lab, PLAIN_PUBLIC, 443, "cs-anony.aliyuncs.com", lab.ca.cert)
    assert proc.returncode != 0 and "wrong version number" in proc.stderr + proc.stdout


def test_apiserver_is_signed_by_the_cluster_ca_only(lab: Lab) -> None:
    for address in (APISERVER_PUBLIC, APISERVER_DEDICATED):
        assert s_client(lab, address, 6443, "kubernetes", lab.cluster_ca.cert).returncode == 0
    assert s_client(lab, APISERVER_PUBLIC, 6443, "kubernetes", lab.ca.cert).returncode != 0


# ------------------------------------------------------------------------------------ TCP / NTP / IKE / proxy

def test_raven_and_tunnel_ports_listen_and_closed_address_refuses(lab: Lab) -> None:
    specs = [f"{RAVEN_ADDR}:{p}" for p in RAVEN_TCP_PORTS] + [f"{TUNNEL_ADDR}:{p}" for p in TUNNEL_TCP_PORTS]
    result = node_python(lab, TCP_CONNECT, *specs, f"{CLOSED_ADDR}:6443")
    assert all(result[s] == "open" for s in specs), result
    assert result[f"{CLOSED_ADDR}:6443"] == "refused"


def test_ntp_servers_answer_and_the_skewed_one_is_off(lab: Lab) -> None:
    lab.wait_ntp_skew()
    result = node_python(lab, NTP_QUERY, *lab.ntp_addresses, NTP_SKEWED_ADDR)
    assert lab.ntp_addresses
    for address in lab.ntp_addresses:
        assert abs(result[address]["offset"]) < 1.0 and result[address]["stratum"] == 10, result
    assert abs(result[NTP_SKEWED_ADDR]["offset"] - NTP_SKEW_SECONDS) < 1.0, result


def test_strongswan_answers_ike_sa_init_on_4500(lab: Lab) -> None:
    proc = lab.topology.node.run([sys.executable, str(HERE / "ike.py"), RAVEN_ADDR, "4500"], timeout=15)
    answer = json.loads(proc.stdout)
    assert answer["answered"] and answer["spi_matches"] and answer["response_flag"], answer
    assert answer["notify"] == 14, answer  # NO_PROPOSAL_CHOSEN: charon has no connection configured


def test_tinyproxy_connects_to_lab_endpoints(lab: Lab) -> None:
    proc = lab.topology.node.run(
        ["curl", "-sS", "-m", "5", "--cacert", str(lab.ca.cert), "-x", f"http://{PROXY_ADDR}:{PROXY_PORT}",
         "https://dockerauth.cn-hangzhou.aliyuncs.com/"], check=False)
    assert proc.returncode == 0 and proc.stdout == "edgecheck lab endpoint\n", proc.stderr


def test_tinyproxy_filter_denies_a_name(lab: Lab) -> None:
    with lab.proxy_filter(["dockerauth.cn-hangzhou.aliyuncs.com"]):
        proc = lab.topology.node.run(
            ["curl", "-sS", "-m", "5", "--cacert", str(lab.ca.cert), "-x", f"http://{PROXY_ADDR}:{PROXY_PORT}",
             "https://dockerauth.cn-hangzhou.aliyuncs.com/"], check=False)
        assert proc.returncode != 0 and "403" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------ teardown

def test_teardown_leaves_nothing_behind(tmp_path: Path) -> None:
    """A second, small lab (own suffix) built and torn down: no namespace, no /etc/netns dir,
    no process, no work dir survives."""
    require_prerequisites()
    small = Lab(workdir=tmp_path / "lab")
    small.start(servers=["dns", "web", "ike", "tcp", "ntp"])
    pids = [d.pid for d in small.daemons.values()]
    suffix = small.topology.suffix
    assert leftovers(suffix), "the lab should exist before teardown"
    assert all(os.path.exists(f"/proc/{p}") for p in pids)
    small.stop()
    assert leftovers(suffix) == []
    assert not any(_alive(p) for p in pids), pids
    assert not small.workdir.exists()
    assert not any(n.startswith(f"{PREFIX}{suffix}") for n in os.listdir("/run/netns") if os.path.isdir("/run/netns"))


def test_teardown_after_a_server_fails_to_start(tmp_path: Path) -> None:
    require_prerequisites()
    broken = Lab(workdir=tmp_path / "lab")
    original = broken._nginx_daemons

    def sabotaged():
        daemons = original()
        (broken.workdir / "nginx" / "nginx.conf").write_text("this is not an nginx config;\n")
        return daemons

    broken._nginx_daemons = sabotaged  # type: ignore[method-assign]
    with pytest.raises(Exception, match="nginx"):
        broken.start(servers=["dns", "web"])
    assert leftovers(broken.topology.suffix) == []
    assert not broken.workdir.exists()
    assert all(d.popen is None for d in broken.daemons.values())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
