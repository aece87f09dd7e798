from __future__ import annotations

import os

import pytest

from edgecheck.checks.tool import check_tool
from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.host import distro
from edgecheck.host.tools import search_dirs
from edgecheck.model import CheckResult, Phase, Reason, Status
from edgecheck.runcontext import RunContext

from tests.host.hostfixtures import OS_RELEASES, make_stub, tool_specs, tool_target, write_os_release

def advice(check: CheckResult) -> str:
    return remediation(check, Scene())


def ev(check: CheckResult) -> dict:
    return check.evidence.to_json()


# The stub directory holds `ip` and `socat` only: every other catalog tool is missing.
PRESENT = ("ip", "socat")

EXPECTED_COMMANDS = {
    "debian12": "apt-get update && apt-get install -y net-tools chrony cron pciutils ebtables iptables conntrack",
    "ubuntu2204": "apt-get update && apt-get install -y net-tools chrony cron pciutils ebtables iptables conntrack",
    "centos7": "yum install -y net-tools chrony cronie pciutils ebtables iptables conntrack-tools",
    # EL9: ebtables and iptables both come from iptables-nft, named once.
    "rhel9": "dnf install -y net-tools chrony cronie pciutils iptables-nft conntrack-tools",
    "alinux3": "dnf install -y net-tools chrony cronie pciutils iptables-ebtables iptables conntrack-tools",
    "alinux2": "yum install -y net-tools chrony cronie pciutils ebtables iptables conntrack-tools",
    "anolis8": "dnf install -y net-tools chrony cronie pciutils iptables-ebtables iptables conntrack-tools",
}


@pytest.fixture
def stub_dir(tmp_path):
    d = tmp_path / "bin"
    make_stub(d, "ip", "ip utility, iproute2-6.1.0")
    make_stub(d, "socat", "socat by Gerhard Rieger and contributors - see www.dest-unreach.org\nsocat version 1.7.4.4 on 06 Nov 2022 08:15:51")
    # Present but not executable: must not count as installed.
    (d / "lspci").write_text("#!/bin/sh\n")
    os.chmod(d / "lspci", 0o644)
    return d


def _ctx(tmp_path, stub_dir, distro_key, phase=Phase.JOIN):
    specs = tool_specs()
    targets = tuple(tool_target(s) for s in specs)
    ctx = RunContext(
        tool_path=str(stub_dir), os_release=write_os_release(tmp_path, distro_key), targets=targets, phase=phase
    )
    return ctx, targets


@pytest.mark.parametrize("distro_key", sorted(EXPECTED_COMMANDS))
def test_every_missing_tool_gives_one_exact_install_command(tmp_path, stub_dir, distro_key):
    ctx, targets = _ctx(tmp_path, stub_dir, distro_key)
    results = [check_tool(t, ctx) for t in targets]
    by_name = {t.tool.name: r for t, r in zip(targets, results)}
    assert by_name["iproute"].status is Status.PASS
    assert by_name["socat"].status is Status.PASS
    missing = [r for r in results if r.status is not Status.PASS]
    assert len(missing) == 7
    expected = EXPECTED_COMMANDS[distro_key]
    for r in missing:
        assert (r.status, r.reason) == (Status.WARN, Reason.TOOL_MISSING)
        assert advice(r) == f"Install the missing tools (as root): {expected}"
        assert ev(r)["install_command"] == expected


def test_unknown_distribution_says_so_and_lists_each_family(tmp_path, stub_dir):
    ctx, targets = _ctx(tmp_path, stub_dir, "arch")
    r = check_tool(next(t for t in targets if t.tool.name == "conntrack-tools"), ctx)
    assert r.status is Status.WARN and r.reason is Reason.TOOL_MISSING
    assert "Unknown distribution (os-release ID=arch)" in advice(r)
    assert "apt-get update && apt-get install -y net-tools chrony cron pciutils ebtables iptables conntrack" in advice(r)
    assert "yum install -y net-tools chrony cronie pciutils ebtables iptables conntrack-tools" in advice(r)
    assert ev(r)["install_command"] is None


