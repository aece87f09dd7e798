"""Selection, row by row against the seed tables (001 public mode, 003 dedicated mode)."""

from __future__ import annotations

from typing import Dict, List, Optional

import pytest

from tests import seedtables
from edgecheck.catalog import load_catalog
from edgecheck.errors import UsageError
from edgecheck.model import Kind, Mode, Phase, Reason, Stage, Trust
from edgecheck.plan import HostPort, Selection, build_plan, parse_host_port, parse_k8s_version, parse_region

CATALOG = load_catalog()
CLOUD = ["100.0.0.0/8"]
TOOLS = [f"tool:{t}" for t in (
    "net-tools", "iproute", "chrony", "crontabs", "pciutils", "socat", "ebtables", "iptables", "conntrack-tools",
)]
INBOUND_FLANNEL = ["inbound:10250/tcp", "inbound:10255/tcp", "inbound:9100/tcp", "inbound:9445/tcp", "inbound:8472/udp"]


def plan(region: str, mode: str = "public", phase: str = "join", version: Optional[str] = None, **kw):
    sel = Selection(region=region, mode=Mode(mode), phase=Phase(phase), k8s_version=parse_k8s_version(version), **kw)
    return build_plan(CATALOG, sel)


def endpoints(p) -> Dict[str, object]:
    return {t.id: t for t in p.targets if t.kind is Kind.ENDPOINT}


def ids(p, kind: Kind) -> List[str]:
    return [t.id for t in p.targets if t.kind is kind]


# --- public mode, seed 001 -------------------------------------------------------------------


def test_public_hangzhou_join_newest_rules_row_by_row():
    p = plan("cn-hangzhou")
    eps = endpoints(p)
    assert list(eps) == [
        # During node installation and upgrade: component packages, TCP 443 (>= 1.26).
        "endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com:443/tcp",
        # Control plane, TCP 443 (>= 1.26), both names.
        "endpoint:cs-anony.aliyuncs.com:443/tcp",
        "endpoint:cs-anony.cn-hangzhou.aliyuncs.com:443/tcp",
        # Dynamic endpoints without inputs: skipped, saying which input.
        "endpoint:apiserver:6443/tcp",
        "endpoint:raven-gateway:10280-10284/tcp",
        "endpoint:raven-gateway:4500/udp",
        # System component images, TCP 443.
        "endpoint:dockerauth.cn-hangzhou.aliyuncs.com:443/tcp",
        "endpoint:dockerauth-ee.cn-hangzhou.aliyuncs.com:443/tcp",
        "endpoint:registry-cn-hangzhou.ack.aliyuncs.com:443/tcp",
        # NTP, UDP 123.
        "endpoint:ntp1.aliyun.com:123/udp",
        "endpoint:cn.ntp.org.cn:123/udp",
    ]
    assert eps["endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com:443/tcp"].stage is Stage.INSTALL
    assert eps["endpoint:cs-anony.aliyuncs.com:443/tcp"].probe == "https"
    assert eps["endpoint:ntp1.aliyun.com:123/udp"].probe == "ntp"
    for key in ("endpoint:apiserver:6443/tcp", "endpoint:raven-gateway:10280-10284/tcp", "endpoint:raven-gateway:4500/udp"):
        assert eps[key].skip.reason is Reason.MISSING_INPUT
        assert "--" in eps[key].skip.message
    # Public mode checks no CIDR blocks.
    assert all(not t.expected_cidrs for t in eps.values())
    assert ids(p, Kind.INBOUND) == INBOUND_FLANNEL
    assert {t.expect for t in p.targets if t.kind is Kind.INBOUND} == {"free"}
    assert ids(p, Kind.TOOL) == TOOLS
    assert ids(p, Kind.CLOCK) == ["clock:local"]
    assert p.warnings == ()


