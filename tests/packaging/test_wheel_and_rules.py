"""sdist and wheel contents; the shipped Prometheus alert rules (promtool check + unit tests)."""

from __future__ import annotations

import subprocess
import tarfile
import textwrap
import zipfile

from tests.packaging.packaging_helpers import REPO, VERSION, need

RULES = REPO / "packaging" / "prometheus" / "edgecheck.rules.yml"


def test_wheel_has_every_package_and_the_catalog(dist):
    with zipfile.ZipFile(dist / f"edgecheck-{VERSION}-py3-none-any.whl") as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"edgecheck-{VERSION}.dist-info/METADATA").decode()
    # the catalog data (targets/*.toml at the top of the repo) ships as edgecheck/targets/
    for toml in (REPO / "targets").glob("*.toml"):
        assert f"edgecheck/targets/{toml.name}" in names, toml.name
    # every Python package of the source tree is in the wheel (a forgotten one breaks the zipapp)
    for init in (REPO / "edgecheck").rglob("__init__.py"):
        rel = init.relative_to(REPO).as_posix()
        assert rel in names, rel
    assert "edgecheck/report/schema.json" in names
    assert "Requires-Python: >=3.9" in metadata


def test_sdist_carries_units_and_packaging(dist):
    with tarfile.open(dist / f"edgecheck-{VERSION}.tar.gz") as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for path in ("systemd/edgecheck.service", "systemd/edgecheck.timer", "systemd/edgecheck.env.example",
                 "packaging/build.sh", "packaging/zipapp/bootstrap.py", "targets/regions.toml", "pyproject.toml"):
        assert path in names, path


def test_promtool_check_rules():
    need("promtool")
    proc = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_fire(tmp_path):
    """promtool unit tests: not ready for 15 minutes fires; a stale report fires; a recovered
    node does not."""
    need("promtool")
    tests = tmp_path / "edgecheck.test.yml"
    tests.write_text(textwrap.dedent(f"""\
        rule_files: [{RULES}]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: 'edgecheck_ready{{instance="node-a:9100", job="node"}}'
                values: '0x30'
              - series: 'edgecheck_ready{{instance="node-b:9100", job="node"}}'
                values: '0x5 1x25'
              - series: 'edgecheck_check_status{{instance="node-a:9100", job="node", id="tool:socat", kind="tool", status="fail"}}'
                values: '1x30'
              - series: 'edgecheck_check_info{{instance="node-a:9100", job="node", id="tool:socat", kind="tool", name="socat", reason="tool-missing"}}'
                values: '1x30'
              # node-c: last run at t=0 and never again (the metrics file stays, its timestamp ages)
              - series: 'edgecheck_last_run_timestamp_seconds{{instance="node-c:9100", job="node"}}'
                values: '0x40'
            alert_rule_test:
              - eval_time: 20m
                alertname: EdgeNodeNotReady
                exp_alerts:
                  - exp_labels: {{severity: warning, instance: "node-a:9100", job: node}}
                    exp_annotations:
                      summary: "Edge node node-a:9100 is not ready for ACK Edge"
                      description: "edgecheck has reported at least one failing check on node-a:9100 for 15 minutes. See `journalctl -u edgecheck.service` or /var/lib/edgecheck/report.json on the node for the failing checks and what to do."
              - eval_time: 20m
                alertname: EdgeNodeCheckFailing
                exp_alerts:
                  - exp_labels: {{severity: info, instance: "node-a:9100", job: node, id: "tool:socat", kind: tool, status: fail, name: socat, reason: tool-missing}}
                    exp_annotations:
                      summary: "tool:socat fails on node-a:9100: tool-missing"
                      description: "socat: tool:socat has failed with tool-missing for 15 minutes."
              - eval_time: 10m
                alertname: EdgecheckReportStale
                exp_alerts: []
              - eval_time: 30m
                alertname: EdgecheckReportStale
                exp_alerts:
                  - exp_labels: {{severity: warning, instance: "node-c:9100", job: node}}
                    exp_annotations:
                      summary: "edgecheck report on node-c:9100 is stale"
                      description: "The last edgecheck run on node-c:9100 was 30m 0s ago. Check `systemctl status edgecheck.timer edgecheck.service` on the node."
        """))
    proc = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
