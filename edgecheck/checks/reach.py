"""reach: one inbound port of a node, probed from this side (`edgecheck reach NODE...`).

Every reach target of a run is probed at once (the registry's batch, checks/batch.py): NODE names
on the run's resolver, then one socket per port on one non-blocking loop. How a port is proven
is the target's `answers` (edgecheck/reach/targets.py, from the catalog): the token challenge of
`edgecheck listen`, a TLS handshake or an HTTP answer of a joined node's component.

Like every check it states what it found; what to do is the diagnosis layer's (advice.py):
- pass / ok: the listener proved the token (the source it saw is in the message and evidence:
  when it differs from this host's own address, the path is NATed), or the component answered;
- warn / clock-offset: the listener proved the token but the clocks differ beyond its window;
- fail / timeout, refused, unreachable: the packets did not get there, naming who rejected them;
- fail / unproven: something accepted the connection but did not prove to be the listener (a
  middlebox completing handshakes, another service, another token) or the expected component;
- fail / tls-handshake-failed: the kubelet's port accepts connections but no TLS handshake;
- warn / no-response: UDP silence that cannot be told from an ignoring peer (no listener proven on
  that node); fail once `edgecheck listen` answered on another port of the same node.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, List, Optional, Sequence, Set, Tuple

from edgecheck.evidence import ReachProbe
from edgecheck.model import CheckResult, Reason, Status, Target
from edgecheck.runcontext import RunContext

if TYPE_CHECKING:
    from edgecheck.checks.batch import Named
    from edgecheck.reach.probeloop import ProbeResult

Verdict = Tuple[Status, Reason, str]


def check_reach(target: Target, ctx: RunContext) -> CheckResult:
    return check_reach_many([target], ctx)[0]


def check_reach_many(targets: Sequence[Target], ctx: RunContext) -> List[CheckResult]:
    from edgecheck.checks.batch import probe_all
    from edgecheck.reach import protocol as wire

    # Without a token only a listener with that same (random) token could answer: none will, so a
    # port that only `edgecheck listen` proves stays unconfirmed instead of being guessed at.
    key = wire.derive_key(ctx.reach_token or wire.new_token())
    fingerprint = wire.key_fingerprint(key) if ctx.reach_token else None
    named = probe_all(targets, ctx, lambda n: _job(n, key, ctx.timeout))
    results = [n.jobs[0].result if n.failure is None and n.jobs else None for n in named]
    if ctx.reach_token:
        _listener_instead(named, results, key, ctx)
    proven = {n.target.host for n, r in zip(named, results) if r is not None and r.method == "token" and r.answered}
    return [_result(n, r, proven, fingerprint) for n, r in zip(named, results)]


def _job(n: "Named", key: bytes, timeout: float, method: str = "") -> list:
    """The one probe of a node port, to the node's first address."""
    from edgecheck.reach.prober import ReachTarget, make_job

    if not n.addresses:
        return []
    t = n.target
    job = make_job(ReachTarget(n.addresses[0], int(t.port or 0), t.protocol or "tcp",
                               method or t.answers or "token", node=t.host or ""), key)
    job.timeout = n.job_timeout(timeout)
    return [job]


def _listener_instead(named: Sequence["Named"], results: List[Optional["ProbeResult"]], key: bytes,
                      ctx: RunContext) -> None:
    """On a joined node `edgecheck listen` holds the ports its components leave free: a port whose
    component probe found something else gets the token probe too, and keeps its proof if that
    answers (its first result otherwise)."""
    from edgecheck.checks.batch import COLLECT_MARGIN_S
    from edgecheck.reach.probeloop import Outcome, ProbeLoop

    again = [i for i, r in enumerate(results)
             if r is not None and r.method != "token" and r.outcome is Outcome.UNPROVEN]
    jobs = [job for i in again for job in _job(named[i], key, ctx.timeout, "token")]
    if not jobs or time.monotonic() + ctx.timeout > ctx.deadline - COLLECT_MARGIN_S:
        return
    for job in jobs:
        job.timeout = ctx.timeout
    for i, second in zip(again, ProbeLoop(ctx.timeout, deadline=ctx.deadline - COLLECT_MARGIN_S).run(jobs)):
        if second.answered:
            results[i] = second


def _result(n: "Named", r: Optional["ProbeResult"], proven: Set[Optional[str]],
            fingerprint: Optional[str]) -> CheckResult:
    if n.failure is not None:
        return n.failure
    if r is None:
        return CheckResult(n.target, Status.FAIL, Reason.DNS_ERROR, f"{n.target.host} resolved to no address.",
                           evidence=n.evidence, duration_ms=n.dns_ms)
    n.evidence.add(probe_evidence(r, fingerprint))
    status, reason, message = judge(n.target, r, listener_on_node=n.target.host in proven)
    return CheckResult(n.target, status, reason, message, evidence=n.evidence, duration_ms=n.dns_ms + r.ms)