def test_public_before_1_26_uses_http_80_rules_and_the_tunnel_server():
    p = plan("cn-hangzhou", version="1.24", tunnel_server="203.0.113.7")
    eps = endpoints(p)
    assert list(eps) == [
        "endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com:80/tcp",
        "endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com:443/tcp",
        "endpoint:cs-anony.aliyuncs.com:80/tcp",
        "endpoint:cs-anony.cn-hangzhou.aliyuncs.com:80/tcp",
        "endpoint:apiserver:6443/tcp",
        "endpoint:raven-gateway:10280-10284/tcp",
        "endpoint:raven-gateway:4500/udp",
        "endpoint:203.0.113.7:10262/tcp",
        "endpoint:203.0.113.7:10263/tcp",
        "endpoint:dockerauth.cn-hangzhou.aliyuncs.com:443/tcp",
        "endpoint:dockerauth-ee.cn-hangzhou.aliyuncs.com:443/tcp",
        "endpoint:registry-cn-hangzhou.ack.aliyuncs.com:443/tcp",
        "endpoint:ntp1.aliyun.com:123/udp",
        "endpoint:cn.ntp.org.cn:123/udp",
    ]
    assert eps["endpoint:cs-anony.aliyuncs.com:80/tcp"].probe == "http"
    assert eps["endpoint:203.0.113.7:10262/tcp"].probe == "tcp"


def test_1_28_has_no_tunnel_server_and_no_port_80():
    p = plan("cn-hangzhou", version="1.28", tunnel_server="203.0.113.7")
    assert not [t for t in p.targets if t.port in (80, 10262, 10263)]
    assert any("--tunnel-server ignored" in w for w in p.warnings)


def test_version_boundary_is_1_26():
    assert [t.port for t in endpoints(plan("cn-hangzhou", version="1.26")).values() if t.host == "cs-anony.aliyuncs.com"] == [443]
    assert [t.port for t in endpoints(plan("cn-hangzhou", version="1.25.9")).values() if t.host == "cs-anony.aliyuncs.com"] == [80]


def test_running_phase_drops_install_endpoints_and_expects_listening_ports():
    p = plan("cn-hangzhou", phase="running")
    assert not [t for t in endpoints(p).values() if "oss" in (t.host or "")]
    assert {t.stage for t in endpoints(p).values()} == {Stage.OPERATION}
    assert {t.expect for t in p.targets if t.kind is Kind.INBOUND} == {"listening"}


def test_zhangjiakou_spells_dockerauth_with_a_hyphen():
    eps = endpoints(plan("cn-zhangjiakou"))
    assert "endpoint:dockerauth-cn-zhangjiakou.aliyuncs.com:443/tcp" in eps
    assert "endpoint:dockerauth.cn-zhangjiakou.aliyuncs.com:443/tcp" not in eps
    # The exception concerns dockerauth only.
    assert "endpoint:dockerauth-ee.cn-zhangjiakou.aliyuncs.com:443/tcp" in eps
    assert "endpoint:registry-cn-zhangjiakou.ack.aliyuncs.com:443/tcp" in eps
    assert "endpoint:dockerauth.cn-hangzhou.aliyuncs.com:443/tcp" in endpoints(plan("cn-hangzhou"))


def test_dynamic_endpoints_from_inputs():
    p = plan(
        "cn-hangzhou",
        apiserver=HostPort("203.0.113.10", 6443),
        raven_gateways=("203.0.113.20", "203.0.113.21"),
    )
    eps = endpoints(p)
    api = eps["endpoint:203.0.113.10:6443/tcp"]
    assert api.trust is Trust.CLUSTER and api.probe == "https" and api.skip is None
    for gw in ("203.0.113.20", "203.0.113.21"):
        for port in range(10280, 10285):
            assert eps[f"endpoint:{gw}:{port}/tcp"].probe == "tcp"
        assert eps[f"endpoint:{gw}:4500/udp"].probe == "ike"
    assert not [k for k in eps if "raven-gateway:" in k or "apiserver:" in k]


