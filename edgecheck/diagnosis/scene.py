"""What advice may lean on besides the checks themselves: the run's mode and phase, whether a
proxy carried some probes, and small readers of the typed evidence every advice shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

from edgecheck.evidence import Connects, ProxyRoute, Resolution
from edgecheck.model import CheckResult, Mode, Phase, Report
from edgecheck.probes.ike import IkeEvidence
from edgecheck.probes.ntp import NtpEvidence

MAX_LISTED = 6  # addresses named in one sentence before "and N more"


@dataclass(frozen=True)
class Scene:
    mode: Mode = Mode.PUBLIC
    phase: Phase = Phase.JOIN
    proxy_in_use: bool = False  # some HTTP(S) probe of this run went through a proxy

    @property
    def dedicated(self) -> bool:
        return self.mode is Mode.DEDICATED


def scene_of(report: Report) -> Scene:
    params = report.params or {}
    return Scene(
        mode=Mode(params.get("mode") or Mode.PUBLIC.value),
        phase=Phase(params.get("phase") or Phase.JOIN.value),
        proxy_in_use=any(c.evidence.find(ProxyRoute) is not None for c in report.checks),
    )


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


def nameservers(check: CheckResult) -> List[str]:
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
    for part in (check.evidence.find(NtpEvidence), check.evidence.find(IkeEvidence)):
        if part is not None:
            failing = [o.address for o in part.exchanges if o.reason is not None]
            if failing:
                return failing
    res = check.evidence.find(Resolution)
    if res is not None and res.addresses:
        return list(res.addresses)
    return [check.target.host] if check.target.host else []
