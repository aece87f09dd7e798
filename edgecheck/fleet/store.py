"""Disk-backed per-node state: one row per node, its causes, duplicates and skipped files.

SQLite (standard library) with an empty file name is "a private, temporary on-disk database"
that SQLite deletes when the connection closes; its page cache is capped (CACHE_KIB), and
beyond that pages spill to the temporary file. Sorting (not-ready first, natural hostname
order) and grouping happen in SQL. So the fleet's memory is the cache plus one report being
parsed plus one definition per distinct cause, whatever the number of nodes.
(https://www.sqlite.org/inmemorydb.html, "Temporary Databases")
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any, Iterator, List, Optional, Sequence, Tuple

CACHE_KIB = 4096

_SCHEMA = """
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY,
    hostname TEXT NOT NULL, sortkey TEXT NOT NULL, path TEXT NOT NULL,
    generated_at TEXT NOT NULL, ts REAL NOT NULL, version TEXT NOT NULL,
    region TEXT NOT NULL, mode TEXT NOT NULL, phase TEXT NOT NULL, k8s_version TEXT NOT NULL,
    ready INTEGER NOT NULL, n_pass INTEGER NOT NULL, n_warn INTEGER NOT NULL, n_fail INTEGER NOT NULL,
    n_skip INTEGER NOT NULL, has_findings INTEGER NOT NULL, signature TEXT NOT NULL,
    alive INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX nodes_host ON nodes (hostname, alive);
CREATE INDEX nodes_order ON nodes (alive, ready, sortkey, hostname);
CREATE TABLE node_causes (cause INTEGER NOT NULL, node INTEGER NOT NULL, checks INTEGER NOT NULL);
CREATE INDEX node_causes_cause ON node_causes (cause, node);
CREATE INDEX node_causes_node ON node_causes (node);
CREATE TABLE ignored (hostname TEXT NOT NULL, path TEXT NOT NULL);
CREATE TABLE invalid (id INTEGER PRIMARY KEY, path TEXT NOT NULL, problem TEXT NOT NULL);
CREATE TABLE seen (path TEXT PRIMARY KEY) WITHOUT ROWID;
"""

NODE_COLUMNS = ("id, hostname, path, generated_at, ts, version, region, mode, phase, k8s_version, ready, "
                "n_pass, n_warn, n_fail, n_skip, has_findings")
ORDER = "ready, sortkey, hostname"


def natural_sortkey(text: str) -> str:
    """A string that sorts like natural order: digit runs zero-padded (edge-2 before edge-10)."""
    return re.sub(r"\d+", lambda m: m.group(0).lstrip("0").rjust(20, "0"), text.lower())


class NodeStore:
    def __init__(self) -> None:
        self.db = sqlite3.connect("", isolation_level=None)  # "": temporary on-disk database
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA temp_store = FILE")
        self.db.executescript(_SCHEMA)
        self.db.execute("BEGIN")  # one transaction for all inserts: fast, and nothing to roll back

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    # ------------------------------------------------------------------ writes

    def alive_node(self, hostname: str) -> Optional[Tuple[int, float, str]]:
        return self.db.execute("SELECT id, ts, path FROM nodes WHERE hostname = ? AND alive = 1",
                               (hostname,)).fetchone()

    def retire(self, node_id: int) -> None:
        self.db.execute("UPDATE nodes SET alive = 0 WHERE id = ?", (node_id,))

    def add_ignored(self, hostname: str, path: str) -> None:
        self.db.execute("INSERT INTO ignored VALUES (?, ?)", (hostname, path))

    def first_time(self, path: str) -> bool:
        """True the first time `path` is offered (the input walk reads each file once)."""
        return self.db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (path,)).rowcount == 1

    def add_invalid(self, path: str, problem: str) -> None:
        self.db.execute("INSERT INTO invalid (path, problem) VALUES (?, ?)", (path, problem))

    def add_node(self, values: Sequence[object], causes: Sequence[Tuple[int, int]]) -> None:
        """values: hostname, path, generated_at, ts, version, region, mode, phase, k8s_version,
        ready, pass, warn, fail, skip, has_findings, signature; causes: (cause index, checks)."""
        hostname = str(values[0])
        cur = self.db.execute(
            "INSERT INTO nodes (hostname, sortkey, path, generated_at, ts, version, region, mode, phase, "
            "k8s_version, ready, n_pass, n_warn, n_fail, n_skip, has_findings, signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (hostname, natural_sortkey(hostname), *values[1:]),
        )
        node_id = cur.lastrowid
        self.db.executemany("INSERT INTO node_causes VALUES (?, ?, ?)", [(c, node_id, n) for c, n in causes])

    # ------------------------------------------------------------------ reads

    def scalar(self, sql: str, args: Sequence[object] = ()) -> Any:
        return self.db.execute(sql, tuple(args)).fetchone()[0]

    def rows(self, sql: str, args: Sequence[object] = ()) -> Iterator[tuple]:
        cur = self.db.execute(sql, tuple(args))
        while True:
            batch = cur.fetchmany(500)
            if not batch:
                return
            yield from batch

    def causes_of(self, node_ids: List[int]) -> dict:
        """node id -> [(cause index, checks)] for a batch of nodes."""
        out: dict = {i: [] for i in node_ids}
        if node_ids:
            marks = ",".join("?" * len(node_ids))
            for node, cause, checks in self.db.execute(
                    f"SELECT node, cause, checks FROM node_causes WHERE node IN ({marks})", node_ids):
                out[node].append((cause, checks))
        return out
