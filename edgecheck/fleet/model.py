"""Data types of the fleet summary: what one report contributes, and what the fleet adds up to.

A report is reduced to a `NodeReport` as soon as it is read (counts, the inputs that matter for
comparing nodes, its causes) and then dropped. Per-node rows go to a disk-backed store
(store.py), so memory stays flat however many reports there are; only one `CauseDef` per
distinct cause is kept in memory.
"""

from __future__ import annotations

from dataclasses import field
from typing import Dict, List, Tuple

from edgecheck.records import record

# Report fields compared across nodes: a site checked with different inputs is flagged, because
# a difference in these changes what was checked (SPEC 1: region, mode, phase, k8s version).
COMPARED_PARAMS = ("region", "mode", "phase", "k8s_version")

STATUS_FAIL = "fail"
STATUS_WARN = "warn"

# How many distinct check ids a cause keeps as examples (the per-node lists are not kept).
EXAMPLE_CHECKS = 12


@record(frozen=True)
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


@record(frozen=True)
class NodeReport:
    """What the fleet needs from one valid report."""

    path: str
    hostname: str
    generated_at: str  # as written in the report (RFC 3339)
    timestamp: float  # generated_at as seconds since the epoch
    version: str  # agent.version
    params: Tuple[Tuple[str, str], ...]  # COMPARED_PARAMS values, as text ("" when absent)
    ready: bool
    summary: Tuple[int, int, int, int]  # pass, warn, fail, skip
    causes: Tuple[NodeCause, ...]
    has_findings: bool  # False: an older report, causes were built per check


@record(frozen=True)
class InvalidInput:
    """A file that is not a usable report: named on stderr, skipped, and the exit is non-zero."""

    path: str
    problem: str


@record
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


# ----------------------------------------------------------------------------- the summary


@record(frozen=True)
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


@record(frozen=True)
class CauseLine:
    """One cause across the fleet. Its nodes come from FleetSummary.cause_nodes(cause)."""

    number: str  # display label, "F1", "W3": the same in text, HTML and JSON
    index: int  # CauseDef.index (the store's key)
    cause: str
    status: str
    reason: str
    title: str
    advice: Tuple[str, ...]
    command: str
    source: str
    node_count: int
    check_count: int  # checks under this cause, summed over its nodes
    example_checks: Tuple[str, ...]
    on_every_failing_node: bool


@record(frozen=True)
class Pattern:
    """Not-ready nodes that fail with exactly the same causes (a block of the HTML matrix)."""

    failing: Tuple[int, ...]  # positions in FleetSummary.failing
    node_count: int
    key: str  # the store's signature


@record(frozen=True)
class Duplicate:
    hostname: str
    kept: str  # path of the newest report, the one counted
    ignored: Tuple[str, ...]


@record(frozen=True)
class FleetFlags:
    stale: int  # nodes whose report is stale (FleetSummary.nodes(stale=True) lists them)
    clock_ahead: int
    versions: Dict[str, int]  # edgecheck version -> nodes
    mixed: Dict[str, Dict[str, int]]  # param -> value -> nodes, only params with > 1 value
    duplicates: int  # hostnames with more than one report
    without_findings: int  # nodes whose report had no `findings` (causes built per check)

    @property
    def mixed_versions(self) -> bool:
        return len(self.versions) > 1
