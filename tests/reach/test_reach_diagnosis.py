"""reach checks through the one diagnosis layer: every reason a reach check can have gets advice,
the JSON remediation is the advice the text report shows, findings group the nodes' ports by
protocol, and the advice comes from the catalog (allowed_from, components), never from code."""

from __future__ import annotations

import errno
import json
import re
from typing import List

import pytest

from edgecheck.diagnosis import diagnose
from edgecheck.model import Report
from edgecheck.reach.probeloop import IcmpError, Outcome, ProbeResult
from edgecheck.reach.protocol import Endpoint
from edgecheck.report import render_text, to_json
from tests.reach.verdicts import check_result
from tests.schema_check import assert_valid_report

NODE = "10.0.12.7"


def _r(outcome: Outcome, port: int = 10250, protocol: str = "tcp", method: str = "token", **kw) -> ProbeResult:
    kw.setdefault("detail", "what the probe saw")
    return ProbeResult(NODE, port, protocol, method, outcome, **kw)


CASES = {
    "timeout": _r(Outcome.TIMEOUT),
    "refused-reset": _r(Outcome.REFUSED),
    "refused-by-the-node": _r(Outcome.REFUSED, icmp=IcmpError(111, 4, 3, 3, NODE)),
    "refused-on-the-path": _r(Outcome.REFUSED, icmp=IcmpError(111, 4, 3, 3, "10.0.0.1")),
    "udp-nothing-listens": _r(Outcome.REFUSED, 8472, "udp", icmp=IcmpError(111, 4, 3, 3, NODE)),
    "unreachable": _r(Outcome.UNREACHABLE, icmp=IcmpError(113, 4, 3, 13, "10.0.0.1")),
    "own-filter": _r(Outcome.UNREACHABLE, errno=errno.EPERM),
    "udp-silence": _r(Outcome.NO_RESPONSE, 8472, "udp"),
    "unproven": _r(Outcome.UNPROVEN),
    "http-unproven": _r(Outcome.UNPROVEN, 9100, method="http"),
    "tls-handshake": _r(Outcome.UNPROVEN, method="tls"),
    "clock": _r(Outcome.CLOCK_SKEW, clock_offset_s=900.0),
    "deadline": _r(Outcome.DEADLINE),
}


def _blocks(text: str) -> List[str]:
    blocks = []
    for block in re.findall(r"What to do:\n((?:     .*\n?)+)", text):
        blocks.append(re.sub(r" \\ ", " ", " ".join(line.strip() for line in block.splitlines())))
    return blocks


@pytest.mark.parametrize("mode", ["public", "dedicated"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_json_remediation_is_the_advice_the_text_shows(case: str, mode: str) -> None:
    check = check_result(CASES[case], node=NODE, mode=mode)
    report = diagnose(Report("2026-01-01T00:00:00Z", "0.1.0", {}, {"mode": mode, "phase": "join"}, [check]))
    doc = assert_valid_report(to_json(report))
    (shown,) = _blocks(render_text(report))
    assert doc["checks"][0]["remediation"] and " ".join(shown.split()) == " ".join(doc["checks"][0]["remediation"].split())
    remediation = doc["checks"][0]["remediation"]
    assert "seed" not in remediation.lower() and not re.search(r"\d+\.\d+\.\d+\.\d+/\d+", remediation)
    if case in ("timeout", "refused-reset", "refused-on-the-path", "udp-silence"):
        assert ("VPC route table" in remediation) is (mode == "dedicated")
        assert ("host CIDR block of the edge node" in remediation) is (mode == "public")


def test_the_ports_of_many_nodes_are_one_cause_per_protocol() -> None:
    checks = [check_result(_r(Outcome.TIMEOUT, port), node=node)
              for node in ("10.0.12.7", "10.0.12.8") for port in (10250, 9100)]
    checks.append(check_result(_r(Outcome.NO_RESPONSE, 8472, "udp"), node="10.0.12.7"))
    report = diagnose(Report("2026-01-01T00:00:00Z", "0.1.0", {}, {"mode": "public", "phase": "join"}, checks))
    causes = [(f.cause, len(f.checks), f.title) for f in report.findings]
    assert causes == [("timeout:protocol=tcp,route=inbound", 4, "TCP to the nodes' inbound ports times out"),
                      ("no-response:protocol=udp,route=inbound", 1, "UDP to the nodes' inbound ports gets no answer")]
    advice = " ".join(report.findings[0].advice)
    assert "TCP 10250 and TCP 9100" in advice and "10.0.12.7, 10.0.12.8" in advice


def test_a_nated_pass_carries_a_note_and_no_failure() -> None:
    nat = _r(Outcome.OK, local=Endpoint("192.168.3.20", 40000), seen_source=Endpoint("100.64.1.9", 61000))
    report = diagnose(Report("2026-01-01T00:00:00Z", "0.1.0", {}, {"mode": "dedicated", "phase": "join"},
                             [check_result(nat, node=NODE, mode="dedicated")]))
    (check,) = json.loads(to_json(report))["checks"]
    assert check["status"] == "pass" and report.findings == []
    assert "100.64.1.9" in check["message"] and "NATed" in check["message"]
    assert "100.64.1.9" in check["remediation"] and "note: " in render_text(report)
