"""The evaluator's SQLite store: evaluations, per-task results for crash resume, and the leaderboard.

`EvaluationStore(path)` keeps, per evaluation id (deterministic: `evaluation:<checkpoint>:<benchmark>`),
its status, the final `EvalResult`, and the checkpoint's dataset size and step (for the plots);
per finished task, its subtask results and trajectories, written in one transaction as soon as
the task ends, so an evaluation restarted after a crash skips the tasks already done; and the
leaderboard is the finished evaluations, oldest first. Writes are synchronous (WAL,
`synchronous=FULL`). It does not run evaluations and does not publish anything.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
import threading
import time

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi.trajectory.v1 import trajectory_pb2 as tp

SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    id TEXT PRIMARY KEY, checkpoint_id TEXT NOT NULL, benchmark TEXT NOT NULL, status TEXT NOT NULL,
    result BLOB, dataset_size INTEGER, step INTEGER, created_at REAL NOT NULL, finished_at REAL,
    report_uri TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', runs INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS task_results (
    evaluation_id TEXT NOT NULL, task_id TEXT NOT NULL, results BLOB NOT NULL, finished_at REAL NOT NULL,
    PRIMARY KEY (evaluation_id, task_id));
CREATE TABLE IF NOT EXISTS trajectories (
    evaluation_id TEXT NOT NULL, key TEXT NOT NULL, task_id TEXT NOT NULL, trajectory BLOB NOT NULL,
    PRIMARY KEY (evaluation_id, key));
"""
RUNNING, FINISHED, FAILED = "running", "finished", "failed"


@dataclasses.dataclass(frozen=True)
class LeaderboardRow:
    evaluation_id: str
    checkpoint_id: str
    benchmark: str
    aggregate: dict[str, float]
    dataset_size: int | None
    step: int | None
    report_uri: str
    finished_at: float


class EvaluationStore:
    def __init__(self, path: pathlib.Path | str) -> None:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def _write(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def begin(
        self,
        evaluation_id: str,
        checkpoint_id: str,
        benchmark: str,
        *,
        dataset_size: int | None = None,
        step: int | None = None,
    ) -> int:
        """Record a (re)started evaluation; returns how many runs it has had, this one included."""
        self._write(
            [
                (
                    "INSERT OR IGNORE INTO evaluations (id, checkpoint_id, benchmark, status, dataset_size, step, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (evaluation_id, checkpoint_id, benchmark, RUNNING, dataset_size, step, time.time()),
                ),
                (
                    "UPDATE evaluations SET runs = runs + 1, status = CASE status WHEN ? THEN status ELSE ? END, error = '' WHERE id = ?",
                    (FINISHED, RUNNING, evaluation_id),
                ),
            ]
        )
        return self._read("SELECT runs FROM evaluations WHERE id = ?", (evaluation_id,))[0][0]

    def status(self, evaluation_id: str) -> str | None:
        rows = self._read("SELECT status FROM evaluations WHERE id = ?", (evaluation_id,))
        return rows[0][0] if rows else None

    def save_task(
        self, evaluation_id: str, task_id: str, results: list[ev.TaskResult], trajectories: dict[str, tp.Trajectory]
    ) -> None:
        """Persist one finished task (all its subtasks) and its trajectories atomically."""
        blob = ev.EvalResult(tasks=results).SerializeToString()
        statements = [
            (
                "INSERT OR REPLACE INTO task_results (evaluation_id, task_id, results, finished_at) VALUES (?, ?, ?, ?)",
                (evaluation_id, task_id, blob, time.time()),
            )
        ]
        statements += [
            (
                "INSERT OR REPLACE INTO trajectories (evaluation_id, key, task_id, trajectory) VALUES (?, ?, ?, ?)",
                (evaluation_id, key, task_id, trajectory.SerializeToString()),
            )
            for key, trajectory in trajectories.items()
        ]
        self._write(statements)

    def finished_tasks(self, evaluation_id: str) -> dict[str, list[ev.TaskResult]]:
        done = {}
        for task_id, blob in self._read(
            "SELECT task_id, results FROM task_results WHERE evaluation_id = ?", (evaluation_id,)
        ):
            container = ev.EvalResult()
            container.ParseFromString(blob)
            done[task_id] = list(container.tasks)
        return done

    def trajectories(self, evaluation_id: str) -> dict[str, tp.Trajectory]:
        found = {}
        for key, blob in self._read(
            "SELECT key, trajectory FROM trajectories WHERE evaluation_id = ? ORDER BY key", (evaluation_id,)
        ):
            trajectory = tp.Trajectory()
            trajectory.ParseFromString(blob)
            found[key] = trajectory
        return found

    def finish(self, result: ev.EvalResult) -> None:
        self._write(
            [
                (
                    "UPDATE evaluations SET status = ?, result = ?, finished_at = ?, report_uri = ? WHERE id = ?",
                    (FINISHED, result.SerializeToString(), time.time(), result.report_uri, result.id),
                )
            ]
        )

    def fail(self, evaluation_id: str, error: str) -> None:
        self._write(
            [
                (
                    "UPDATE evaluations SET status = ?, error = ? WHERE id = ? AND status != ?",
                    (FAILED, error[:2000], evaluation_id, FINISHED),
                )
            ]
        )

    def forget(self, evaluation_id: str) -> None:
        """Delete an evaluation with its task results and trajectories (to run it again from scratch)."""
        self._write(
            [
                (f"DELETE FROM {table} WHERE {column} = ?", (evaluation_id,))
                for table, column in (
                    ("evaluations", "id"),
                    ("task_results", "evaluation_id"),
                    ("trajectories", "evaluation_id"),
                )
            ]
        )

    def get(self, evaluation_id: str) -> ev.EvalResult | None:
        rows = self._read("SELECT result FROM evaluations WHERE id = ? AND status = ?", (evaluation_id, FINISHED))
        if not rows:
            return None
        result = ev.EvalResult()
        result.ParseFromString(rows[0][0])
        return result

    def describe(self, evaluation_id: str) -> tuple[str, str] | None:
        """(status, error) of any evaluation, finished or not."""
        rows = self._read("SELECT status, error FROM evaluations WHERE id = ?", (evaluation_id,))
        return rows[0] if rows else None

    def leaderboard(self, benchmark: str = "") -> list[LeaderboardRow]:
        sql = "SELECT id, checkpoint_id, benchmark, result, dataset_size, step, report_uri, finished_at FROM evaluations WHERE status = ?"
        args: tuple = (FINISHED,)
        if benchmark:
            sql, args = sql + " AND benchmark = ?", (FINISHED, benchmark)
        rows = []
        for eid, checkpoint, bench, blob, size, step, uri, finished in self._read(
            sql + " ORDER BY finished_at, id", args
        ):
            result = ev.EvalResult()
            result.ParseFromString(blob)
            rows.append(LeaderboardRow(eid, checkpoint, bench, dict(result.aggregate), size, step, uri, finished))
        return rows

    def close(self) -> None:
        with self._lock:
            self._db.close()
