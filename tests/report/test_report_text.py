from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edgecheck.model import CheckResult, Kind, Reason, Report, Status
from edgecheck.report import render, render_text, use_color
from edgecheck.report.text import WIDTH, findings
from tests.report.report_fixtures import ALL, dns_forwarder_report, mixed_report, ready_report

SNAPSHOTS = Path(__file__).parent / "snapshots"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _snapshot(name: str, text: str) -> None:
    """Compare with the committed snapshot; UPDATE_SNAPSHOTS=1 rewrites it (review the diff)."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"missing snapshot {path}; run with UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"text report changed; diff against {path}"


@pytest.mark.parametrize(
    "name, verbose",
    [("ready", False), ("dns_forwarder", False), ("mixed", False), ("mixed", True)],
)
def test_snapshot(name, verbose):
    _snapshot(name + ("_verbose" if verbose else ""), render_text(ALL[name](), verbose=verbose))


def _too_wide(text: str):
    """Lines over WIDTH that could have been wrapped (more than one token after the indent)."""
    bad = []
    for line in ANSI.sub("", text).splitlines():
        if len(line) > WIDTH:
            tokens = line.strip().split()
            if tokens and tokens[0] in ("x", "!", "-"):
                tokens = tokens[1:]
            if len(tokens) > 1:
                bad.append(line)
    return bad


def _long_report() -> Report:
    r = mixed_report()
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    url = "https://aliacs-k8s-cn-zhangjiakou.oss-cn-zhangjiakou-internal.aliyuncs.com/" + "x" * 60
    r.warnings.append(long + " " + url)
    for c in r.checks:
        c.message = f"{c.message} {long}"
        c.remediation = f"{long} {url}" if c.remediation else ""
        c.name = c.name + " " + long[:70]
        c.evidence["note"] = long
    r.checks.append(
        CheckResult(
            id="endpoint:aliregistry-cn-zhangjiakou.oss-cn-zhangjiakou-internal.aliyuncs.com:443/tcp",
            kind=Kind.ENDPOINT, name="System component images (OSS)",
            target={"host": "aliregistry-cn-zhangjiakou.oss-cn-zhangjiakou-internal.aliyuncs.com",
                    "port": 443, "protocol": "tcp"},
            status=Status.PASS, reason=Reason.OK, message="ok", duration_ms=2999,
        )
    )
    return r


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("name", sorted(ALL) + ["long"])
def test_every_line_fits_80_columns(name, verbose, color):
    report = _long_report() if name == "long" else ALL[name]()
    text = render_text(report, verbose=verbose, color=color)
    assert _too_wide(text) == []
    if name != "long":
        assert max(len(line) for line in ANSI.sub("", text).splitlines()) <= WIDTH


def test_longest_real_endpoint_id_fits():
    text = render_text(_long_report())
    line = [x for x in text.splitlines() if "aliregistry-cn-zhangjiakou" in x][0]
    assert len(line) <= WIDTH


def test_verdict_first_then_plan_warnings_then_failures():
    lines = render_text(mixed_report()).splitlines()
    assert lines[0].startswith("NOT READY  8 failed, 5 warnings, 11 passed, 0 skipped in 3.1 s")
    text = "\n".join(lines)
    assert text.index("PLAN WARNINGS") < text.index("FAILED") < text.index("WARNINGS: 5")
    assert text.index("WARNINGS: 5") < text.index("PASSED (11)")
    assert render_text(ready_report()).startswith("READY  0 failed, 0 warnings, 22 passed, 2 skipped")


def test_one_dns_forwarder_is_one_finding_listing_all_eight_endpoints():
    r = dns_forwarder_report()
    fails = findings(r, Status.FAIL)
    assert len(fails) == 1 and len(fails[0].checks) == 8
    text = render_text(r)
    assert "FAILED: 8 checks, 1 cause" in text
    assert text.count("10.20.0.53") >= 2  # named in the finding and in the advice
    assert text.count("\n   x ") == 8
    assert "dig @10.20.0.53" in text
    assert "resolver in the VPC" in text  # dedicated mode: resolve -vpc names in the VPC


def test_mixed_failures_group_by_shared_cause():
    fails = findings(mixed_report(), Status.FAIL)
    reasons = [f.reason for f in fails]
    # Troubleshooting order: proxy, then firewall (timeout, refused), TLS, host, clock.
    assert reasons == ["proxy-error", "timeout", "refused", "tls-verify-failed", "port-in-use",
                       "clock-offset"]
    by = {f.reason: f for f in fails}
    assert len(by["timeout"].checks) == 2  # same port, same cause: one firewall rule to fix
    warns = {f.reason: f for f in findings(mixed_report(), Status.WARN)}
    assert len(warns["tool-missing"].checks) == 3  # three tools, one finding, one command
    assert warns["tool-missing"].command == "apt-get update && apt-get install -y socat ebtables conntrack"
    assert render_text(mixed_report()).count("apt-get install") == 1


def test_per_tool_install_commands_merge_into_one():
    r = mixed_report()
    for c in r.checks:
        if c.reason is Reason.TOOL_MISSING:
            pkg = c.evidence["missing_packages"] = {"conntrack-tools": "conntrack"}.get(c.id[5:], c.id[5:])
            c.evidence["install_command"] = f"yum install -y {pkg}"
            c.evidence["package"] = pkg
    (f,) = [f for f in findings(r, Status.WARN) if f.reason == "tool-missing"]
    assert f.command == "yum install -y socat ebtables conntrack"


def test_holders_in_either_evidence_shape():
    r = mixed_report()
    r.checks[9].evidence = {"holders": [{"pid": 7, "name": "nginx", "user": "www-data"}]}
    r.checks[10].evidence["sockets"][0].update(loopback=True, address="127.0.0.1")
    text = render_text(r)
    assert "held by nginx (pid 7, user www-data)" in text
    assert "held by kubelet (pid 811, user root, on 127.0.0.1)" in text


def test_dns_failures_at_different_nameservers_are_separate_findings():
    r = dns_forwarder_report()
    r.checks[0].evidence["resolver"] = {"nameservers": ["10.99.0.1"]}
    assert len(findings(r, Status.FAIL)) == 2


def test_timeouts_on_different_ports_are_separate_findings():
    r = mixed_report()
    r.checks[4].target["port"] = 80
    assert [len(f.checks) for f in findings(r, Status.FAIL) if f.reason == "timeout"] == [1, 1]


def test_all_outside_cidr_failures_are_one_finding():
    r = dns_forwarder_report()
    for c in r.checks[:3]:
        c.reason = Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR
        c.evidence = {"addresses": ["47.97.1.1"], "outside_expected": ["47.97.1.1"],
                      "expected_cidrs": ["100.0.0.0/8"]}
    fs = findings(r, Status.FAIL)
    assert [f.reason for f in fs] == ["dns-timeout", "address-outside-expected-cidr"]
    text = render_text(r)
    assert "got 47.97.1.1; routes carry 100.0.0.0/8" in text


def test_verbose_shows_evidence():
    quiet = render_text(mixed_report())
    loud = render_text(mixed_report(), verbose=True)
    assert "peer_certificate" not in quiet
    assert "tls.peer_certificate: subject=CN=*.cn-hangzhou.aliyuncs.com" in loud
    assert "sockets: protocol=tcp address=:: port=10250 pid=811 process=kubelet" in loud
    assert "Run with -v" in quiet and "Run with -v" not in loud


def test_no_colour_codes_unless_asked():
    for name in ALL:
        assert "\x1b" not in render_text(ALL[name](), verbose=True)
    coloured = render_text(mixed_report(), color=True)
    assert "\x1b[1;31mNOT READY\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == render_text(mixed_report())


class _Tty:
    def isatty(self):
        return True


class _Pipe:
    def isatty(self):
        return False


def test_colour_decision_feeds_the_renderer(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert "\x1b[" in render(mixed_report(), "text", color=use_color(_Tty()))
    assert "\x1b[" not in render(mixed_report(), "text", color=use_color(_Pipe()))
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in render(mixed_report(), "text", color=use_color(_Tty()))


def test_output_is_ascii_for_lang_c_consoles():
    for name in ALL:
        render_text(ALL[name](), verbose=True).encode("ascii")


def test_strict_verdict_when_the_caller_records_it():
    r = mixed_report()
    r.checks = [c for c in r.checks if c.status is not Status.FAIL]
    assert render_text(r).startswith("READY")
    r.params["strict"] = True
    assert render_text(r).startswith("NOT READY (--strict: warnings fail)")


@pytest.mark.parametrize("status", [Status.FAIL, Status.WARN, Status.SKIP, Status.PASS])
@pytest.mark.parametrize("reason", list(Reason))
@pytest.mark.parametrize(
    "evidence",
    [
        {},
        {"resolver": None, "connect": "weird", "holders": [None, 3], "tls": [], "executable": None,
         "addresses": "1.2.3.4", "install_command": 7, "package": None, "proxy": None},
        {"resolver": {"nameservers": "10.0.0.1"}, "connect": [{"ok": False}], "tls": {"peer_certificate": None},
         "holders": [{}], "outside_expected": None, "expected_cidrs": ["100.0.0.0/8"]},
    ],
)
def test_every_reason_renders_with_missing_or_odd_evidence(status, reason, evidence):
    c = CheckResult(id="endpoint:x.example:443/tcp", kind=Kind.ENDPOINT, name="", target={},
                    status=status, reason=reason, message="", evidence=dict(evidence))
    r = ready_report()
    r.checks = [c, CheckResult(id="tool:socat", kind=Kind.TOOL, name="socat", target={},
                               status=status, reason=reason, message="m", evidence=dict(evidence))]
    for verbose in (False, True):
        text = render_text(r, verbose=verbose)
        assert "x.example:443/tcp" in text and _too_wide(text) == []


def test_empty_report():
    r = ready_report()
    r.checks = []
    assert render_text(r).startswith("READY  0 failed, 0 warnings, 0 passed, 0 skipped")


def test_long_install_command_stays_pasteable():
    import shlex

    r = mixed_report()
    pkgs = "net-tools iproute2 chrony cron pciutils socat ebtables iptables conntrack"
    for c in r.checks:
        if c.reason is Reason.TOOL_MISSING:
            c.evidence["install_command"] = f"apt-get update && apt-get install -y {pkgs}"
    text = render_text(r)
    start = text.index("apt-get update")
    block = text[start:text.index("\n\n", start)]
    assert block.count("\\\n") >= 1 and all(len(x) <= WIDTH for x in block.splitlines())
    # The shell joins backslash-newline: the pasted text is the original command.
    assert shlex.split(block.replace("\\\n", " ")) == shlex.split(f"apt-get update && apt-get install -y {pkgs}")
