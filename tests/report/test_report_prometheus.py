from __future__ import annotations

import re
import subprocess

import pytest

import dataclasses

from edgecheck.evidence import ClockEvidence
from edgecheck.model import CheckResult, Evidence, Kind, Reason, Status, Target
from edgecheck.report import render_prometheus
from edgecheck.report.prometheus import escape_label
from tests.packaging.packaging_helpers import need
from tests.report.report_fixtures import ALL, mixed_report, ready_report

# name{labels} value -- and nothing after the value: a timestamp makes node_exporter drop the file.
SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})? (?P<value>\S+)$')


def _nasty_report():
    r = mixed_report()
    weird = Target('endpoint:we"ird\\host:443/tcp', Kind.ENDPOINT, "https",
                   'name with "quotes", back\\slash and\nnewline', "", "", "", host='we"ird\\host', port=443,
                   protocol="tcp")
    r.checks.append(CheckResult(weird, Status.FAIL, Reason.TIMEOUT, "m"))
    r.agent_version = "0.1.0+local\\dev"
    clock = [c for c in r.checks if c.id == "clock:local"][0]
    # An offset that could not be measured.
    clock.evidence = Evidence(dataclasses.replace(clock.evidence.find(ClockEvidence), offset_s=float("nan")))
    return r


CASES = dict(ALL, nasty=_nasty_report, empty=lambda: _empty())


def _empty():
    r = ready_report()
    r.checks = []
    return r


@pytest.mark.parametrize("name", sorted(CASES))
def test_promtool_accepts_it_without_lint_complaints(name):
    text = render_prometheus(CASES[name]())
    proc = subprocess.run([need("promtool"), "check", "metrics"], input=text.encode(), capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout.decode().strip() == "" and proc.stderr.decode().strip() == ""


def _samples(text):
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line without timestamp: {line!r}"
        out.append((m["name"], m["labels"] or "", m["value"]))
    return out


def test_required_series_and_values():
    text = render_prometheus(mixed_report())
    samples = _samples(text)
    values = {(n, l): v for n, l, v in samples}
    assert values[("edgecheck_ready", "")] == "0"
    assert values[("edgecheck_last_run_timestamp_seconds", "")] == "1795239798.0"
    assert values[("edgecheck_run_duration_seconds", "")] == "3.14"
    assert values[("edgecheck_checks", '{status="fail"}')] == "11"
    assert values[("edgecheck_checks", '{status="warn"}')] == "6"
    assert values[("edgecheck_checks", '{status="skip"}')] == "0"
    assert values[("edgecheck_clock_offset_seconds", "")] == "-72.41"
    assert values[("edgecheck_plan_warnings", "")] == "2"
    assert render_prometheus(ready_report()).count("\nedgecheck_ready 1\n") == 1
    for name in {n for n, _, _ in samples}:
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text


def test_one_series_per_check_and_status_exactly_one_set():
    r = mixed_report()
    samples = [s for s in _samples(render_prometheus(r)) if s[0] == "edgecheck_check_status"]
    assert len(samples) == 4 * len(r.checks)
    for c in r.checks:
        mine = [(l, v) for _, l, v in samples if f'id="{c.id}"' in l]
        assert sorted(v for _, v in mine) == ["0", "0", "0", "1"]
        assert (f'status="{c.status.value}"' in [l for l, v in mine if v == "1"][0])
    info = [l for n, l, _ in _samples(render_prometheus(r)) if n == "edgecheck_check_info"]
    (kubelet,) = [l for l in info if 'id="inbound:10250/tcp"' in l]
    assert kubelet.startswith('{id="inbound:10250/tcp",kind="inbound",name="kubelet: API Server and Metrics Server '
                              'access (proxied by Raven in public mode)",reason="port-in-use"')


def test_series_set_is_stable_when_a_check_flips():
    """Alert rules with for: survive a flap only if a flip changes values, not series."""
    def series(r):
        return [(n, l) for n, l, _ in _samples(render_prometheus(r)) if n == "edgecheck_check_status"]

    a, b = ready_report(), ready_report()
    b.checks[0].status, b.checks[0].reason = Status.FAIL, Reason.TIMEOUT
    assert series(a) == series(b)


def test_label_escaping():
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    text = render_prometheus(_nasty_report())
    assert 'id="endpoint:we\\"ird\\\\host:443/tcp"' in text
    assert 'name="name with \\"quotes\\", back\\\\slash and\\nnewline"' in text
    assert "edgecheck_clock_offset_seconds" not in text  # NaN offset: no sample, not a NaN
    for line in text.splitlines():
        assert "\n" not in line


def test_no_secrets_and_duplicate_ids_do_not_duplicate_series():
    r = mixed_report()
    r.checks.append(r.checks[0])
    text = render_prometheus(r)
    assert "s3cret" not in text
    ids = [l for n, l, _ in _samples(text) if n == "edgecheck_check_info"]
    assert len(ids) == len(set(ids))
