"""The plan's inbound ports as `edgecheck listen` binds them and as `edgecheck reach` probes them.

Pure: the ports, what needs them and who must reach them all come from the plan's inbound
targets (the catalog), never from port numbers here. How `reach` proves a port:
- before the join (phase join) `edgecheck listen` holds every free port: its token challenge;
- on a joined node (phase running) the component that serves the port answers, as the catalog's
  `answers` says ("tls" for the kubelet's API, "http" for its read-only port and node-exporter);
  a port no component answers for (the kernel's VXLAN socket) still gets the token probe, which
  only `edgecheck listen` answers: without one it stays unconfirmed (warn / no-response).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from edgecheck.model import Kind, Phase, Target
from edgecheck.netloc import host_port

PROOF_WORDS = {
    "token": "`edgecheck listen` proving the session token",
    "tls": "a TLS handshake with the component (reachability, not trust: the certificate is not verified)",
    "http": "an HTTP answer from the component",
    "https": "an HTTPS answer from the component (certificate not verified)",
    "tcp": "a TCP connection to the component",
}


def inbound_targets(targets: Sequence[Target]) -> List[Target]:
    return [t for t in targets if t.kind is Kind.INBOUND and t.skip is None and t.port]


def listen_ports(targets: Sequence[Target]) -> List[Tuple[int, str, str]]:
    """(port, protocol, what needs it) for every inbound port of the plan, in plan order."""
    out: List[Tuple[int, str, str]] = []
    for t in inbound_targets(targets):
        label = t.component.name if t.component else t.entry
        if (t.port, t.protocol) not in [(p, proto) for p, proto, _ in out]:
            out.append((int(t.port or 0), t.protocol or "tcp", label))
    return out


def reach_method(inbound: Target, phase: Phase) -> str:
    """How `reach` proves this inbound port in this phase (see the module docstring)."""
    if phase is Phase.RUNNING and inbound.answers:
        return inbound.answers
    return "token"


def reach_id(node: str, port: int, protocol: str) -> str:
    return f"reach:{host_port(node, port)}/{protocol}"


def reach_targets(targets: Sequence[Target], nodes: Sequence[str], phase: Phase, mode: str) -> Tuple[Target, ...]:
    """One `reach:NODE:PORT/PROTO` target per node and inbound port of the plan."""
    out: List[Target] = []
    for node in nodes:
        for t in inbound_targets(targets):
            method = reach_method(t, phase)
            who = t.allowed_from or "the cloud"
            out.append(Target(
                id=reach_id(node, int(t.port or 0), t.protocol or "tcp"), kind=Kind.REACH, probe="reach",
                name=t.name, source=t.source, entry=t.entry, host=node, port=t.port, protocol=t.protocol,
                why=(f"{mode} mode; phase {phase.value}: {who} must reach this port of the node; "
                     f"proven by {PROOF_WORDS.get(method, method)}"),
                allowed_from=t.allowed_from, component=t.component, notes=t.notes, answers=method,
            ))
    return tuple(out)


def needs_token(targets: Sequence[Target]) -> bool:
    """Whether any port can only be proven by `edgecheck listen` (before the join: all of them)."""
    return any(t.answers == "token" for t in targets)
