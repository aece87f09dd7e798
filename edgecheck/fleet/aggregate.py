"""Add reports up one at a time; keep only what the summary needs.

    agg = FleetAggregator(stale_after=3600)
    for item in reports:            # NodeReport or InvalidInput, in any order
        agg.add(item)
    summary = agg.summary()

Per node the aggregator keeps one NodeRow (hostname, counts, the compared inputs and the
(cause, check count) pairs); per distinct cause one CauseDef with the first node's wording and a
bounded list of example check ids. Nothing else of a report survives `add`.

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

import re
import time
from collections import Counter
from typing import Dict, List, Optional, Tuple, Union

from edgecheck.fleet.causes import reason_rank
from edgecheck.fleet.model import (
    COMPARED_PARAMS,
    EXAMPLE_CHECKS,
    STATUS_FAIL,
    CauseDef,
    CauseLine,
    Duplicate,
    FleetFlags,
    FleetSummary,
    InvalidInput,
    NodeLine,
    NodeReport,
    NodeRow,
)

DEFAULT_STALE_AFTER = 3600.0  # seconds; an Ansible run over a site takes minutes
CLOCK_AHEAD_SLACK = 300.0  # seconds a report may be "from the future" before it is flagged
STALE_FROM = ("newest", "now")


def natural_key(text: str) -> Tuple[object, ...]:
    """edge-2 before edge-10."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


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
        self._rows: List[NodeRow] = []
        self._row_of_host: Dict[str, int] = {}
        self._causes: Dict[Tuple[str, str], CauseDef] = {}
        self._cause_list: List[CauseDef] = []
        self._invalid: List[InvalidInput] = []
        self._ignored: Dict[str, List[str]] = {}  # hostname -> paths of reports not counted

    # ------------------------------------------------------------------ input

    def add(self, item: Union[NodeReport, InvalidInput]) -> None:
        if isinstance(item, InvalidInput):
            self.add_invalid(item)
        else:
            self.add_node(item)

    def add_invalid(self, item: InvalidInput) -> None:
        self.files_read += 1
        self._invalid.append(item)

    def add_node(self, node: NodeReport) -> None:
        self.files_read += 1
        existing = self._row_of_host.get(node.hostname)
        if existing is not None:
            old = self._rows[existing]
            if node.timestamp <= old.timestamp:
                self._ignored.setdefault(node.hostname, []).append(node.path)
                return
            old.alive = False
            self._ignored.setdefault(node.hostname, []).append(old.path)
        per_status: Dict[str, Dict[int, int]] = {"fail": {}, "warn": {}}
        for cause in node.causes:
            definition = self._define(cause.status, cause)
            bucket = per_status[cause.status]
            bucket[definition.index] = bucket.get(definition.index, 0) + max(1, len(cause.checks))
        row = NodeRow(node, tuple(per_status["fail"].items()), tuple(per_status["warn"].items()))
        self._row_of_host[node.hostname] = len(self._rows)
        self._rows.append(row)

    def _define(self, status: str, cause) -> CauseDef:
        key = (status, cause.cause)
        definition = self._causes.get(key)
        if definition is None:
            definition = CauseDef(
                index=len(self._cause_list), cause=cause.cause, status=status, reason=cause.reason,
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
        now = time.time() if self.now is None else self.now
        rows = [r for r in self._rows if r.alive]
        rows.sort(key=lambda r: (r.ready, natural_key(r.hostname), r.hostname))
        ahead = [r.timestamp > now + CLOCK_AHEAD_SLACK for r in rows]
        reference: Optional[float] = None
        if rows:
            if self.stale_from == "now":
                reference = now
            else:
                in_time = [r.timestamp for r, a in zip(rows, ahead) if not a]
                reference = max(in_time) if in_time else now
        stale = [
            bool(self.stale_after) and reference is not None and not a and reference - r.timestamp > self.stale_after
            for r, a in zip(rows, ahead)
        ]

        # Cause membership, in node order.
        members: Dict[int, List[int]] = {}
        checks: Counter = Counter()
        for pos, row in enumerate(rows):
            for index, n in row.fail_causes + row.warn_causes:
                members.setdefault(index, []).append(pos)
                checks[index] += n
        not_ready = sum(1 for r in rows if not r.ready)

        def on_every(definition: CauseDef) -> bool:
            return definition.status == STATUS_FAIL and not_ready > 0 and len(members[definition.index]) == not_ready

        present = [d for d in self._cause_list if d.index in members]
        failing = sorted(
            (d for d in present if d.status == STATUS_FAIL),
            key=lambda d: (not on_every(d), -len(members[d.index]), reason_rank(d.reason), d.cause),
        )
        warnings = sorted(
            (d for d in present if d.status != STATUS_FAIL),
            key=lambda d: (-len(members[d.index]), reason_rank(d.reason), d.cause),
        )
        position = {d.index: i for i, d in enumerate(failing)}
        position.update({d.index: i for i, d in enumerate(warnings)})

        def line(d: CauseDef, label: str) -> CauseLine:
            return CauseLine(
                number=label, cause=d.cause, status=d.status, reason=d.reason, title=d.title, advice=d.advice,
                command=d.command, source=d.source, nodes=tuple(members[d.index]), check_count=checks[d.index],
                example_checks=tuple(d.example_checks), on_every_failing_node=on_every(d),
            )

        def node_line(r: NodeRow, s: bool, a: bool) -> NodeLine:
            fails = sorted((position[i], n) for i, n in r.fail_causes)
            return NodeLine(
                hostname=r.hostname, path=r.path, ready=r.ready, summary=r.summary, generated_at=r.generated_at,
                version=r.version, params=r.params,
                failing=tuple(p for p, _ in fails), failing_checks=tuple(n for _, n in fails),
                warning=tuple(sorted(position[i] for i, _ in r.warn_causes)),
                stale=s, clock_ahead=a, has_findings=r.has_findings,
            )

        nodes = tuple(node_line(r, s, a) for r, s, a in zip(rows, stale, ahead))
        return FleetSummary(
            generated_at=rfc3339(now),
            reference_time=rfc3339(reference) if reference is not None else None,
            stale_after_seconds=self.stale_after,
            stale_from=self.stale_from,
            site=self.site,
            nodes=nodes,
            failing=tuple(line(d, f"F{i + 1}") for i, d in enumerate(failing)),
            warnings=tuple(line(d, f"W{i + 1}") for i, d in enumerate(warnings)),
            flags=self._flags(rows, stale, ahead),
            invalid=tuple(self._invalid),
            files_read=self.files_read,
        )

    def _flags(self, rows: List[NodeRow], stale: List[bool], ahead: List[bool]) -> FleetFlags:
        versions = Counter(r.version for r in rows)
        mixed: Dict[str, Dict[str, int]] = {}
        for i, name in enumerate(COMPARED_PARAMS):
            values = Counter(r.params[i][1] for r in rows)
            if len(values) > 1:
                mixed[name] = dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))
        duplicates = tuple(
            Duplicate(hostname=h, kept=self._rows[self._row_of_host[h]].path, ignored=tuple(paths))
            for h, paths in sorted(self._ignored.items(), key=lambda kv: natural_key(kv[0]))
        )
        return FleetFlags(
            stale=tuple(i for i, s in enumerate(stale) if s),
            clock_ahead=tuple(i for i, a in enumerate(ahead) if a),
            versions=dict(sorted(versions.items(), key=lambda kv: (-kv[1], kv[0]))),
            mixed=mixed,
            duplicates=duplicates,
            without_findings=sum(1 for r in rows if not r.has_findings),
        )
