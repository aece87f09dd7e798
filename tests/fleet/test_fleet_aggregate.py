"""Aggregation: grouping by cause, ordering, warnings, staleness, mixed inputs, duplicates, exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.fleet_reports import FAULTS, NAMESERVER, make_report
from edgecheck.fleet.summarise import summarise
from edgecheck.fleet.aggregate import FleetAggregator
from edgecheck.fleet.reportfile import node_from_document

from tests.fleet.fleetfixtures import NOW, validate_report, write, write_doc

DNS = FAULTS["dns-forwarder-down"].cause
FIREWALL = FAULTS["registry-firewall"].cause


def _summary(directory: Path, **kwargs):
    kwargs.setdefault("now", NOW)
    return summarise([str(directory)], **kwargs)


def _by_cause(summary, status: str = "fail"):
    causes = summary.failing if status == "fail" else summary.warnings
    return {c.cause: list(summary.cause_nodes(c)) for c in causes}


def _hosts(lines):
    return [n.hostname for n in lines]


def test_generated_reports_are_valid_v1_reports() -> None:
    for faults in ((), ("dns-forwarder-down",), tuple(FAULTS)):
        report = make_report("edge-1", faults, generated_at=NOW)
        validate_report(report)
        assert report["ready"] == (report["summary"]["fail"] == 0)
        covered = {c for f in report["findings"] for c in f["checks"]}
        assert covered == {c["id"] for c in report["checks"] if c["status"] in ("fail", "warn")}


def test_nodes_are_grouped_by_the_findings_cause(tmp_path: Path) -> None:
    for host in ("edge-1", "edge-2", "edge-3"):
        write(tmp_path, host, ["dns-forwarder-down"])
    write(tmp_path, "edge-4", ["registry-firewall"])
    write(tmp_path, "edge-5")
    summary = _summary(tmp_path)
    assert _by_cause(summary) == {DNS: ["edge-1", "edge-2", "edge-3"], FIREWALL: ["edge-4"]}
    dns = summary.failing[0]
    assert dns.title == f"DNS lookups time out at nameserver {NAMESERVER}"
    assert dns.source == "findings" and dns.reason == "dns-timeout"
    per_node = len(make_report("x", ["dns-forwarder-down"])["findings"][0]["checks"])
    assert dns.check_count == 3 * per_node
    assert _hosts(summary.nodes()) == ["edge-1", "edge-2", "edge-3", "edge-4", "edge-5"]
    assert [n.ready for n in summary.nodes()] == [False, False, False, False, True]
    assert summary.exit_code == 1


def test_cause_on_every_failing_node_comes_first_then_node_count_then_dns_first(tmp_path: Path) -> None:
    # firewall (timeout) on all four not-ready nodes; DNS on three; tools on three; clock on one.
    write(tmp_path, "a", ["registry-firewall", "dns-forwarder-down", "tools-missing"])
    write(tmp_path, "b", ["registry-firewall", "dns-forwarder-down", "tools-missing"])
    write(tmp_path, "c", ["registry-firewall", "dns-forwarder-down", "tools-missing"])
    write(tmp_path, "d", ["registry-firewall", "clock-off"])
    write(tmp_path, "e")
    summary = _summary(tmp_path)
    order = [c.cause for c in summary.failing]
    # The firewall is on every not-ready node: first, although DNS comes first in troubleshooting order.
    assert order == [FIREWALL, DNS, "tool-missing", "clock-offset"]
    assert [c.on_every_failing_node for c in summary.failing] == [True, False, False, False]
    assert [c.number for c in summary.failing] == ["F1", "F2", "F3", "F4"]
    d = next(n for n in summary.nodes() if n.hostname == "d")
    assert [summary.failing[i].number for i in d.failing] == ["F1", "F4"]


def test_warnings_are_listed_separately_and_do_not_make_a_node_not_ready(tmp_path: Path) -> None:
    write(tmp_path, "edge-1", ["ntp-blocked"])
    write(tmp_path, "edge-2", ["ntp-blocked", "raven-udp-blocked"])
    summary = _summary(tmp_path)
    assert summary.failing == ()
    assert _by_cause(summary, "warn") == {
        "no-response:protocol=udp,port=123": ["edge-1", "edge-2"],
        "no-response:protocol=udp,port=4500": ["edge-2"],
    }
    assert summary.all_ready and summary.exit_code == 0


def test_reports_without_findings_fall_back_to_one_cause_per_reason_and_check(tmp_path: Path) -> None:
    write(tmp_path, "old-1", ["tools-missing"], findings=False, version="0.1.0")
    write(tmp_path, "old-2", ["tools-missing", "clock-off"], findings=False, version="0.1.0")
    write(tmp_path, "new-1", ["tools-missing"])
    summary = _summary(tmp_path)
    causes = _by_cause(summary)
    assert causes == {
        "tool-missing:check=tool:socat": ["old-1", "old-2"],
        "tool-missing:check=tool:conntrack-tools": ["old-1", "old-2"],
        "tool-missing": ["new-1"],
        "clock-offset:check=clock:local": ["old-2"],
    }
    by_id = {c.cause: c for c in summary.failing}
    assert by_id["tool-missing:check=tool:socat"].title == "tool socat: missing"
    assert by_id["tool-missing:check=tool:socat"].source == "checks"
    assert by_id["clock-offset:check=clock:local"].title == "clock local: clock is off"
    assert summary.flags.without_findings == 2


def test_a_failing_check_no_finding_covers_still_gets_a_cause(tmp_path: Path) -> None:
    report = make_report("edge-1", ["dns-forwarder-down", "clock-off"], generated_at=NOW)
    report["findings"] = [f for f in report["findings"] if f["cause"] != "clock-offset"]
    write_doc(tmp_path, "edge-1", report)
    assert set(_by_cause(_summary(tmp_path))) == {DNS, "clock-offset:check=clock:local"}


def test_stale_reports_are_measured_from_the_newest_report(tmp_path: Path) -> None:
    write(tmp_path, "fresh", age=600)
    write(tmp_path, "newest", age=0)
    write(tmp_path, "old", age=2 * 86400)
    summary = _summary(tmp_path)
    assert _hosts(summary.nodes(stale=True)) == ["old"] and summary.flags.stale == 1
    assert summary.reference_time == "2027-01-15T08:00:00Z"
    # An archive summarised much later: still only "old" is stale, from the newest report.
    later = summarise([str(tmp_path)], now=NOW + 30 * 86400)
    assert _hosts(later.nodes(stale=True)) == ["old"]
    # Measured from now instead, a month later everything is stale.
    from_now = summarise([str(tmp_path)], now=NOW + 30 * 86400, stale_from="now")
    assert from_now.flags.stale == 3 and len(list(from_now.nodes(stale=True))) == 3
    # Threshold and off switch.
    assert summarise([str(tmp_path)], now=NOW, stale_after=300).flags.stale == 2
    off = summarise([str(tmp_path)], now=NOW, stale_after=0)
    assert off.flags.stale == 0 and list(off.nodes(stale=True)) == []
    assert not any(n.stale for n in off.nodes())
    # Staleness is flagged, not a failure: every node here is ready.
    assert summary.exit_code == 0


def test_a_report_from_the_future_is_flagged_and_does_not_make_others_stale(tmp_path: Path) -> None:
    write(tmp_path, "skewed", age=-86400)  # node clock a day ahead
    write(tmp_path, "ok-1", age=0)
    write(tmp_path, "ok-2", age=60)
    summary = _summary(tmp_path)
    assert _hosts(summary.nodes(clock_ahead=True)) == ["skewed"]
    assert [n.hostname for n in summary.nodes() if n.clock_ahead] == ["skewed"]
    assert summary.flags.stale == 0
    assert summary.reference_time == "2027-01-15T08:00:00Z"


def test_mixed_versions_and_inputs_are_flagged(tmp_path: Path) -> None:
    write(tmp_path, "a", version="0.2.0")
    write(tmp_path, "b", version="0.2.0", phase="running")
    write(tmp_path, "c", version="0.1.0", mode="dedicated", region="cn-beijing")
    flags = _summary(tmp_path).flags
    assert flags.versions == {"0.2.0": 2, "0.1.0": 1} and flags.mixed_versions
    assert flags.mixed == {
        "region": {"cn-hangzhou": 2, "cn-beijing": 1},
        "mode": {"public": 2, "dedicated": 1},
        "phase": {"join": 2, "running": 1},
    }


def test_uniform_site_has_no_mixed_flags(tmp_path: Path) -> None:
    for host in ("a", "b"):
        write(tmp_path, host)
    flags = _summary(tmp_path).flags
    assert flags.mixed == {} and not flags.mixed_versions and flags.duplicates == 0


def test_two_reports_of_one_hostname_count_the_newest(tmp_path: Path) -> None:
    old = write(tmp_path / "monday", "edge-1", ["dns-forwarder-down"], age=86400)
    new = write(tmp_path / "tuesday", "edge-1", age=0)
    write(tmp_path / "tuesday", "edge-2", age=0)
    summary = _summary(tmp_path)
    assert _hosts(summary.nodes()) == ["edge-1", "edge-2"]
    assert summary.all_ready and summary.failing == ()  # Monday's DNS failure is not counted
    (dup,) = summary.duplicates()
    assert (dup.hostname, dup.kept, dup.ignored) == ("edge-1", str(new), (str(old),))
    assert summary.files_read == 3


def test_older_duplicate_read_second_is_ignored_too(tmp_path: Path) -> None:
    agg = FleetAggregator(now=NOW)
    new = make_report("edge-1", [], generated_at=NOW)
    old = make_report("edge-1", ["clock-off"], generated_at=NOW - 60)
    agg.add(node_from_document(new, "new.json"))
    agg.add(node_from_document(old, "old.json"))
    summary = agg.summary()
    assert summary.failing == () and [d.ignored for d in summary.duplicates()] == [("old.json",)]


def test_natural_hostname_order_not_ready_first(tmp_path: Path) -> None:
    for host in ("edge-10", "edge-9", "edge-2"):
        write(tmp_path, host)
    write(tmp_path, "edge-11", ["clock-off"])
    assert _hosts(_summary(tmp_path).nodes()) == ["edge-11", "edge-2", "edge-9", "edge-10"]


def test_exit_codes(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    write(ready, "a")
    assert _summary(ready).exit_code == 0
    (ready / "broken.json").write_text("{")
    assert _summary(ready).exit_code == 1  # every node ready, but a file was skipped
    not_ready = tmp_path / "not-ready"
    write(not_ready, "b", ["clock-off"])
    assert _summary(not_ready).exit_code == 1
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.json").write_text("[]")
    assert _summary(only_bad).exit_code == 2
    assert summarise([str(tmp_path / "nothing-here")], now=NOW).exit_code == 2


def test_memory_does_not_grow_with_report_size(tmp_path: Path) -> None:
    """Only a small row per node survives: 4x the (large) reports cost far less than 4x."""
    import tracemalloc

    def peak(count: int) -> int:
        directory = tmp_path / str(count)
        for i in range(count):
            report = make_report(f"edge-{i}", ["dns-forwarder-down"] if i % 3 else [], generated_at=NOW, seed=i)
            report["padding"] = "x" * 200_000  # a fat report: 200 kB the fleet must not keep
            write_doc(directory, f"edge-{i}", report)
        tracemalloc.start()
        try:
            with summarise([str(directory)], now=NOW) as summary:
                assert summary.node_count == count
                assert sum(1 for _ in summary.nodes()) == count
                return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(50), peak(200)
    # 150 more reports of ~230 kB each = 34 MB read. Node rows live in the SQLite store (its page
    # cache is capped, PRAGMA cache_size); Python keeps one report at a time and the causes.
    assert large - small < 150 * 256, (small, large)
    assert large < 5 * 1024 * 1024, large


def test_json_round_trip_of_a_report_file(tmp_path: Path) -> None:
    path = write(tmp_path, "edge-1", ["tls-inspection"])
    node = node_from_document(json.loads(path.read_text()), str(path))
    assert node.hostname == "edge-1" and not node.ready and node.has_findings
    assert [c.cause for c in node.causes] == ["tls-verify-failed:issuer=Corp Inspection CA"]
    assert dict(node.params) == {"region": "cn-hangzhou", "mode": "public", "phase": "join", "k8s_version": "1.28"}


@pytest.mark.parametrize("text, seconds", [
    ("2027-01-15T08:00:00Z", NOW),
    ("2027-01-15T08:00:00.250Z", NOW + 0.25),
    ("2027-01-15T10:00:00+02:00", NOW),
    ("2027-01-15 08:00:00z", NOW),
])
def test_rfc3339(text: str, seconds: float) -> None:
    from edgecheck.fleet.reportfile import parse_rfc3339

    assert parse_rfc3339(text) == seconds
