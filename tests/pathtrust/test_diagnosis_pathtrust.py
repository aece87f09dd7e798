"""The diagnosis of issue 12's findings, on hand-made results: a date failure the clock explains is
the clock's finding, TLS kinds get their own causes, nameserver checks their own advice, and the
IKE check's Raven note."""

from __future__ import annotations

from edgecheck.diagnosis import diagnose
from edgecheck.evidence import Certificate, ClockEvidence, KernelClock, TlsResult
from edgecheck.model import CheckResult, Evidence, Kind, Reason, Report, Status, Target
from edgecheck.probes.ntp import CLOCK_OFFSET_FAIL_S, CLOCK_OFFSET_WARN_S

NOW = "2026-06-01T12:00:00Z"


def _endpoint(host: str) -> Target:
    return Target(id=f"endpoint:{host}:443/tcp", kind=Kind.ENDPOINT, probe="https", name=host, why="", source="",
                  entry="e", host=host, port=443, protocol="tcp")


def _clock_check(offset: float) -> CheckResult:
    target = Target(id="clock:local", kind=Kind.CLOCK, probe="clock", name="clock", why="", source="", entry="clock")
    ev = ClockEvidence(KernelClock(True), (), ("chronyd",), (), offset, "ntp", CLOCK_OFFSET_WARN_S,
                       CLOCK_OFFSET_FAIL_S, "chrony", ("ntp.test",))
    status = Status.FAIL if abs(offset) > CLOCK_OFFSET_FAIL_S else Status.PASS
    reason = Reason.CLOCK_OFFSET if status is Status.FAIL else Reason.OK
    return CheckResult(target, status, reason, "clock", evidence=Evidence(ev))


def _tls_check(host: str, kind: str, not_before: str, not_after: str) -> CheckResult:
    tls = TlsResult(False, Reason.TLS_VERIFY_FAILED, sni=host, verify_kind=kind, verify_code=9,
                    peer_certificate=Certificate(f"CN={host}", "CN=lab CA", not_before, not_after))
    return CheckResult(_endpoint(host), Status.FAIL, Reason.TLS_VERIFY_FAILED, "tls", evidence=Evidence(tls))


def _report(*checks: CheckResult) -> Report:
    return diagnose(Report(NOW, "0", {}, {"mode": "public", "phase": "join"}, list(checks)))


def test_not_yet_valid_while_the_clock_is_three_days_behind_is_the_clocks_finding():
    future = _tls_check("a.test", "not-yet-valid", "2026-06-03T12:00:00Z", "2026-07-01T00:00:00Z")
    expired = _tls_check("b.test", "expired", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    report = _report(_clock_check(3 * 86400.0), future, expired)
    by_cause = {f.cause: f for f in report.findings}
    clock = by_cause["clock-offset"]
    assert [c.id for c in clock.checks] == ["clock:local", "endpoint:a.test:443/tcp"]
    assert any("come from this clock" in a for a in clock.advice)
    assert "at the correct time" in clock.details[1]
    assert future.remediation.startswith("Step the clock") and "come from this clock" in future.remediation
    assert "tls-verify-failed:kind=expired,issuer=CN=lab CA" in by_cause
    assert expired.remediation.startswith("Not the clock")


def test_with_a_good_clock_the_certificate_is_its_own_cause():
    future = _tls_check("a.test", "not-yet-valid", "2026-06-03T12:00:00Z", "2026-07-01T00:00:00Z")
    report = _report(_clock_check(0.01), future)
    (finding,) = report.findings
    assert finding.cause == "tls-verify-failed:kind=not-yet-valid,issuer=CN=lab CA"
    assert finding.title == "TLS certificates not valid yet (issuer: CN=lab CA)"
    assert future.remediation.startswith("Not the clock: the clock is right")


def test_without_a_clock_check_a_date_failure_stays_the_certificates():
    future = _tls_check("a.test", "not-yet-valid", "2026-06-03T12:00:00Z", "2026-07-01T00:00:00Z")
    (finding,) = _report(future).findings
    assert finding.reason is Reason.TLS_VERIFY_FAILED


def test_ike_notes_raven_mtu_only_when_the_path_is_small(monkeypatch):
    from edgecheck.checks import ike
    from edgecheck.probes import pmtu_measure

    monkeypatch.setattr(pmtu_measure, "kernel_path_mtu", lambda address, port=9: 1500)
    assert ike.raven_mtu_note("192.0.2.20") is None
    monkeypatch.setattr(pmtu_measure, "kernel_path_mtu", lambda address, port=9: 1400)
    monkeypatch.setattr(pmtu_measure, "egress_route",
                        lambda address, timeout=1.0: pmtu_measure.EgressRoute(address, interface="eth0", interface_mtu=1500))
    note = ike.raven_mtu_note("192.0.2.20")
    assert note is not None and note.lossy_range == (note.inner_max + 1, 1436)
    assert "MTU to 1400" in note.fix and note.to_json()["raven_mtu"]["path_mtu"] == 1400
