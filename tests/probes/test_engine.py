"""Engine: order, skip, crash and deadline handling, bounded concurrency, CLOCK last, one DNS
lookup per name, and a fully black-holed plan finishing in about one timeout."""

from __future__ import annotations

import dataclasses
import threading
import time

from edgecheck import engine, registry
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


def _recorder(events, hold=None):
    """A check that records when it starts and ends (hold: seconds it takes, per probe kind)."""
    def check(t, ctx):
        events.append(("start", t.probe, time.monotonic()))
        time.sleep((hold or {}).get(t.probe, 0.0))
        events.append(("end", t.probe, time.monotonic()))
        return CheckResult(t, Status.PASS, Reason.OK, "ok")
    return check


def test_network_kinds_start_by_round_trips_each_level_once_the_one_before_is_done(monkeypatch):
    monkeypatch.setattr(engine, "LEVEL_HEAD_START_S", 5.0)  # only a finished level opens the next here
    events = []
    check = _recorder(events)
    targets = [_t(0, "ntp"), _t(1, "nameserver"), _t(2, "http"), _t(3, "https"), _t(4, "https"), _t(5, "ike")]
    t0 = time.monotonic()
    results = run_checks(targets, RunContext(timeout=2), table={p: check for p in ("https", "http", "ntp", "ike",
                                                                                  "nameserver")})
    assert time.monotonic() - t0 < 2.0  # no head start was waited out
    assert all(r.status is Status.PASS for r in results) and [r.id for r in results] == [f"t{i}" for i in range(6)]
    assert [probe for what, probe, _ in events if what == "start"] in (
        ["https", "https", "http", "ntp", "ike", "nameserver"], ["https", "https", "http", "ike", "ntp", "nameserver"])
    level = {"https": 4, "http": 3, "ntp": 2, "ike": 2, "nameserver": 1}
    for what, probe, when in events:
        if what == "start":  # every check of a level with more round trips had ended before
            assert all(w <= when for e, p, w in events if e == "end" and level[p] > level[probe]), probe


def test_a_hung_level_holds_the_next_one_back_for_one_head_start_only(monkeypatch):
    monkeypatch.setattr(engine, "LEVEL_HEAD_START_S", 0.1)
    events = []
    targets = [_t(0, "https"), _t(1, "http"), _t(2, "ntp")]
    started = time.monotonic()
    results = run_checks(targets, RunContext(timeout=1, deadline=time.monotonic() + 5),
                         table={p: _recorder(events, {"https": 0.6}) for p in ("https", "http", "ntp")})
    assert all(r.status is Status.PASS for r in results)
    first = {probe: when - started for what, probe, when in reversed(events) if what == "start"}
    assert 0.1 <= first["http"] < 0.6 and first["http"] <= first["ntp"] < 0.6, first


def test_levels_share_one_bound_on_checks_in_flight():
    cond, state = threading.Condition(), {"now": 0, "max": 0}

    def slow(t, ctx):
        with cond:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.03)
        with cond:
            state["now"] -= 1
        return CheckResult(t, Status.PASS, Reason.OK, "ok")

    targets = [_t(i, ("https", "http", "ntp")[i % 3]) for i in range(30)]
    results = run_checks(targets, RunContext(timeout=2), max_in_flight=4, table={"https": slow, "http": slow, "ntp": slow})
    assert all(r.status is Status.PASS for r in results)
    assert state["max"] == 4


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


def test_the_deadline_grows_with_the_work_that_cannot_run_at_once():
    local = [_t(i, "tool") for i in range(40)]
    threaded = [_t(i, "https") for i in range(40)]  # one worker thread each, 32 at once
    assert hard_deadline(local, 3.0) == hard_deadline(threaded[:32], 3.0) == 3.0 * 2 + 2.0
    assert hard_deadline(threaded, 3.0) == 3.0 * 3 + 2.0
    assert hard_deadline(threaded + [_t(99, "https", skip=Skip(Reason.MISSING_INPUT, "x"))], 3.0) == 3.0 * 3 + 2.0
    # A batched kind opens every socket at once: five hundred IP targets are one wave...
    literals = [dataclasses.replace(_t(i, "tcp"), host=f"10.0.{i // 250}.{i % 250}") for i in range(500)]
    assert hard_deadline(literals, 3.0) == 3.0 * 2 + 2.0
    # ...and only its name lookups come in waves (40 names: two waves of 32, then the sockets).
    assert hard_deadline([_t(i, "tcp") for i in range(40)], 3.0) == 3.0 * 4 + 2.0
    assert hard_deadline(literals + threaded, 3.0) == 3.0 * 3 + 2.0


