"""Reports made by the real check code (no network: tools, inbound ports, plan-time skips and an
API server on loopback), rendered in every format: evidence shapes drift, this catches it."""

from __future__ import annotations

import shutil
import subprocess
import time


from edgecheck import catalog as catalog_mod
from edgecheck import engine
from edgecheck import plan as plan_mod
from edgecheck.diagnosis import diagnose
from edgecheck.model import Reason, Report
from edgecheck.report import render, render_text, to_json
from edgecheck.report.text import WIDTH
from edgecheck.runcontext import RunContext
from edgecheck.runner import host_info
from tests.schema_check import assert_valid_report


def _real_report(tmp_path) -> Report:
    from edgecheck.model import Mode, Phase

    sel = plan_mod.Selection(
        region="cn-hangzhou", mode=Mode.PUBLIC, phase=Phase.JOIN,
        apiserver=plan_mod.HostPort("127.0.0.1", 1),  # loopback, nothing listens: refused
    )
    plan = plan_mod.build_plan(catalog_mod.load_catalog(), sel)
    local = [
        t for t in plan.targets
        if t.skip is not None or t.probe in ("tool", "inbound")
        or (t.host == "127.0.0.1")
    ]
    assert any(t.host == "127.0.0.1" for t in local)
    empty = tmp_path / "bin"
    empty.mkdir()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    ctx = RunContext(timeout=1.0, deadline=time.monotonic() + 20, tool_path=str(empty),
                     resolv_conf=str(resolv), phase=Phase.JOIN, mode=Mode.PUBLIC, targets=tuple(local))
    started = time.monotonic()
    checks = engine.run_checks(local, ctx)
    return diagnose(Report(
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        agent_version="0.1.0", host=host_info(),
        params={"region": "cn-hangzhou", "mode": "public", "phase": "join"},
        checks=checks, warnings=list(plan.warnings),
        duration_ms=int((time.monotonic() - started) * 1000),
    ))


def test_real_check_results_validate_and_render(tmp_path):
    report = _real_report(tmp_path)
    assert_valid_report(to_json(report))
    kinds = {c.kind.value for c in report.checks}
    assert {"tool", "inbound", "endpoint"} <= kinds

    # Every tool is missing from an empty PATH: one finding, one install command.
    tool_findings = [f for f in report.findings if f.reason is Reason.TOOL_MISSING]
    assert len(tool_findings) == 1 and len(tool_findings[0].checks) >= 9
    text = render_text(report, verbose=True)
    for line in text.splitlines():
        assert len(line) <= WIDTH or len(line.split()) <= 2, line
    assert "127.0.0.1:1/tcp" in text

    if shutil.which("promtool"):
        proc = subprocess.run(["promtool", "check", "metrics"], input=render(report, "prometheus").encode(),
                              capture_output=True, timeout=60)
        assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc
