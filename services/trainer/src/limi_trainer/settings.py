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
from limi_core.errors import InvalidArgument
from limi_core.settings import DEFAULT_PORTS, ServiceSettings, model_cache_dir
from limi_trainer.hyperparameters import PRESETS, resolve


@dataclasses.dataclass(frozen=True)
class TrainerSettings(ServiceSettings):
    PREFIX: ClassVar[str] = "LIMI_TRAINER_"

    grpc_address: str = f"127.0.0.1:{DEFAULT_PORTS['trainer'].grpc}"
    metrics_address: str = f"127.0.0.1:{DEFAULT_PORTS['trainer'].metrics}"
    # Train on every dataset published on the bus (with the base model and preset below).
    auto_train: bool = True
    # A Hugging Face directory or hub id; "limi-tiny" is the tiny local model (limi_trainer.tiny).
    base_model: str = "limi-tiny"
    # "limi", "small-cpu" or "tiny-cpu" (limi_trainer.hyperparameters.PRESETS).
    preset: str = "tiny-cpu"
    # Overrides of the preset for auto-trained runs, "key=value,key=value" (keys of
    # limi_trainer.hyperparameters.Hyperparameters), e.g. "epochs=3,trainable_layers=8".
    hyperparameters: str = ""
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
    # Folders StartRun.dataset_uri may name a file under; empty: the curator's datasets folder.
    dataset_roots: tuple[pathlib.Path, ...] = ()
    # Folders StartRun.base_model may name a local model under; empty: this service's data dir
    # (built models, checkpoints), limi's model cache and the LIMI_TRAINER_BASE_MODEL directory.
    model_roots: tuple[pathlib.Path, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        cls, prefix = type(self), self.PREFIX
        check(bool(self.base_model.strip()), cls, "base_model", prefix, "must not be empty")
        check(
            self.preset in PRESETS, cls, "preset", prefix, f"must be one of {', '.join(PRESETS)}, got {self.preset!r}"
        )
        try:
            resolve(self.preset, self.hyperparameter_overrides)
        except InvalidArgument as exc:
            check(False, cls, "hyperparameters", prefix, str(exc))
        check(self.gpus_per_run >= 1, cls, "gpus_per_run", prefix, "must be at least 1")
        check(self.max_queued_runs >= 1, cls, "max_queued_runs", prefix, "must be at least 1")
        check(self.max_attempts >= 1, cls, "max_attempts", prefix, "must be at least 1")
        check(self.progress_poll_seconds > 0, cls, "progress_poll_seconds", prefix, "must be positive")
        check(self.ack_wait_seconds >= 1, cls, "ack_wait_seconds", prefix, "must be at least 1")
        check(self.max_deliver >= 1, cls, "max_deliver", prefix, "must be at least 1")

    @property
    def allowed_dataset_roots(self) -> tuple[pathlib.Path, ...]:
        return self.dataset_roots or (self.data_dir_of("curator") / "datasets",)

    @property
    def allowed_model_roots(self) -> tuple[pathlib.Path, ...]:
        if self.model_roots:
            return self.model_roots
        configured = pathlib.Path(self.base_model).expanduser()
        return (
            self.data_dir,
            self.local_models_dir,
            model_cache_dir(),
            *([configured] if configured.is_absolute() else []),
        )

    @property
    def hyperparameter_overrides(self) -> dict[str, str]:
        """LIMI_TRAINER_HYPERPARAMETERS as a mapping; a pair without "=" is kept whole, so resolve() names it."""
        pairs = [pair.strip() for pair in self.hyperparameters.split(",") if pair.strip()]
        return {key.strip(): value.strip() for key, _, value in (pair.partition("=") for pair in pairs)}

    @property
    def runs_dir(self) -> pathlib.Path:
        return self.data_dir / "runs"

    @property
    def database_path(self) -> pathlib.Path:
        return self.data_dir / "trainer.sqlite"

    @property
    def local_models_dir(self) -> pathlib.Path:
        return self.models_dir or self.data_dir / "models"
