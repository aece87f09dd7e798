"""Many probes at once on one thread: black-holed nodes finish within the timeout plus a little,
every probe is really made, and a probe that only waited is never reported as a network result."""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import resource
import time
import traceback
from typing import List

import pytest

from edgecheck.reach.probeloop import NETWORK_OUTCOMES, LoopStats, Outcome
from edgecheck.reach.prober import ReachTarget, reach_many
from tests.probes.netns import Netns
from tests.reach.topo import BLACKHOLE_NET, PLAN_PORTS, ReachLab


def blackholed(nodes: int) -> List[ReachTarget]:
    hosts = ipaddress.ip_network(BLACKHOLE_NET).hosts()
    addresses = [str(next(hosts)) for _ in range(nodes)]
    return [ReachTarget(a, s.port, s.protocol, "token", node=a) for a in addresses for s in PLAN_PORTS]


def test_200_blackholed_nodes_finish_within_timeout_plus_one_second(reach_lab: ReachLab) -> None:
    targets = blackholed(200)
    stats: List[LoopStats] = []
    t0 = time.monotonic()
    results = reach_lab.far.run(reach_many, targets, "scale-test-token", 1.5, stats=stats)
    wall = time.monotonic() - t0
    outcomes = collections.Counter(r.outcome for r in results)
    assert wall < 1.5 + 1.0, wall
    assert outcomes == {Outcome.TIMEOUT: 800, Outcome.NO_RESPONSE: 200}, outcomes
    assert stats[0].started == 1000 and stats[0].not_started == 0 and stats[0].abandoned == 0
    assert min(r.ms for r in results) >= 1400  # each waited its full timeout: really made, not skipped
    assert all(r.sends >= 2 for r in results if r.protocol == "udp")  # resent within the timeout


def test_waiting_for_a_slot_is_never_a_network_result(reach_lab: ReachLab) -> None:
    targets = blackholed(20)  # 100 probes through a window of 10, with a deadline for 1.5 waves
    t0 = time.monotonic()
    results = reach_lab.far.run(reach_many, targets, "scale-test-token", 1.0, deadline=time.monotonic() + 1.5,
                                max_open=10)
    wall = time.monotonic() - t0
    outcomes = collections.Counter(r.outcome for r in results)
    assert wall < 2.0, wall
    assert outcomes[Outcome.NOT_STARTED] >= 70 and outcomes[Outcome.DEADLINE] >= 1, outcomes
    assert sum(outcomes[o] for o in NETWORK_OUTCOMES) == 10, outcomes  # only the first wave finished
    for r in results:
        if r.outcome is Outcome.NOT_STARTED:
            assert "never started" in r.detail and r.outcome not in NETWORK_OUTCOMES


def _in_child(ns_name: str, soft: int, hard: int, count: int, timeout: float) -> dict:
    """Fork; the child enters the namespace, lowers RLIMIT_NOFILE, probes `count` black-holed ports."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            Netns.enter(type("N", (), {"name": ns_name})())
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            stats: List[LoopStats] = []
            t0 = time.monotonic()
            results = reach_many(blackholed(count // len(PLAN_PORTS)), "scale-test-token", timeout, stats=stats)
            payload = {"wall": time.monotonic() - t0, "stats": stats[0].__dict__,
                       "outcomes": dict(collections.Counter(r.outcome.value for r in results)),
                       "soft_after": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
        except BaseException:
            payload = {"crash": traceback.format_exc()}
        with os.fdopen(w, "w") as fh:
            json.dump(payload, fh)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out = json.loads(fh.read() or "{}")
    os.waitpid(pid, 0)
    assert "crash" not in out, out.get("crash")
    return out


def test_a_low_descriptor_limit_is_raised_up_to_the_hard_limit(reach_lab: ReachLab) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} is too low to show raising")
    out = _in_child(reach_lab.far.name, 128, hard, 500, 1.0)
    assert out["stats"]["fd_limit_raised_from"] == 128 and out["soft_after"] > 500
    assert out["stats"]["window"] == 500 and out["stats"]["started"] == 500
    assert out["wall"] < 2.0 and out["outcomes"] == {"timeout": 400, "no-response": 100}


def test_a_hard_descriptor_limit_means_waves_not_lies(reach_lab: ReachLab) -> None:
    out = _in_child(reach_lab.far.name, 128, 128, 250, 0.5)
    window = out["stats"]["window"]
    assert out["stats"]["fd_limit_raised_from"] is None and 1 <= window < 128 - 64
    waves = -(-250 // window)
    assert out["outcomes"] == {"timeout": 200, "no-response": 50}, out  # every probe made, in waves
    assert out["stats"]["not_started"] == 0 and out["stats"]["peak_open"] <= window
    assert 0.5 * (waves - 1) <= out["wall"] < 0.5 * waves + 1.5, (out["wall"], waves)


def test_reach_checks_through_the_engine_take_one_timeout(reach_lab: ReachLab) -> None:
    """What `edgecheck reach` runs: the plan's reach targets, batched by the engine on one loop;
    the deadline is one wave however many nodes (sockets are cheap), and no probe waits."""
    from edgecheck.catalog import load_catalog
    from edgecheck.engine import hard_deadline, run_checks
    from edgecheck.model import Phase, Reason
    from edgecheck.plan import Selection, build_plan
    from edgecheck.reach.targets import reach_targets
    from edgecheck.runcontext import RunContext

    plan = build_plan(load_catalog(), Selection(region="cn-hangzhou"))
    hosts = ipaddress.ip_network(BLACKHOLE_NET).hosts()
    targets = reach_targets(plan.targets, [str(next(hosts)) for _ in range(200)], Phase.JOIN, "public")
    assert len(targets) == 1000 and hard_deadline(targets, 1.5) == 1.5 * 2 + 2.0
    ctx = RunContext(timeout=1.5, deadline=time.monotonic() + hard_deadline(targets, 1.5), reach_token="scale-test-token")
    t0 = time.monotonic()
    results = reach_lab.far.run(run_checks, targets, ctx)
    wall = time.monotonic() - t0
    assert wall < 1.5 + 1.0, wall
    reasons = collections.Counter(r.reason for r in results)
    assert reasons == {Reason.TIMEOUT: 800, Reason.NO_RESPONSE: 200}, reasons
    assert min(r.duration_ms for r in results) >= 1450  # each waited its whole timeout: really made
    assert [r.id for r in results] == [t.id for t in targets]
