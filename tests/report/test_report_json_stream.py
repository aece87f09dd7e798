"""The JSON report is written one check and one finding at a time (iter_json) and is still,
byte for byte, json.dumps(to_dict(report), indent=2): the contract's layout does not depend on
how it is produced."""

from __future__ import annotations

import json

import pytest

from edgecheck.model import Report
from edgecheck.report import to_dict, to_json
from edgecheck.report.jsonreport import iter_json
from tests.report.report_fixtures import ALL, GENERATED_AT, HOST, params
from tests.schema_check import assert_valid_report


def _reference(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


@pytest.mark.parametrize("name", sorted(ALL))
def test_streamed_text_is_the_plain_dump(name: str) -> None:
    report = ALL[name]()
    assert report.checks and (report.findings or name == "ready")
    pieces = list(iter_json(report))
    assert "".join(pieces) == to_json(report) == _reference(report)
    assert len(pieces) >= len(report.checks)  # one piece per check at least: never the whole text at once
    assert_valid_report(to_json(report))


def test_empty_lists_and_secrets() -> None:
    report = Report(GENERATED_AT, "0.1.0", dict(HOST), params(proxy_password="hunter2hunter2"), [])
    assert to_json(report) == _reference(report)
    assert '"checks": [],' in to_json(report) and '"findings": []' in to_json(report)
    assert "hunter2" not in to_json(report)
