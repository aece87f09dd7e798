"""The outcome of a pure host-check decision, before it becomes a CheckResult."""

from __future__ import annotations

from dataclasses import dataclass

from edgecheck.model import Reason, Status


@dataclass(frozen=True)
class Decision:
    status: Status
    reason: Reason
    message: str
    remediation: str = ""
