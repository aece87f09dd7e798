"""One NTP client exchange per address, parsed with ntplib's packet classes.

ntplib.NTPClient.request is not used: it resolves outside its timeout, needs /etc/services for
"ntp", tries only the first address and cannot see ICMP errors (NOTES). Its NTPPacket/NTPStats
do the wire format and offset/delay arithmetic.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ntplib

from edgecheck.model import Reason, Status
from edgecheck.probes.budget import Budget
from edgecheck.probes.udp import exchange
from edgecheck.records import record

NTP_PORT = 123
NTP_VERSION = 3  # what chrony/ntpdate clients send; every server answers it

# Offset thresholds between this host's clock and NTP time, for the NTP probes and the clock
# check alike (strict ">"). A synchronised host is within milliseconds, so beyond half a second
# the clock is not being disciplined and logs, metrics and traces across nodes misorder: warn.
# Beyond a minute time-bounded credentials break: Kubernetes validates tokens with go-jose's 60 s
# leeway, freshly signed certificates are not yet valid on a clock that is behind, OSS and
# registry request signatures are rejected further out (15 min); a minute is the first of those
# limits: fail.
CLOCK_OFFSET_WARN_S = 0.5
CLOCK_OFFSET_FAIL_S = 60.0

LEAP_UNSYNCHRONISED = 3
STRATUM_UNSYNCHRONISED = (0, 16)  # 0: kiss-o'-death / unspecified, 16: unsynchronised (RFC 5905)


@record
class NtpOutcome:
    address: str
    ok: bool
    offset_s: Optional[float] = None
    delay_s: Optional[float] = None
    stratum: Optional[int] = None
    leap: Optional[int] = None
    ref_id: Optional[str] = None
    reason: Optional[Reason] = None
    error: str = ""
    ms: int = 0

    @property
    def unsynchronised(self) -> bool:
        return self.ok and (self.leap == LEAP_UNSYNCHRONISED or self.stratum in STRATUM_UNSYNCHRONISED)

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"address": self.address, "ok": self.ok, "offset_s": self.offset_s,
                              "stratum": self.stratum, "delay_s": self.delay_s, "leap": self.leap,
                              "ms": self.ms}
        if self.ref_id:
            ev["ref_id"] = self.ref_id
        if self.error:
            ev["error"] = self.error
            ev["reason"] = self.reason.value if self.reason else None
        return ev


def _ref_id(stats: ntplib.NTPStats) -> str:
    ref = int(stats.ref_id)
    if stats.stratum <= 1:  # a four-letter code (e.g. GPS, or a KoD code at stratum 0)
        return ref.to_bytes(4, "big").decode("ascii", errors="replace").rstrip("\x00")
    return ".".join(str(b) for b in ref.to_bytes(4, "big"))


def query(address: str, budget: Budget, port: int = NTP_PORT) -> NtpOutcome:
    sent: List[float] = []

    def make_request(_local: object) -> bytes:
        tx = ntplib.system_to_ntp_time(time.time())
        sent.append(tx)
        return ntplib.NTPPacket(version=NTP_VERSION, mode=3, tx_timestamp=tx).to_data()

    def accept(data: bytes) -> bool:
        # Only a server reply (mode 4) echoing one of our transmit timestamps counts.
        try:
            stats = ntplib.NTPStats()
            stats.from_data(data)
        except ntplib.NTPException:
            return False
        return stats.mode == 4 and any(abs(stats.orig_timestamp - tx) < 1e-5 for tx in sent)

    ex = exchange(address, port, make_request, budget, accept)
    out = NtpOutcome(address=address, ok=False, ms=ex.ms)
    if ex.reply is None:
        out.reason = Reason.TIMEOUT if ex.reason is Reason.NO_RESPONSE else ex.reason
        out.error = ex.error
        return out
    dest = ntplib.system_to_ntp_time(time.time())
    stats = ntplib.NTPStats()
    stats.from_data(ex.reply)
    stats.dest_timestamp = dest
    out.ok = True
    out.offset_s = round(stats.offset, 6)
    out.delay_s = round(stats.delay, 6)
    out.stratum = stats.stratum
    out.leap = stats.leap
    out.ref_id = _ref_id(stats)
    return out


@record(frozen=True)
class NtpEvidence:
    """The exchange a verdict rests on (the best synchronised answer, else the first failure) and all."""

    shown: Optional[NtpOutcome]
    exchanges: Tuple[NtpOutcome, ...]

    def to_json(self) -> Dict[str, Any]:
        return {"ntp": self.shown.to_json() if self.shown else None,
                "ntp_all": [o.to_json() for o in self.exchanges]}


@record
class NtpVerdict:
    status: Status
    reason: Reason
    best: Optional[NtpOutcome]
    answered: List[NtpOutcome]
    silent: List[NtpOutcome]
    unsynchronised: List[NtpOutcome]


def judge_ntp(outcomes: Sequence[NtpOutcome]) -> NtpVerdict:
    """Pure verdict over every address's exchange."""
    answered = [o for o in outcomes if o.ok]
    silent = [o for o in outcomes if not o.ok]
    unsynced = [o for o in answered if o.unsynchronised]
    synced = [o for o in answered if not o.unsynchronised]
    if not answered:
        reasons = [o.reason for o in silent if o.reason]
        reason = max(set(reasons), key=reasons.count) if reasons else Reason.TIMEOUT
        return NtpVerdict(Status.FAIL, reason, None, answered, silent, unsynced)
    if not synced:
        return NtpVerdict(Status.WARN, Reason.CLOCK_UNSYNCHRONISED, unsynced[0], answered, silent, unsynced)
    best = min(synced, key=lambda o: o.delay_s if o.delay_s is not None else 1e9)
    offset = abs(best.offset_s or 0.0)
    if offset > CLOCK_OFFSET_FAIL_S:
        return NtpVerdict(Status.FAIL, Reason.CLOCK_OFFSET, best, answered, silent, unsynced)
    if unsynced:
        return NtpVerdict(Status.WARN, Reason.CLOCK_UNSYNCHRONISED, best, answered, silent, unsynced)
    if silent:
        return NtpVerdict(Status.WARN, silent[0].reason or Reason.TIMEOUT, best, answered, silent, unsynced)
    if offset > CLOCK_OFFSET_WARN_S:
        return NtpVerdict(Status.WARN, Reason.CLOCK_OFFSET, best, answered, silent, unsynced)
    return NtpVerdict(Status.PASS, Reason.OK, best, answered, silent, unsynced)
