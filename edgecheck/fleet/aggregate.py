"""Add reports up one at a time; keep only what the summary needs.

    agg = FleetAggregator(stale_after=3600)
    for item in reports:            # NodeReport or InvalidInput, in any order
        agg.add(item)
    with agg.summary() as summary:
        ...

Per node: one row in the disk-backed NodeStore (store.py). In memory: one CauseDef per distinct
cause (first node's wording, a bounded list of example check ids). Nothing else of a report
survives `add`, so memory does not grow with the number of reports.

Decisions (documented in the README and the command's help):
- Node identity is the report's hostname. Two reports of one hostname: the newer generated_at is
  counted, the other is listed under duplicates (a directory that accumulated runs, or two
  machines with one name, which Kubernetes would refuse anyway).
- Staleness is measured from the newest report (`stale_from="newest"`, default), so an archive
  summarised next week still shows which node did not take part in a run; `"now"` measures from
  the clock of the machine running the summary. A report dated more than CLOCK_AHEAD_SLACK in
  the future of that clock is flagged as clock-ahead and never becomes the reference, so one
  node with a wrong clock cannot make every other report look stale.
- Failing causes: those on every not-ready node first (one shared firewall, DNS forwarder or
  proxy is the usual story), then by number of nodes, then in troubleshooting order (DNS first).
"""

from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional, Tuple, Union

from edgecheck.fleet.causes import reason_rank
from edgecheck.fleet.model import (
    EXAMPLE_CHECKS,
    STATUS_FAIL,
    CauseDef,
    CauseLine,
    FleetFlags,
    InvalidInput,
    NodeCause,
    NodeReport,
)
from edgecheck.fleet.store import NodeStore
from edgecheck.fleet.summary import FleetSummary, rfc3339

DEFAULT_STALE_AFTER = 3600.0  # seconds; an Ansible run over a site takes minutes
CLOCK_AHEAD_SLACK = 300.0  # seconds a report may be "from the future" before it is flagged
STALE_FROM = ("newest", "now")


