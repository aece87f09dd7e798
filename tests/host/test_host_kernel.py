"""system:* kernel settings: pure decisions on a fake /proc + /sys tree, and the real reader in a
test network namespace (net.* sysctls are per namespace)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgecheck.host.kernel import (
    REASON_KERNEL,
    RP_FILTER,
    SETTINGS,
    decide_kernel,
    default_interfaces,
    effective_rp_filter,
    kernel_findings,
    read_kernel_state,
)
from edgecheck.model import Phase, Status

check_kernel = kernel_findings


def fake_root(tmp: Path, sysctls: dict, modules=(), sys_modules=(), dep=(), swaps=0, release="6.1.0-test") -> Path:
    for name, value in {**sysctls, "kernel.osrelease": release}.items():
        p = tmp / "proc/sys" / name.replace(".", "/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{value}\n")
    (tmp / "proc").mkdir(exist_ok=True)
    (tmp / "proc/modules").write_text("".join(f"{m} 16384 0 - Live 0x0\n" for m in modules))
    for m in sys_modules:
        (tmp / "sys/module" / m).mkdir(parents=True, exist_ok=True)
    if dep is not None:
        d = tmp / "lib/modules" / release
        d.mkdir(parents=True, exist_ok=True)
        (d / "modules.dep").write_text("".join(f"kernel/{m}.ko.xz:\n" for m in dep))
    (tmp / "proc/swaps").write_text("Filename Type Size Used Priority\n" + "/swap.img file 1 0 -2\n" * swaps)
    return tmp


GOOD = {
    "net.ipv4.ip_forward": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.eth0.rp_filter": 2,
    "net.netfilter.nf_conntrack_count": 100,
    "net.netfilter.nf_conntrack_max": 262144,
}


def by_id(findings):
    return {f.id: f for f in findings}


def test_a_prepared_host_passes(tmp_path):
    root = fake_root(tmp_path, GOOD, modules=("br_netfilter", "vxlan"))
    f = by_id(check_kernel(Phase.RUNNING, ["eth0"], root=str(root)))
    ipv6 = f.pop("system:net.ipv6.conf.all.forwarding")
    assert {x.status for x in f.values()} == {Status.PASS}, {k: v.message for k, v in f.items()}
    assert ipv6.status is Status.SKIP and "no global IPv6 address" in ipv6.message
    # Exactly the plan's settings (host.kernel.SETTINGS), one finding each.
    assert set(f) | {ipv6.id} == {s.id for s in SETTINGS}


@pytest.mark.parametrize("phase,status", [(Phase.JOIN, Status.WARN), (Phase.RUNNING, Status.FAIL)])
def test_installer_settings_are_phase_aware(tmp_path, phase, status):
    s = {**GOOD, "net.ipv4.ip_forward": 0, "net.bridge.bridge-nf-call-iptables": 0}
    f = by_id(check_kernel(phase, ["eth0"], root=str(fake_root(tmp_path, s, modules=("vxlan",)))))
    fw = f["system:net.ipv4.ip_forward"]
    assert fw.status is status and fw.reason == REASON_KERNEL
    assert fw.command == "sysctl -w net.ipv4.ip_forward=1"
    assert fw.persist == "`echo 'net.ipv4.ip_forward = 1' >> /etc/sysctl.d/90-ack-edge.conf && sysctl --system`"
    assert f["system:net.bridge.bridge-nf-call-iptables"].status is status


def test_br_netfilter_missing(tmp_path):
    s = {k: v for k, v in GOOD.items() if not k.startswith("net.bridge")}
    f = by_id(check_kernel(Phase.JOIN, [], root=str(fake_root(tmp_path, s, dep=("br_netfilter", "vxlan")))))
    m = f["system:module:br_netfilter"]
    assert m.status is Status.WARN and m.command == "modprobe br_netfilter"
    assert m.persist == "`echo br_netfilter >> /etc/modules-load.d/ack-edge.conf`"
    assert f["system:net.bridge.bridge-nf-call-iptables"].status is Status.SKIP
    assert f["system:module:vxlan"].status is Status.PASS  # available, loaded on demand


def test_missing_kernel_modules_fail(tmp_path):
    s = {k: v for k, v in GOOD.items() if not k.startswith("net.bridge")}
    f = by_id(check_kernel(Phase.JOIN, [], root=str(fake_root(tmp_path, s, dep=("ext4",)))))
    assert f["system:module:br_netfilter"].status is Status.FAIL
    assert f["system:module:vxlan"].status is Status.FAIL
    assert by_id(check_kernel(Phase.JOIN, [], network_plugin="terway-edge",
                              root=str(tmp_path)))["system:module:vxlan"].status is Status.SKIP


def test_rp_filter_effective_is_the_max(tmp_path):
    s = {**GOOD, "net.ipv4.conf.all.rp_filter": 1, "net.ipv4.conf.eth0.rp_filter": 0,
         "net.ipv4.conf.flannel.1.rp_filter": 2}
    root = fake_root(tmp_path, s, modules=("vxlan", "br_netfilter"))
    # "flannel.1" contains a dot: written under its own directory name
    (root / "proc/sys/net/ipv4/conf/flannel.1").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/net/ipv4/conf/flannel.1/rp_filter").write_text("2\n")
    state = read_kernel_state(str(root), ["eth0"])
    assert effective_rp_filter(state, "eth0") == 1 and effective_rp_filter(state, "flannel.1") == 2
    for phase in (Phase.JOIN, Phase.RUNNING):
        e = by_id(decide_kernel(state, phase, ["eth0"]))[RP_FILTER]
        # the uplink is strict (all = 1 wins); the tunnel device is loose: max(1, 2) = 2
        assert e.status is Status.WARN and "all = 1 overrides" in e.message and "flannel.1" not in e.message
        assert e.command == "sysctl -w net.ipv4.conf.eth0.rp_filter=2 net.ipv4.conf.all.rp_filter=2"
        assert e.evidence["flannel.1"]["effective"] == 2 and e.evidence["eth0"]["effective"] == 1
    (root / "proc/sys/net/ipv4/conf/flannel.1/rp_filter").write_text("1\n")
    state = read_kernel_state(str(root), ["eth0"])
    running = by_id(decide_kernel(state, Phase.RUNNING, ["eth0"]))[RP_FILTER]
    assert running.status is Status.FAIL and "tunnel device flannel.1" in running.message
    assert running.command == ("sysctl -w net.ipv4.conf.eth0.rp_filter=2 net.ipv4.conf.all.rp_filter=2 "
                               "net.ipv4.conf.flannel.1.rp_filter=2")
    assert by_id(decide_kernel(state, Phase.JOIN, ["eth0"]))[RP_FILTER].status is Status.WARN


def test_rp_filter_uses_the_default_route_interface(tmp_path):
    route = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
             "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
             "eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert default_interfaces(route) == ("eth0",)
    s = {**GOOD, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.eth0.rp_filter": 1}
    root = fake_root(tmp_path, s, modules=("vxlan", "br_netfilter"))
    (root / "proc/net").mkdir(parents=True, exist_ok=True)
    (root / "proc/net/route").write_text(route)
    state = read_kernel_state(str(root))
    assert state.default_interfaces == ("eth0",)
    e = by_id(decide_kernel(state, Phase.RUNNING))[RP_FILTER]
    assert e.status is Status.WARN and e.command == "sysctl -w net.ipv4.conf.eth0.rp_filter=2"


@pytest.mark.parametrize("count,mx,phase,status", [
    (100, 262144, Phase.RUNNING, Status.PASS),
    (200000, 262144, Phase.RUNNING, Status.WARN),
    (250000, 262144, Phase.JOIN, Status.FAIL),
    (10, 65536, Phase.RUNNING, Status.WARN),  # below kube-proxy's minimum on a running node
    (10, 65536, Phase.JOIN, Status.PASS),
])
def test_conntrack_headroom(tmp_path, count, mx, phase, status):
    s = {**GOOD, "net.netfilter.nf_conntrack_count": count, "net.netfilter.nf_conntrack_max": mx}
    f = by_id(check_kernel(phase, [], root=str(fake_root(tmp_path, s, modules=("vxlan", "br_netfilter")))))
    c = f["system:net.netfilter.nf_conntrack_max"]
    assert c.status is status
    if status is not Status.PASS:
        assert c.command.startswith("sysctl -w net.netfilter.nf_conntrack_max=")


def test_conntrack_not_loaded_and_swap_and_ipv6(tmp_path):
    s = {k: v for k, v in GOOD.items() if "conntrack" not in k}
    s["net.ipv6.conf.all.forwarding"] = 0
    f = by_id(check_kernel(Phase.RUNNING, [], has_ipv6=True,
                           root=str(fake_root(tmp_path, s, modules=("vxlan", "br_netfilter"), swaps=1))))
    assert f["system:net.netfilter.nf_conntrack_max"].status is Status.SKIP
    assert f["system:swap"].status is Status.WARN and f["system:swap"].command == "swapoff -a"
    assert f["system:net.ipv6.conf.all.forwarding"].status is Status.FAIL


def test_real_kernel_in_a_namespace():
    if os.geteuid() != 0 or not shutil.which("ip"):
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("needs root and iproute2")
        pytest.skip("needs root and iproute2")
    from tests.probes.netns import Netns

    ns = Netns("eck-")
    try:
        ns.exec("ip", "link", "add", "eck0", "type", "veth", "peer", "name", "eck1")
        ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=0")
        ns.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
        f = by_id(ns.run(check_kernel, Phase.RUNNING, ["eck0"]))
        assert f["system:net.ipv4.ip_forward"].status is Status.FAIL
        assert f[RP_FILTER].status is Status.WARN and "eck0" in f[RP_FILTER].message
        ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
        ns.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2")
        f = by_id(ns.run(check_kernel, Phase.RUNNING, ["eck0"]))
        assert f["system:net.ipv4.ip_forward"].status is Status.PASS
        assert f[RP_FILTER].status is Status.PASS
    finally:
        ns.close()
