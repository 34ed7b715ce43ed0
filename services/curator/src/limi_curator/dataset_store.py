"""Versioned datasets: the LIMI JSONL file under LIMI_DATA_DIR/datasets and its record in SQLite.

A dataset's content hash is the sha256 of its JSONL bytes (the samples in order, so the ordered
trajectory contents); its id is `<name>-<first 12 hex of the hash>`, so the same content under the
same name is the same dataset (stored once, published under the same event id), and other
content gets the next version of that name. The file is written to a temporary name, fsynced and
renamed, so a reader never sees half a dataset. Each line is the LIMI sample of one trajectory
with limi's metadata key (`limi_format.trajectory_to_limi(strict=False)`): the public `tools` and
`messages` keys exactly, plus `limi` carrying everything else (drop it with `strict` export).
It does not choose the trajectories (curation.py does).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import statistics
import time
from collections import Counter

from limi.dataset.v1 import dataset_pb2
from limi.trajectory.v1 import trajectory_pb2
from limi_core import limi_format
from limi_core.errors import NotFound
from limi_curator.db import CuratorDatabase


def dataset_jsonl(trajectories: list[trajectory_pb2.Trajectory]) -> bytes:
    lines = [limi_format.dumps_sample(limi_format.trajectory_to_limi(t, strict=False)) for t in trajectories]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "dataset"


class DatasetStore:
    def __init__(self, db: CuratorDatabase, directory: pathlib.Path) -> None:
        self._db, self.directory = db, directory

    def save(
        self,
        name: str,
        trajectories: list[trajectory_pb2.Trajectory],
        token_lengths: list[int],
        categories: list[str],
        tokenizer: str,
        filter_counts: dict[str, int],
    ) -> tuple[dataset_pb2.Dataset, bool]:
        """Write and record a dataset; returns (dataset, whether it is new)."""
        content = dataset_jsonl(trajectories)
        digest = hashlib.sha256(content).hexdigest()
        dataset_id = f"{_slug(name)}-{digest[:12]}"
        existing = self._db.read("SELECT proto FROM datasets WHERE id = ?", (dataset_id,))
        if existing:
            return _dataset(existing[0][0]), False
        path = self.directory / f"{dataset_id}.jsonl"
        _write_atomically(path, content)
        dataset = dataset_pb2.Dataset(
            id=dataset_id,
            name=name,
            content_hash=digest,
            trajectory_ids=[t.id for t in trajectories],
            storage_uri=path.resolve().as_uri(),
            tokenizer=tokenizer,
        )
        dataset.created_at.FromNanoseconds(time.time_ns())
        stats = dataset.stats
        stats.count = len(trajectories)
        if token_lengths:
            stats.tokens_min, stats.tokens_max = min(token_lengths), max(token_lengths)
            stats.tokens_mean = statistics.fmean(token_lengths)
        stats.categories.update(Counter(categories))
        with self._db.transaction() as connection:
            (latest,) = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM datasets WHERE name = ?", (name,)
            ).fetchone()
            dataset.version = latest + 1
            connection.execute(
                "INSERT INTO datasets (id, name, version, content_hash, proto, filter_counts, token_lengths) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset_id,
                    name,
                    dataset.version,
                    digest,
                    dataset.SerializeToString(),
                    json.dumps(filter_counts),
                    json.dumps(token_lengths),
                ),
            )
        return dataset, True

    def get(self, dataset_id: str) -> dataset_pb2.Dataset:
        rows = self._db.read("SELECT proto FROM datasets WHERE id = ?", (dataset_id,))
        if not rows:
            raise NotFound(f"dataset {dataset_id} not found")
        return _dataset(rows[0][0])

    def details(self, dataset_id: str) -> tuple[dataset_pb2.Dataset, dict[str, int], list[int]]:
        rows = self._db.read("SELECT proto, filter_counts, token_lengths FROM datasets WHERE id = ?", (dataset_id,))
        if not rows:
            raise NotFound(f"dataset {dataset_id} not found")
        blob, counts, lengths = rows[0]
        return _dataset(blob), json.loads(counts), json.loads(lengths)

    def list(self, name: str = "") -> list[dataset_pb2.Dataset]:
        sql, parameters = "SELECT proto FROM datasets", ()
        if name:
            sql, parameters = sql + " WHERE name = ?", (name,)
        return [_dataset(blob) for (blob,) in self._db.read(sql + " ORDER BY name, version DESC", parameters)]

    def read_samples(self, dataset: dataset_pb2.Dataset) -> list[dict]:
        path = self.path_of(dataset)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise NotFound(f"the file of dataset {dataset.id} ({path}) cannot be read: {exc.strerror}") from None
        return [json.loads(line) for line in lines if line.strip()]

    def path_of(self, dataset: dataset_pb2.Dataset) -> pathlib.Path:
        return self.directory / f"{dataset.id}.jsonl"


def _dataset(blob: bytes) -> dataset_pb2.Dataset:
    dataset = dataset_pb2.Dataset()
    dataset.ParseFromString(blob)
    return dataset


def _write_atomically(path: pathlib.Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
