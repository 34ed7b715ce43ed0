"""The curator's SQLite database: one file under LIMI_DATA_DIR holding every table it owns.

Tables: the query pool (`queries`), published query sets (`query_sets`) and what was emitted
from them (`emissions`), the synthesis cache (`synthesis_cache`), stored trajectories
(`trajectories`) and datasets (`datasets`). The idempotent sink of consumed events
(limi_core.idempotency) lives in the same file, so a consumed trajectory and the record that it
was consumed commit in one transaction. One connection, guarded by a lock, serves the gRPC
handlers (which run it in worker threads); WAL mode lets the sink's connection work beside it.
It does not know what the rows mean: the pool and stores do.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import threading
from collections.abc import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT UNIQUE NOT NULL,
  text TEXT NOT NULL,
  source INTEGER NOT NULL,
  category INTEGER NOT NULL,
  status INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  proto BLOB NOT NULL,
  drop_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS queries_filter ON queries (source, category, status);
CREATE TABLE IF NOT EXISTS query_sets (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  proto BLOB NOT NULL,
  UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS emissions (
  query_set_id TEXT NOT NULL,
  query_id TEXT NOT NULL,
  episodes INTEGER NOT NULL,
  msg_id TEXT NOT NULL,
  emitted_at REAL NOT NULL DEFAULT (julianday('now')),
  PRIMARY KEY (query_set_id, query_id)
);
CREATE TABLE IF NOT EXISTS synthesis_cache (
  pr_key TEXT NOT NULL,
  prompt_hash TEXT NOT NULL,
  response TEXT NOT NULL,
  created_at REAL NOT NULL DEFAULT (julianday('now')),
  PRIMARY KEY (pr_key, prompt_hash)
);
CREATE TABLE IF NOT EXISTS trajectories (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT UNIQUE NOT NULL,
  msg_id TEXT NOT NULL,
  query_id TEXT NOT NULL,
  query_set_id TEXT NOT NULL,
  origin TEXT NOT NULL,
  proto BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  proto BLOB NOT NULL,
  filter_counts TEXT NOT NULL,
  token_lengths TEXT NOT NULL,
  UNIQUE (name, version)
);
"""


class CuratorDatabase:
    """The curator's tables in one SQLite file."""

    def __init__(self, path: pathlib.Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.executescript(SCHEMA)
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def read(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def close(self) -> None:
        with self._lock:
            self._connection.close()
