"""The `Checkpoint` event of a saved checkpoint: deterministic id and full lineage.

`checkpoint_id(run_id, step)` is `<run id>-step-<NNNNNN>`, the same however often a checkpoint is
announced, and the event's message id derives from it, so a re-announced checkpoint is stored
once. `checkpoint_event` fills the lineage: base model, dataset id and content hash (the
curator's hash when the dataset came from an event, else the sha256 of the JSONL), the
trajectory ids trained on, the resolved hyperparameters with the preset, the metrics of the
step and the code revision. It does not publish (the server does).
"""

from __future__ import annotations

import pathlib

from google.protobuf import timestamp_pb2

from limi.checkpoint.v1 import checkpoint_pb2
from limi_core.events import event_id
from limi_trainer.run_config import RunConfig


def checkpoint_id(run_id: str, step: int) -> str:
    return f"{run_id}-step-{step:06d}"


def message_id(checkpoint: checkpoint_pb2.Checkpoint) -> str:
    return event_id("checkpoint", checkpoint.id)


def checkpoint_event(
    config: RunConfig,
    *,
    step: int,
    path: pathlib.Path,
    final: bool,
    created_at: float,
    dataset_sha256: str,
    trajectory_ids: list[str],
    metrics: dict[str, float],
) -> checkpoint_pb2.Checkpoint:
    created = timestamp_pb2.Timestamp()
    created.FromNanoseconds(int(created_at * 1e9))
    hyperparameters = {**config.hyperparameters.as_strings(), "preset": config.preset}
    return checkpoint_pb2.Checkpoint(
        id=checkpoint_id(config.run_id, step),
        base_model=config.base_model,
        storage_uri=pathlib.Path(path).resolve().as_uri(),
        training_run_id=config.run_id,
        dataset_id=config.dataset.dataset_id or config.dataset.uri,
        dataset_content_hash=config.dataset.content_hash or f"sha256:{dataset_sha256}",
        trajectory_ids=trajectory_ids,
        step=step,
        hyperparameters=hyperparameters,
        metrics={name: float(value) for name, value in metrics.items() if value is not None},
        code_revision=config.code_revision,
        created_at=created,
        final=final,
    )


def describe_checkpoint(
    run_dir: pathlib.Path, checkpoint_dir: pathlib.Path, *, trajectory_ids: list[str], packing_efficiency: float
) -> checkpoint_pb2.Checkpoint:
    """The `Checkpoint` event of a completed checkpoint directory of the run in `run_dir`."""
    from limi_trainer import checkpoints, dataset

    config = RunConfig.load(run_dir)
    state = checkpoints.read_state(checkpoint_dir)
    last = state.history[-1] if state.history else {}
    step_metrics = {
        name: last.get(name)
        for name in ("loss", "learning_rate", "tokens", "trained_tokens", "tokens_per_second", "grad_norm")
    }
    step_metrics["packing_efficiency"] = packing_efficiency
    return checkpoint_event(
        config,
        step=state.step,
        path=checkpoint_dir,
        final=state.final,
        created_at=checkpoint_dir.stat().st_mtime,
        dataset_sha256=dataset.sha256_file(run_dir / dataset.SNAPSHOT_NAME),
        trajectory_ids=trajectory_ids,
        metrics=step_metrics,
    )
