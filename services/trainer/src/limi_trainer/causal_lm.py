"""The model side of training: load a Hugging Face causal LM and compute the summed loss of a pack.

`load_model` reads a base model in Hugging Face format with the precision and attention
implementation the run asks for, and turns on activation recompute. `PackedLossModel` wraps it
as the one module DeepSpeed trains: its forward takes a packed row (collate in packing.py) and
returns the SUM of the cross-entropy over trained tokens. Logits are computed only at trained
positions, a chunk at a time under activation checkpointing, so a 131k-token pack never holds
full-vocabulary logits for every position. The caller divides by the step's trained-token count,
which makes the loss a per-token mean over the whole optimizer step (every micro-batch and rank).
It does not build optimizers or DeepSpeed engines (engine.py).
"""

from __future__ import annotations

import pathlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from limi_trainer import varlen_attention
from limi_trainer.frozen_layers import FrozenBottom
from limi_trainer.packing import IGNORE_INDEX


def choose_attention(requested: str, on_gpu: bool) -> str:
    """ "auto": flash_attention_2 (varlen) on GPU when flash-attn is installed, else the per-sample
    SDPA of varlen_attention.py; any other value is passed to transformers as is."""
    if requested == varlen_attention.NAME or requested == "auto" and not (on_gpu and _has_flash_attention()):
        return varlen_attention.register()
    if requested == "auto":
        return "flash_attention_2"
    return requested


def _has_flash_attention() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def load_model(path: str | pathlib.Path, *, dtype: torch.dtype, attn_implementation: str, gradient_checkpointing: bool):
    """A causal LM from a Hugging Face directory (or hub id), ready for training."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation=attn_implementation)
    model.config.use_cache = False
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


class PackedLossModel(nn.Module):
    """A causal LM whose forward returns the summed token loss of one packed row."""

    def __init__(
        self, model: nn.Module, loss_chunk_tokens: int = 8192, frozen_bottom: FrozenBottom | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_chunk_tokens = loss_chunk_tokens
        # Set when only the top layers train: the frozen bottom's output is computed once per sample.
        self.frozen_bottom = frozen_bottom

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        decoder = self.model.get_decoder()
        head = self.model.get_output_embeddings()
        # No attention mask: the restarting position ids mark the samples (varlen attention, or a
        # block-diagonal causal mask that transformers derives from them for sdpa and eager).
        if self.frozen_bottom is not None:
            hidden = self.frozen_bottom(input_ids, position_ids)
        else:
            hidden = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        trained = targets != IGNORE_INDEX
        states = hidden[:, :-1][trained]
        wanted = targets[trained]
        if wanted.numel() == 0:
            # A filler micro-batch: touch every parameter with zero weight so gradients exist everywhere.
            return (head(hidden[:, :1]).float().sum() + hidden.float().sum()) * 0.0
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, wanted.numel(), self.loss_chunk_tokens):
            stop = start + self.loss_chunk_tokens
            total = total + checkpoint(_chunk_loss, head, states[start:stop], wanted[start:stop], use_reentrant=False)
        return total


def _chunk_loss(head: nn.Module, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(states).float()
    return nn.functional.cross_entropy(logits, targets, reduction="sum")
