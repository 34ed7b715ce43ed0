"""Training hyperparameters: the presets (LIMI's recipe, a small real model on CPU, a tiny CPU run) and validated overrides.

`resolve(preset, overrides)` starts from a preset and applies `key=value` overrides given as
strings (gRPC map, CLI `--set`), converting each to the field's type and rejecting unknown keys
and out-of-range values with `InvalidArgument` naming `hyperparameters.<key>`. The LIMI preset
follows the released scripts (see LIMI_FACTS.md): lr 1e-5 cosine to 1e-6 with warmup, 4 epochs,
global batch 64, weight decay 0.1, betas 0.9/0.98, ZeRO-3 with optimizer CPU offload, full
activation recompute, bf16 on GPU, 131,072-token packs, samples over 125,000 tokens dropped.
It does not build DeepSpeed configs (engine.py) or decide the data order (packing.py).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping

from limi_core.errors import InvalidArgument

PRECISIONS = ("auto", "fp32", "bf16")
ON_AMBIGUOUS = ("fail", "skip")


def _require(condition: bool, field: str, reason: str) -> None:
    if not condition:
        raise InvalidArgument(f"hyperparameters.{field}", reason)


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Everything that decides what a run computes. Field names are the override keys."""

    learning_rate: float = 1e-5
    min_learning_rate: float = 1e-6
    warmup_ratio: float = 0.1
    epochs: int = 4
    # Samples per optimizer step, over all ranks (packed into micro-batches below).
    global_batch_size: int = 64
    # Keep the last optimizer step even when it holds fewer than global_batch_size samples.
    drop_last: bool = False
    # Token budget of one packed micro-batch on one rank.
    pack_tokens: int = 131072
    # Samples longer than this after the chat template are dropped (and reported).
    max_sample_tokens: int = 125000
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-8
    gradient_clipping: float = 1.0
    zero_stage: int = 3
    offload_optimizer: bool = True
    offload_parameters: bool = False
    gradient_checkpointing: bool = True
    # 0: every parameter trains. N: only the last N decoder layers and the final norm; the lower
    # layers, the embeddings and the output head stay frozen, so the backward pass stops N layers
    # from the top (the lever that makes a real model trainable in minutes on CPU).
    trainable_layers: int = 0
    # "auto": bf16 on GPU, fp32 on CPU.
    precision: str = "auto"
    # "auto": flash_attention_2 on GPU when installed, else limi_varlen_sdpa (per-sample SDPA);
    # "sdpa" or "eager" use a block-diagonal mask instead.
    attn_implementation: str = "auto"
    # Logits are computed for at most this many trained tokens at a time.
    loss_chunk_tokens: int = 8192
    seed: int = 42
    # 0: only the final checkpoint.
    checkpoint_every_steps: int = 3
    # DeepSpeed optimizer states kept for resume (Hugging Face weights are always kept).
    keep_resume_states: int = 1
    # A sample whose chat-template rendering is ambiguous fails the run, or is skipped and reported.
    on_ambiguous: str = "fail"

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "learning_rate", "must be positive")
        _require(
            0 <= self.min_learning_rate <= self.learning_rate,
            "min_learning_rate",
            "must be between 0 and learning_rate",
        )
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        _require(self.epochs >= 1, "epochs", "must be at least 1")
        _require(self.global_batch_size >= 1, "global_batch_size", "must be at least 1")
        _require(self.pack_tokens >= 16, "pack_tokens", "must be at least 16")
        _require(
            1 <= self.max_sample_tokens <= self.pack_tokens,
            "max_sample_tokens",
            f"must be between 1 and pack_tokens ({self.pack_tokens})",
        )
        _require(self.weight_decay >= 0, "weight_decay", "must not be negative")
        _require(0 <= self.adam_beta1 < 1, "adam_beta1", "must be in [0, 1)")
        _require(0 <= self.adam_beta2 < 1, "adam_beta2", "must be in [0, 1)")
        _require(self.adam_epsilon > 0, "adam_epsilon", "must be positive")
        _require(self.gradient_clipping >= 0, "gradient_clipping", "must not be negative (0 disables clipping)")
        _require(self.zero_stage in (0, 1, 2, 3), "zero_stage", "must be 0, 1, 2 or 3")
        _require(not self.offload_optimizer or self.zero_stage >= 1, "offload_optimizer", "needs zero_stage 1, 2 or 3")
        _require(not self.offload_parameters or self.zero_stage == 3, "offload_parameters", "needs zero_stage 3")
        _require(self.trainable_layers >= 0, "trainable_layers", "must not be negative (0 trains every layer)")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        _require(self.loss_chunk_tokens >= 1, "loss_chunk_tokens", "must be at least 1")
        _require(self.checkpoint_every_steps >= 0, "checkpoint_every_steps", "must not be negative")
        _require(self.keep_resume_states >= 1, "keep_resume_states", "must be at least 1")
        _require(self.on_ambiguous in ON_AMBIGUOUS, "on_ambiguous", f"must be one of {', '.join(ON_AMBIGUOUS)}")

    def as_strings(self) -> dict[str, str]:
        """Every field as text, for Checkpoint lineage and summaries."""
        return {name: _format(value) for name, value in dataclasses.asdict(self).items()}


