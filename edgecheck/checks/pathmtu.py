"""The web checks' path-MTU layer: a stalled TLS handshake or HTTP response on the direct path is
retried with small TCP MSS values inside the same probe budget (pmtu.StallWatch); a retry that
works where a full-size one stalls is a path-MTU black hole (SPEC 7.1 `path-mtu`).

Only on the direct path: through a proxy the node's TCP ends at the proxy, and the proxy's own
path to the server is not this host's to measure. The egress route (interface, its MTU, the
kernel's path-MTU estimate) is read for the address only once a black hole is proven; it sends
nothing, and no DF probe is sent (pmtu_measure.py says why).
"""

from __future__ import annotations

import socket
import ssl
from typing import Optional

from edgecheck.checks.base import Probing
from edgecheck.evidence import PathMtu
from edgecheck.model import CheckResult, Reason, Status
from edgecheck.probes import pmtu


def watch(probing: Probing, address: str, port: int, context: Optional[ssl.SSLContext],
          sock: Optional[socket.socket] = None, http: bool = False) -> pmtu.StallWatch:
    """Arm the retry next to the operation that may stall; call judge() right after it."""
    return pmtu.StallWatch(address, port, probing.target.host or address, context, probing.budget,
                           sock=sock, http=http)


def judge(probing: Probing, stall_watch: pmtu.StallWatch, stalled: bool, stage: str) -> Optional[CheckResult]:
    """Finish the watch; fail/path-mtu when its retry proves a black hole, else None (the retry,
    when there was one, stays in the evidence)."""
    retry = stall_watch.finish(stalled=stalled)
    if retry is None:
        return None
    verdict = pmtu.judge_retry(retry)
    egress = {}
    if verdict.black_hole:
        from edgecheck.probes.pmtu_measure import egress_route

        egress = egress_route(retry.address, timeout=min(1.0, max(0.1, probing.budget.left()))).evidence()
    part = PathMtu(stage, verdict.black_hole, verdict.why, verdict.working_sizes, verdict.failing_sizes,
                   retry.evidence(), egress)
    probing.add(part)
    if not verdict.black_hole:
        return None
    t = probing.target
    return probing.result(Status.FAIL, Reason.PATH_MTU, pmtu.message(verdict, t.host or retry.address,
                                                                     int(t.port or retry.port), stage))
