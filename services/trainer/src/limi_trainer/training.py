"""The training run, top to bottom: data, plan, model, engine, resume, steps, checkpoints, results.

`train(run_dir)` reads `run_config.json`, pins the dataset, renders and masks every sample,
fixes the data order and packing for the whole run, builds the DeepSpeed engine, resumes from
the newest complete checkpoint when there is one, and runs the remaining optimizer steps. Each
step runs its packs as micro-batches (the last one is the accumulation boundary) with the loss
of each pack divided by the step's trained-token count, so the step's loss is the mean over
every trained token of the step. Rank 0 reports progress (reporting.py), writes checkpoints on
schedule and at the end, then the summary JSON and the loss curve. Every rank of a torchrun
or deepspeed launch calls `train` the same way. It does not publish events or talk to NATS.
"""

from __future__ import annotations

import pathlib
import platform
import time

import torch

from limi_core.errors import InvalidArgument
from limi_trainer import checkpoints, dataset, reporting
from limi_trainer import engine as engine_setup
from limi_trainer.causal_lm import PackedLossModel, choose_attention, load_model
from limi_trainer.checkpoints import TrainerState
from limi_trainer.frozen_layers import FrozenBottom, freeze_lower_layers
from limi_trainer.packing import StepPlan, TrainingPlan, build_plan, collate, trained_labels
from limi_trainer.rendering import default_stop_tokens
from limi_trainer.run_config import RunConfig
from limi_trainer.tiny import resolve_base_model


def train(run_dir: pathlib.Path, listeners: list[reporting.Listener] | None = None) -> dict:
    """Run (or finish) the training run in `run_dir`; returns the summary (rank 0) or {}."""
    from transformers import AutoTokenizer, GenerationConfig

    run_dir = pathlib.Path(run_dir)
    config = RunConfig.load(run_dir)
    hp = config.hyperparameters
    dist = engine_setup.init_distributed()
    log = reporting.ProgressLog(run_dir, listeners) if dist.is_main else None
    started = time.monotonic()
    torch.manual_seed(hp.seed)

    if dist.is_main:
        resolve_base_model(config.base_model)
    torch.distributed.barrier()
    base_model = resolve_base_model(config.base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError) as exc:
        raise InvalidArgument("base_model", f"cannot load a tokenizer from {config.base_model!r}: {exc}") from exc
    try:
        generation_config = GenerationConfig.from_pretrained(base_model)
    except OSError:
        generation_config = None
    if dist.is_main:
        dataset.snapshot(config.dataset, run_dir)
    torch.distributed.barrier()
    data_path, data_sha256 = dataset.snapshot(config.dataset, run_dir)
    raw = dataset.read_samples(data_path)
    trajectory_ids = dataset.trajectory_ids(raw, config.dataset)
    kept, dropped = dataset.prepare_samples(
        tokenizer,
        raw,
        trajectory_ids,
        stop_tokens=default_stop_tokens(tokenizer, generation_config),
        max_tokens=hp.max_sample_tokens,
        on_ambiguous=hp.on_ambiguous,
    )
    samples = {sample.index: sample for sample in kept}
    plan = build_plan(
        {i: len(s.rendered) for i, s in samples.items()},
        {i: trained_labels(s.rendered) for i, s in samples.items()},
        epochs=hp.epochs,
        global_batch_size=hp.global_batch_size,
        seed=hp.seed,
        drop_last=hp.drop_last,
        budget=hp.pack_tokens,
        world_size=dist.world_size,
    )
    if plan.total_steps == 0:
        raise InvalidArgument(
            "hyperparameters.drop_last",
            f"{len(kept)} samples make no complete optimizer step of {hp.global_batch_size}",
        )

    on_gpu = dist.device.type == "cuda"
    dtype = engine_setup.training_dtype(hp, on_gpu)
    ds_config = engine_setup.deepspeed_config(hp, dist.world_size, dtype)
    zero3_loading = _zero3_loading(ds_config)  # keeps ZeRO-3 partitioned loading active while it lives
    model = load_model(
        base_model,
        dtype=dtype,
        attn_implementation=choose_attention(hp.attn_implementation, on_gpu),
        gradient_checkpointing=hp.gradient_checkpointing,
    )
    trainable_parameters = freeze_lower_layers(model, hp.trainable_layers)
    # The frozen bottom's output is kept per sample (exact; not under ZeRO-3's partitioned weights).
    frozen_bottom = (
        FrozenBottom(model, hp.trainable_layers)
        if hp.trainable_layers and hp.zero_stage < 3 and FrozenBottom.supports(model)
        else None
    )
    engine = engine_setup.build_engine(
        PackedLossModel(model, hp.loss_chunk_tokens, frozen_bottom), hp, plan.total_steps, ds_config
    )
    del zero3_loading

    if dist.is_main:
        checkpoints.discard_staging(run_dir)
    torch.distributed.barrier()
    resume_from = checkpoints.latest_resumable(run_dir)
    state = (
        checkpoints.load(engine, resume_from, plan.digest())
        if resume_from
        else TrainerState(config.run_id, plan.digest())
    )
    resumed_at = state.step
    if log:
        log.emit(
            "started",
            total_steps=plan.total_steps,
            resumed_from_step=state.step,
            samples=len(raw),
            trained_samples=len(kept),
            dropped=[vars(d) for d in dropped],
            packing_efficiency=plan.packing_efficiency,
            world_size=dist.world_size,
            trajectory_ids=[sample.trajectory_id for sample in kept],
            dataset_sha256=data_sha256,
            trainable_parameters=trainable_parameters,
            frozen_bottom_cached=frozen_bottom is not None,
        )

    step_seconds: list[float] = []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for index in range(state.step, plan.total_steps):
        record = run_step(engine, plan.steps[index], index + 1, samples, dist, pad_id)
        step_seconds.append(record["seconds"])
        state.step = index + 1
        state.history.append(record)
        if log:
            remaining = (plan.total_steps - state.step) * sum(step_seconds) / len(step_seconds)
            log.emit("step", total_steps=plan.total_steps, eta_seconds=remaining, **record)
        last = state.step == plan.total_steps
        if last or (hp.checkpoint_every_steps and state.step % hp.checkpoint_every_steps == 0):
            state.final = last
            path = checkpoints.save(
                engine, model, tokenizer, state, run_dir, is_main=dist.is_main, keep_resume_states=hp.keep_resume_states
            )
            if log:
                log.emit("checkpoint", step=state.step, path=str(path), final=last, loss=record["loss"])

    if not dist.is_main:
        return {}
    summary = _summary(
        config, plan, state, kept, dropped, data_sha256, run_dir, dist, dtype, resumed_at, time.monotonic() - started
    )
    if state.history:
        summary["loss_curve"] = str(
            reporting.write_loss_curve(
                run_dir,
                state.history,
                f"{config.run_id}: {config.base_model} on {config.dataset.dataset_id or config.dataset.uri}",
            )
        )
    summary_path = reporting.write_summary(run_dir, summary)
    log.emit(
        "finished",
        summary=str(summary_path),
        loss_curve=summary.get("loss_curve", ""),
        final_loss=summary["final_loss"],
    )
    return summary


