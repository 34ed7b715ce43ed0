"""Durable records of the trainer's runs and of the datasets it has seen, in one SQLite file.

`RunRecord` is what the service knows about a run (state, progress, lineage, results); the
store keeps one row per run and one per dataset event, so that queued and interrupted runs
survive a restart and StartRun can name a dataset by id. A run is created once per run id
(limi_core.idempotency); run ids derive from the dataset and the settings, so a redelivered
dataset event never starts a second run. It does not run anything (supervisor.py does).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import pathlib
import sqlite3
import time

from limi.dataset.v1 import dataset_pb2
from limi_core.idempotency import IdempotentSink


class RunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclasses.dataclass
class RunRecord:
    id: str
    state: RunState
    dataset_id: str
    base_model: str
    preset: str
    run_dir: str
    hyperparameters: dict[str, str] = dataclasses.field(default_factory=dict)
    dataset_content_hash: str = ""
    step: int = 0
    total_steps: int = 0
    loss: float = 0.0
    tokens_per_second: float = 0.0
    eta_seconds: float = 0.0
    packing_efficiency: float = 0.0
    checkpoint_ids: list[str] = dataclasses.field(default_factory=list)
    trained_trajectory_ids: list[str] = dataclasses.field(default_factory=list)
    error: str = ""
    # "invalid_input" (retrying cannot help), "crashed" or "" when not failed.
    failure_kind: str = ""
    # Training processes started, and how many of them crashed.
    attempts: int = 0
    crashes: int = 0
    resumed_from_step: int = 0
    summary_path: str = ""
    loss_curve_path: str = ""
    created_at: float = dataclasses.field(default_factory=time.time)
    started_at: float = 0.0
    finished_at: float = 0.0

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        data = json.loads(text)
        data["state"] = RunState(data["state"])
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class RunStore:
    def __init__(self, path: pathlib.Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = IdempotentSink(path)
        self._db = self._sink.connection
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, record TEXT NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS datasets (id TEXT PRIMARY KEY, record BLOB NOT NULL)")

    def put(self, run: RunRecord) -> None:
        """Insert or update a run (its queue order is fixed by its first insert)."""
        _upsert_run(self._db, run)

    def all_runs(self) -> list[RunRecord]:
        rows = self._db.execute("SELECT record FROM runs ORDER BY seq").fetchall()
        return [RunRecord.from_json(row[0]) for row in rows]

    def put_dataset(self, dataset: dataset_pb2.Dataset) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO datasets (id, record) VALUES (?, ?)", (dataset.id, dataset.SerializeToString())
        )

    def dataset(self, dataset_id: str) -> dataset_pb2.Dataset | None:
        row = self._db.execute("SELECT record FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            return None
        dataset = dataset_pb2.Dataset()
        dataset.ParseFromString(row[0])
        return dataset

    def create_once(self, run: RunRecord) -> bool:
        """Record a new run unless its id was recorded before (ids are derived from the dataset
        and settings, so a redelivered dataset event names the same run); True if created."""
        return self._sink.apply_once(f"run-created:{run.id}", lambda connection: _upsert_run(connection, run))

    def close(self) -> None:
        self._sink.close()


def _upsert_run(connection: sqlite3.Connection, run: RunRecord) -> None:
    connection.execute(
        "INSERT INTO runs (id, seq, record) VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM runs), ?) "
        "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
        (run.id, run.to_json()),
    )
