"""ike: DNS, then an IKEv2 IKE_SA_INIT to every address on UDP 4500 (Raven's IPsec NAT-T).

UDP has no handshake: only an answer proves the path, so silence is a warning that says it
cannot be confirmed, while an ICMP refusal or no route is a failure.

UDP 4500 is Raven's IPsec tunnel: when the kernel knows the path to the gateway is smaller than
Ethernet's 1500 bytes (a smaller egress interface, or an ICMP too-big it learned), the check notes
what Raven's IPsec overhead leaves for pod packets (raven_mtu.py). Reading that sends nothing; no
DF probe is sent (pmtu_measure.py says why)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from edgecheck.checks.base import exchange_all
from edgecheck.model import CheckResult, Reason, Status, Target
from edgecheck.probes import ike
from edgecheck.runcontext import RunContext

if TYPE_CHECKING:
    from edgecheck.evidence import RavenMtuNote

STANDARD_MTU = 1500  # Ethernet: a path at least this large needs no note


def raven_mtu_note(address: str, timeout: float = 1.0) -> Optional["RavenMtuNote"]:
    """The IPsec note when the kernel's path MTU toward the gateway is below 1500 (no packet sent;
    `ip route get` for the interface MTU gets at most `timeout`)."""
    from edgecheck.probes import pmtu_measure

    path = pmtu_measure.kernel_path_mtu(address)
    if path is None or path >= STANDARD_MTU:
        return None
    from edgecheck.probes.raven_mtu import raven_note

    return raven_note(path, pmtu_measure.egress_route(address, timeout).interface_mtu, outer_ipv6=":" in address)


def check_ike(target: Target, ctx: RunContext) -> CheckResult:
    probing, failed, port, outcomes = exchange_all(
        target, ctx, ike.IKE_NATT_PORT, ike.probe,
        lambda a: ike.IkeOutcome(a, False, reason=Reason.NO_RESPONSE, error="no answer in time"))
    if failed:
        return failed
    verdict = ike.judge_ike(outcomes)
    shown = verdict.answered[0] if verdict.answered else (verdict.failing[0] if verdict.failing else None)
    probing.add(ike.IkeEvidence(shown, tuple(outcomes)))
    if probing.outside:
        return probing.cidr_failure()
    host = target.host
    if verdict.status is Status.PASS:
        notes = ", ".join(sorted({n for o in verdict.answered for n in (o.reply.notify if o.reply else [])}))
        detail = f" (IKE reply, notify {notes})" if notes else ""
        raven = raven_mtu_note(verdict.answered[0].address, min(1.0, max(0.1, probing.budget.left())))
        probing.add(raven)
        return probing.result(Status.PASS, Reason.OK, f"UDP {port} (IPsec NAT-T) to {host} answers an "
                              f"IKE_SA_INIT{detail}." + (f" {raven.message}" if raven else ""))
    failing = ", ".join(f"{o.address} ({o.error})" for o in verdict.failing)
    if verdict.status is Status.WARN:
        return probing.result(Status.WARN, Reason.NO_RESPONSE,
                              f"UDP {port} to {host} got no answer to an IKE_SA_INIT from {failing}; "
                              f"UDP cannot be confirmed without an answer.")
    return probing.result(Status.FAIL, verdict.reason, f"UDP {port} (IPsec NAT-T) to {host} fails: {failing}.")
