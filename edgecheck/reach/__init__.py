"""Both sides of the inbound path: `edgecheck listen` on the node, `edgecheck reach` from the cloud.

Public API (see each module's docstring):
- protocol: the token challenge/response wire format (pure);
- listener: Listener, PortSpec, Binding, ListenEvent, ListenSummary, listen();
- prober:   ReachTarget, reach_many(), probe_token(), tls_reachable(), http_answers(), tcp_connect_many();
- probeloop: the non-blocking multi-target loop (ProbeLoop, jobs, Outcome, ProbeResult);
- summary:  pure renderers and verdicts (listen banner/events/summary text+JSON, reach verdicts,
            remediation, evidence).
"""

from __future__ import annotations

from edgecheck.reach.listener import (BindState, Binding, ListenEvent, Listener, ListenSummary, PortReport,
                                      PortSpec, listen)
from edgecheck.reach.probeloop import NETWORK_OUTCOMES, LoopStats, Outcome, ProbeLoop, ProbeResult
from edgecheck.reach.prober import (ReachTarget, http_answers, probe_token, reach_many, tcp_connect_many,
                                    tls_reachable)
from edgecheck.reach.protocol import new_token, token_problem

__all__ = [
    "BindState", "Binding", "ListenEvent", "Listener", "ListenSummary", "PortReport", "PortSpec", "listen",
    "NETWORK_OUTCOMES", "LoopStats", "Outcome", "ProbeLoop", "ProbeResult",
    "ReachTarget", "http_answers", "probe_token", "reach_many", "tcp_connect_many", "tls_reachable",
    "new_token", "token_problem",
]
