"""Training the top layers only: the frozen bottom cached per sample gives the same losses and gradients.

A small Llama and a small Qwen2 decoder (random weights) train their last layer; a packed row of
three samples goes through PackedLossModel with and without FrozenBottom. The summed loss and
every trainable parameter's gradient must match, on the first pass (cache filled) and on a second
pass with the samples packed in another order (cache hit). Frozen parameters get no gradient.
"""

from __future__ import annotations

import pytest
import torch

from limi_core.errors import InvalidArgument
from limi_trainer.causal_lm import PackedLossModel, choose_attention
from limi_trainer.frozen_layers import FrozenBottom, freeze_lower_layers
from limi_trainer.packing import IGNORE_INDEX


def small_model(kind: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(
        vocab_size=120,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    config = LlamaConfig(**common) if kind == "llama" else Qwen2Config(**common)
    config._attn_implementation = choose_attention("auto", on_gpu=False)
    return (LlamaForCausalLM if kind == "llama" else Qwen2ForCausalLM)(config).float()


def packed(samples: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = [t for s in samples for t in s]
    positions = [p for s in samples for p in range(len(s))]
    labels = [IGNORE_INDEX if p < 3 else t for s in samples for p, t in enumerate(s)]
    return {
        "input_ids": torch.tensor([ids]),
        "position_ids": torch.tensor([positions]),
        "labels": torch.tensor([labels]),
    }


def loss_and_grads(module: PackedLossModel, batch) -> tuple[float, dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    loss = module(**batch)
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_cached_bottom_gives_the_same_losses_and_gradients(kind):
    model = small_model(kind)
    trainable = freeze_lower_layers(model, 1)
    assert trainable == sum(p.numel() for p in [*model.model.layers[-1].parameters(), *model.model.norm.parameters()])
    generator = torch.Generator().manual_seed(1)
    samples = [torch.randint(0, 120, (n,), generator=generator).tolist() for n in (9, 14, 6)]
    plain = PackedLossModel(model)
    bottom = FrozenBottom(model, 1)
    cached = PackedLossModel(model, frozen_bottom=bottom)
    for order in ([0, 1, 2], [2, 0, 1]):
        batch = packed([samples[i] for i in order])
        expected_loss, expected_grads = loss_and_grads(plain, batch)
        loss, grads = loss_and_grads(cached, batch)
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        assert grads.keys() == expected_grads.keys() and all(
            name.startswith(("model.model.layers.3.", "model.model.norm")) for name in grads
        )
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-6)
    # The second order reused every sample's frozen bottom.
    assert (bottom.misses, bottom.hits) == (3, 3)
    # The model is whole again after each pass.
    assert len(model.model.layers) == 4 and not isinstance(model.model.norm, torch.nn.Identity)


def test_freezing_more_layers_than_the_model_has_names_the_hyperparameter():
    with pytest.raises(InvalidArgument) as caught:
        freeze_lower_layers(small_model("llama"), 9)
    assert caught.value.field == "hyperparameters.trainable_layers"
