"""An idempotent sink: apply an effect once per key, even when a message is delivered twice.

`IdempotentSink.apply_once(key, effect)` runs `effect(connection)` and records `key` in the same
SQLite transaction, so either both happen or neither does; a second call with the same key is
a no-op that returns False. Effects that live in the same database (the curator's pool, the
evaluator's leaderboard) get exactly-once for free; effects elsewhere must themselves be
idempotent (write to a name derived from the key, then rename). Not for cross-process locking.
"""

from __future__ import annotations

import pathlib
import sqlite3
import threading
from collections.abc import Callable


class IdempotentSink:
    def __init__(self, path: pathlib.Path | str) -> None:
        self._connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS applied_effects (key TEXT PRIMARY KEY, applied_at REAL DEFAULT (julianday('now')))"
        )
        self._lock = threading.Lock()

    @property
    def connection(self) -> sqlite3.Connection:
        return self._connection

    def apply_once(self, key: str, effect: Callable[[sqlite3.Connection], None]) -> bool:
        """Run `effect` and remember `key` atomically; False when `key` was applied before."""
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                if cursor.execute("SELECT 1 FROM applied_effects WHERE key = ?", (key,)).fetchone():
                    cursor.execute("ROLLBACK")
                    return False
                effect(self._connection)
                cursor.execute("INSERT INTO applied_effects (key) VALUES (?)", (key,))
                cursor.execute("COMMIT")
                return True
            except BaseException:
                cursor.execute("ROLLBACK")
                raise

    def applied(self, key: str) -> bool:
        with self._lock:
            return (
                self._connection.execute("SELECT 1 FROM applied_effects WHERE key = ?", (key,)).fetchone() is not None
            )

    def close(self) -> None:
        self._connection.close()