def test_missing_os_release_is_an_unknown_distribution(tmp_path, stub_dir):
    ctx, targets = _ctx(tmp_path, stub_dir, None)
    r = check_tool(next(t for t in targets if t.tool.name == "socat"), ctx)
    assert r.status is Status.PASS  # present tools do not need the distribution
    r = check_tool(next(t for t in targets if t.tool.name == "iptables"), ctx)
    assert "no readable os-release" in advice(r)


def test_found_tool_reports_path_and_cheap_version(tmp_path, stub_dir):
    ctx, targets = _ctx(tmp_path, stub_dir, "debian12")
    r = check_tool(next(t for t in targets if t.tool.name == "iproute"), ctx)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK)
    assert ev(r)["executables_found"] == {"ip": str(stub_dir / "ip")}
    assert ev(r)["version"] == "6.1.0"
    assert ev(r)["distribution_package"] == "iproute2"
    r = check_tool(next(t for t in targets if t.tool.name == "socat"), ctx)
    assert ev(r)["version"] == "1.7.4.4"


def test_any_one_executable_proves_the_package(tmp_path, stub_dir):
    make_stub(stub_dir, "ntpdate")  # chrony (or ntpdate)
    ctx, targets = _ctx(tmp_path, stub_dir, "centos7")
    chrony = next(t for t in targets if t.tool.name.startswith("chrony"))
    r = check_tool(chrony, ctx)
    assert r.status is Status.PASS
    assert "version" not in ev(r)  # ntpdate has no known-safe version flag: not run
    make_stub(stub_dir, "chronyd", "never run")  # no safe version flag either: chronyd is never started
    make_stub(stub_dir, "chronyc", "chronyc (chrony) version 4.3 (+READLINE)")
    r = check_tool(chrony, ctx)
    assert ev(r)["version"] == "4.3" and "chronyc 4.3" in r.message


def test_running_phase_still_warns(tmp_path, stub_dir):
    ctx, targets = _ctx(tmp_path, stub_dir, "rhel9", phase=Phase.RUNNING)
    r = check_tool(next(t for t in targets if t.tool.name == "conntrack-tools"), ctx)
    assert (r.status, r.reason) == (Status.WARN, Reason.TOOL_MISSING)
    assert "dnf install -y" in advice(r)


def test_sbin_is_searched_when_path_lacks_it(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    dirs = search_dirs(None)
    assert dirs[:2] == ["/usr/bin", "/bin"] and "/usr/sbin" in dirs and "/sbin" in dirs
    # On this Debian host iptables lives in /usr/sbin: a non-root PATH alone would miss it.
    if os.path.exists("/usr/sbin/iptables"):
        spec = next(s for s in tool_specs() if s.name == "iptables")
        r = check_tool(tool_target(spec), RunContext())
        assert r.status is Status.PASS
        assert ev(r)["executables_found"]["iptables"].endswith("sbin/iptables")


@pytest.mark.parametrize(
    "key, family, manager, keys",
    [
        ("debian12", "debian", "apt-get", ["debian12", "debian"]),
        ("ubuntu2204", "debian", "apt-get", ["ubuntu22", "ubuntu", "debian"]),
        ("centos7", "rhel", "yum", ["centos7", "centos", "rhel7", "rhel"]),
        ("rhel9", "rhel", "dnf", ["rhel9", "rhel"]),
        ("alinux3", "rhel", "dnf", ["alinux3", "alinux", "rhel8", "rhel"]),
        ("alinux2", "rhel", "yum", ["alinux2", "alinux", "rhel7", "rhel"]),
        ("arch", None, None, ["arch"]),
    ],
)
def test_distribution_detection(key, family, manager, keys):
    osr = distro.parse_os_release(OS_RELEASES[key])
    assert osr.family == family
    pm = distro.package_manager(osr)
    assert (pm.name if pm else None) == manager
    assert distro.package_keys(osr) == keys


def test_os_release_quoting_and_comments():
    osr = distro.parse_os_release("# comment\nID='ol'\nID_LIKE=\"fedora\"\nVERSION_ID=\"8.9\"\nBROKEN\nPRETTY_NAME=\"Oracle Linux Server 8.9\"\n")
    assert (osr.id, osr.id_like, osr.major, osr.rhel_major) == ("ol", ("fedora",), 8, 8)
    assert distro.package_manager(osr).name == "dnf"
