"""Pure renderers and decisions: event lines, listen summary (text + schema-valid JSON), reach
verdicts for every outcome (edgecheck/checks/reach.py), remediation order (the diagnosis), evidence
shape (the report schema), and which probe each port gets (the catalog)."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import jsonschema
import pytest

from edgecheck.reach.listener import (Binding, ListenEvent, ListenSummary, PortReport, PortSpec, RateLimiter,
                                      SourceSeen)
from edgecheck.reach.probeloop import IcmpError, Outcome, ProbeResult
from edgecheck.reach.protocol import Endpoint, Verdict
from edgecheck.reach.summary import event_line, listen_banner, listen_summary_json, listen_summary_text, reach_command
from tests.reach.verdicts import reach_evidence, remediation, suggest_verdict

ROOT = Path(__file__).resolve().parents[2] / "edgecheck" / "reach"
LISTEN_SCHEMA = json.loads((ROOT / "listen_schema.json").read_text())
T0 = 1_790_000_000.0


def _summary() -> ListenSummary:
    reached = PortReport(PortSpec(10250, "tcp", "kubelet"), "bound", ("ipv4", "ipv6"), "",
                         counts={Verdict.VALID: 3, Verdict.BAD_TOKEN: 1},
                         sources=[SourceSeen("192.168.1.10", 40000, T0, T0 + 5, {Verdict.VALID: 3}),
                                  SourceSeen("192.168.1.66", 40001, T0 + 1, T0 + 1, {Verdict.BAD_TOKEN: 1})])
    silent = PortReport(PortSpec(8472, "udp"), "bound", ("ipv4",), "", counts={Verdict.GARBAGE: 7})
    held = PortReport(PortSpec(9100, "tcp"), "held", (), "already in use on 0.0.0.0:9100/tcp (EADDRINUSE); left alone")
    return ListenSummary(T0, T0 + 42.5, 600.0, "SIGINT", "0123abcd", [reached, silent, held], log_suppressed=4)


def test_listen_summary_json_validates_and_hides_the_token() -> None:
    doc = listen_summary_json(_summary(), agent_version="1.2.3", generated_at=T0 + 43,
                              host={"hostname": "edge-1"}, params={"mode": "public"})
    jsonschema.validate(doc, LISTEN_SCHEMA)
    assert doc["summary"] == {"ports": 3, "bound": 2, "reached": 1, "not_reached": 1, "held": 1, "denied": 0,
                              "failed": 0}
    first = doc["ports"][0]
    assert first["id"] == "listen:10250/tcp" and first["reached"] is True
    assert first["sources"][0] == {"address": "192.168.1.10", "last_port": 40000, "first_seen": "2026-09-21T14:13:20Z",
                                   "last_seen": "2026-09-21T14:13:25Z", "valid": 3, "counts": {"valid": 3}}
    assert doc["ran_s"] == 42.5 and doc["stop_reason"] == "SIGINT"


def test_listen_summary_schema_rejects_a_wrong_document() -> None:
    doc = listen_summary_json(_summary(), agent_version="1", generated_at=T0)
    doc["ports"][0]["state"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, LISTEN_SCHEMA)


def test_listen_summary_text() -> None:
    text = listen_summary_text(_summary())
    assert "ran 42.5 s of 600 s, stopped by SIGINT" in text
    assert "10250/tcp  REACHED from 192.168.1.10 (3 probes)" in text
    assert "wrong token from 192.168.1.66" in text
    assert "8472/udp   NOT REACHED" in text and "7 garbage" in text
    assert "9100/tcp   HELD: already in use" in text and "left alone" in text
    assert "4 log line(s) were suppressed" in text


def test_banner_prints_token_and_exact_reach_command() -> None:
    bindings = [Binding(PortSpec(10250, "tcp", "kubelet"), "bound", ("ipv4",)),
                Binding(PortSpec(1000, "tcp"), "denied", (), "not allowed")]
    cmd = reach_command("tok-en_123456", ["10.0.0.5"], ["--mode", "dedicated"])
    assert cmd == "edgecheck reach --mode dedicated --token tok-en_123456 10.0.0.5"
    text = listen_banner(bindings, "tok-en_123456", "0123abcd", 600, cmd)
    assert "token: tok-en_123456" in text and cmd in text
    assert "10250/tcp  listening (ipv4)  kubelet" in text and "1000/tcp   denied: not allowed" in text
    assert "No port could be opened" in listen_banner(bindings[1:], "t", "f", 1, cmd)
    assert reach_command("a b", []) == "edgecheck reach --token 'a b' NODE_ADDRESS"


def test_event_lines() -> None:
    ev = ListenEvent(T0, Verdict.VALID, "tcp", 10250, Endpoint("10.0.0.9", 51000), Endpoint("10.0.0.5", 10250),
                     answered=True)
    line = event_line(ev)
    assert line.startswith("14:13:20 10250/tcp  from 10.0.0.9:51000 ") and line.endswith(" valid token, answered")
    bad = ListenEvent(T0, Verdict.BAD_TOKEN, "udp", 8472, Endpoint("fd00::9", 4789))
    assert "from [fd00::9]:4789" in event_line(bad) and "wrong token, not answered" in event_line(bad)
    assert "12 more event(s) not shown" in event_line(ListenEvent(T0, "suppressed", count=12))


def test_rate_limiter_counts_what_it_refuses() -> None:
    rl = RateLimiter({"noise": (10.0, 20.0)})
    allowed = sum(rl.allow("noise", 100.0) for _ in range(100))
    assert allowed == 20 and rl.refused == 80
    assert sum(rl.allow("noise", 101.0) for _ in range(100)) == 10


def _r(outcome: Outcome, method: str = "token", protocol: str = "tcp", **kw) -> ProbeResult:
    kw.setdefault("detail", "details")
    return ProbeResult("10.0.0.5", 8472 if protocol == "udp" else 10250, protocol, method, outcome, **kw)


@pytest.mark.parametrize("result, status, reason", [
    (_r(Outcome.OK), "pass", "ok"),
    (_r(Outcome.OK, "tls", tls={"version": "TLSv1.3", "verified": False, "verification": "off"}), "pass", "ok"),
    (_r(Outcome.OK, "http", http={"status": 200}), "pass", "ok"),
    (_r(Outcome.CLOCK_SKEW, clock_offset_s=900.0), "warn", "clock-offset"),
    (_r(Outcome.UNPROVEN), "fail", "unproven"),
    (_r(Outcome.UNPROVEN, "tls"), "fail", "tls-handshake-failed"),
    (_r(Outcome.UNPROVEN, "http"), "fail", "unproven"),
    (_r(Outcome.REFUSED), "fail", "refused"),
    (_r(Outcome.TIMEOUT), "fail", "timeout"),
    (_r(Outcome.UNREACHABLE), "fail", "unreachable"),
    # This host's own filter (EPERM from a DROP in OUTPUT, or an ICMP error from our own address)
    # is SPEC 7.1 host-firewall, whatever the errno looked like.
    (_r(Outcome.UNREACHABLE, errno=errno.EPERM), "fail", "host-firewall"),
    (_r(Outcome.REFUSED, icmp=IcmpError(111, 4, 3, 3, "10.0.0.1"), local=Endpoint("10.0.0.1", 5)), "fail",
     "host-firewall"),
    (_r(Outcome.NO_RESPONSE, protocol="udp"), "warn", "no-response"),
    (_r(Outcome.DEADLINE), "fail", "deadline-exceeded"),
    (_r(Outcome.NOT_STARTED), "fail", "deadline-exceeded"),
    (_r(Outcome.LOCAL_ERROR), "fail", "internal-error"),
])
def test_verdicts(result: ProbeResult, status: str, reason: str) -> None:
    v = suggest_verdict(result)
    assert (v.status, v.reason) == (status, reason), v
    reach_evidence(result, key_fingerprint="0123abcd")  # validates against the report schema


def test_nat_is_said_in_the_message() -> None:
    r = _r(Outcome.OK, local=Endpoint("10.0.0.9", 40000), seen_source=Endpoint("192.0.2.1", 61000),
           seen_destination=Endpoint("10.0.0.5", 10250))
    v = suggest_verdict(r)
    assert v.status == "pass" and "NATed" in v.message and "must allow 192.0.2.1" in v.message
    ev = reach_evidence(r)
    assert ev["nat"] == "address" and ev["seen_source"] == {"address": "192.0.2.1", "port": 61000}
    ported = _r(Outcome.OK, local=Endpoint("10.0.0.9", 40000), seen_source=Endpoint("10.0.0.9", 61000))
    assert "translates ports only" in suggest_verdict(ported).message


def test_remediation_follows_the_documentation_pages() -> None:
    r = _r(Outcome.TIMEOUT)
    dedicated = remediation(r, mode="dedicated", node="edge-1")
    order = ["data-centre firewall", "core switch and the VBR", "CEN/ECR", "VPC route table", "VPC security group"]
    positions = [dedicated.index(step) for step in order]
    assert positions == sorted(positions), dedicated
    # who must get in comes from the catalog's allowed_from; no CIDR block is written in code
    assert "the VPC CIDR block (optionally only the cluster's vSwitch CIDR blocks)" in dedicated
    assert not re.search(r"\d+\.\d+\.\d+\.\d+/\d+", dedicated), dedicated
    public = remediation(r, mode="public", node="edge-1")
    assert "host CIDR block of the edge node" in public and "TCP 10250" in public
    assert "seed" not in (dedicated + public).lower()
    assert remediation(_r(Outcome.OK), mode="public", node="n") == ""
    assert "same token" in remediation(_r(Outcome.UNPROVEN), mode="public", node="n")
    nat = _r(Outcome.OK, local=Endpoint("10.0.0.9", 40000), seen_source=Endpoint("192.0.2.1", 61000))
    assert "192.0.2.1" in remediation(nat, mode="public", node="n")  # a pass with a NAT note
    locally = remediation(_r(Outcome.UNREACHABLE, errno=errno.EPERM), mode="dedicated", node="n")
    assert "OUTPUT chain" in locally and "VBR" not in locally


def test_the_catalog_decides_which_probe_each_port_gets() -> None:
    from tests.reach.verdicts import plan_target

    def methods(phase: str) -> dict:
        return {(p, proto): plan_target("n", p, proto, phase=phase).answers
                for p, proto in ((10250, "tcp"), (10255, "tcp"), (9100, "tcp"), (9445, "tcp"), (8472, "udp"))}

    assert methods("running") == {(10250, "tcp"): "tls", (10255, "tcp"): "http", (9100, "tcp"): "http",
                                  (9445, "tcp"): "http", (8472, "udp"): "token"}
    assert set(methods("join").values()) == {"token"}
