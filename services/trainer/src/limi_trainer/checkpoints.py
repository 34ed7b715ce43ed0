"""Checkpoints that survive kill -9: Hugging Face weights plus DeepSpeed state, written atomically.

A checkpoint is the directory `<run>/checkpoints/step-NNNNNN/` holding the model in Hugging Face
format (config.json, safetensors, tokenizer files, generation config), `trainer_state.json`
(the step reached, the per-step history with the sample indices each step trained on, the plan
digest) and `resume/` (DeepSpeed's optimizer, schedule and ZeRO partitions). Every rank writes
its DeepSpeed shards into `checkpoints/.staging-step-NNNNNN/`; rank 0 adds the rest, flushes
every file to disk, and renames the staging directory to its final name, so a checkpoint
directory either exists complete or not at all. A crash leaves at most a staging directory,
which `latest_resumable` ignores and `discard_staging` removes. Older `resume/` folders are
pruned to the last `keep_resume_states`; the Hugging Face weights of every checkpoint stay.
The directory must be shared by all ranks (one node, or a shared volume). It does not decide
when to save.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil

from limi_core.errors import FailedPrecondition

RESUME_DIR = "resume"
RESUME_TAG = "state"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d{6,})$")


@dataclasses.dataclass
class TrainerState:
    """What a run has done: the optimizer steps taken and, per step, what they trained on."""

    run_id: str
    plan_digest: str
    step: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    final: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        return cls(**json.loads(text))


def checkpoints_dir(run_dir: pathlib.Path) -> pathlib.Path:
    return run_dir / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def completed(run_dir: pathlib.Path) -> list[pathlib.Path]:
    """Complete checkpoint directories, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), path)
        for path in root.iterdir()
        if (m := _STEP_DIR.match(path.name)) and (path / STATE_FILE).exists()
    ]
    return [path for _step, path in sorted(found)]


def latest_resumable(run_dir: pathlib.Path) -> pathlib.Path | None:
    """The newest complete checkpoint that still has its DeepSpeed state."""
    for path in reversed(completed(run_dir)):
        if (path / RESUME_DIR).is_dir():
            return path
    return None


def read_state(checkpoint: pathlib.Path) -> TrainerState:
    return TrainerState.from_json((checkpoint / STATE_FILE).read_text())


def discard_staging(run_dir: pathlib.Path) -> None:
    """Remove the staging directories a crash left behind (rank 0, before training starts)."""
    root = checkpoints_dir(run_dir)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(".staging-"):
                shutil.rmtree(path, ignore_errors=True)


def save(
    engine, hf_model, tokenizer, state: TrainerState, run_dir: pathlib.Path, *, is_main: bool, keep_resume_states: int
) -> pathlib.Path:
    """Write one checkpoint for `state.step`; every rank must call it. Returns its final path."""
    import torch

    root = checkpoints_dir(run_dir)
    final = root / step_dir_name(state.step)
    staging = root / f".staging-{step_dir_name(state.step)}"
    if is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    torch.distributed.barrier()
    engine.save_checkpoint(str(staging / RESUME_DIR), tag=RESUME_TAG)
    weights = _full_state_dict(engine)
    if is_main:
        hf_model.save_pretrained(staging, state_dict=weights)
        tokenizer.save_pretrained(staging)
        (staging / STATE_FILE).write_text(state.to_json())
        _sync_tree(staging)
        if final.exists():
            shutil.rmtree(final)
        os.rename(staging, final)
        _sync_dir(root)
        _prune_resume_states(run_dir, keep_resume_states)
    torch.distributed.barrier()
    return final


def load(engine, checkpoint: pathlib.Path, plan_digest: str) -> TrainerState:
    """Restore the engine (weights, optimizer, schedule) and the trainer state from `checkpoint`.

    Raises:
        FailedPrecondition: The checkpoint was written for another data order or packing.
    """
    state = read_state(checkpoint)
    if state.plan_digest != plan_digest:
        raise FailedPrecondition(
            f"checkpoint {checkpoint} was written for plan {state.plan_digest}, this run's plan is {plan_digest} "
            "(dataset, hyperparameters or world size changed); start a new run directory"
        )
    path, _client_state = engine.load_checkpoint(
        str(checkpoint / RESUME_DIR), tag=RESUME_TAG, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise FailedPrecondition(f"DeepSpeed could not load the state in {checkpoint / RESUME_DIR}")
    return state


def _full_state_dict(engine) -> dict | None:
    """The unwrapped model's full state dict on rank 0 (gathered from the ZeRO-3 partitions)."""
    if engine.zero_optimization_partition_weights():
        wrapped = engine._zero3_consolidated_16bit_state_dict()
    else:
        wrapped = engine.module.state_dict()
    if wrapped is None:
        return None
    prefix = "model."
    return {name[len(prefix) :]: tensor.detach().cpu() for name, tensor in wrapped.items() if name.startswith(prefix)}


def _prune_resume_states(run_dir: pathlib.Path, keep: int) -> None:
    with_state = [path for path in completed(run_dir) if (path / RESUME_DIR).is_dir()]
    for path in with_state[:-keep]:
        shutil.rmtree(path / RESUME_DIR)


def _sync_tree(root: pathlib.Path) -> None:
    for directory, _subdirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
        _sync_dir(pathlib.Path(directory))


def _sync_dir(path: pathlib.Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
