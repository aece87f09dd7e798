"""The shipped alert rules (packaging/prometheus/edgecheck.rules.yml), evaluated by `promtool test
rules` over what the renderer really writes, minute by minute, for four nodes:

  node-a  not ready: one report per minute (mixed_report: 10 failing checks)
  node-b  ready: one report per minute
  node-c  ready once at t=0, then the agent stops: the file and its timestamp stay (stale)
  node-d  node_exporter up, no edgecheck metrics at all (missing)

Each alert is checked just before and at the minute it must fire, so a changed threshold or
`for:` in the shipped file fails here.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from edgecheck.model import Report, Status
from edgecheck.report import render_prometheus
from tests.packaging.packaging_helpers import need
from tests.report.report_fixtures import mixed_report, ready_report

RULES = Path(__file__).resolve().parents[2] / "packaging" / "prometheus" / "edgecheck.rules.yml"
MINUTES = 40
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # promtool's clock starts at the Unix epoch
SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})? (?P<value>\S+)$')
NOT_READY, READY, STALE, MISSING = "node-a:9100", "node-b:9100", "node-c:9100", "node-d:9100"


def _at(make: Callable[[], Report], minute: int) -> Report:
    report = make()
    report.generated_at = (EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return report


def _samples(text: str) -> List[Tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out.append((m["name"], m["labels"] or "{}", m["value"]))
    assert out, "the renderer wrote no sample"
    return out


def _scraped(texts: List[str], instance: str) -> List[Dict[str, str]]:
    """input_series for one node: each series' values, one per minute, as node_exporter would
    export them (instance and job added by the scrape)."""
    per_series: Dict[str, List[str]] = {}
    for minute, text in enumerate(texts):
        for name, labels, value in _samples(text):
            series = name + labels.replace("{", f'{{instance="{instance}",job="node",', 1).replace(",}", "}")
            per_series.setdefault(series, []).append(value)
            assert len(per_series[series]) == minute + 1, f"{series} missing in an earlier run"
    return [{"series": s, "values": " ".join(v)} for s, v in per_series.items()]


def _input_series() -> List[Dict[str, str]]:
    minutes = range(MINUTES + 1)
    series = _scraped([render_prometheus(_at(mixed_report, m)) for m in minutes], NOT_READY)
    series += _scraped([render_prometheus(_at(ready_report, m)) for m in minutes], READY)
    once = render_prometheus(_at(ready_report, 0))
    series += _scraped([once for _ in minutes], STALE)
    up = " ".join("1" for _ in minutes)
    series += [{"series": f'up{{instance="{node}",job="node"}}', "values": up}
               for node in (NOT_READY, READY, STALE, MISSING)]
    return series


def _not_ready(node: str) -> dict:
    return {"exp_labels": {"severity": "warning", "instance": node, "job": "node"},
            "exp_annotations": {
                "summary": f"Edge node {node} is not ready for ACK Edge",
                "description": f"edgecheck has reported at least one failing check on {node} for 15 minutes. "
                               "See `journalctl -u edgecheck.service` or /var/lib/edgecheck/report.json on the "
                               "node for the failing checks and what to do."}}


def _check_failing(node: str) -> List[dict]:
    failing = [c for c in mixed_report().checks if c.status is Status.FAIL]
    assert len(failing) >= 2, [c.id for c in failing]  # one alert per check, not one per node
    return [{"exp_labels": {"severity": "info", "instance": node, "job": "node", "id": c.id, "kind": c.kind.value,
                            "status": "fail", "name": c.name, "reason": c.reason.value},
             "exp_annotations": {"summary": f"{c.id} fails on {node}: {c.reason.value}",
                                 "description": f"{c.name}: {c.id} has failed with {c.reason.value} for 15 minutes."}}
            for c in failing]


def _stale(node: str, ago: str) -> dict:
    return {"exp_labels": {"severity": "warning", "instance": node, "job": "node"},
            "exp_annotations": {
                "summary": f"edgecheck report on {node} is stale",
                "description": f"The last edgecheck run on {node} was {ago} ago. Check `systemctl status "
                               "edgecheck.timer edgecheck.service` on the node."}}


def _missing(node: str) -> dict:
    return {"exp_labels": {"severity": "info", "instance": node, "job": "node"},
            "exp_annotations": {
                "summary": f"No edgecheck metrics from {node}",
                "description": f"node_exporter on {node} exports no edgecheck metrics. Is the edgecheck package "
                               "installed and edgecheck.timer enabled? Check node_textfile_scrape_error too."}}


ALERT_TESTS = [
    # edgecheck_ready == 0 for 15m: pending from 0m.
    ("14m", "EdgeNodeNotReady", []),
    ("15m", "EdgeNodeNotReady", [_not_ready(NOT_READY)]),
    # one alert per failing check, labelled with its reason and name from edgecheck_check_info
    ("14m", "EdgeNodeCheckFailing", []),
    ("15m", "EdgeNodeCheckFailing", _check_failing(NOT_READY)),
    # time() - last run > 20 * 60 holds from 21m (at 20m it is equal), then for: 5m.
    ("25m", "EdgecheckReportStale", []),
    ("26m", "EdgecheckReportStale", [_stale(STALE, "26m 0s")]),
    # up, but no edgecheck series at all, for 30m.
    ("29m", "EdgecheckReportMissing", []),
    ("30m", "EdgecheckReportMissing", [_missing(MISSING)]),
]


def test_the_shipped_rules_are_valid():
    proc = subprocess.run([need("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_shipped_alert_is_exercised():
    shipped = re.findall(r"^\s*- alert: (\S+)\s*$", RULES.read_text(), re.M)
    assert shipped and sorted(set(shipped)) == sorted({name for _, name, _ in ALERT_TESTS})


def test_shipped_alerts_fire_exactly_when_they_must_on_the_rendered_metrics(tmp_path):
    promtool = need("promtool")
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": _input_series(),
            "alert_rule_test": [{"eval_time": t, "alertname": name, "exp_alerts": alerts}
                                for t, name, alerts in ALERT_TESTS],
        }],
    }
    path = tmp_path / "edgecheck.test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


@pytest.mark.parametrize("minute", [0, 7])
def test_the_renderer_writes_the_timestamp_the_rules_read(minute):
    samples = {(n, l): v for n, l, v in _samples(render_prometheus(_at(ready_report, minute)))}
    assert float(samples[("edgecheck_last_run_timestamp_seconds", "{}")]) == minute * 60
