from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from edgecheck.diagnosis import diagnose
from edgecheck.evidence import AddressBlocks, InboundEvidence, Resolution, ToolEvidence
from edgecheck.model import CheckResult, Evidence, Kind, Reason, Report, Status, Target
from edgecheck.report import render, render_text, use_color
from edgecheck.report.text import WIDTH
from tests.prereq import strict_run
from tests.report.report_fixtures import ALL, dns_forwarder_report, mixed_report, ready_report

SNAPSHOTS = Path(__file__).parent / "snapshots"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _snapshot(name: str, text: str, config: pytest.Config) -> None:
    """Compare with the committed snapshot; UPDATE_SNAPSHOTS=1 rewrites it (review the diff).
    Never under tests/run or CI: the test would pass against what it just wrote."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        if strict_run(config):
            pytest.fail("UPDATE_SNAPSHOTS=1 is refused under tests/run and CI: update snapshots with pytest "
                        "directly and review the diff", pytrace=False)
        path.write_text(text)
    assert path.exists(), f"missing snapshot {path}; run with UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"text report changed; diff against {path}"


@pytest.mark.parametrize(
    "name, verbose",
    [("ready", False), ("dns_forwarder", False), ("mixed", False), ("mixed", True)],
)
def test_snapshot(name, verbose, pytestconfig):
    _snapshot(name + ("_verbose" if verbose else ""), render_text(ALL[name](), verbose=verbose), pytestconfig)


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


class Note:
    """Extra evidence with a long value (any part a future check may record)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def to_json(self):
        return {"note": self.text}


def _long_report() -> Report:
    r = mixed_report()
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    url = "https://aliacs-k8s-cn-zhangjiakou.oss-cn-zhangjiakou-internal.aliyuncs.com/" + "x" * 60
    r.warnings.append(long + " " + url)
    for c in r.checks:
        c.message = f"{c.message} {long}"
        c.target = dataclasses.replace(c.target, name=c.name + " " + long[:70])
        c.evidence.add(Note(long))
    t = dataclasses.replace(
        r.checks[0].target, id="endpoint:aliregistry-cn-zhangjiakou.oss-cn-zhangjiakou-internal.aliyuncs.com:443/tcp",
        host="aliregistry-cn-zhangjiakou.oss-cn-zhangjiakou-internal.aliyuncs.com", name="System component images (OSS)")
    r.checks.append(CheckResult(t, Status.PASS, Reason.OK, "ok", duration_ms=2999))
    diagnose(r)
    r.findings = [dataclasses.replace(f, advice=f.advice + (f"{long} {url}",)) for f in r.findings]
    for c in r.checks:
        c.remediation = f"{long} {url}" if c.remediation else ""
    return r


def _fails(r: Report):
    return [f for f in r.findings if f.status is Status.FAIL]


def _warns(r: Report):
    return [f for f in r.findings if f.status is Status.WARN]


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
    assert lines[0].startswith("NOT READY  11 failed, 6 warnings, 22 passed, 0 skipped in 3.1 s")
    text = "\n".join(lines)
    assert text.index("PLAN WARNINGS") < text.index("FAILED") < text.index("WARNINGS: 6")
    assert text.index("WARNINGS: 6") < text.index("PASSED (22)")
    assert render_text(ready_report()).startswith("READY  0 failed, 0 warnings, 32 passed, 3 skipped")


def test_one_dns_forwarder_is_one_finding_listing_all_eight_endpoints():
    r = dns_forwarder_report()
    fails = _fails(r)
    assert len(fails) == 1 and len(fails[0].checks) == 8
    text = render_text(r)
    assert "FAILED: 8 checks, 1 cause" in text
    assert text.count("10.20.0.53") >= 2  # named in the finding and in the advice
    assert text.count("\n   x ") == 8
    assert "dig @10.20.0.53" in text
    assert "resolver in the VPC" in text  # dedicated mode: resolve -vpc names in the VPC