class FleetAggregator:
    def __init__(self, *, stale_after: float = DEFAULT_STALE_AFTER, stale_from: str = "newest",
                 now: Optional[float] = None, site: str = "") -> None:
        if stale_from not in STALE_FROM:
            raise ValueError(f"stale_from must be one of {STALE_FROM}")
        self.stale_after = max(0.0, float(stale_after))
        self.stale_from = stale_from
        self.now = now
        self.site = site
        self.files_read = 0
        self.store = NodeStore()
        self._causes: Dict[Tuple[str, str], CauseDef] = {}
        self._cause_list: List[CauseDef] = []

    # ------------------------------------------------------------------ input

    def add(self, item: Union[NodeReport, InvalidInput]) -> None:
        if isinstance(item, InvalidInput):
            self.add_invalid(item)
        else:
            self.add_node(item)

    def add_invalid(self, item: InvalidInput) -> None:
        self.files_read += 1
        self.store.add_invalid(item.path, item.problem)

    def add_node(self, node: NodeReport) -> None:
        self.files_read += 1
        existing = self.store.alive_node(node.hostname)
        if existing is not None:
            old_id, old_ts, old_path = existing
            # Newest wins; on a tie the larger path, so the result never depends on read order.
            if (node.timestamp, node.path) <= (old_ts, old_path):
                self.store.add_ignored(node.hostname, node.path)
                return
            self.store.retire(old_id)
            self.store.add_ignored(node.hostname, old_path)
        checks: Dict[int, int] = {}
        for cause in node.causes:
            index = self._define(cause).index
            checks[index] = checks.get(index, 0) + max(1, len(cause.checks))
        signature = ",".join(str(i) for i in sorted(i for i in checks if self._cause_list[i].status == STATUS_FAIL))
        p, w, f, s = node.summary
        params = dict(node.params)
        self.store.add_node(
            (node.hostname, node.path, node.generated_at, node.timestamp, node.version, params.get("region", ""),
             params.get("mode", ""), params.get("phase", ""), params.get("k8s_version", ""), int(node.ready),
             p, w, f, s, int(node.has_findings), signature),
            sorted(checks.items()),
        )

    def _define(self, cause: NodeCause) -> CauseDef:
        key = (cause.status, cause.cause)
        definition = self._causes.get(key)
        if definition is None:
            definition = CauseDef(
                index=len(self._cause_list), cause=sys.intern(cause.cause), status=cause.status, reason=cause.reason,
                title=cause.title, advice=cause.advice, command=cause.command, source=cause.source,
            )
            self._causes[key] = definition
            self._cause_list.append(definition)
        if len(definition.example_checks) < EXAMPLE_CHECKS:
            for check_id in cause.checks:
                if check_id not in definition.example_checks:
                    definition.example_checks.append(check_id)
                    if len(definition.example_checks) >= EXAMPLE_CHECKS:
                        break
        return definition

    # ------------------------------------------------------------------ result

    def summary(self) -> FleetSummary:
        """The summary; it reads the store lazily, so close it (or use `with`) when done."""
        store = self.store
        now = time.time() if self.now is None else self.now
        horizon = now + CLOCK_AHEAD_SLACK
        node_count = int(store.scalar("SELECT count(*) FROM nodes WHERE alive = 1"))
        reference: Optional[float] = None
        if node_count:
            newest = store.scalar("SELECT max(ts) FROM nodes WHERE alive = 1 AND ts <= ?", (horizon,))
            reference = now if self.stale_from == "now" or newest is None else float(newest)
        stale_before = (reference - self.stale_after) if (reference is not None and self.stale_after) else None

        not_ready = int(store.scalar("SELECT count(*) FROM nodes WHERE alive = 1 AND ready = 0"))
        counts = {
            cause: (int(n), int(checks))
            for cause, n, checks in store.rows(
                "SELECT c.cause, count(*), sum(c.checks) FROM node_causes c JOIN nodes n ON n.id = c.node "
                "WHERE n.alive = 1 GROUP BY c.cause")
        }

        def on_every(d: CauseDef) -> bool:
            return d.status == STATUS_FAIL and not_ready > 0 and counts[d.index][0] == not_ready

        present = [d for d in self._cause_list if d.index in counts]
        failing = sorted((d for d in present if d.status == STATUS_FAIL),
                         key=lambda d: (not on_every(d), -counts[d.index][0], reason_rank(d.reason), d.cause))
        warnings = sorted((d for d in present if d.status != STATUS_FAIL),
                          key=lambda d: (-counts[d.index][0], reason_rank(d.reason), d.cause))

        def line(d: CauseDef, label: str) -> CauseLine:
            return CauseLine(
                number=label, index=d.index, cause=d.cause, status=d.status, reason=d.reason, title=d.title,
                advice=d.advice, command=d.command, source=d.source, node_count=counts[d.index][0],
                check_count=counts[d.index][1], example_checks=tuple(d.example_checks),
                on_every_failing_node=on_every(d),
            )

        return FleetSummary(
            store=store,
            generated_at=rfc3339(now),
            reference_time=rfc3339(reference) if reference is not None else None,
            stale_after_seconds=self.stale_after,
            stale_from=self.stale_from,
            site=self.site,
            node_count=node_count,
            ready_count=node_count - not_ready,
            failing=tuple(line(d, f"F{i + 1}") for i, d in enumerate(failing)),
            warnings=tuple(line(d, f"W{i + 1}") for i, d in enumerate(warnings)),
            flags=_flags(store, horizon, stale_before),
            invalid_count=int(store.scalar("SELECT count(*) FROM invalid")),
            files_read=self.files_read,
            horizon=horizon,
            stale_before=stale_before,
        )


def _flags(store: NodeStore, horizon: float, stale_before: Optional[float]) -> FleetFlags:
    return FleetFlags(
        stale=int(store.scalar("SELECT count(*) FROM nodes WHERE alive = 1 AND ts <= ? AND ts < ?",
                               (horizon, stale_before))) if stale_before is not None else 0,
        clock_ahead=int(store.scalar("SELECT count(*) FROM nodes WHERE alive = 1 AND ts > ?", (horizon,))),
        versions=_counts(store, "version"),
        mixed={name: values for name in ("region", "mode", "phase", "k8s_version")
               for values in [_counts(store, name)] if len(values) > 1},
        duplicates=int(store.scalar("SELECT count(DISTINCT hostname) FROM ignored")),
        without_findings=int(store.scalar("SELECT count(*) FROM nodes WHERE alive = 1 AND has_findings = 0")),
    )


def _counts(store: NodeStore, column: str) -> Dict[str, int]:
    rows = store.rows(f"SELECT {column}, count(*) FROM nodes WHERE alive = 1 GROUP BY {column}")
    return dict(sorted(((str(v), int(n)) for v, n in rows), key=lambda kv: (-kv[1], kv[0])))
