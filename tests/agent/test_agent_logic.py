"""Pure decisions of the agent: snapshots, transitions, journal lines."""

from __future__ import annotations

import io
import json
import os

import pytest

from edgecheck import agent
from edgecheck.agent import CheckState, LogLine, Snapshot

from tests.agent.agent_helpers import make_report
from edgecheck.report import to_json as render_json


def snap(**statuses: str) -> Snapshot:
    return agent.snapshot_from_document(json.loads(render_json(make_report({k.replace("_", ":"): v for k, v in statuses.items()}))))


def test_snapshot_reads_ready_and_statuses():
    s = snap(a="pass", b="fail")
    assert s.ready is False
    assert s.checks == {"a": CheckState("pass", "ok"), "b": CheckState("fail", "timeout")}


@pytest.mark.parametrize("doc", [None, [], {"checks": "x"}, {"checks": [{"status": "pass"}]}])
def test_snapshot_rejects_foreign_documents(doc):
    with pytest.raises(ValueError):
        agent.snapshot_from_document(doc)


def test_snapshot_derives_ready_when_missing():
    s = agent.snapshot_from_document({"checks": [{"id": "a", "status": "fail", "reason": "timeout"}]})
    assert s.ready is False


def test_transitions_first_run_is_empty():
    assert agent.transitions(None, snap(a="fail")) == []


def test_transitions_status_changes_appear_and_vanish():
    prev = snap(a="pass", b="fail", gone="warn")
    cur = snap(a="fail", b="fail", new="pass")
    moved = {t.id: t for t in agent.transitions(prev, cur)}
    assert set(moved) == {"a", "gone", "new"}
    assert moved["a"].started_failing and not moved["a"].stopped_failing
    assert moved["gone"].after is None and moved["new"].before is None


def test_reason_only_change_is_not_a_transition():
    prev = agent.snapshot_from_document({"ready": False, "checks": [{"id": "a", "status": "fail", "reason": "timeout"}]})
    cur = agent.snapshot_from_document({"ready": False, "checks": [{"id": "a", "status": "fail", "reason": "refused"}]})
    assert agent.transitions(prev, cur) == []
    assert agent.change_message(prev, cur) is None


def test_first_run_message_names_failures():
    line = agent.change_message(None, snap(a="pass", b="fail"))
    assert line.priority == agent.PRIO_WARNING
    assert line.text == "first run (no previous report): NOT READY; failing: b (timeout)"


def test_readiness_flip_names_checks_both_ways():
    down = agent.change_message(snap(a="pass", b="pass"), snap(a="fail", b="pass"))
    assert down == LogLine(agent.PRIO_WARNING, "readiness changed: READY -> NOT READY; now failing: a (timeout)")
    up = agent.change_message(snap(a="fail", b="pass"), snap(a="pass", b="pass"))
    assert up == LogLine(agent.PRIO_NOTICE, "readiness changed: NOT READY -> READY; no longer failing: a (timeout)")


def test_same_state_says_nothing():
    assert agent.change_message(snap(a="fail", b="warn"), snap(a="fail", b="warn")) is None
    # warn/skip movements alone are in the report and metrics, not the journal
    assert agent.change_message(snap(a="pass", b="warn"), snap(a="warn", b="skip")) is None


def test_failing_set_change_without_flip():
    line = agent.change_message(snap(a="fail", b="pass"), snap(a="pass", b="fail"))
    assert line.text == "failing checks changed (still NOT READY): now failing: b (timeout); no longer failing: a (timeout)"


def test_long_lists_are_cut():
    many = {f"c{i}": "fail" for i in range(20)}
    line = agent.change_message(None, agent.snapshot_from_document(json.loads(render_json(make_report(many)))))
    assert line.text.endswith("and 12 more")


def test_run_line():
    doc = json.loads(render_json(make_report({"a": "pass", "b": "fail", "c": "skip"})))
    line = agent.run_line(doc, 3.04, ["report /x/report.json"])
    assert line.text == "NOT READY (fail 1, warn 0, pass 1, skip 1) in 3.0s; report /x/report.json"


def test_journal_prefix_only_when_stdout_is_the_journal(tmp_path):
    path = tmp_path / "out"
    with open(path, "w") as f:
        st = os.fstat(f.fileno())
        agent.emit([LogLine(4, "x")], f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        agent.emit([LogLine(4, "y")], f, {"JOURNAL_STREAM": "1:2"})
        agent.emit([LogLine(4, "z")], f, {})
    assert path.read_text() == "<4>edgecheck agent: x\nedgecheck agent: y\nedgecheck agent: z\n"
    buf = io.StringIO()  # no fileno(): never the journal
    agent.emit([LogLine(6, "t")], buf, {"JOURNAL_STREAM": "1:2"})
    assert buf.getvalue() == "edgecheck agent: t\n"


def test_default_state_dir():
    assert agent.default_state_dir({}) == "/var/lib/edgecheck"
    assert agent.default_state_dir({"STATE_DIRECTORY": "/var/lib/x:/var/lib/y"}) == "/var/lib/x"