def test_flannel_adds_udp_8472_terway_edge_does_not():
    assert "inbound:8472/udp" in ids(plan("cn-hangzhou"), Kind.INBOUND)
    assert ids(plan("cn-hangzhou", network_plugin="terway-edge"), Kind.INBOUND) == INBOUND_FLANNEL[:4]
    assert "inbound:8472/udp" in ids(plan("cn-hangzhou", mode="dedicated"), Kind.INBOUND)


def test_self_host_ntp_skips_ntp_endpoints_but_keeps_the_clock_check():
    p = plan("cn-hangzhou", self_host_ntp=True)
    ntp = [t for t in endpoints(p).values() if t.probe == "ntp"]
    assert len(ntp) == 2
    assert all(t.skip is not None and t.skip.reason is Reason.NOT_APPLICABLE for t in ntp)
    assert ids(p, Kind.CLOCK) == ["clock:local"]
    assert [t.skip for t in endpoints(plan("cn-hangzhou")).values() if t.probe == "ntp"] == [None, None]


# --- dedicated mode, seed 003 ----------------------------------------------------------------


def test_dedicated_hangzhou_row_by_row_with_expected_cidrs():
    p = plan("cn-hangzhou", mode="dedicated")
    eps = endpoints(p)
    registry = seedtables.registry_rows()["cn-hangzhou"]
    oss = seedtables.oss_rows()["cn-hangzhou"]
    expected = {
        "endpoint:cs-anony-vpc.cn-hangzhou.aliyuncs.com:443/tcp": CLOUD,
        "endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com:443/tcp": oss.cidrs,
        "endpoint:apiserver:6443/tcp": [],
        "endpoint:ntp1.aliyun.com:123/udp": [],
        "endpoint:cn.ntp.org.cn:123/udp": [],
        "endpoint:dockerauth-vpc.cn-hangzhou.aliyuncs.com:443/tcp": CLOUD,
        "endpoint:dockerauth-ee-vpc.cn-hangzhou.aliyuncs.com:443/tcp": CLOUD,
        "endpoint:aliregistry-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com:443/tcp": oss.cidrs,
        "endpoint:registry-cn-hangzhou-vpc.ack.aliyuncs.com:443/tcp": registry.routes,
    }
    assert list(eps) == list(expected)
    for key, cidrs in expected.items():
        assert list(eps[key].expected_cidrs) == cidrs, key
    assert eps["endpoint:dockerauth-ee-vpc.cn-hangzhou.aliyuncs.com:443/tcp"].optional
    assert sum(t.optional for t in eps.values()) == 1
    # No Raven gateway, no public names in dedicated mode.
    assert not [k for k in eps if "raven" in k or k.startswith("endpoint:cs-anony.")]
    assert "registry routes for cn-hangzhou" in eps["endpoint:registry-cn-hangzhou-vpc.ack.aliyuncs.com:443/tcp"].cidr_source


def test_dedicated_before_1_26():
    eps = endpoints(plan("cn-hangzhou", mode="dedicated", version="1.24"))
    assert "endpoint:cs-anony-vpc.cn-hangzhou.aliyuncs.com:80/tcp" in eps
    assert "endpoint:cs-anony-vpc.cn-hangzhou.aliyuncs.com:443/tcp" not in eps
    assert "endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com:80/tcp" in eps
    assert "endpoint:aliacs-k8s-cn-hangzhou.oss-cn-hangzhou-internal.aliyuncs.com:443/tcp" in eps


def test_dedicated_nanjing_needs_registry_vpc_and_has_no_registry_routes():
    p = plan("cn-nanjing", mode="dedicated")
    eps = endpoints(p)
    assert list(eps["endpoint:registry-vpc.cn-nanjing.aliyuncs.com:443/tcp"].expected_cidrs) == CLOUD
    ack = eps["endpoint:registry-cn-nanjing-vpc.ack.aliyuncs.com:443/tcp"]
    # cn-nanjing is not in the registry route table: the cloud services block applies.
    assert list(ack.expected_cidrs) == CLOUD
    assert "no registry route table" in ack.cidr_source
    oss = eps["endpoint:aliacs-k8s-cn-nanjing.oss-cn-nanjing-internal.aliyuncs.com:443/tcp"]
    assert list(oss.expected_cidrs) == ["100.114.142.0/24"]
    assert p.warnings == ()


