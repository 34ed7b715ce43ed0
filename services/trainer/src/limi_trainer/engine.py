"""DeepSpeed set-up: the process group, the ZeRO config, the optimizer and the learning-rate schedule.

`init_distributed` joins the process group a launcher prepared (torchrun or the deepspeed
launcher set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or, when started alone,
makes a single-process group: NCCL on GPU, gloo on CPU. `deepspeed_config` writes ZeRO stage
0-3 with optional optimizer and parameter CPU offload, bf16 (with fp32 gradient reduction) on
GPU and fp32 on CPU. Gradient accumulation is driven by the caller: it marks the last
micro-batch of each optimizer step as the boundary, because packed steps have a variable
number of micro-batches. `build_engine` passes DeepSpeed a plain torch AdamW (no compiled op)
unless the optimizer is offloaded, which needs DeepSpeed's CPU Adam (compiled once, cached in
TORCH_EXTENSIONS_DIR). The schedule is linear warmup then cosine decay to the minimum rate.
It does not run steps or write checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import torch

from limi_core.processes import free_port
from limi_trainer.hyperparameters import Hyperparameters

DEFAULT_EXTENSIONS_DIR = pathlib.Path.home() / ".cache" / "limi" / "torch_extensions"


@dataclasses.dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join (or create) the process group and pick this rank's device."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(DEFAULT_EXTENSIONS_DIR))
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    import deepspeed

    on_gpu = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if on_gpu:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    return Distributed(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank, device)


def training_dtype(hp: Hyperparameters, on_gpu: bool) -> torch.dtype:
    if hp.precision == "auto":
        return torch.bfloat16 if on_gpu else torch.float32
    return torch.bfloat16 if hp.precision == "bf16" else torch.float32


def deepspeed_config(hp: Hyperparameters, world_size: int, dtype: torch.dtype) -> dict:
    """The DeepSpeed JSON config for these hyperparameters."""
    zero: dict = {"stage": hp.zero_stage}
    if hp.zero_stage >= 1:
        zero.update(contiguous_gradients=True, overlap_comm=torch.cuda.is_available(), reduce_bucket_size=50_000_000)
    if hp.zero_stage == 3:
        zero.update(
            stage3_gather_16bit_weights_on_model_save=True,
            stage3_prefetch_bucket_size=50_000_000,
            stage3_param_persistence_threshold=100_000,
        )
    if hp.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if hp.offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    config: dict = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": hp.gradient_clipping,
        "zero_optimization": zero,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if dtype == torch.bfloat16:
        config["bf16"] = {"enabled": True}
        config["communication_data_type"] = "fp32"
        config["data_types"] = {"grad_accum_dtype": "fp32"}
    return config


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices; none on biases and norm weights (one-dimensional parameters)."""
    decayed, plain = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decayed if parameter.ndim >= 2 else plain).append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def learning_rate_factor(step: int, total_steps: int, hp: Hyperparameters) -> float:
    """Multiplier of `hp.learning_rate` for optimizer step `step` (0-based)."""
    warmup = math.ceil(hp.warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    floor = hp.min_learning_rate / hp.learning_rate
    span = max(1, total_steps - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_engine(module: torch.nn.Module, hp: Hyperparameters, total_steps: int, config: dict):
    """`deepspeed.initialize` with our optimizer and schedule; returns the engine."""
    import deepspeed

    groups = parameter_groups(module, hp.weight_decay)
    betas = (hp.adam_beta1, hp.adam_beta2)
    if hp.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(groups, lr=hp.learning_rate, betas=betas, eps=hp.adam_epsilon, adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, betas=betas, eps=hp.adam_epsilon, foreach=True)

    def schedule(wrapped_optimizer):
        # Built by DeepSpeed after ZeRO has regrouped the optimizer's parameters.
        return torch.optim.lr_scheduler.LambdaLR(
            wrapped_optimizer, lambda step: learning_rate_factor(step, total_steps, hp)
        )

    engine, _optimizer, _loader, _schedule = deepspeed.initialize(
        model=module, optimizer=optimizer, lr_scheduler=schedule, config=config
    )
    return engine
