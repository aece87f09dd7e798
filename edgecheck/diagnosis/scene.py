"""What advice may lean on besides the checks themselves: the run's mode and phase, whether a
proxy carried some probes, and small readers of the typed evidence every advice shares."""

from __future__ import annotations

import datetime
from typing import List, Optional, Sequence, Tuple

from edgecheck.evidence import ClockEvidence, Connects, ProxyRoute, Resolution, TlsResult
from edgecheck.model import CheckResult, Kind, Mode, Phase, Reason, Report
from edgecheck.probes import tlskind
from edgecheck.records import record

MAX_LISTED = 6  # addresses named in one sentence before "and N more"


@record(frozen=True)
class Scene:
    mode: Mode = Mode.PUBLIC
    phase: Phase = Phase.JOIN
    proxy_in_use: bool = False  # some HTTP(S) probe of this run went through a proxy
    clock: Optional[ClockEvidence] = None  # the clock check's evidence, when it ran
    now: Optional[datetime.datetime] = None  # when the run started, by this host's clock
    raven_gateways: Tuple[str, ...] = ()

    @property
    def dedicated(self) -> bool:
        return self.mode is Mode.DEDICATED


def scene_of(report: Report) -> Scene:
    params = report.params or {}
    clock = next((c.evidence.find(ClockEvidence) for c in report.checks if c.kind is Kind.CLOCK), None)
    now = tlskind.parse_time(report.generated_at)
    return Scene(
        mode=Mode(params.get("mode") or Mode.PUBLIC.value),
        phase=Phase(params.get("phase") or Phase.JOIN.value),
        proxy_in_use=any(c.evidence.find(ProxyRoute) is not None for c in report.checks),
        clock=clock,
        now=now,
        raven_gateways=tuple(params.get("raven_gateways") or ()),
    )


def clock_explanation(check: CheckResult, scene: Scene) -> Optional[tlskind.ClockExplanation]:
    """For a certificate that is expired or not yet valid: does this run's clock offset explain
    it (SPEC 7.1: then it is grouped under the clock as its root cause)? None: not a date failure."""
    tls = check.evidence.find(TlsResult)
    if (check.reason is not Reason.TLS_VERIFY_FAILED or tls is None
            or tls.verify_kind not in (tlskind.EXPIRED, tlskind.NOT_YET_VALID)):
        return None
    cert = tls.peer_certificate
    clock = scene.clock
    return tlskind.explain_by_clock(
        tls.verify_kind or "", cert.not_before if cert else None, cert.not_after if cert else None,
        clock.offset_s if clock else None, scene.now,
        warn_s=clock.warn_s if clock else 0.0, fail_s=clock.fail_s if clock else 0.0)


def blamed_on_clock(check: CheckResult, scene: Scene) -> bool:
    explanation = clock_explanation(check, scene)
    return explanation is not None and explanation.explained is True


def listed(items: Sequence[str]) -> str:
    unique = list(dict.fromkeys(i for i in items if i))
    if len(unique) > MAX_LISTED:
        return ", ".join(unique[:MAX_LISTED]) + f" and {len(unique) - MAX_LISTED} more"
    return ", ".join(unique)


def ports_text(checks: Sequence[CheckResult]) -> str:
    """'TCP 10250 and TCP 10255', from the checks' targets."""
    labels = list(dict.fromkeys(f"{(c.target.protocol or 'tcp').upper()} {c.target.port}" for c in checks))
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def hosts_text(checks: Sequence[CheckResult]) -> str:
    return listed([c.target.host or "" for c in checks])


def ns_text(ns: Sequence[str]) -> str:
    """'nameserver 10.0.0.2', 'nameservers 10.0.0.2, 10.0.0.3', or the host's resolver when none is known."""
    if not ns:
        return "the host's resolver"
    return ("nameserver " if len(ns) == 1 else "nameservers ") + ", ".join(ns)


def nameservers(check: CheckResult) -> List[str]:
    if check.kind is Kind.DNS:  # dns:nameserver:ADDR checks are about that one nameserver
        return [check.target.host] if check.target.host else []
    res = check.evidence.find(Resolution)
    if res is None:
        return []
    return list(res.nameservers) or ([res.answered_by] if res.answered_by else [])


def resolver_source(checks: Sequence[CheckResult]) -> str:
    sources = {r.source for r in (c.evidence.find(Resolution) for c in checks) if r is not None}
    return sources.pop() if len(sources) == 1 else ""


def zone(host: str) -> str:
    """The DNS zone a forwarder rule would name for this host ("aliyuncs.com")."""
    labels = host.rstrip(".").split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else host


def failed_addresses(check: CheckResult) -> List[str]:
    """The addresses a network check could not reach, by the layer that failed."""
    connects = check.evidence.find(Connects)
    if connects is not None and connects.failed_addresses:
        return connects.failed_addresses
    # The UDP probes' own evidence: imported here, for a failed check, not by every run's diagnosis.
    from edgecheck.probes.ike import IkeEvidence
    from edgecheck.probes.ntp import NtpEvidence

    for part in (check.evidence.find(NtpEvidence), check.evidence.find(IkeEvidence)):
        if part is not None:
            failing = [o.address for o in part.exchanges if o.reason is not None]
            if failing:
                return failing
    res = check.evidence.find(Resolution)
    if res is not None and res.addresses:
        return list(res.addresses)
    return [check.target.host] if check.target.host else []
