"""Settings of the trainer service, from LIMI_TRAINER_* (and the shared LIMI_*) environment variables.

Defaults suit the embedded one-machine run: every published dataset is trained on the tiny
CPU model (`limi-tiny`, built locally on first use) with the `tiny-cpu` preset. A GPU
deployment sets LIMI_TRAINER_BASE_MODEL to the model to fine-tune, LIMI_TRAINER_PRESET=limi
and LIMI_TRAINER_GPUS_PER_RUN to the GPUs of the node. Runs, their checkpoints and the run
database live under LIMI_DATA_DIR.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import ClassVar

from limi_core.config import check
from limi_core.settings import DEFAULT_PORTS, ServiceSettings
from limi_trainer.hyperparameters import PRESETS


@dataclasses.dataclass(frozen=True)
class TrainerSettings(ServiceSettings):
    PREFIX: ClassVar[str] = "LIMI_TRAINER_"

    grpc_address: str = f"127.0.0.1:{DEFAULT_PORTS['trainer'].grpc}"
    metrics_address: str = f"127.0.0.1:{DEFAULT_PORTS['trainer'].metrics}"
    # Train on every dataset published on the bus (with the base model and preset below).
    auto_train: bool = True
    # A Hugging Face directory or hub id; "limi-tiny" is the tiny local model (limi_trainer.tiny).
    base_model: str = "limi-tiny"
    # "limi" or "tiny-cpu" (limi_trainer.hyperparameters.PRESETS).
    preset: str = "tiny-cpu"
    # Training processes per run: 1 runs one process; more runs torchrun with that many GPUs.
    gpus_per_run: int = 1
    max_queued_runs: int = 16
    # Training processes a run may crash before it fails (each resumes from its last checkpoint).
    max_attempts: int = 3
    progress_poll_seconds: float = 0.5
    # The durable consumer of dataset events: in_progress heartbeats every third of the ack wait.
    ack_wait_seconds: float = 60.0
    max_deliver: int = 5
    # Where named local models (limi-tiny) are built; empty: <data dir>/models.
    models_dir: pathlib.Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        cls, prefix = type(self), self.PREFIX
        check(bool(self.base_model.strip()), cls, "base_model", prefix, "must not be empty")
        check(self.preset in PRESETS, cls, "preset", prefix, f"must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        check(self.gpus_per_run >= 1, cls, "gpus_per_run", prefix, "must be at least 1")
        check(self.max_queued_runs >= 1, cls, "max_queued_runs", prefix, "must be at least 1")
        check(self.max_attempts >= 1, cls, "max_attempts", prefix, "must be at least 1")
        check(self.progress_poll_seconds > 0, cls, "progress_poll_seconds", prefix, "must be positive")
        check(self.ack_wait_seconds >= 1, cls, "ack_wait_seconds", prefix, "must be at least 1")
        check(self.max_deliver >= 1, cls, "max_deliver", prefix, "must be at least 1")

    @property
    def runs_dir(self) -> pathlib.Path:
        return self.data_dir / "runs"

    @property
    def database_path(self) -> pathlib.Path:
        return self.data_dir / "trainer.sqlite"

    @property
    def local_models_dir(self) -> pathlib.Path:
        return self.models_dir or self.data_dir / "models"
