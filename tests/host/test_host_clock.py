from __future__ import annotations

import time

import pytest

from edgecheck.host import clock
from edgecheck.host.clock import (
    CLOCK_OFFSET_FAIL_S,
    CLOCK_OFFSET_WARN_S,
    KernelClock,
    check_clock,
    decide_clock,
    ntp_measurements,
    parse_chrony_tracking,
    parse_timedatectl_show,
)
from edgecheck.model import CheckResult, Kind, Probe, Reason, RunContext, Status, Target

from hostfixtures import clock_target, write_os_release


def ntp_result(host, offset, status=Status.PASS, stratum=2, leap=0, address="127.0.0.1"):
    t = Target(id=f"endpoint:{host}:123/udp", kind=Kind.ENDPOINT, probe=Probe.NTP, name="NTP", why="", source="",
               entry="ntp", host=host, port=123, protocol="udp")
    ev = {} if offset is None else {"ntp": {"address": address, "offset_s": offset, "stratum": stratum, "delay_s": 0.02, "leap": leap}}
    reason = Reason.OK if status is Status.PASS else Reason.NOT_APPLICABLE
    return CheckResult.of(t, status, reason, "", evidence=ev)


@pytest.mark.parametrize(
    "synced, offset, status, reason",
    [
        (True, 0.002, Status.PASS, Reason.OK),
        (True, None, Status.PASS, Reason.OK),
        (True, -CLOCK_OFFSET_WARN_S, Status.PASS, Reason.OK),
        (True, CLOCK_OFFSET_WARN_S + 0.001, Status.WARN, Reason.CLOCK_OFFSET),
        (True, -5.0, Status.WARN, Reason.CLOCK_OFFSET),
        (True, CLOCK_OFFSET_FAIL_S, Status.WARN, Reason.CLOCK_OFFSET),
        (True, CLOCK_OFFSET_FAIL_S + 0.001, Status.FAIL, Reason.CLOCK_OFFSET),
        (True, -3600.0, Status.FAIL, Reason.CLOCK_OFFSET),
        (False, 0.01, Status.WARN, Reason.CLOCK_UNSYNCHRONISED),
        (False, None, Status.WARN, Reason.CLOCK_UNSYNCHRONISED),
        (False, 5.0, Status.WARN, Reason.CLOCK_UNSYNCHRONISED),
        (False, 120.0, Status.FAIL, Reason.CLOCK_OFFSET),  # a large offset fails whatever the sync state
        (None, 0.01, Status.WARN, Reason.CLOCK_UNSYNCHRONISED),
    ],
)
def test_decide_clock(synced, offset, status, reason):
    d = decide_clock(synced, offset, "ntp1.example")
    assert (d.status, d.reason) == (status, reason)
    assert (d.remediation == "") == (status is Status.PASS)


def test_decide_clock_messages_say_direction_and_source():
    d = decide_clock(True, 75.25, "ntp1.example (127.0.0.1)", service="chrony")
    assert "+75.25 s (behind) against ntp1.example (127.0.0.1)" in d.message
    assert "chronyc makestep" in d.remediation and "`systemctl enable --now chrony`" in d.remediation
    assert "-3.0 ms (ahead)" in decide_clock(True, -0.003, "x").message
    assert "offset not measured" in decide_clock(False, None).message
    assert "chronyd is running but has not synchronised" in decide_clock(False, None, running=["chronyd"]).remediation
    assert "running but" not in decide_clock(False, None, running=["ntpdate"]).remediation


def test_thresholds_agree_with_the_ntp_probe():
    assert 0 < CLOCK_OFFSET_WARN_S < CLOCK_OFFSET_FAIL_S
    ntp = pytest.importorskip("edgecheck.probes.ntp")
    assert (ntp.CLOCK_OFFSET_WARN_S, ntp.CLOCK_OFFSET_FAIL_S) == (CLOCK_OFFSET_WARN_S, CLOCK_OFFSET_FAIL_S)


CHRONY_SYNCED = """Reference ID    : C0A80101 (192.168.1.1)
Stratum         : 3
Ref time (UTC)  : Fri Nov 21 05:43:18 2025
System time     : 0.000123456 seconds fast of NTP time
Last offset     : -0.000012345 seconds
RMS offset      : 0.000045678 seconds
Frequency       : 12.345 ppm slow
Leap status     : Normal
"""

CHRONY_UNSYNCED = """Reference ID    : 00000000 ()
Stratum         : 0
Ref time (UTC)  : Thu Jan 01 00:00:00 1970
System time     : 2.500000000 seconds slow of NTP time
Leap status     : Not synchronised
"""


def test_parse_chrony_tracking():
    v = parse_chrony_tracking(CHRONY_SYNCED)
    assert v.synchronised is True and v.offset_s == pytest.approx(-0.000123456)
    assert v.detail["Stratum"] == "3"
    v = parse_chrony_tracking(CHRONY_UNSYNCED)
    assert v.synchronised is False and v.offset_s == pytest.approx(2.5)
    assert parse_chrony_tracking("506 Cannot talk to daemon").error


