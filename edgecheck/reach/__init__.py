"""Both sides of the inbound path: `edgecheck listen` on the node, `edgecheck reach` from the cloud.

Modules (see each docstring); nothing is imported here, so a run that only needs the probe loop
does not load the listener:
- protocol:  the token challenge/response wire format (pure);
- listener:  Listener, PortSpec, Binding, ListenEvent, ListenSummary, listen();
- probeloop: the non-blocking multi-target loop (ProbeLoop, jobs, Outcome, ProbeResult);
- prober:    ReachTarget, reach_many(), tls_reachable(), http_answers();
- summary:   pure renderers of `listen` (banner, event lines, summary text and JSON);
- targets:   the plan's inbound ports as `listen` specs and as `reach:NODE:PORT/PROTO` targets;
- session:   `edgecheck listen` end to end (bind, banner, signals, summary).
"""
