"""Training only the top of a decoder: freeze the rest, and compute the frozen bottom once per sample.

`freeze_lower_layers(model, n)` leaves only the last `n` decoder layers and the final norm
trainable (embeddings, lower layers and the output head frozen), so the backward pass stops `n`
layers from the top. `FrozenBottom(model, n)` then saves the forward pass through the frozen
part from the second epoch on: the hidden states that enter the first trainable layer depend
only on the sample's tokens and on weights that never change, so they are computed once per
sample (under no_grad) and kept; each later pass runs only the trainable layers on them. The
cache is per sample, not per pack, because samples are packed differently in every epoch; a
packed row is split at its restarting position ids. The result is the same computation, not an
approximation: a test compares the losses and gradients with the plain forward pass.

It works on decoders that are embeddings, a list of layers and a final norm, whose forward takes
`inputs_embeds` unchanged (no rescaling) and gives every layer the same kind of attention mask:
the model types in SUPPORTED_MODEL_TYPES. `FrozenBottom.supports(model)` says whether a model
qualifies; others train without the cache. It keeps the cache in memory (hidden size x tokens
floats per sample: about 1 MB per 500-token sample of a 576-wide model) and does nothing for
ZeRO-3, whose partitioned parameters it does not handle (the caller decides).
"""

from __future__ import annotations

import contextlib
import hashlib

import torch
from torch import nn

from limi_core.errors import InvalidArgument

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def freeze_lower_layers(model, trainable_layers: int) -> int:
    """Train only the last `trainable_layers` decoder layers and the final norm (0: train everything).

    Returns the number of trainable parameters. Raises InvalidArgument when the model has fewer
    layers, or no list of decoder layers to choose from.
    """
    if trainable_layers == 0:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise InvalidArgument(
            "hyperparameters.trainable_layers", f"{type(model).__name__} has no list of decoder layers to freeze"
        )
    if trainable_layers > len(layers):
        raise InvalidArgument(
            "hyperparameters.trainable_layers",
            f"the model has {len(layers)} decoder layers, fewer than {trainable_layers}",
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trained = [*layers[len(layers) - trainable_layers :]]
    if getattr(decoder, "norm", None) is not None:
        trained.append(decoder.norm)
    for module in trained:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class FrozenBottom:
    """The decoder's forward pass with the frozen bottom computed once per sample; see the module docstring."""

    def __init__(self, model, trainable_layers: int) -> None:
        if not self.supports(model):
            raise ValueError(
                f"{type(model).__name__} ({model.config.model_type}) is not a decoder FrozenBottom supports"
            )
        self.decoder = model.get_decoder()
        layers = list(self.decoder.layers)
        if not 0 < trainable_layers < len(layers):
            raise ValueError(f"trainable_layers must be between 1 and {len(layers) - 1}, got {trainable_layers}")
        cut = len(layers) - trainable_layers
        self._bottom, self._top = nn.ModuleList(layers[:cut]), nn.ModuleList(layers[cut:])
        self._cache: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0

    @staticmethod
    def supports(model) -> bool:
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            return False
        kinds = set(getattr(config, "layer_types", None) or ())
        decoder = model.get_decoder()
        return len(kinds) <= 1 and hasattr(decoder, "layers") and hasattr(decoder, "norm")

    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden state for one packed row (batch of 1), like `decoder(...).last_hidden_state`."""
        entering = self._entering_top(input_ids, position_ids)
        with self._swapped(self._top, keep_norm=True):
            return self.decoder(inputs_embeds=entering, position_ids=position_ids, use_cache=False).last_hidden_state

    def _entering_top(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        starts = (position_ids[0] == 0).nonzero().flatten().tolist() + [input_ids.shape[1]]
        spans = [(a, b) for a, b in zip(starts, starts[1:], strict=False) if b > a]
        keys = [hashlib.blake2b(input_ids[0, a:b].cpu().numpy().tobytes(), digest_size=16).digest() for a, b in spans]
        if all(key in self._cache for key in keys):
            self.hits += len(keys)
            return torch.cat([self._cache[key] for key in keys], dim=0).unsqueeze(0).to(input_ids.device)
        self.misses += len(keys)
        with torch.no_grad(), self._swapped(self._bottom, keep_norm=False):
            hidden = self.decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
        for key, (a, b) in zip(keys, spans, strict=False):
            self._cache[key] = hidden[0, a:b].detach().to("cpu", copy=True)
        return hidden.detach()

    @contextlib.contextmanager
    def _swapped(self, layers: nn.ModuleList, *, keep_norm: bool):
        decoder = self.decoder
        saved_layers, saved_norm = decoder.layers, decoder.norm
        decoder.layers = layers
        if not keep_norm:
            decoder.norm = nn.Identity()
        try:
            yield
        finally:
            decoder.layers, decoder.norm = saved_layers, saved_norm