def test_mixed_failures_group_by_shared_cause():
    r = mixed_report()
    reasons = [f.reason.value for f in _fails(r)]
    # Troubleshooting order: proxy, this host's own filter, then the network (timeout, refused), TLS, host, clock.
    assert reasons == ["proxy-error", "host-firewall", "timeout", "refused", "tls-verify-failed", "port-in-use", "clock-offset"]
    by = {f.reason: f for f in _fails(r)}
    assert len(by[Reason.TIMEOUT].checks) == 2  # same port, same cause: one firewall rule to fix
    assert len(by[Reason.CLOCK_OFFSET].checks) == 3  # both NTP servers and the local clock: one clock
    assert "chronyc makestep" in " ".join(by[Reason.CLOCK_OFFSET].advice)
    warns = {f.reason: f for f in _warns(r)}
    assert len(warns[Reason.TOOL_MISSING].checks) == 3  # three tools, one finding, one command
    assert warns[Reason.TOOL_MISSING].command == "apt-get update && apt-get install -y socat ebtables conntrack"
    assert render_text(r).count("apt-get install") == 1


def test_loopback_holder_is_named_with_its_address():
    r = mixed_report()
    c = next(c for c in r.checks if c.id == "inbound:10255/tcp")
    inbound = c.evidence.find(InboundEvidence)
    holder = dataclasses.replace(inbound.holders[0], address="127.0.0.1", loopback=True)
    c.evidence = Evidence(dataclasses.replace(inbound, holders=(holder,)))
    text = render_text(diagnose(r))
    assert "held by kubelet (pid 811, user root, on 127.0.0.1)" in text
    assert "held by kubelet (pid 811, user root)\n" in text


def test_dns_failures_at_different_nameservers_are_separate_findings():
    r = dns_forwarder_report()
    r.checks[0].evidence.find(Resolution).nameservers = ["10.99.0.1"]
    assert len(_fails(diagnose(r))) == 2


def test_timeouts_on_different_ports_are_separate_findings():
    r = mixed_report()
    c = next(c for c in r.checks if c.reason is Reason.TIMEOUT)
    c.target = dataclasses.replace(c.target, port=80)
    assert [len(f.checks) for f in _fails(diagnose(r)) if f.reason is Reason.TIMEOUT] == [1, 1]


def test_all_outside_cidr_failures_are_one_finding():
    r = dns_forwarder_report()
    for c in r.checks[:3]:
        c.reason = Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR
        c.evidence = Evidence(Resolution(c.target.host or "", ["47.97.1.1"]),
                              AddressBlocks(("100.0.0.0/8",), ("47.97.1.1",)))
    assert [f.reason.value for f in _fails(diagnose(r))] == ["dns-timeout", "address-outside-expected-cidr"]
    assert "got 47.97.1.1; routes carry 100.0.0.0/8" in render_text(r)


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
    r.strict = True
    assert render_text(r).startswith("NOT READY (--strict: warnings fail)")


@pytest.mark.parametrize("status", [Status.FAIL, Status.WARN, Status.SKIP, Status.PASS])
@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_renders_without_evidence(status, reason):
    """A check that recorded nothing (it crashed early, or a future check) still renders and advises."""
    endpoint = Target("endpoint:x.example:443/tcp", Kind.ENDPOINT, "https", "", "", "", "", host="x.example", port=443,
                      protocol="tcp")
    tool = Target("tool:socat", Kind.TOOL, "tool", "socat", "", "", "")
    r = ready_report()
    r.checks = [CheckResult(endpoint, status, reason, ""), CheckResult(tool, status, reason, "m")]
    diagnose(r)
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
            tool = c.evidence.find(ToolEvidence)
            c.evidence = Evidence(dataclasses.replace(tool, install_command=f"apt-get update && apt-get install -y {pkgs}"))
    text = render_text(diagnose(r))
    start = text.index("apt-get update")
    block = text[start:text.index("\n\n", start)]
    assert block.count("\\\n") >= 1 and all(len(x) <= WIDTH for x in block.splitlines())
    # The shell joins backslash-newline: the pasted text is the original command.
    assert shlex.split(block.replace("\\\n", " ")) == shlex.split(f"apt-get update && apt-get install -y {pkgs}")
