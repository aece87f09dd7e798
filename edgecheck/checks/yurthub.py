"""yurthub: is the node's YurtHub (ACK Edge's edge-hub) up, ready, and heartbeating to the cloud?

On a joined OpenYurt / ACK Edge node kubelet and the pods reach the API server only through
YurtHub, so a YurtHub that is down cuts the node off whatever the network does. What each of its
answers means is in edgecheck/probes/yurthub.py. The network path itself is the API server
check's: this one says whether YurtHub works.
"""

from __future__ import annotations

import time
from typing import Tuple

from edgecheck.model import CheckResult, Evidence, Reason, Status, Target
from edgecheck.netloc import host_port
from edgecheck.probes.budget import Budget
from edgecheck.probes.yurthub import HEALTHZ_PATH, READYZ_PATH, YurtHubProbe, probe_yurthub
from edgecheck.runcontext import RunContext


def _first_line(body: str) -> str:
    return body.strip().splitlines()[0][:200] if body.strip() else ""


def decide_yurthub(name: str, probe: YurtHubProbe) -> Tuple[Status, Reason, str]:
    """pass / warn / fail for the node's YurtHub, from what the probe saw (pure)."""
    at = host_port(probe.address, probe.port)
    h, r = probe.healthz, probe.readyz
    if not probe.answering:
        what = {"refused": "refuses connections", "timeout": "does not answer in time"}.get(
            h.error or "", f"gives no HTTP answer ({h.error})")
        return (Status.FAIL, Reason.COMPONENT_UNHEALTHY,
                f"{name} on {at} {what}: kubelet reaches the API server only through it, so this node is cut off "
                "from the cloud.")
    if not h.ok:
        return (Status.FAIL, Reason.COMPONENT_UNHEALTHY,
                f"{name} health check {HEALTHZ_PATH} on {at} answers HTTP {h.status} {_first_line(h.body)!r}, not 200 OK.")
    if probe.ready is False and r is not None:
        return (Status.FAIL, Reason.COMPONENT_UNHEALTHY,
                f"{name} is up but not ready ({READYZ_PATH}: HTTP {r.status} {_first_line(r.body)!r}): until it is, "
                "it answers kubelet and pods with 503.")
    unhealthy = [s for s, v in probe.server_health if v == 0]
    healthy = [s for s, v in probe.server_health if v == 1]
    if unhealthy and not healthy:
        return (Status.FAIL, Reason.COMPONENT_UNHEALTHY,
                f"{name} is up, but its heartbeat (node Lease renewal) through the API server fails "
                f"({', '.join(unhealthy)}): the node runs on {name}'s cache.")
    if unhealthy:
        return (Status.WARN, Reason.COMPONENT_UNHEALTHY,
                f"{name}'s heartbeat fails through {', '.join(unhealthy)} but works through {', '.join(healthy)}.")
    if probe.ready is None:
        return (Status.WARN, Reason.COMPONENT_UNHEALTHY,
                f"{name} answers on {at} (healthz OK) but its readiness could not be measured"
                f"{f' ({r.error})' if r is not None and r.error else ''}.")
    parts = [f"{name} answers on {at}: healthz OK",
             "no readyz (YurtHub older than v1.3)" if r is not None and r.status == 404 else "ready"]
    if healthy:
        parts.append(f"heartbeat through {', '.join(healthy)} healthy")
    return Status.PASS, Reason.OK, "; ".join(parts) + " (the network path itself is the API server check)."


def check_yurthub(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    probe = probe_yurthub(Budget.for_probe(ctx.timeout, ctx.deadline), target.host or "127.0.0.1",
                          int(target.port or 0), hub_name=target.entry)
    status, reason, message = decide_yurthub(target.entry, probe)
    return CheckResult(target, status, reason, message, evidence=Evidence(probe),
                       duration_ms=int((time.monotonic() - started) * 1000))
