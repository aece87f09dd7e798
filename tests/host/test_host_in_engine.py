"""The host checks as the product runs them: catalog -> plan -> engine, local targets only.

Endpoint targets are dropped before the engine sees them: nothing leaves this host.
"""

from __future__ import annotations


from edgecheck.catalog import load_catalog
from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.engine import run_checks
from edgecheck.model import Kind, Mode, Phase, Reason, Status
from edgecheck.runcontext import RunContext
from edgecheck.plan import Selection, build_plan

LOCAL = ("inbound", "kernel", "tool", "clock")


def _local_plan(**selection):
    plan = build_plan(load_catalog(), Selection(region="cn-hangzhou", **selection))
    return [t for t in plan.targets if t.probe in LOCAL]


def test_every_local_target_gets_a_result_from_the_host_checks():
    targets = _local_plan(phase=Phase.RUNNING, mode=Mode.DEDICATED)
    inbound = [t for t in targets if t.kind is Kind.INBOUND]
    assert sorted((t.port, t.protocol) for t in inbound) == [(8472, "udp"), (9100, "tcp"), (9445, "tcp"), (10250, "tcp"), (10255, "tcp")]
    ctx = RunContext(phase=Phase.RUNNING, mode=Mode.DEDICATED, timeout=1.0)
    results = run_checks(targets, ctx)
    assert results and [r.id for r in results] == [t.id for t in targets]
    for r in results:
        assert r.reason is not Reason.INTERNAL_ERROR, (r.id, r.message)
        assert r.status in (Status.PASS, Status.WARN, Status.FAIL)
    by_id = {r.id: r for r in results}
    # Nothing on this test host should be a kubelet: 10250 is not listening, unless someone runs one.
    kubelet = by_id["inbound:10250/tcp"]
    if not kubelet.evidence.to_json()["sockets"]:
        assert kubelet.reason is Reason.PORT_NOT_LISTENING
        fix = remediation(kubelet, Scene(Mode.DEDICATED, Phase.RUNNING))
        assert "kubelet" in fix and "VPC CIDR block" in fix
    assert by_id["clock:local"].evidence.to_json()["kernel"]
    kernel = [r for r in results if r.kind is Kind.SYSTEM]
    assert {r.id for r in kernel} == {t.id for t in targets if t.kind is Kind.SYSTEM} and len(kernel) >= 8
    assert all(r.reason in (Reason.OK, Reason.KERNEL_SETTING, Reason.NOT_APPLICABLE) for r in kernel)


def test_flannel_port_only_with_flannel():
    ports = {t.port for t in _local_plan(network_plugin="terway-edge") if t.kind is Kind.INBOUND}
    assert 8472 not in ports and 10250 in ports


def test_host_results_render_in_every_format_and_validate():
    from edgecheck.diagnosis import diagnose
    from edgecheck.model import Report
    from edgecheck.report.formats import render
    from tests.schema_check import assert_valid_report

    targets = _local_plan(phase=Phase.JOIN)
    results = run_checks(targets, RunContext(timeout=1.0))
    report = diagnose(Report(generated_at="2026-01-01T00:00:00Z", agent_version="0",
                             host={"hostname": "h", "os": "Debian", "kernel": "6", "arch": "x86_64"},
                             params={"region": "cn-hangzhou"}, checks=results))
    assert_valid_report(render(report, "json"))
    text = render(report, "text")
    assert "clock" in text
    prom = render(report, "prometheus")
    assert 'edgecheck_check_info{id="inbound:10250/tcp",kind="inbound",' in prom