def test_a_probe_that_only_waited_is_never_a_network_result():
    def slow(t, ctx):
        time.sleep(0.4)
        return CheckResult(t, Status.FAIL, Reason.TIMEOUT, "timed out after its full timeout")

    targets = [_t(i, "https") for i in range(3)]
    ctx = RunContext(timeout=0.5, deadline=time.monotonic() + 1.0)
    t0 = time.monotonic()
    results = run_checks(targets, ctx, max_in_flight=1, table={"https": slow})
    took = time.monotonic() - t0
    assert [r.reason for r in results] == [Reason.TIMEOUT, Reason.TIMEOUT, Reason.DEADLINE_EXCEEDED]
    # The third would have had 0.2 s of its 0.5 s: left unstarted, said so, and not waited for.
    assert "did not start" in results[2].message and "not the network" in results[2].message
    assert took < 0.95, took


def test_a_broken_batch_kind_only_fails_its_own_checks(monkeypatch):
    broken = dataclasses.replace(registry.get("tcp"), batch="edgecheck.no_such_module:check_many")
    monkeypatch.setitem(registry.BY_NAME, "tcp", broken)
    monkeypatch.setattr(registry, "PROBES", tuple(broken if p.name == "tcp" else p for p in registry.PROBES))
    results = run_checks([_t(0, "tcp"), _t(1, "tool")], RunContext(timeout=1),
                         table={"tool": lambda t, c: CheckResult(t, Status.PASS, Reason.OK, "ok")})
    assert results[0].reason is Reason.INTERNAL_ERROR and "ModuleNotFoundError" in results[0].message
    assert results[1].status is Status.PASS


def test_five_hundred_hanging_tcp_endpoints_take_one_timeout(ns, ctx):
    """The tcp kind is batched: every connect at once on one loop, each given its full timeout."""
    targets = [target("tcp", DROPPED, 20000 + i) for i in range(500)]
    c = dataclasses.replace(ctx, timeout=1.0)
    c = dataclasses.replace(c, deadline=time.monotonic() + hard_deadline(targets, c.timeout))
    t0 = time.monotonic()
    results = ns.run(run_checks, targets, c)
    wall = time.monotonic() - t0
    assert wall < c.timeout + 1.0, wall
    assert {r.reason for r in results} == {Reason.TIMEOUT}
    assert min(r.duration_ms for r in results) >= 950  # each waited its whole timeout: really made
    assert all("no answer to the SYN" in r.message for r in results)


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


def test_a_batched_kind_starts_each_target_when_it_can(ns, zone, ctx):
    """IP targets connect at once; a name connects as soon as its own lookup ends (it joins the
    running loop), with what is left of its own timeout; a name whose lookup hangs is a DNS
    timeout. Nothing waits for anything else: the whole batch takes about one timeout."""
    zone["quick.test"] = {"A": [DROPPED]}
    zone["stuck.test"] = "DROP"
    targets = [target("tcp", DROPPED, 21000), target("tcp", "quick.test", 21001), target("tcp", "stuck.test", 21002),
               target("tcp", "10.77.0.1", 1)]  # a real peer address with nothing on port 1: refused at once
    c = dataclasses.replace(ctx, timeout=1.0)
    c = dataclasses.replace(c, deadline=time.monotonic() + hard_deadline(targets, c.timeout))
    t0 = time.monotonic()
    literal, quick, stuck, refused = ns.run(run_checks, targets, c)
    wall = time.monotonic() - t0
    assert wall < c.timeout + 0.7, wall
    assert (literal.reason, quick.reason, stuck.reason, refused.reason) == (
        Reason.TIMEOUT, Reason.TIMEOUT, Reason.DNS_TIMEOUT, Reason.REFUSED)
    assert refused.duration_ms < 500 and 950 <= literal.duration_ms < 1500
    assert 950 <= quick.duration_ms < 1500  # lookup plus connect within its one timeout
    assert quick.evidence.to_json()["addresses"] == [DROPPED] and "connect" in quick.evidence.to_json()


def test_a_batched_target_that_cannot_get_its_timeout_is_not_started(ns, zone, ctx):
    zone["late.test"] = {"A": [DROPPED]}
    c = dataclasses.replace(ctx, timeout=1.0, deadline=time.monotonic() + 0.9)  # less than one timeout left
    (result,) = ns.run(run_checks, [target("tcp", "late.test", 21003)], c)
    assert result.reason is Reason.DEADLINE_EXCEEDED and "did not start" in result.message
