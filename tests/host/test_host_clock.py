from __future__ import annotations

import time

import pytest

from edgecheck.checks import clock
from edgecheck.checks.clock import check_clock, combined_offset, decide_clock, ntp_measurements
from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.evidence import ClockEvidence, KernelClock
from edgecheck.host import timekeeping
from edgecheck.host.timekeeping import parse_chrony_tracking, parse_timedatectl_show
from edgecheck.model import CheckResult, Evidence, Kind, Reason, Status, Target
from edgecheck.probes.ntp import CLOCK_OFFSET_FAIL_S, CLOCK_OFFSET_WARN_S, NtpEvidence, NtpOutcome
from edgecheck.runcontext import RunContext

from tests.host.hostfixtures import clock_target, write_os_release


def ntp_result(host, offset, status=Status.PASS, stratum=2, leap=0, address="127.0.0.1"):
    t = Target(id=f"endpoint:{host}:123/udp", kind=Kind.ENDPOINT, probe="ntp", name="NTP", why="", source="",
               entry="ntp", host=host, port=123, protocol="udp")
    ev = Evidence()
    if offset is not None:
        best = NtpOutcome(address, True, offset_s=offset, delay_s=0.02, stratum=stratum, leap=leap)
        ev = Evidence(NtpEvidence(best, (best,)))
    reason = Reason.OK if status is Status.PASS else Reason.NOT_APPLICABLE
    return CheckResult(t, status, reason, "", evidence=ev)


def ctx_with_ntp(results, **kw) -> RunContext:
    ctx = RunContext(**kw)
    ctx.facts.publish("ntp", results)
    return ctx


def advice(check: CheckResult) -> str:
    return remediation(check, Scene())


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
    assert decide_clock(synced, offset, "ntp1.example")[:2] == (status, reason)
    check = clock_check(status, reason, offset=offset)
    assert (advice(check) == "") == (status is Status.PASS)


def clock_check(status, reason, offset=None, running=(), service="chrony", servers=("ntp1.example",)):
    evidence = ClockEvidence(KernelClock(True), (), tuple(running), (), offset, "ntp1.example", CLOCK_OFFSET_WARN_S,
                             CLOCK_OFFSET_FAIL_S, service, servers)
    return CheckResult(clock_target(), status, reason, "", evidence=Evidence(evidence))


def test_decide_clock_messages_say_direction_and_source():
    status, reason, message = decide_clock(True, 75.25, "ntp1.example (127.0.0.1)")
    assert "+75.25 s (behind) against ntp1.example (127.0.0.1)" in message
    fix = advice(clock_check(status, reason, offset=75.25))
    assert "chronyc makestep" in fix and "`systemctl enable --now chrony`" in fix and "ntp1.example" in fix
    assert "-3.0 ms (ahead)" in decide_clock(True, -0.003, "x")[2]
    assert "offset not measured" in decide_clock(False, None)[2]
    unsynced = (Status.WARN, Reason.CLOCK_UNSYNCHRONISED)
    assert "chronyd is running but has not synchronised" in advice(clock_check(*unsynced, running=["chronyd"]))
    assert "running but" not in advice(clock_check(*unsynced, running=["ntpdate"]))


def test_thresholds_are_the_ntp_probes():
    assert 0 < CLOCK_OFFSET_WARN_S < CLOCK_OFFSET_FAIL_S
    assert (clock.CLOCK_OFFSET_WARN_S, clock.CLOCK_OFFSET_FAIL_S) == (CLOCK_OFFSET_WARN_S, CLOCK_OFFSET_FAIL_S)


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
    assert dict(v.detail)["Stratum"] == "3"
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
    assert combined_offset(ms) == pytest.approx(0.6)
    assert combined_offset([]) is None


def _patch_views(monkeypatch, synced, daemons=()):
    monkeypatch.setattr(clock, "read_kernel_clock", lambda: KernelClock(synced, state="TIME_OK" if synced else "TIME_ERROR"))
    monkeypatch.setattr(clock, "read_daemon_views", lambda timeout: list(daemons))


