"""Pure classification helpers: errno -> Reason, and connect attempts -> one verdict."""

from __future__ import annotations

import errno
import ipaddress
import os
from collections import Counter
from dataclasses import field
from typing import List, Optional, Sequence

from edgecheck.evidence import ConnectAttempt
from edgecheck.model import Reason, Status
from edgecheck.records import record

REFUSED_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET}
TIMEOUT_ERRNOS = {errno.ETIMEDOUT}


def reason_for_errno(code: Optional[int]) -> Reason:
    """Refused and timed out are told apart; EPERM/EACCES is this host's own filter refusing the
    packet as it is sent (nf_hook returns -EPERM to the sender on NF_DROP); every other errno (no
    route, ...) means the packet found no way out: unreachable."""
    if code in (errno.EPERM, errno.EACCES):
        return Reason.HOST_FIREWALL
    if code in REFUSED_ERRNOS:
        return Reason.REFUSED
    if code in TIMEOUT_ERRNOS:
        return Reason.TIMEOUT
    return Reason.UNREACHABLE


def describe_errno(code: Optional[int]) -> str:
    if code is None:
        return "no answer within the timeout"
    if code in (errno.EPERM, errno.EACCES):
        return f"this host's packet filter refused to send it ({errno.errorcode.get(code, code)})"
    return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"


@record
class ConnectVerdict:
    """All addresses judged together: one blocked VIP of two is a failure (intermittent pulls)."""

    status: Status
    reason: Reason
    working: List[ConnectAttempt] = field(default_factory=list)
    failing: List[ConnectAttempt] = field(default_factory=list)
    ignored: List[ConnectAttempt] = field(default_factory=list)  # family this host has no route for


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


def judge_connects(attempts: Sequence[ConnectAttempt]) -> ConnectVerdict:
    """Pass only if every address connects.

    Exception: when every address of one IP family fails with "network unreachable" (this host has
    no route for that family at all) and the other family fully works, clients never use that
    family (happy eyeballs / address sorting), so it is reported but does not fail the check.
    """
    working = [a for a in attempts if a.ok]
    failing = [a for a in attempts if not a.ok]
    ignored: List[ConnectAttempt] = []
    if failing and working:
        for fam in (4, 6):
            fam_fail = [a for a in failing if _family(a.address) == fam]
            fam_all = [a for a in attempts if _family(a.address) == fam]
            other_fail = [a for a in failing if _family(a.address) != fam]
            if (fam_fail and len(fam_fail) == len(fam_all) and not other_fail
                    and all(a.errno == errno.ENETUNREACH for a in fam_fail)):
                ignored = fam_fail
                failing = []
    if not failing:
        if not working:
            return ConnectVerdict(Status.FAIL, Reason.UNREACHABLE, working, failing, ignored)
        return ConnectVerdict(Status.PASS, Reason.OK, working, failing, ignored)
    counts = Counter(a.reason for a in failing)
    top = max(counts.values())
    reason = next(a.reason for a in failing if counts[a.reason] == top)
    return ConnectVerdict(Status.FAIL, reason or Reason.UNREACHABLE, working, failing, ignored)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("ss") else "s")
