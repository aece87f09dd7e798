"""IPv6 targets are written as URLs write them, "[2001:db8::1]:7443", in every id, label and line.

"endpoint:2001:db8::1:7443/tcp" could be host 2001:db8::1 port 7443 or host 2001:db8::1:7443:
the plan, the JSON report (and its schema), the Prometheus labels and the text report must all
use the bracketed form, and the schema must refuse the ambiguous one.
"""

from __future__ import annotations

import json
import re

import pytest

from edgecheck.catalog import load_catalog
from edgecheck.model import Kind, Mode, Phase
from edgecheck.netloc import host_port
from edgecheck.plan import DEFAULT_APISERVER_PORT, Selection, build_plan, endpoint_id, parse_host_port
from tests import emptyns
from tests.report.report_fixtures import ready_report
from tests.schema_check import assert_valid_report, schema_errors

APISERVER = "[2001:db8::1]:7443"
RAVEN = "2001:db8::20"
TUNNEL = "2001:db8::30"


def test_host_port_brackets_ipv6_literals_only():
    assert host_port("2001:db8::1", 7443) == "[2001:db8::1]:7443"
    assert host_port("[2001:db8::1]", 7443) == "[2001:db8::1]:7443"
    assert host_port("192.0.2.1", 6443) == "192.0.2.1:6443"
    assert host_port("cs-anony.aliyuncs.com", 443) == "cs-anony.aliyuncs.com:443"
    assert host_port("raven-gateway", "10280-10284") == "raven-gateway:10280-10284"
    assert endpoint_id("::1", 53, "udp") == "endpoint:[::1]:53/udp"
    assert str(parse_host_port(APISERVER, "--apiserver", DEFAULT_APISERVER_PORT)) == APISERVER


def test_plan_through_the_real_catalog_brackets_every_ipv6_target():
    """Every per-cluster input given as IPv6 (API server, Raven gateway, tunnel server)."""
    selection = Selection(
        region="cn-hangzhou", mode=Mode.PUBLIC, phase=Phase.JOIN, k8s_version=(1, 24),
        apiserver=parse_host_port(APISERVER, "--apiserver", DEFAULT_APISERVER_PORT),
        raven_gateways=(RAVEN,), tunnel_server=TUNNEL,
    )
    plan = build_plan(load_catalog(), selection)
    ipv6 = [t for t in plan.targets if t.host and ":" in t.host]
    assert [t.id for t in ipv6] == [
        "endpoint:[2001:db8::1]:7443/tcp",
        *(f"endpoint:[{RAVEN}]:{port}/tcp" for port in range(10280, 10285)),
        f"endpoint:[{RAVEN}]:4500/udp",
        f"endpoint:[{TUNNEL}]:10262/tcp",
        f"endpoint:[{TUNNEL}]:10263/tcp",
    ]
    # The host itself stays a bare address (what the probes connect to).
    assert {t.host for t in ipv6} == {"2001:db8::1", RAVEN, TUNNEL}
    # Nothing else in the plan changed shape: names and IPv4 are never bracketed.
    others = [t.id for t in plan.targets if t.kind is Kind.ENDPOINT and t not in ipv6]
    assert others and not [i for i in others if "[" in i]


def test_the_schema_refuses_an_unbracketed_ipv6_id():
    report = ready_report()
    report.checks = report.checks[:1]
    obj = json.loads(json.dumps(assert_valid_report(report)))
    obj["checks"][0]["id"] = "endpoint:2001:db8::1:7443/tcp"
    errors = schema_errors(obj)
    assert errors and all(e.startswith("checks/0/id: ") and "does not match" in e for e in errors), errors
    obj["checks"][0]["id"] = "endpoint:[2001:db8::1]:7443/tcp"
    assert schema_errors(obj) == []


@pytest.fixture(scope="module")
def ipv6_run(tmp_path_factory):
    """The real CLI (empty namespace: nothing answers), one run written in all three formats."""
    out = tmp_path_factory.mktemp("ipv6")
    proc = emptyns.cli("run", "--region", "cn-hangzhou", "--k8s-version", "1.24", "--apiserver", APISERVER,
                       "--raven-gateway", RAVEN, "--tunnel-server", TUNNEL, "--timeout", "1", "--format", "text",
                       "--output", str(out / "report.json"), "--output", str(out / "report.prom"))
    assert proc.returncode == 1, proc.stderr  # nothing is reachable in the empty namespace
    return {"text": proc.stdout, "json": (out / "report.json").read_text(), "prom": (out / "report.prom").read_text()}


def test_run_report_ids_are_bracketed_and_schema_valid(ipv6_run):
    report = assert_valid_report(ipv6_run["json"])
    ids = [c["id"] for c in report["checks"] if ":" in (c["target"].get("host") or "")]
    assert "endpoint:[2001:db8::1]:7443/tcp" in ids and f"endpoint:[{RAVEN}]:4500/udp" in ids
    assert len(ids) == 9, ids
    assert report["params"]["apiserver"] == APISERVER
    assert not [c["id"] for c in report["checks"] if re.search(r"[0-9a-f]::[0-9a-f]+:\d+/", c["id"])
                and "[" not in c["id"]]


def test_prometheus_labels_carry_the_bracketed_id(ipv6_run):
    prom = ipv6_run["prom"]
    assert 'edgecheck_check_info{id="endpoint:[2001:db8::1]:7443/tcp",' in prom
    assert f'edgecheck_check_status{{id="endpoint:[{RAVEN}]:10280/tcp",' in prom
    assert "2001:db8::1:7443" not in prom.replace("[2001:db8::1]:7443", "")


def test_text_report_names_the_bracketed_target(ipv6_run):
    text = ipv6_run["text"]
    assert "[2001:db8::1]:7443/tcp" in text, text
    assert "2001:db8::1:7443" not in text.replace("[2001:db8::1]:7443", ""), text


def test_reach_ids_of_an_ipv6_node_are_bracketed():
    from edgecheck.reach.prober import ReachTarget
    from edgecheck.reach.targets import reach_targets

    plan = build_plan(load_catalog(), Selection(region="cn-hangzhou", mode=Mode.PUBLIC, phase=Phase.JOIN))
    ids = [t.id for t in reach_targets(plan.targets, ["2001:db8::7", "node-7"], Phase.JOIN, "public")]
    assert "reach:[2001:db8::7]:10250/tcp" in ids and "reach:node-7:10250/tcp" in ids
    assert not [i for i in ids if "2001:db8::7:" in i]
    assert ReachTarget("2001:db8::7", 8472, "udp").check_id == "reach:[2001:db8::7]:8472/udp"
    obj = json.loads(json.dumps(assert_valid_report(ready_report())))
    obj["checks"] = obj["checks"][:1]
    obj["checks"][0].update(id="reach:2001:db8::7:10250/tcp", kind="reach")
    assert [e for e in schema_errors(obj) if e.startswith("checks/0/id: ")], "the schema took an unbracketed reach id"
