"""Engine: order, skip, crash and deadline handling, bounded concurrency, CLOCK last, one DNS
lookup per name, and a fully black-holed plan finishing in about one timeout."""

from __future__ import annotations

import dataclasses
import threading
import time

from edgecheck import registry
from edgecheck.engine import hard_deadline, run_checks
from edgecheck.model import CheckResult, Evidence, Reason, Skip, Status, Target
from edgecheck.probes.ntp import NtpEvidence, NtpOutcome
from edgecheck.runcontext import RunContext
from tests.probes.conftest import DROPPED, target


def _t(i: int, probe: str = "tcp", **kw) -> Target:
    return Target(id=f"t{i}", kind=registry.get(probe).kind, probe=probe,
                  name=f"t{i}", why="", source="", entry="", host=f"h{i}", port=1, **kw)


def test_order_skip_crash_and_deadline():
    calls = []

    def ok(t, ctx):
        calls.append(t.id)
        return CheckResult(t, Status.PASS, Reason.OK, "fine")

    def boom(t, ctx):
        raise ValueError("kaput")

    def hang(t, ctx):
        threading.Event().wait(60)

    table = {"tcp": ok, "http": boom, "ntp": hang}
    targets = [_t(0, "ntp"), _t(1), _t(2, "http"),
               _t(3, skip=Skip(Reason.MISSING_INPUT, "needs --apiserver")), _t(4)]
    ctx = RunContext(timeout=0.5, deadline=time.monotonic() + 1.0)
    t0 = time.monotonic()
    results = run_checks(targets, ctx, table=table)
    assert time.monotonic() - t0 < 1.0 + 3.0  # the deadline, plus slack for a loaded machine; not the 60 s hang
    assert [r.id for r in results] == ["t0", "t1", "t2", "t3", "t4"]
    assert (results[0].status, results[0].reason) == (Status.FAIL, Reason.DEADLINE_EXCEEDED)
    assert (results[2].status, results[2].reason) == (Status.FAIL, Reason.INTERNAL_ERROR)
    assert "ValueError" in results[2].message and "kaput" in results[2].message
    assert (results[3].status, results[3].reason, results[3].message) == (Status.SKIP, Reason.MISSING_INPUT, "needs --apiserver")
    assert "t3" not in calls and results[1].status is Status.PASS and results[4].status is Status.PASS


def test_bounded_in_flight_and_clock_last_with_ntp_results():
    cond, state = threading.Condition(), {"now": 0, "max": 0}
    seen = {}

    def slow(t, ctx):
        with cond:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            cond.notify_all()
            # Hold the slot until 4 checks were in flight at once (or 5 s pass): on a loaded
            # machine a fixed sleep may end before the 4th starts; this cannot.
            cond.wait_for(lambda: state["max"] >= 4, timeout=5)
            state["now"] -= 1
        exchange = NtpOutcome("127.0.0.1", True, offset_s=0.1)
        return CheckResult(t, Status.PASS, Reason.OK, "ok", evidence=Evidence(NtpEvidence(exchange, (exchange,))))

    def clock(t, ctx):
        seen["ntp"] = [r.id for r in ctx.facts.results_of("ntp")]
        seen["targets"] = len(ctx.targets)
        seen["others_done"] = state["now"] == 0
        return CheckResult(t, Status.PASS, Reason.OK, "clock ok")

    targets = [_t(0, "clock")] + [_t(i, "ntp" if i % 5 == 0 else "tcp") for i in range(1, 21)]
    results = run_checks(targets, RunContext(timeout=1), max_in_flight=4, table={"tcp": slow, "ntp": slow, "clock": clock})
    assert all(r.status is Status.PASS for r in results)
    assert state["max"] == 4
    assert seen == {"ntp": ["t5", "t10", "t15", "t20"], "targets": 21, "others_done": True}


def test_every_registered_check_loads():
    for probe in registry.PROBES:
        assert callable(probe.load()), probe.name
    assert registry.get("inbound").check == "edgecheck.checks.inbound:check_inbound"
    assert [p.name for p in registry.PROBES if p.after] == ["clock"]


def test_a_broken_check_module_only_fails_its_own_checks(monkeypatch):
    broken = dataclasses.replace(registry.get("tool"), check="edgecheck.no_such_module:check")
    monkeypatch.setitem(registry.BY_NAME, "tool", broken)
    monkeypatch.setattr(registry, "PROBES", tuple(broken if p.name == "tool" else p for p in registry.PROBES))
    results = run_checks([_t(0, "tool"), _t(1)], RunContext(timeout=1),
                         table={"tcp": lambda t, c: CheckResult(t, Status.PASS, Reason.OK, "ok")})
    assert results[0].reason is Reason.INTERNAL_ERROR and "ModuleNotFoundError" in results[0].message
    assert results[1].status is Status.PASS


def test_the_deadline_grows_with_waves_of_network_probes_only():
    local = [_t(i, "tool") for i in range(40)]
    network = [_t(i, "tcp") for i in range(40)]
    assert hard_deadline(local, 3.0) == hard_deadline(network[:32], 3.0) == 3.0 * 2 + 2.0
    assert hard_deadline(network, 3.0) == 3.0 * 3 + 2.0
    assert hard_deadline(network + [_t(99, "tcp", skip=Skip(Reason.MISSING_INPUT, "x"))], 3.0) == 3.0 * 3 + 2.0


def test_hostname_resolved_once_per_run(ns, zone, ctx, dns_server):
    zone["shared.test"] = {"A": ["10.77.0.4"]}
    before = [q for q in dns_server.queries if q.startswith("shared.test/")]
    targets = [target("tcp", "shared.test", 80), target("tcp", "shared.test", 443),
               target("tcp", "shared.test", 10280)]
    results = ns.run(run_checks, targets, ctx)
    queries = [q for q in dns_server.queries if q.startswith("shared.test/")][len(before):]
    assert sorted(queries) == ["shared.test/A", "shared.test/AAAA"]
    assert [r.reason for r in results] == [Reason.REFUSED] * 3


def test_black_holed_plan_ends_in_about_one_timeout(ns, zone, ctx):
    for i in range(12):
        zone[f"bh{i}.test"] = {"A": [DROPPED]}
    zone["bhdns.test"] = "DROP"
    targets = ([target("https", f"bh{i}.test", 443) for i in range(6)]
               + [target("http", f"bh{i}.test", 80) for i in range(6, 8)]
               + [target("tcp", f"bh{i}.test", 10280 + i) for i in range(8, 11)]
               + [target("ntp", "bh11.test", 123, "udp"), target("ike", DROPPED, 4500, "udp"),
                  target("https", "bhdns.test", 443)])
    c = dataclasses.replace(ctx, timeout=2.0, deadline=time.monotonic() + 10.0)
    t0 = time.monotonic()
    results = ns.run(run_checks, targets, c)
    wall = time.monotonic() - t0
    # One wave of 15 probes: about one timeout. Two waves (or a serial engine) would need 2x.
    assert wall < 1.75 * c.timeout, wall
    reasons = {r.reason for r in results}
    assert reasons <= {Reason.TIMEOUT, Reason.NO_RESPONSE, Reason.DNS_TIMEOUT}, reasons
    assert Reason.DEADLINE_EXCEEDED not in reasons
