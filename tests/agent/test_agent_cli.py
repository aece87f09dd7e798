"""`edgecheck agent` through the CLI entry point, with the probing replaced (no packet sent)."""

from __future__ import annotations

import json
import re

import pytest

from edgecheck import agent, cli, engine, exitcodes, runner
from edgecheck.model import Report

from tests.agent.agent_helpers import make_report


@pytest.fixture
def fake_probe(monkeypatch):
    """runner.run replaced: returns a report with the statuses in `state["statuses"]`. Nothing is
    warmed either: the check modules' warm() starts background work (`--version` processes, the
    ruleset read) that would outlive the test, and a process forked by it while a later test holds
    the agent's flock inherits that lock until it execs (the later test then sees "busy")."""
    state = {"statuses": {"endpoint:x:443/tcp": "pass"}, "calls": 0}

    def probe(prepared):
        state["calls"] += 1
        r = make_report(state["statuses"])
        return Report(generated_at=r.generated_at, agent_version=r.agent_version, host=r.host,
                      params=prepared.params, checks=r.checks, strict=prepared.strict)

    monkeypatch.setattr(runner, "run", probe)
    monkeypatch.setattr(engine, "warm", lambda *args, **kwargs: None)
    return state


def agent_cmd(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        cli.cli_entry(["agent", *args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_agent_runs_with_running_phase_and_writes_files(tmp_path, capsys, fake_probe, monkeypatch):
    monkeypatch.delenv("EDGECHECK_PHASE", raising=False)
    code, out, _ = agent_cmd(capsys, "--region", "cn-hangzhou", "--state-dir", str(tmp_path), "--textfile", str(tmp_path / "e.prom"))
    assert code == 0
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["params"]["phase"] == "running" and doc["schema"] == "edgecheck/report/v1"
    assert "edgecheck_ready 1" in (tmp_path / "e.prom").read_text()
    first, run_line = out.splitlines()
    assert first == "edgecheck agent: first run (no previous report): READY"
    assert re.fullmatch(rf"edgecheck agent: READY \(fail 0, warn 0, pass 1, skip 0\) in \d+\.\ds; "
                        rf"report {re.escape(str(tmp_path))}/report\.json; metrics {re.escape(str(tmp_path))}/e\.prom",
                        run_line), run_line

    fake_probe["statuses"] = {"endpoint:x:443/tcp": "fail"}
    code, out, _ = agent_cmd(capsys, "--region", "cn-hangzhou", "--state-dir", str(tmp_path), "--textfile", "off")
    assert code == 1
    assert out.splitlines()[0] == "edgecheck agent: readiness changed: READY -> NOT READY; now failing: endpoint:x:443/tcp (timeout)"
    code, out, _ = agent_cmd(capsys, "--region", "cn-hangzhou", "--state-dir", str(tmp_path), "--textfile", "off")
    assert code == 1 and len(out.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--region", "Hangzhou!"], "region"),
    (["--region", "cn-hangzhou", "--textfile", "/tmp/edgecheck.txt"], ".prom"),
])
def test_usage_errors_exit_2_before_anything(tmp_path, capsys, fake_probe, args, message):
    code, out, err = agent_cmd(capsys, *args, "--state-dir", str(tmp_path))
    assert code == 2 and message in err and err.count("\n") == 1
    assert fake_probe["calls"] == 0 and list(tmp_path.iterdir()) == []


def test_busy_lock_exits_75_in_one_line(tmp_path, capsys, fake_probe):
    with agent.agent_lock(tmp_path / "agent.lock") as held:
        assert held
        code, out, err = agent_cmd(capsys, "--region", "cn-hangzhou", "--state-dir", str(tmp_path), "--textfile", "off")
    assert code == exitcodes.BUSY == 75
    assert out == f"edgecheck agent: another edgecheck agent run holds {tmp_path}/agent.lock; skipped this run\n"
    assert fake_probe["calls"] == 0 and not (tmp_path / "report.json").exists()
