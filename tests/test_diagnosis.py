"""One source of advice: for every reason, the remediation a check carries in JSON (and metrics)
is word for word the advice the text report shows for that check when it stands alone."""

from __future__ import annotations

import json
import re
from typing import List

import pytest

from edgecheck.diagnosis import diagnose
from edgecheck.diagnosis.advice import ADVICE
from edgecheck.diagnosis.causes import ORDER
from edgecheck.model import CheckResult, Kind, Reason, Report, Status, Target
from edgecheck.report import render_text, to_json
from tests.report.report_fixtures import ALL, GENERATED_AT, HOST, params, plan_targets

SKIP_REASONS = (Reason.MISSING_INPUT, Reason.NOT_APPLICABLE)


def _target_for(reason: Reason) -> Target:
    """A real plan target of the kind that gives this reason."""
    targets = plan_targets()
    kind = {Reason.PORT_IN_USE: Kind.INBOUND, Reason.PORT_NOT_LISTENING: Kind.INBOUND, Reason.LOOPBACK_ONLY: Kind.INBOUND,
            Reason.TOOL_MISSING: Kind.TOOL, Reason.CLOCK_UNSYNCHRONISED: Kind.CLOCK}.get(reason, Kind.ENDPOINT)
    return next(t for t in targets.values() if t.kind is kind and t.skip is None)


def _status_for(reason: Reason) -> Status:
    if reason is Reason.OK:
        return Status.PASS
    if reason in SKIP_REASONS:
        return Status.SKIP
    return Status.WARN if reason in (Reason.TOOL_MISSING, Reason.NO_RESPONSE, Reason.LOOPBACK_ONLY) else Status.FAIL


def _alone(check: CheckResult) -> Report:
    return diagnose(Report(GENERATED_AT, "0.1.0", dict(HOST), params(), [check]))


def _shown_advice(text: str) -> List[str]:
    """Every 'What to do:' block of a text report, as one line each (wrapping and the
    backslash continuations of a pasteable command undone)."""
    blocks = []
    for block in re.findall(r"What to do:\n((?:     .*\n?)+)", text):
        joined = " ".join(line.strip() for line in block.splitlines())
        blocks.append(re.sub(r" \\ ", " ", joined))
    return blocks


def _normal(text: str) -> str:
    return " ".join(text.split())


def test_every_reason_has_one_adviser_and_a_place_in_the_order():
    assert set(ADVICE) == set(Reason)
    assert set(ORDER) | {Reason.OK, Reason.LOOPBACK_ONLY} >= set(Reason) - {Reason.OK}


@pytest.mark.parametrize("reason", list(Reason))
def test_json_remediation_is_the_advice_the_text_shows(reason):
    report = _alone(CheckResult(_target_for(reason), _status_for(reason), reason, "what the check found"))
    (check,) = json.loads(to_json(report))["checks"]
    text = render_text(report)
    if reason in SKIP_REASONS:
        assert check["remediation"] == "" and "What to do" not in text
        return
    if reason is Reason.OK:
        assert check["remediation"] == ""  # verified working: nothing to do
        return
    assert check["remediation"], reason
    (shown,) = _shown_advice(text)
    assert shown == _normal(check["remediation"])
    (finding,) = json.loads(to_json(report))["findings"]
    assert _normal(" ".join(finding["advice"] + [finding["command"]])) == shown


def test_every_single_check_finding_of_a_report_shows_its_remediation():
    report = ALL["mixed"]()
    shown = _shown_advice(render_text(report))
    singles = [f for f in report.findings if len(f.checks) == 1]
    assert len(singles) >= 5
    for finding in singles:
        assert _normal(finding.checks[0].remediation) in shown, finding.cause


def test_a_passed_check_with_advice_shows_it_as_a_note():
    report = ALL["dns_forwarder"]()
    (api,) = [c for c in report.checks if c.target.trust.value == "cluster"]
    assert api.status is Status.PASS and "--apiserver-ca" in api.remediation
    (note,) = re.findall(r"\n      note: (.*\n(?:        .*\n)*)", render_text(report))
    assert _normal(note) == _normal(api.remediation)