def test_parse_timedatectl_show():
    assert parse_timedatectl_show("NTP=yes\nNTPSynchronized=yes\n").synchronised is True
    assert parse_timedatectl_show("NTP=no\nNTPSynchronized=no\n").synchronised is False
    assert parse_timedatectl_show("Timezone=UTC\n").error


def test_ntp_measurements_skip_unusable_results():
    results = [
        ntp_result("ntp1.example", 0.5),
        ntp_result("ntp2.example", 0.7),
        ntp_result("bad.example", 500.0, leap=3),  # unsynchronised server
        ntp_result("zero.example", 500.0, stratum=0),
        ntp_result("sixteen.example", 500.0, stratum=16),
        ntp_result("skipped.example", None, status=Status.SKIP),
    ]
    ms = ntp_measurements(results)
    assert [m.source for m in ms] == ["ntp1.example (127.0.0.1)", "ntp2.example (127.0.0.1)"]
    assert clock.combined_offset(ms) == pytest.approx(0.6)
    assert clock.combined_offset([]) is None


def _patch_views(monkeypatch, synced, daemons=()):
    monkeypatch.setattr(clock, "read_kernel_clock", lambda: KernelClock(synced, state="TIME_OK" if synced else "TIME_ERROR"))
    monkeypatch.setattr(clock, "read_daemon_views", lambda timeout: list(daemons))


def test_check_clock_uses_the_probes_offset(monkeypatch, tmp_path):
    _patch_views(monkeypatch, True)
    ctx = RunContext(ntp_results=(ntp_result("ntp1.example", 90.0), ntp_result("ntp2.example", 91.0)),
                     os_release=write_os_release(tmp_path, "centos7"))
    r = check_clock(clock_target(), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.CLOCK_OFFSET)
    assert r.evidence["offset_s"] == pytest.approx(90.5)
    assert "`systemctl enable --now chronyd`" in r.remediation  # EL unit name
    assert r.evidence["thresholds_s"] == {"warn": CLOCK_OFFSET_WARN_S, "fail": CLOCK_OFFSET_FAIL_S}


def test_check_clock_self_host_ntp_falls_back_to_chrony(monkeypatch):
    chrony = parse_chrony_tracking(CHRONY_SYNCED)
    _patch_views(monkeypatch, True, [chrony])
    skipped = (ntp_result("ntp1.example", None, status=Status.SKIP),)
    r = check_clock(clock_target(), RunContext(ntp_results=skipped))
    assert (r.status, r.reason) == (Status.PASS, Reason.OK)
    assert r.evidence["offset_source"] == "chronyd's time sources"
    _patch_views(monkeypatch, False)
    r = check_clock(clock_target(), RunContext(ntp_results=skipped))
    assert (r.status, r.reason) == (Status.WARN, Reason.CLOCK_UNSYNCHRONISED)
    assert "--self-host-ntp" in r.message


def test_kernel_view_wins_over_a_daemon(monkeypatch):
    _patch_views(monkeypatch, False, [parse_chrony_tracking(CHRONY_SYNCED)])
    r = check_clock(clock_target(), RunContext())
    assert r.reason is Reason.CLOCK_UNSYNCHRONISED
    assert "disagree" in r.evidence["disagreement"]


def test_daemon_view_used_when_the_kernel_cannot_be_read(monkeypatch):
    _patch_views(monkeypatch, None, [parse_chrony_tracking(CHRONY_SYNCED)])
    r = check_clock(clock_target(), RunContext())
    assert r.status is Status.PASS and "(chronyd)" in r.message


def test_real_kernel_read_is_read_only():
    before = time.time()
    k = clock.read_kernel_clock()
    after = time.time()
    assert k.error is None
    assert k.synchronised in (True, False)
    assert k.state in ("TIME_OK", "TIME_INS", "TIME_DEL", "TIME_OOP", "TIME_WAIT", "TIME_ERROR")
    assert k.synchronised == (not (k.status_flags & clock.STA_UNSYNC) and k.state != "TIME_ERROR")
    assert 0 <= k.maxerror_s <= 16.0 + 1  # the kernel caps maxerror at NTP_PHASE_LIMIT (16 s)
    assert 0 <= after - before < 1  # nothing stepped the clock
    # A second read agrees on the flags: modes=0 changed nothing.
    assert clock.read_kernel_clock().status_flags == k.status_flags


def test_real_check_clock_completes_within_bounds():
    started = time.monotonic()
    r = check_clock(clock_target(), RunContext(timeout=1.0))
    assert time.monotonic() - started < 2 * clock.DAEMON_TIMEOUT_S + 1
    assert r.status in (Status.PASS, Status.WARN, Status.FAIL)
    assert "kernel" in r.evidence and isinstance(r.evidence["daemons"], list)
