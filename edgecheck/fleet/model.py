"""Data types of the fleet summary: what one report contributes, and what the fleet adds up to.

A report is reduced to a `NodeReport` as soon as it is read (a few hundred bytes: counts, the
inputs that matter for comparing nodes, and its causes); the report itself is then dropped. The
aggregator keeps one compact `NodeRow` per node and one `CauseDef` per distinct cause, never a
whole report, so memory does not grow with the size of the reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# Report fields compared across nodes: a site checked with different inputs is flagged, because
# a difference in these changes what was checked (SPEC 1: region, mode, phase, k8s version).
COMPARED_PARAMS = ("region", "mode", "phase", "k8s_version")

STATUS_FAIL = "fail"
STATUS_WARN = "warn"


@dataclass(frozen=True)
class NodeCause:
    """One root cause on one node (a `findings` entry, or the fallback for one check)."""

    cause: str  # stable id, e.g. "dns-timeout:nameservers=10.0.0.2"
    status: str  # "fail" or "warn"
    reason: str
    title: str
    checks: Tuple[str, ...]  # check ids on this node
    advice: Tuple[str, ...] = ()
    command: str = ""
    source: str = "findings"  # "findings" (the report's own grouping) or "checks" (fallback)


@dataclass(frozen=True)
class NodeReport:
    """What the fleet needs from one valid report."""

    path: str
    hostname: str
    generated_at: str  # as written in the report (RFC 3339 UTC)
    timestamp: float  # generated_at as seconds since the epoch
    version: str  # agent.version
    params: Tuple[Tuple[str, str], ...]  # COMPARED_PARAMS values, as text ("" when absent)
    ready: bool
    summary: Tuple[int, int, int, int]  # pass, warn, fail, skip
    causes: Tuple[NodeCause, ...]
    has_findings: bool  # False: an older report, causes were built per check


@dataclass(frozen=True)
class InvalidInput:
    """A file that is not a usable report: named on stderr, skipped, and the exit is non-zero."""

    path: str
    problem: str


class NodeRow:
    """The per-node state the aggregator keeps: small on purpose (thousands of these)."""

    __slots__ = ("hostname", "path", "generated_at", "timestamp", "version", "params", "ready", "summary",
                 "fail_causes", "warn_causes", "has_findings", "alive")

    def __init__(self, node: NodeReport, fail_causes: Tuple[Tuple[int, int], ...],
                 warn_causes: Tuple[Tuple[int, int], ...]) -> None:
        self.hostname = node.hostname
        self.path = node.path
        self.generated_at = node.generated_at
        self.timestamp = node.timestamp
        self.version = node.version
        self.params = node.params
        self.ready = node.ready
        self.summary = node.summary
        self.fail_causes = fail_causes  # (cause index, number of checks) pairs
        self.warn_causes = warn_causes
        self.has_findings = node.has_findings
        self.alive = True  # False once a newer report of the same hostname replaced it


@dataclass
class CauseDef:
    """A distinct (status, cause) seen in the fleet; its wording comes from the first node."""

    index: int
    cause: str
    status: str
    reason: str
    title: str
    advice: Tuple[str, ...]
    command: str
    source: str
    example_checks: List[str] = field(default_factory=list)  # bounded: EXAMPLE_CHECKS


# How many distinct check ids a cause keeps as examples (the per-node lists are not kept).
EXAMPLE_CHECKS = 12


# ----------------------------------------------------------------------------- the summary


@dataclass(frozen=True)
class NodeLine:
    """One node in the summary."""

    hostname: str
    path: str
    ready: bool
    summary: Tuple[int, int, int, int]  # pass, warn, fail, skip
    generated_at: str
    version: str
    params: Tuple[Tuple[str, str], ...]  # COMPARED_PARAMS (name, value) pairs
    failing: Tuple[int, ...]  # positions in FleetSummary.failing, ascending
    failing_checks: Tuple[int, ...]  # checks on this node under each of `failing`
    warning: Tuple[int, ...]  # positions in FleetSummary.warnings, ascending
    stale: bool
    clock_ahead: bool
    has_findings: bool


@dataclass(frozen=True)
class CauseLine:
    """One cause across the fleet, with the nodes it is on."""

    number: str  # display label, "F1", "W3": the same in text, HTML and JSON
    cause: str
    status: str
    reason: str
    title: str
    advice: Tuple[str, ...]
    command: str
    source: str
    nodes: Tuple[int, ...]  # positions in FleetSummary.nodes, in node order
    check_count: int  # checks under this cause, summed over its nodes
    example_checks: Tuple[str, ...]
    on_every_failing_node: bool


@dataclass(frozen=True)
class Duplicate:
    hostname: str
    kept: str  # path of the newest report, the one counted
    ignored: Tuple[str, ...]


@dataclass(frozen=True)
class FleetFlags:
    stale: Tuple[int, ...]  # node positions
    clock_ahead: Tuple[int, ...]
    versions: Dict[str, int]  # edgecheck version -> nodes
    mixed: Dict[str, Dict[str, int]]  # param -> value -> nodes, only params with > 1 value
    duplicates: Tuple[Duplicate, ...]
    without_findings: int  # nodes whose report had no `findings` (causes built per check)

    @property
    def mixed_versions(self) -> bool:
        return len(self.versions) > 1


@dataclass(frozen=True)
class FleetSummary:
    generated_at: str  # when the summary was made (RFC 3339 UTC)
    reference_time: Optional[str]  # staleness is measured from here
    stale_after_seconds: float  # 0: staleness not checked
    stale_from: str  # "newest" or "now"
    site: str
    nodes: Tuple[NodeLine, ...]  # not ready first, then ready; natural hostname order in each
    failing: Tuple[CauseLine, ...]
    warnings: Tuple[CauseLine, ...]
    flags: FleetFlags
    invalid: Tuple[InvalidInput, ...]
    files_read: int

    @property
    def ready_count(self) -> int:
        return sum(1 for n in self.nodes if n.ready)

    @property
    def not_ready_count(self) -> int:
        return len(self.nodes) - self.ready_count

    @property
    def all_ready(self) -> bool:
        return bool(self.nodes) and self.not_ready_count == 0

    @property
    def exit_code(self) -> int:
        """SPEC 7.5: 0 every node ready, 1 otherwise (or an invalid file), 2 no valid report."""
        if not self.nodes:
            return 2
        return 0 if self.all_ready and not self.invalid else 1
