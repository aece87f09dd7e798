from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import jsonschema
import pytest

from edgecheck import exitcodes
from edgecheck.model import CheckResult, Evidence, Kind, Reason, Report, Status
from edgecheck.report import render, schema, to_dict, to_json, use_color
from edgecheck.runner import host_info
from tests.report.report_fixtures import ALL, PROXY, mixed_report, ready_report
from tests.schema_check import assert_valid_report, schema_errors

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_fixture_report_matches_the_shipped_schema(name):
    text = to_json(ALL[name]())
    obj = assert_valid_report(text)
    assert obj["schema"] == "edgecheck/report/v1"


def test_top_level_and_check_key_order_is_the_contract():
    obj = json.loads(to_json(mixed_report()))
    assert list(obj) == [
        "schema", "generated_at", "agent", "host", "params", "ready", "summary", "checks",
        "warnings", "duration_ms", "findings",
    ]
    assert list(obj["host"]) == ["hostname", "os", "kernel", "arch"]
    assert list(obj["summary"]) == ["pass", "warn", "fail", "skip"]
    for c in obj["checks"]:
        assert list(c) == [
            "id", "kind", "name", "target", "status", "reason", "message", "remediation",
            "duration_ms", "evidence",
        ]
        assert list(c["target"]) == [k for k in ("host", "port", "protocol") if k in c["target"]]
    assert obj["ready"] is False
    assert obj["summary"] == {"pass": 22, "warn": 6, "fail": 11, "skip": 0}
    assert obj["findings"]
    for f in obj["findings"]:
        assert list(f) == ["cause", "status", "reason", "title", "checks", "advice", "command"]


_RENDER_IN_A_CHILD = (
    "import sys\n"
    "from edgecheck.report import render\n"
    "from tests.report.report_fixtures import mixed_report\n"
    "sys.stdout.write(render(mixed_report(), sys.argv[1], verbose=True))\n"
)


@pytest.mark.parametrize("fmt", ["json", "text", "prometheus"])
def test_output_is_the_same_in_two_processes(fmt):
    """Nothing depends on the process: not the hash seed (set and dict order), not object ids."""
    outs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", _RENDER_IN_A_CHILD, fmt], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] and outs[0] == outs[1]
    assert outs[0] == render(mixed_report(), fmt, verbose=True)


def test_schema_is_valid_2020_12_and_its_enums_follow_the_model():
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(s)
    # A Reason added to the model must be added to schema.json's $defs/reason too.
    assert set(s["$defs"]["reason"]["enum"]) == {r.value for r in Reason}, "schema.json reasons out of date"
    assert set(s["$defs"]["status"]["enum"]) == {x.value for x in Status}
    assert set(s["$defs"]["kind"]["enum"]) == {k.value for k in Kind}
    # The file in the source tree is what ships; schema() reads the packaged copy.
    assert json.loads((ROOT / "edgecheck/report/schema.json").read_text()) == s


def test_schema_ships_as_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"edgecheck.report" = ["*.json"]' in text
    assert '"edgecheck.report"' in text.split("[tool.setuptools.package-dir]")[0]


def _one(check: CheckResult) -> Report:
    r = ready_report()
    r.checks = [check]
    return r


def _bad(**changes):
    """A one-check report with `changes` applied, its summary and readiness recomputed: only the
    schema can object, never the cross-checks of tests/schema_check.py."""
    c = ready_report().checks[0]
    obj = to_dict(_one(c))
    obj["checks"][0].update(changes)
    statuses = [check["status"] for check in obj["checks"]]
    obj["summary"] = {s: statuses.count(s) for s in ("pass", "warn", "fail", "skip")}
    obj["ready"] = "fail" not in statuses
    return obj


