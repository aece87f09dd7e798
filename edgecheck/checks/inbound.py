"""inbound: a port of this host the cloud must reach — free before the join, listening once joined.

Decisions are pure (decide_inbound) over the holders found in the run's socket table:
- join, port free                       -> pass / ok
- join, port held                       -> fail / port-in-use, naming the holder when visible
- running, listening on a routable addr -> pass / ok, naming the listener when visible
- running, listening on loopback only   -> warn / loopback-only (the cloud cannot reach it)
- running, not listening                -> fail / port-not-listening
Without root the listener's pid may be invisible (psutil returns pid=None); the result is then
still complete and says exactly what could not be seen.

This host's own packet filter is the other half (checks/hostfilter.py): a free or listening port
that the filter blocks from the sources that must reach it is fail/host-firewall.
"""

from __future__ import annotations

import time
from typing import Sequence, Tuple

from edgecheck.checks.hostfilter import combine_inbound, host_filter, inbound_verdict
from edgecheck.evidence import InboundEvidence, PortHolder
from edgecheck.host import sockets
from edgecheck.model import CheckResult, Evidence, Phase, Reason, Status, Target
from edgecheck.netloc import host_port
from edgecheck.runcontext import RunContext

EXPECT_FREE = "free"
EXPECT_LISTENING = "listening"
OWNER_HIDDEN_HINT = "not visible without root (CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE)"


def describe_holder(h: PortHolder, owners_visible: bool) -> str:
    where = host_port(h.address, h.port)
    if h.pid is not None:
        bits = [f"pid {h.pid}"] + ([f"user {h.user}"] if h.user else []) + ([h.unit] if h.unit else [])
        return f"{h.process or 'unknown process'} ({', '.join(bits)}) on {where}"
    if h.kernel_socket:
        return f"a kernel socket (no process; e.g. a VXLAN device) on {where}"
    owner = f" owned by {h.user}" if h.user else ""
    if owners_visible:
        return f"a socket on {where}{owner}; its process is not visible from here (another PID namespace?)"
    return f"a socket on {where}{owner}; its process is {OWNER_HIDDEN_HINT}"


def decide_inbound(target: Target, expect: str, holders: Sequence[PortHolder],
                   owners_visible: bool) -> Tuple[Status, Reason, str]:
    label = f"{(target.protocol or 'tcp').upper()} {target.port}"
    comp = target.component.name if target.component else "the component that serves this port"
    described = "; ".join(describe_holder(h, owners_visible) for h in holders)
    if expect == EXPECT_FREE:
        if not holders:
            return Status.PASS, Reason.OK, f"{label} is free."
        return Status.FAIL, Reason.PORT_IN_USE, f"{label} is in use by {described}."
    if not holders:
        return (Status.FAIL, Reason.PORT_NOT_LISTENING,
                f"{label} is not listening: nothing is bound to it; {comp} should be.")
    if all(h.loopback for h in holders):
        return (Status.WARN, Reason.LOOPBACK_ONLY,
                f"{label} listens on loopback only ({described}): the cloud cannot reach it through the node's address.")
    return Status.PASS, Reason.OK, f"{label} is listening: {described}."


def warm(targets: Sequence[Target], ctx: RunContext) -> None:
    """This host's socket table and packet filter (nft or iptables-save, netlink for the addresses)
    are read once per run for every inbound check: from the moment the plan is known, on
    background threads, so their subprocess and parsing overlap the rest of the start-up instead
    of holding up the network probes."""
    if any(t.probe == "inbound" and t.skip is None for t in targets):
        ctx.facts.prefetch("socket-table", ctx.facts.socket_table)
        ctx.facts.prefetch("host-filter", lambda: host_filter(ctx))


def check_inbound(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    status, reason, message, evidence = _port_state(target, ctx)
    # The port's state is half of it: the host's own packet filter must also let the sources in.
    firewall = inbound_verdict(target, ctx)
    status, reason, message = combine_inbound(status, reason, message, firewall)
    return CheckResult(target, status, reason, message, evidence=Evidence(evidence, firewall),
                       duration_ms=int((time.monotonic() - started) * 1000))


def _port_state(target: Target, ctx: RunContext) -> Tuple[Status, Reason, str, InboundEvidence]:
    protocol = (target.protocol or "tcp").lower()
    expect = target.expect or (EXPECT_FREE if ctx.phase is Phase.JOIN else EXPECT_LISTENING)
    table = ctx.facts.socket_table()
    owners_visible = sockets.can_see_socket_owners()
    if table.error is not None:
        return _fallback(target, protocol, expect, table.error, owners_visible)
    holders = sockets.gather_holders(table, protocol, int(target.port or 0))
    note = ""
    if not owners_visible and any(h.pid is None and not h.kernel_socket for h in holders):
        note = f"a socket holds {protocol.upper()} {target.port} but its owner is {OWNER_HIDDEN_HINT}"
    status, reason, message = decide_inbound(target, expect, holders, owners_visible)
    return status, reason, message, InboundEvidence(expect, table.source, owners_visible, tuple(holders), owner_note=note)


def _fallback(target: Target, protocol: str, expect: str, error: str, owners_visible: bool
              ) -> Tuple[Status, Reason, str, InboundEvidence]:
    """The socket table is unreadable (e.g. ProcSubset=pid): a bind test still tells free from taken."""
    in_use = sockets.bind_test(protocol, int(target.port or 0))
    evidence = InboundEvidence(expect, "none", owners_visible, table_error=error,
                               bind_test={None: "inconclusive", True: "in-use", False: "free"}[in_use])
    label = f"{protocol.upper()} {target.port}"
    if in_use is None:
        return (Status.WARN, Reason.PORT_NOT_LISTENING if expect == EXPECT_LISTENING else Reason.PORT_IN_USE,
                f"Could not tell whether {label} is in use: the socket table is unreadable ({error}) "
                "and a bind test was inconclusive.", evidence)
    holders = [PortHolder(protocol, "0.0.0.0", int(target.port or 0))] if in_use else []
    status, reason, message = decide_inbound(target, expect, holders, False)
    if in_use:
        # The bind test cannot see the address or the process: say so instead of guessing.
        message = (f"{label} is in use (a bind test failed; the socket table is unreadable: {error}, so the "
                   "holder and its address are unknown).")
        if status is Status.PASS:
            message = (f"{label} is bound by something (bind test; the socket table is unreadable: {error}): "
                       "listener address and process unknown.")
    return status, reason, message, evidence