def probe_evidence(r: "ProbeResult", fingerprint: Optional[str]) -> ReachProbe:
    data = r.evidence()
    if r.method == "token" and fingerprint:
        data["token_fingerprint"] = fingerprint
    sender = r.icmp.sender if r.icmp is not None else None
    return ReachProbe(
        data=data, method=r.method, outcome=r.outcome.value, detail=r.detail,
        local=r.local.address if r.local else None,
        seen_source=r.seen_source.address if r.seen_source else None, nat=r.nat,
        rejected_by=sender, rejected_by_node=sender is not None and sender == r.address,
        port_unreachable=bool(r.icmp and r.icmp.port_unreachable),
        blocked_locally=r.blocked_locally, clock_offset_s=r.clock_offset_s)


def nat_words(r: "ProbeResult") -> str:
    """"" unless the node saw another source than the one this host sent from."""
    if r.nat == "address" and r.seen_source and r.local:
        return (f" The node saw the probe coming from {r.seen_source.address}, not from this host's "
                f"{r.local.address}: the path is NATed (SNAT/masquerade), so allow-lists and security-group "
                f"rules in front of the node must allow {r.seen_source.address}.")
    if r.nat == "port" and r.seen_source and r.local:
        return (f" The source port was rewritten on the way ({r.local.port} -> {r.seen_source.port}): "
                "a NAT on the path translates ports only.")
    return ""


def _where(target: Target, r: "ProbeResult") -> str:
    node = target.host or r.address
    shown = node if node == r.address else f"{node} ({r.address})"
    return f"{r.protocol.upper()} {r.port} of {shown}"


def _component(target: Target) -> str:
    return target.component.name if target.component else "the component"


def judge(target: Target, r: "ProbeResult", *, listener_on_node: bool = False) -> Verdict:
    """Status, reason and message for one probe result (pure). `listener_on_node`: another port of
    the same node proved the token, so `edgecheck listen` runs there and UDP silence is a block."""
    from edgecheck.reach.probeloop import Outcome

    where = _where(target, r)
    if r.outcome is Outcome.OK:
        return Status.PASS, Reason.OK, _passed(target, r, where)
    if r.outcome is Outcome.CLOCK_SKEW:
        return (Status.WARN, Reason.CLOCK_OFFSET,
                f"{where} reaches `edgecheck listen` (token proven), but the node's clock differs from this host's "
                f"by {r.clock_offset_s or 0:+.0f} s, beyond the listener's replay window: {r.detail}." + nat_words(r))
    if r.outcome is Outcome.UNPROVEN:
        if r.method == "tls":
            return Status.FAIL, Reason.TLS_HANDSHAKE_FAILED, f"{where} accepts connections, but {r.detail}."
        return Status.FAIL, Reason.UNPROVEN, f"{where}: {r.detail}."
    if r.outcome is Outcome.NO_RESPONSE:
        return _silence(where, r, listener_on_node)
    if r.outcome in (Outcome.DEADLINE, Outcome.NOT_STARTED):
        return (Status.FAIL, Reason.DEADLINE_EXCEEDED,
                f"{where}: {r.detail} (this is about the run, not the network).")
    return _blocked(where, r)


def _passed(target: Target, r: "ProbeResult", where: str) -> str:
    if r.method == "token":
        seen = f", which saw it coming from {r.seen_source}" if r.seen_source else ""
        instead = f" It holds the port instead of {_component(target)}." if target.answers not in ("", "token") else ""
        return f"{where} reaches `edgecheck listen` (token proven){seen}.{instead}" + nat_words(r)
    if r.method == "tls":
        return (f"{where}: {_component(target)} completed a TLS handshake ({r.tls.get('version') or 'TLS'}); "
                "its certificate was not verified: this checks reachability, not trust.")
    if r.method in ("http", "https"):
        return f"{where}: {_component(target)} answered over HTTP (status {r.http.get('status')})."
    return f"{where}: TCP connection established ({r.connect_ms} ms)."


def _silence(where: str, r: "ProbeResult", listener_on_node: bool) -> Verdict:
    if r.method == "token" and listener_on_node:
        return (Status.FAIL, Reason.NO_RESPONSE,
                f"{where}: no answer to {r.sends} datagram(s) and no ICMP error, while `edgecheck listen` answered "
                "on this node's other ports with the same token: the datagrams are dropped on the way or by the "
                "node's own filter.")
    if r.method == "token":
        return (Status.WARN, Reason.NO_RESPONSE,
                f"{where}: {r.detail}. Without `edgecheck listen` answering on this node, UDP silence cannot be "
                "told from a port nothing answers on (a joined node's VXLAN socket stays silent): unconfirmed.")
    return Status.FAIL, Reason.NO_RESPONSE, f"{where} accepts connections, but {r.detail}."


def _blocked(where: str, r: "ProbeResult") -> Verdict:
    from edgecheck.reach.probeloop import Outcome

    reasons = {Outcome.REFUSED: Reason.REFUSED, Outcome.TIMEOUT: Reason.TIMEOUT,
               Outcome.UNREACHABLE: Reason.UNREACHABLE}
    reason = reasons.get(r.outcome)
    if reason is None:
        return Status.FAIL, Reason.INTERNAL_ERROR, f"{where}: the probe could not be made: {r.detail}."
    if r.blocked_locally:  # EPERM, or an ICMP error this host sent itself (SPEC 7.1)
        return Status.FAIL, Reason.HOST_FIREWALL, f"{where}: this host's own packet filter stopped it: {r.detail}."
    return Status.FAIL, reason, f"{where}: {r.detail}."
