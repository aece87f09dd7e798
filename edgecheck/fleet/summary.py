"""The fleet summary: totals and causes in memory, nodes read back from the store in order.

Renderers iterate (`nodes()`, `cause_nodes()`, `patterns()`, ...) instead of indexing lists, so
a summary of 10,000 nodes is written out without ever being held whole.
"""

from __future__ import annotations

import time
from itertools import groupby
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Tuple

from edgecheck.fleet.model import CauseLine, Duplicate, FleetFlags, InvalidInput, NodeLine, Pattern
from edgecheck.fleet.store import NODE_COLUMNS, ORDER

if TYPE_CHECKING:
    from edgecheck.fleet.store import NodeStore


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class FleetSummary:
    def __init__(self, *, store: "NodeStore", generated_at: str, reference_time: Optional[str],
                 stale_after_seconds: float, stale_from: str, site: str, node_count: int, ready_count: int,
                 failing: Tuple[CauseLine, ...], warnings: Tuple[CauseLine, ...], flags: FleetFlags,
                 invalid_count: int, files_read: int, horizon: float, stale_before: Optional[float]) -> None:
        self._store = store
        self.generated_at = generated_at
        self.reference_time = reference_time  # staleness is measured from here
        self.stale_after_seconds = stale_after_seconds  # 0: not checked
        self.stale_from = stale_from  # "newest" or "now"
        self.site = site
        self.node_count = node_count
        self.ready_count = ready_count
        self.failing = failing  # on every not-ready node first, then by node count
        self.warnings = warnings
        self.flags = flags
        self.invalid_count = invalid_count
        self.files_read = files_read
        self._horizon = horizon  # later than this: clock ahead
        self._stale_before = stale_before
        self._position: Dict[int, Tuple[str, int]] = {c.index: ("fail", i) for i, c in enumerate(failing)}
        self._position.update({c.index: ("warn", i) for i, c in enumerate(warnings)})

    # ------------------------------------------------------------------ totals

    @property
    def not_ready_count(self) -> int:
        return self.node_count - self.ready_count

    @property
    def all_ready(self) -> bool:
        return self.node_count > 0 and self.not_ready_count == 0

    @property
    def exit_code(self) -> int:
        """SPEC 7.5: 0 every node ready, 1 otherwise (or an invalid file), 2 no valid report."""
        if not self.node_count:
            return 2
        return 0 if self.all_ready and not self.invalid_count else 1

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "FleetSummary":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ nodes

    def nodes(self, *, not_ready_only: bool = False, stale: bool = False, clock_ahead: bool = False,
              limit: Optional[int] = None) -> Iterator[NodeLine]:
        """Nodes in summary order: not ready first, natural hostname order within each."""
        where, args = ["alive = 1"], []  # type: Tuple[List[str], List[object]]
        if not_ready_only:
            where.append("ready = 0")
        if stale:
            if self._stale_before is None:
                return iter(())
            where.append("ts <= ? AND ts < ?")
            args += [self._horizon, self._stale_before]
        if clock_ahead:
            where.append("ts > ?")
            args.append(self._horizon)
        return self._node_lines(f"SELECT {NODE_COLUMNS} FROM nodes WHERE {' AND '.join(where)} ORDER BY {ORDER}"
                                + (f" LIMIT {int(limit)}" if limit is not None else ""), args)

    def cause_nodes(self, cause: CauseLine, limit: Optional[int] = None) -> Iterator[str]:
        """Hostnames of the nodes with this cause, in node order."""
        sql = ("SELECT n.hostname FROM node_causes c JOIN nodes n ON n.id = c.node "
               f"WHERE c.cause = ? AND n.alive = 1 ORDER BY n.{ORDER.replace(', ', ', n.')}")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return (row[0] for row in self._store.rows(sql, (cause.index,)))

    def patterns(self) -> List[Pattern]:
        """Groups of not-ready nodes failing with exactly the same causes; biggest first."""
        out = []
        for signature, n in self._store.rows(
                "SELECT signature, count(*) FROM nodes WHERE alive = 1 AND ready = 0 GROUP BY signature"):
            positions = tuple(sorted(self._position[int(i)][1] for i in signature.split(",") if i))
            out.append(Pattern(failing=positions, node_count=int(n), key=signature))
        out.sort(key=lambda p: (-p.node_count, p.failing))
        return out

    def pattern_nodes(self, pattern: Pattern, limit: Optional[int] = None) -> Iterator[NodeLine]:
        sql = (f"SELECT {NODE_COLUMNS} FROM nodes WHERE alive = 1 AND ready = 0 AND signature = ? ORDER BY {ORDER}"
               + (f" LIMIT {int(limit)}" if limit is not None else ""))
        return self._node_lines(sql, [pattern.key])

    def _node_lines(self, sql: str, args: List[object]) -> Iterator[NodeLine]:
        rows = self._store.rows(sql, args)
        while True:
            batch = [row for _, row in zip(range(500), rows)]
            if not batch:
                return
            causes = self._store.causes_of([row[0] for row in batch])
            for row in batch:
                yield self._line(row, causes[row[0]])

    def _line(self, row: tuple, causes: List[Tuple[int, int]]) -> NodeLine:
        (_id, hostname, path, generated_at, ts, version, region, mode, phase, k8s, ready,
         n_pass, n_warn, n_fail, n_skip, has_findings) = row
        fails = sorted((self._position[c][1], n) for c, n in causes if self._position[c][0] == "fail")
        warns = sorted(self._position[c][1] for c, _ in causes if self._position[c][0] == "warn")
        ahead = ts > self._horizon
        return NodeLine(
            hostname=hostname, path=path, ready=bool(ready), summary=(n_pass, n_warn, n_fail, n_skip),
            generated_at=generated_at, version=version,
            params=(("region", region), ("mode", mode), ("phase", phase), ("k8s_version", k8s)),
            failing=tuple(p for p, _ in fails), failing_checks=tuple(n for _, n in fails), warning=tuple(warns),
            stale=self._stale_before is not None and not ahead and ts < self._stale_before,
            clock_ahead=ahead, has_findings=bool(has_findings),
        )

    # ------------------------------------------------------------------ inputs

    def duplicates(self, limit: Optional[int] = None) -> Iterator[Duplicate]:
        """Hostnames with several reports: the one counted (newest) and the ones ignored."""
        rows = self._store.rows("SELECT i.hostname, n.path, i.path FROM ignored i JOIN nodes n "
                                "ON n.hostname = i.hostname AND n.alive = 1 ORDER BY n.sortkey, i.hostname, i.path")
        for shown, (hostname, group) in enumerate(groupby(rows, key=lambda r: (r[0], r[1]))):
            if limit is not None and shown >= limit:
                return
            yield Duplicate(hostname=hostname[0], kept=hostname[1], ignored=tuple(r[2] for r in group))

    def longest_hostname(self) -> int:
        return int(self._store.scalar("SELECT coalesce(max(length(hostname)), 0) FROM nodes WHERE alive = 1"))

    def invalid(self, limit: Optional[int] = None) -> Iterator[InvalidInput]:
        sql = "SELECT path, problem FROM invalid ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        return (InvalidInput(path, problem) for path, problem in self._store.rows(sql))