LIMI = Hyperparameters()

# A run that trains the tiny model (tiny.py) in seconds on CPU: no offload (no cpu_adam compile).
TINY_CPU = dataclasses.replace(
    LIMI,
    learning_rate=1e-2,
    min_learning_rate=1e-3,
    epochs=8,
    global_batch_size=4,
    pack_tokens=8192,
    max_sample_tokens=8192,
    weight_decay=0.0,
    zero_stage=2,
    offload_optimizer=False,
    gradient_checkpointing=False,
    precision="fp32",
    checkpoint_every_steps=10,
)

# A real small model (SmolLM2-135M-class, about 30 layers) fine-tuned on a few dozen agent samples in
# minutes on 2 CPU cores, the demo's default. The levers, measured in the demo (README): only the
# top layers train (the backward pass stops there, and the frozen bottom is computed once per
# sample: frozen_layers.py), few epochs at a higher rate, small steps so 78 samples make ~20
# updates an epoch, several samples packed per micro-batch, fp32 without offload or recompute.
SMALL_CPU = dataclasses.replace(
    LIMI,
    learning_rate=1e-4,
    min_learning_rate=1e-5,
    epochs=3,
    global_batch_size=4,
    pack_tokens=4096,
    max_sample_tokens=4096,
    weight_decay=0.0,
    zero_stage=2,
    offload_optimizer=False,
    gradient_checkpointing=False,
    trainable_layers=16,
    precision="fp32",
    checkpoint_every_steps=20,
)

PRESETS: dict[str, Hyperparameters] = {"limi": LIMI, "small-cpu": SMALL_CPU, "tiny-cpu": TINY_CPU}


def resolve(preset: str, overrides: Mapping[str, str] | None = None) -> Hyperparameters:
    """The preset with `overrides` applied.

    Raises:
        InvalidArgument: Unknown preset (`preset`), unknown key or bad value (`hyperparameters.<key>`).
    """
    if preset not in PRESETS:
        raise InvalidArgument("preset", f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    hints = typing.get_type_hints(Hyperparameters)
    fields = {field.name for field in dataclasses.fields(Hyperparameters)}
    changes = {}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise InvalidArgument(
                f"hyperparameters.{key}", f"unknown hyperparameter; known: {', '.join(sorted(fields))}"
            )
        changes[key] = _parse(key, raw, hints[key])
    return dataclasses.replace(base, **changes)


def from_strings(values: Mapping[str, str]) -> Hyperparameters:
    """Rebuild hyperparameters from `as_strings()` output (run files, lineage)."""
    return resolve("limi", values)


def _parse(key: str, raw: str, kind: type):
    text = str(raw).strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return kind(text)
    except ValueError:
        raise InvalidArgument(
            f"hyperparameters.{key}",
            f"must be {'true or false' if kind is bool else 'an integer' if kind is int else 'a number' if kind is float else 'text'}, got {raw!r}",
        ) from None


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)