def test_check_clock_uses_the_probes_offset(monkeypatch, tmp_path):
    _patch_views(monkeypatch, True)
    ctx = ctx_with_ntp((ntp_result("ntp1.example", 90.0), ntp_result("ntp2.example", 91.0)),
                       os_release=write_os_release(tmp_path, "centos7"))
    r = check_clock(clock_target(), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.CLOCK_OFFSET)
    ev = r.evidence.to_json()
    assert ev["offset_s"] == pytest.approx(90.5)
    assert "`systemctl enable --now chronyd`" in advice(r)  # EL unit name
    assert ev["thresholds_s"] == {"warn": CLOCK_OFFSET_WARN_S, "fail": CLOCK_OFFSET_FAIL_S}


def test_check_clock_self_host_ntp_falls_back_to_chrony(monkeypatch):
    chrony = parse_chrony_tracking(CHRONY_SYNCED)
    _patch_views(monkeypatch, True, [chrony])
    skipped = (ntp_result("ntp1.example", None, status=Status.SKIP),)
    r = check_clock(clock_target(), ctx_with_ntp(skipped))
    assert (r.status, r.reason) == (Status.PASS, Reason.OK)
    assert r.evidence.to_json()["offset_source"] == "chronyd's time sources"
    _patch_views(monkeypatch, False)
    r = check_clock(clock_target(), ctx_with_ntp(skipped))
    assert (r.status, r.reason) == (Status.WARN, Reason.CLOCK_UNSYNCHRONISED)
    assert "--self-host-ntp" in r.message


def test_kernel_view_wins_over_a_daemon(monkeypatch):
    _patch_views(monkeypatch, False, [parse_chrony_tracking(CHRONY_SYNCED)])
    r = check_clock(clock_target(), RunContext())
    assert r.reason is Reason.CLOCK_UNSYNCHRONISED
    assert "disagree" in r.evidence.to_json()["disagreement"]


def test_daemon_view_used_when_the_kernel_cannot_be_read(monkeypatch):
    _patch_views(monkeypatch, None, [parse_chrony_tracking(CHRONY_SYNCED)])
    r = check_clock(clock_target(), RunContext())
    assert r.status is Status.PASS and "(chronyd)" in r.message


def test_real_kernel_read_is_read_only():
    before = time.time()
    k = timekeeping.read_kernel_clock()
    after = time.time()
    assert k.error is None
    assert k.synchronised in (True, False)
    assert k.state in ("TIME_OK", "TIME_INS", "TIME_DEL", "TIME_OOP", "TIME_WAIT", "TIME_ERROR")
    assert k.synchronised == (not (k.status_flags & timekeeping.STA_UNSYNC) and k.state != "TIME_ERROR")
    assert 0 <= k.maxerror_s <= 16.0 + 1  # the kernel caps maxerror at NTP_PHASE_LIMIT (16 s)
    assert 0 <= after - before < 1  # nothing stepped the clock
    # A second read agrees on the flags: modes=0 changed nothing.
    assert timekeeping.read_kernel_clock().status_flags == k.status_flags


def test_real_check_clock_completes_within_bounds():
    started = time.monotonic()
    r = check_clock(clock_target(), RunContext(timeout=1.0))
    assert time.monotonic() - started < 2 * clock.DAEMON_TIMEOUT_S + 1
    assert r.status in (Status.PASS, Status.WARN, Status.FAIL)
    ev = r.evidence.to_json()
    assert "kernel" in ev and isinstance(ev["daemons"], list)


def test_an_answering_chronyc_counts_as_a_running_chronyd(monkeypatch):
    """A hardened unit (ProtectProc=invisible) sees no other user's process: chronyc answering
    `tracking` is the proof that chronyd runs, so the advice is not "install chrony"."""
    _patch_views(monkeypatch, False, [parse_chrony_tracking(CHRONY_UNSYNCED)])
    monkeypatch.setattr(clock, "running_time_daemons", lambda: [])
    r = check_clock(clock_target(), RunContext())
    assert r.evidence.to_json()["running_time_daemons"] == ["chronyd"]
    assert "chronyd is running but has not synchronised" in advice(r)
