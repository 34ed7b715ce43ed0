"""Variable-length attention for packed rows without flash-attn: one causal SDPA call per sample.

A packed row holds several samples whose position ids restart at 0. Flash attention reads those
boundaries and attends within each sample (varlen); plain SDPA instead needs a block-diagonal
mask over the whole row, which computes every cross-sample score only to mask it away and costs
O(row length squared). `packed_sdpa_attention` finds the boundaries in the position ids and runs
causal `scaled_dot_product_attention` on each sample's slice, so a pack costs what its samples
cost alone. It is registered with transformers as `limi_varlen_sdpa` (no mask is built for it)
and falls back to ordinary SDPA for anything that is not a single packed training row (a
batch, a KV cache during generation). It changes no weights: a model trained with it loads and
runs with any attention implementation.
"""

from __future__ import annotations

import torch
from torch.nn import functional

NAME = "limi_varlen_sdpa"
_registered = False


def packed_sdpa_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids=None,
    **kwargs,
):
    """Attention over [batch, heads, length, head_dim] tensors; returns ([batch, length, heads, head_dim], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    single_row = query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if position_ids is None or attention_mask is not None or not single_row:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=attention_mask is None,
            **kwargs,
        )
    length = query.shape[2]
    starts = torch.nonzero(position_ids.reshape(-1)[:length] == 0).flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    bounds = list(zip(starts, [*starts[1:], length], strict=False))
    grouped = key.shape[1] != query.shape[1]
    pieces = [
        functional.scaled_dot_product_attention(
            query[:, :, a:b],
            key[:, :, a:b],
            value[:, :, a:b],
            dropout_p=dropout if module.training else 0.0,
            is_causal=True,
            scale=scaling,
            enable_gqa=grouped,
        )
        for a, b in bounds
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make `limi_varlen_sdpa` a valid `attn_implementation`; returns the name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, packed_sdpa_attention)
        _registered = True
    return NAME