@pytest.mark.parametrize(
    "changes, where, complaint",
    [
        ({"reason": "connection-reset"}, "checks/0/reason", "is not one of"),  # not a Reason
        ({"status": "error"}, "checks/0/status", "is not one of"),
        ({"id": "cs-anony.cn-hangzhou.aliyuncs.com:443/tcp"}, "checks/0/id", "does not match"),  # no kind prefix
        ({"id": "tool:socat"}, "checks/0/id", "does not match"),  # id does not match kind endpoint
        ({"id": "endpoint:cs-anony.cn-hangzhou.aliyuncs.com:443"}, "checks/0/id", "does not match"),  # no protocol
        ({"id": "endpoint:raven-gateway:10280-/tcp"}, "checks/0/id", "does not match"),
        ({"id": "endpoint:2001:db8::1:443/tcp"}, "checks/0/id", "does not match"),  # IPv6 without brackets
        ({"status": "pass", "reason": "timeout"}, "checks/0/reason", "'ok' was expected"),  # pass = verified working
        ({"status": "skip", "reason": "timeout"}, "checks/0/reason",  # skip = n/a or missing input
         "is not one of ['not-applicable', 'missing-input']"),
        ({"target": {"host": "x", "port": 70000}}, "checks/0/target/port", "is greater than the maximum of 65535"),
        ({"target": {"protocol": "icmp"}}, "checks/0/target/protocol", "is not one of"),
        ({"evidence": []}, "checks/0/evidence", "is not of type 'object'"),
        ({"duration_ms": -1}, "checks/0/duration_ms", "is less than the minimum of 0"),
    ],
    ids=['reason-unknown', 'status-unknown', 'id-without-kind', 'id-of-another-kind', 'id-without-protocol',
         'id-bad-port-range', 'id-ipv6-unbracketed', 'pass-needs-ok', 'skip-needs-na-or-missing-input', 'port-out-of-range', 'protocol-unknown', 'evidence-not-object', 'duration-negative'],
)
def test_schema_rejects_malformed_checks(changes, where, complaint):
    obj = _bad(**changes)
    errors = schema_errors(obj)
    assert [e for e in errors if e.startswith(f"{where}: ") and complaint in e], errors
    with pytest.raises(AssertionError, match=f"{where}: "):
        assert_valid_report(obj)


def test_the_rejection_cases_start_from_a_valid_report():
    assert schema_errors(_bad()) == [] and assert_valid_report(_bad())


def test_schema_rejects_local_time_and_inconsistent_summary():
    obj = to_dict(ready_report())
    obj["generated_at"] = "2026-11-21T13:43:18+08:00"
    with pytest.raises(AssertionError, match="generated_at"):
        assert_valid_report(obj)
    obj = to_dict(ready_report())
    obj["summary"]["fail"] = 1
    with pytest.raises(AssertionError, match="summary"):
        assert_valid_report(obj)


def test_all_id_shapes_are_accepted():
    r = ready_report()
    ids = {c.id for c in r.checks}
    assert {"endpoint:cs-anony.cn-hangzhou.aliyuncs.com:443/tcp", "inbound:10250/tcp", "tool:socat",
            "clock:local", "inbound:8472/udp"} <= ids
    assert_valid_report(r)
    # Plan placeholders without a host (missing input) list their ports.
    r.checks = r.checks[:1]
    for placeholder in ("endpoint:raven-gateway:10280-10284/tcp", "endpoint:tunnel-server:10262,10263/tcp",
                        "endpoint:[2001:db8::1]:6443/tcp"):
        r.checks[0].target = dataclasses.replace(r.checks[0].target, id=placeholder)
        assert_valid_report(r)


class Part:
    """Evidence a future check may record, with whatever its to_json() hands over."""

    def __init__(self, **values):
        self.values = values

    def to_json(self):
        return dict(self.values)