def test_registry_vpc_only_in_listed_regions():
    regions = seedtables.registry_vpc_personal_regions()
    assert regions
    for region in regions:
        assert f"endpoint:registry-vpc.{region}.aliyuncs.com:443/tcp" in endpoints(plan(region, mode="dedicated"))
    assert not [k for k in endpoints(plan("cn-hangzhou", mode="dedicated")) if "registry-vpc." in k]


def test_region_missing_from_the_registry_table_uses_its_oss_blocks_and_the_cloud_block():
    eps = endpoints(plan("na-south-1", mode="dedicated"))
    assert list(eps["endpoint:registry-na-south-1-vpc.ack.aliyuncs.com:443/tcp"].expected_cidrs) == CLOUD
    assert list(eps["endpoint:aliregistry-na-south-1.oss-na-south-1-internal.aliyuncs.com:443/tcp"].expected_cidrs) == [
        "100.115.112.0/27"
    ]


def test_unknown_region_runs_with_a_warning_and_a_hint():
    p = plan("cn-hangzou", mode="dedicated")
    assert len(p.warnings) == 1 and "did you mean 'cn-hangzhou'" in p.warnings[0]
    eps = endpoints(p)
    assert list(eps["endpoint:registry-cn-hangzou-vpc.ack.aliyuncs.com:443/tcp"].expected_cidrs) == CLOUD
    far = plan("xx-nowhere-9")
    assert "not in the catalog" in far.warnings[0] and "did you mean" not in far.warnings[0]


def test_raven_gateway_in_dedicated_mode_is_ignored_with_a_warning():
    p = plan("cn-hangzhou", mode="dedicated", raven_gateways=("203.0.113.20",))
    assert not [t for t in p.targets if t.host == "203.0.113.20"]
    assert any("--raven-gateway ignored" in w for w in p.warnings)


def test_ids_are_unique_and_stable():
    a = [t.id for t in plan("cn-beijing", mode="dedicated", version="1.24").targets]
    b = [t.id for t in plan("cn-beijing", mode="dedicated", version="1.24").targets]
    assert a == b and len(set(a)) == len(a)


# --- input parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["cn-hangzhou.evil.com", "CN-HANGZHOU", "hangzhou", "cn_hangzhou", "cn-hangzhou/../x", "", "c-1"])
def test_malformed_region_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="invalid region"):
        parse_region(bad)


@pytest.mark.parametrize("text, expected", [
    ("api.example.test", HostPort("api.example.test", 6443)),
    ("api.example.test:443", HostPort("api.example.test", 443)),
    ("203.0.113.5", HostPort("203.0.113.5", 6443)),
    ("[2001:db8::1]:7443", HostPort("2001:db8::1", 7443)),
    ("2001:db8::1", HostPort("2001:db8::1", 6443)),
])
def test_apiserver_host_port(text, expected):
    assert parse_host_port(text, "--apiserver", 6443) == expected


@pytest.mark.parametrize("bad", ["api:0", "api:65536", "api:https", "bad host", "-x.test", "[2001:db8::1", "1.2.3.4.5"])
def test_bad_apiserver_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="invalid --apiserver"):
        parse_host_port(bad, "--apiserver", 6443)


@pytest.mark.parametrize("text, expected", [("1.24", (1, 24)), ("v1.28.3", (1, 28)), (None, None)])
def test_k8s_version(text, expected):
    assert parse_k8s_version(text) == expected


@pytest.mark.parametrize("bad", ["1", "one.two", "1.24-rc"])
def test_bad_k8s_version(bad):
    with pytest.raises(UsageError, match="--k8s-version"):
        parse_k8s_version(bad)
