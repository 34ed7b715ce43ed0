"""Stored trajectories: consumed from the bus exactly once, or imported from a LIMI dataset.

`record_consumed` runs inside the idempotent sink (limi_core.idempotency) keyed by the event's
message id, so a redelivered event stores nothing twice; the same transaction moves the query's
status to COMPLETED or FAILED. A trajectory id seen before (published again under another id)
is kept once. Imported samples get the id `limi-<first 16 hex of the sample's sha256>` unless
their `limi` metadata carries one. It does not score or select (curation.py does).
"""

from __future__ import annotations

import json
import sqlite3

from limi.trajectory.v1 import trajectory_pb2
from limi_core.idempotency import IdempotentSink
from limi_curator.db import CuratorDatabase
from limi_curator.query_pool import record_outcome

ORIGIN_BUS, ORIGIN_IMPORT = "bus", "import"


def _insert(connection: sqlite3.Connection, trajectory: trajectory_pb2.Trajectory, msg_id: str, origin: str) -> bool:
    cursor = connection.execute(
        "INSERT OR IGNORE INTO trajectories (id, msg_id, query_id, query_set_id, origin, proto) VALUES (?, ?, ?, ?, ?, ?)",
        (
            trajectory.id,
            msg_id,
            trajectory.lineage.query_id,
            trajectory.lineage.query_set_id,
            origin,
            trajectory.SerializeToString(),
        ),
    )
    return cursor.rowcount == 1


class TrajectoryStore:
    def __init__(self, db: CuratorDatabase, sink: IdempotentSink) -> None:
        self._db, self._sink = db, sink

    def record_consumed(self, trajectory: trajectory_pb2.Trajectory, msg_id: str) -> bool:
        """Store a trajectory from the bus once per message id; False when this message was applied before."""
        if not trajectory.id:
            trajectory.id = msg_id

        def effect(connection: sqlite3.Connection) -> None:
            if _insert(connection, trajectory, msg_id, ORIGIN_BUS) and trajectory.lineage.query_id:
                completed = trajectory.outcome.status == trajectory_pb2.OUTCOME_STATUS_COMPLETED
                record_outcome(connection, trajectory.lineage.query_id, completed)

        return self._sink.apply_once(f"trajectory:{msg_id}", effect)

    def import_trajectories(self, trajectories: list[trajectory_pb2.Trajectory]) -> tuple[list[str], int]:
        """Store imported trajectories (ids already set); returns (ids, how many were stored before)."""
        duplicates = 0
        with self._db.transaction() as connection:
            for trajectory in trajectories:
                if not _insert(connection, trajectory, f"import:{trajectory.id}", ORIGIN_IMPORT):
                    duplicates += 1
        return [t.id for t in trajectories], duplicates

    def load(
        self, *, ids: list[str] | None = None, query_set_ids: list[str] | None = None
    ) -> list[trajectory_pb2.Trajectory]:
        """Stored trajectories in arrival order, optionally only these ids or these query sets."""
        sql, parameters = "SELECT proto FROM trajectories", []
        if ids is not None:
            sql += " WHERE id IN (SELECT value FROM json_each(?))"
            parameters.append(json.dumps(ids))
        elif query_set_ids:
            sql += " WHERE query_set_id IN (SELECT value FROM json_each(?))"
            parameters.append(json.dumps(query_set_ids))
        rows = self._db.read(sql + " ORDER BY seq", tuple(parameters))
        found = []
        for (blob,) in rows:
            trajectory = trajectory_pb2.Trajectory()
            trajectory.ParseFromString(blob)
            found.append(trajectory)
        if ids is not None:
            order = {trajectory_id: position for position, trajectory_id in enumerate(ids)}
            found.sort(key=lambda t: order[t.id])
        return found

    def count(self) -> int:
        return self._db.read("SELECT COUNT(*) FROM trajectories")[0][0]
