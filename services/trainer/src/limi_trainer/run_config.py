"""A run's fixed inputs, written once as `<run>/run_config.json` and read by every rank and resume.

`RunConfig` holds what a run trains on and how: the dataset with its lineage, the base model,
the preset name and resolved hyperparameters, and the code revision. `run_id_for` derives a
deterministic run id from those inputs (or from a caller's request id), so the same dataset
event or the same request names the same run and resumes it instead of starting another.
`code_revision` is the git revision of the source tree when there is one. Nothing here trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import subprocess

from limi_trainer import hyperparameters
from limi_trainer.dataset import DatasetInput
from limi_trainer.hyperparameters import Hyperparameters

CONFIG_FILE = "run_config.json"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    run_id: str
    dataset: DatasetInput
    base_model: str
    preset: str
    hyperparameters: Hyperparameters
    code_revision: str = "unknown"

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "dataset": dataclasses.asdict(self.dataset),
            "base_model": self.base_model,
            "preset": self.preset,
            "hyperparameters": self.hyperparameters.as_strings(),
            "code_revision": self.code_revision,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        dataset = data["dataset"]
        return cls(
            run_id=data["run_id"],
            dataset=DatasetInput(
                dataset["uri"],
                dataset.get("dataset_id", ""),
                dataset.get("content_hash", ""),
                tuple(dataset.get("trajectory_ids", ())),
            ),
            base_model=data["base_model"],
            preset=data["preset"],
            hyperparameters=hyperparameters.from_strings(data["hyperparameters"]),
            code_revision=data.get("code_revision", "unknown"),
        )

    def save(self, run_dir: pathlib.Path) -> pathlib.Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / CONFIG_FILE
        staging = run_dir / f".{CONFIG_FILE}.tmp"
        staging.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(staging, path)
        return path

    @classmethod
    def load(cls, run_dir: pathlib.Path) -> RunConfig:
        return cls.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))


def run_id_for(dataset: DatasetInput, base_model: str, preset: str, hp: Hyperparameters, request_id: str = "") -> str:
    """`run-<16 hex>`: from the request id when given, else from everything the run depends on."""
    if request_id:
        basis = f"request:{request_id}"
    else:
        basis = json.dumps(
            [dataset.dataset_id or dataset.uri, dataset.content_hash, base_model, preset, hp.as_strings()],
            sort_keys=True,
        )
    return "run-" + hashlib.sha256(basis.encode()).hexdigest()[:16]


def code_revision() -> str:
    """`LIMI_CODE_REVISION`, else the git revision of this source tree (with `-dirty`), else "unknown"."""
    if os.environ.get("LIMI_CODE_REVISION"):
        return os.environ["LIMI_CODE_REVISION"]
    here = pathlib.Path(__file__).resolve().parent
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return revision + ("-dirty" if dirty else "")