def run_step(engine, step: StepPlan, number: int, samples: dict, dist: engine_setup.Distributed, pad_id: int) -> dict:
    """One optimizer step over this rank's packs; returns the step's history record."""
    began = time.perf_counter()
    learning_rate = engine.get_lr()[0]
    packs = step.packs_per_rank[dist.rank]
    scale = dist.world_size / max(1, step.trained_tokens)  # DeepSpeed averages gradients over ranks.
    summed = torch.zeros((), dtype=torch.float64)
    for k, pack in enumerate(packs):
        batch = {
            name: tensor.to(dist.device)
            for name, tensor in collate([samples[i].rendered for i in pack], pad_id).items()
        }
        engine.set_gradient_accumulation_boundary(k == len(packs) - 1)
        loss_sum = engine(**batch)
        engine.backward(loss_sum * scale, scale_wrt_gas=False)
        engine.step()
        summed += loss_sum.detach().double().cpu()
    total = summed.to(dist.device)
    torch.distributed.all_reduce(total)
    seconds = time.perf_counter() - began
    grad_norm = engine.get_global_grad_norm()
    return {
        "step": number,
        "samples": list(step.samples),
        "loss": float(total) / max(1, step.trained_tokens),
        "learning_rate": learning_rate,
        "tokens": step.tokens,
        "trained_tokens": step.trained_tokens,
        "micro_batches": step.micro_batches,
        "seconds": seconds,
        "tokens_per_second": step.tokens / seconds if seconds > 0 else 0.0,
        "grad_norm": float(grad_norm) if grad_norm is not None else None,
    }


def _zero3_loading(ds_config: dict):
    """Under ZeRO-3, make `from_pretrained` load weights straight into partitions."""
    if ds_config["zero_optimization"]["stage"] != 3:
        return None
    from transformers.integrations import HfDeepSpeedConfig

    return HfDeepSpeedConfig(ds_config)


def _summary(
    config: RunConfig,
    plan: TrainingPlan,
    state: TrainerState,
    kept,
    dropped,
    data_sha256: str,
    run_dir: pathlib.Path,
    dist,
    dtype,
    resumed_at: int,
    seconds: float,
) -> dict:
    history = state.history
    this_process = history[resumed_at:]
    tokens = sum(record["tokens"] for record in this_process)
    busy = sum(record["seconds"] for record in this_process)
    return {
        "run_id": config.run_id,
        "state": "succeeded",
        "base_model": config.base_model,
        "preset": config.preset,
        "hyperparameters": config.hyperparameters.as_strings(),
        "code_revision": config.code_revision,
        "dataset": {
            "id": config.dataset.dataset_id,
            "uri": config.dataset.uri,
            "content_hash": config.dataset.content_hash,
            "sha256": data_sha256,
            "samples_trained": len(kept),
            "samples_dropped": [vars(d) for d in dropped],
        },
        "trajectory_ids": {str(sample.index): sample.trajectory_id for sample in kept},
        "plan": {
            "total_steps": plan.total_steps,
            "digest": plan.digest(),
            "pack_tokens": plan.budget,
            "world_size": plan.world_size,
            "micro_batches": sum(step.micro_batches for step in plan.steps),
            "packing_efficiency": plan.packing_efficiency,
            "tokens": sum(step.tokens for step in plan.steps),
            "trained_tokens": sum(step.trained_tokens for step in plan.steps),
        },
        "steps": history,
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "resumed_from_step": resumed_at,
        "tokens_per_second": tokens / busy if busy > 0 else 0.0,
        "wall_seconds": seconds,
        "checkpoints": [str(path) for path in checkpoints.completed(run_dir)],
        "device": torch.cuda.get_device_name(dist.device)
        if dist.device.type == "cuda"
        else platform.processor() or "cpu",
        "precision": str(dtype).removeprefix("torch."),
    }