def test_evidence_parts_are_serialised_safely():
    c = ready_report().checks[0]
    c.evidence = Evidence(Part(**{
        "tuple": (1, 2),
        "set": {"b", "a"},
        "nan": float("nan"),
        "inf": math.inf,
        "enum": Reason.TIMEOUT,
        "path": PurePosixPath("/etc/resolv.conf"),
        "obj": object(),
    }), Part(**{"3": "int key"}))
    obj = assert_valid_report(to_json(_one(c)))
    ev = obj["checks"][0]["evidence"]
    assert ev["tuple"] == [1, 2] and ev["set"] == ["a", "b"]
    assert ev["nan"] is None and ev["inf"] is None
    assert ev["enum"] == "timeout" and ev["path"] == "/etc/resolv.conf" and ev["3"] == "int key"


def test_proxy_credentials_never_leave_in_any_format():
    r = mixed_report()
    r.params["proxy_password"] = "hunter2"
    proxied = next(c for c in r.checks if c.reason is Reason.PROXY_ERROR)
    # A part that (wrongly) kept the credentials: redaction is the safety net of every format.
    proxied.evidence.add(Part(leaked_proxy=PROXY, headers={"Proxy-Authorization": "Basic cHJveHl1c2VyOnMzY3JldA=="}))
    for fmt in ("json", "text", "prometheus"):
        for verbose in (False, True):
            out = render(r, fmt, verbose=verbose)
            assert "s3cret" not in out and "proxyuser" not in out, fmt
            assert "hunter2" not in out and "cHJveHl1c2Vy" not in out, fmt
    obj = json.loads(to_json(r))
    assert obj["params"]["https_proxy"] == "http://***@10.0.0.8:3128"
    (check,) = [c for c in obj["checks"] if c["reason"] == "proxy-error"]
    assert check["evidence"]["leaked_proxy"] == "http://***@10.0.0.8:3128"
    assert check["evidence"]["proxy"] == "http://10.0.0.8:3128"  # the check strips them itself
    assert obj["params"]["proxy_password"] == "***"
    # Redaction works on copies: the caller's report is untouched.
    assert proxied.evidence.to_json()["leaked_proxy"] == PROXY


def _exit_code(report: Report, strict: bool = False) -> int:
    report.strict = strict
    return exitcodes.for_verdict(report.passes)


def test_exit_codes():
    assert _exit_code(ready_report()) == 0
    assert _exit_code(mixed_report()) == 1
    r = ready_report()
    r.checks[0].status, r.checks[0].reason = Status.WARN, Reason.NO_RESPONSE
    assert _exit_code(r) == 0
    assert _exit_code(r, strict=True) == 1
    r = ready_report()
    r.warnings = ["region cn-hangzhuo is not in the catalog; did you mean cn-hangzhou?"]
    assert _exit_code(r) == 0 and _exit_code(r, strict=True) == 1
    assert _exit_code(ready_report(), strict=True) == 0


def test_host_info_reads_pretty_name(tmp_path):
    p = tmp_path / "os-release"
    p.write_text('NAME="Ubuntu"\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n')
    info = host_info(str(p))
    assert list(info) == ["hostname", "os", "kernel", "arch"]
    assert info["os"] == "Ubuntu 22.04.4 LTS"
    p.write_text("NAME=Alinux\nVERSION_ID=3\n")
    assert host_info(str(p))["os"] == "Alinux 3"
    assert host_info(str(tmp_path / "missing"))["os"]  # falls back to the kernel's OS name
    assert all(isinstance(v, str) and v for v in host_info().values())


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_use_color_only_on_a_tty_and_never_with_no_color():
    assert use_color(_Stream(True), {}) is True
    assert use_color(_Stream(False), {}) is False
    assert use_color(_Stream(True), {"NO_COLOR": "1"}) is False
    assert use_color(_Stream(True), {"NO_COLOR": ""}) is True  # no-color.org: empty means unset
    assert use_color(_Stream(True), {"TERM": "dumb"}) is False
    assert use_color(object(), {}) is False


def test_use_color_reads_the_real_environment(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(_Stream(True)) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.delenv("TERM", raising=False)
    assert use_color(_Stream(True)) is True


def test_schema_command_prints_the_shipped_schema():
    from click.testing import CliRunner

    from edgecheck.cli import main

    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == schema()
