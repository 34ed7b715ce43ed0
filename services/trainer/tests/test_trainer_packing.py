"""Data order and packing: every sample once per epoch, budgets kept, no attention across samples."""

from __future__ import annotations

import collections
import math

import pytest
import torch

from limi_testing.synthetic_samples import limi_like_lengths, tool_use_sample, varied_length_samples
from limi_trainer.causal_lm import PackedLossModel
from limi_trainer.packing import (
    IGNORE_INDEX,
    build_plan,
    collate,
    first_fit_decreasing,
    optimizer_steps,
    pack_samples,
    packing_efficiency,
    plan_step,
)
from limi_trainer.rendering import render_sample


def test_every_sample_is_trained_once_per_epoch_in_a_seeded_order():
    steps = optimizer_steps(range(10), epochs=3, global_batch_size=4, seed=7)
    stream = [i for step in steps for i in step]
    assert len(stream) == 30 and [len(s) for s in steps] == [4] * 7 + [2]
    for epoch in range(3):
        assert sorted(stream[epoch * 10 : (epoch + 1) * 10]) == list(range(10))
    assert steps == optimizer_steps(range(10), epochs=3, global_batch_size=4, seed=7)
    assert steps != optimizer_steps(range(10), epochs=3, global_batch_size=4, seed=8)
    assert len(optimizer_steps(range(10), epochs=3, global_batch_size=4, seed=7, drop_last=True)) == 7


def test_packs_respect_the_budget_and_hold_every_sample_once():
    lengths = dict(enumerate(limi_like_lengths()))
    kept = [i for i, n in lengths.items() if n <= 125_000]
    for step in optimizer_steps(kept, epochs=1, global_batch_size=64, seed=0):
        packs = pack_samples(lengths, step, 131_072)
        assert sorted(i for pack in packs for i in pack) == sorted(step)
        assert all(sum(lengths[i] for i in pack) <= 131_072 for pack in packs)
        assert len(packs) <= len(first_fit_decreasing(lengths, step, 131_072))
        assert len(packs) >= math.ceil(sum(lengths[i] for i in step) / 131_072)


def test_limi_like_distribution_packs_densely():
    lengths = limi_like_lengths()
    assert min(lengths) == 13_000 and max(lengths) == 152_000 and abs(sum(lengths) / len(lengths) - 42_400) < 500
    kept = [n for n in lengths if n <= 125_000] * 2  # LIMI's preparation: drop over 125k, repeat twice
    efficiency = packing_efficiency(kept, 131_072, global_batch_size=64, epochs=4)
    assert 0.9 < efficiency <= 1.0


def test_ranks_get_the_same_number_of_micro_batches():
    lengths = {i: 100 * (i + 1) for i in range(7)}
    step = plan_step(list(range(7)), lengths, dict.fromkeys(lengths, 1), budget=1000, world_size=4)
    depths = {len(packs) for packs in step.packs_per_rank}
    assert len(depths) == 1
    flat = [i for packs in step.packs_per_rank for pack in packs for i in pack]
    assert sorted(flat) == list(range(7))
    assert step.tokens == sum(lengths.values()) and step.trained_tokens == 7


def test_plan_digest_changes_with_the_data_order():
    lengths = {i: 50 + i for i in range(12)}
    trained = dict.fromkeys(lengths, 3)
    one = build_plan(lengths, trained, epochs=2, global_batch_size=4, seed=1, drop_last=False, budget=200, world_size=1)
    same = build_plan(
        lengths, trained, epochs=2, global_batch_size=4, seed=1, drop_last=False, budget=200, world_size=1
    )
    other = build_plan(
        lengths, trained, epochs=2, global_batch_size=4, seed=2, drop_last=False, budget=200, world_size=1
    )
    assert one.digest() == same.digest() != other.digest()
    counts = collections.Counter(i for step in one.steps for i in step.samples)
    assert set(counts.values()) == {2}


@pytest.fixture(scope="module", params=["limi_varlen_sdpa", "sdpa"])
def model_and_samples(tiny_model, request):
    """The tiny model with per-sample SDPA (the CPU default) or SDPA with a block-diagonal mask."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from limi_trainer.causal_lm import choose_attention

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model, attn_implementation=choose_attention(request.param, on_gpu=False)
    )
    model.eval()
    samples = [render_sample(tokenizer, tool_use_sample(n)) for n in range(3)]
    return model, tokenizer, samples


def test_collate_restarts_positions_and_ignores_each_samples_first_label(model_and_samples):
    _model, tokenizer, samples = model_and_samples
    batch = collate(samples, tokenizer.pad_token_id)
    starts = [0, len(samples[0]), len(samples[0]) + len(samples[1])]
    assert batch["input_ids"].shape == (1, sum(len(s) for s in samples))
    for start, sample in zip(starts, samples, strict=False):
        assert batch["position_ids"][0, start : start + len(sample)].tolist() == list(range(len(sample)))
        assert batch["labels"][0, start].item() == IGNORE_INDEX
    trained = (batch["labels"] != IGNORE_INDEX).sum().item()
    assert trained == sum(sum(s.loss_mask[1:]) for s in samples)
    empty = collate([], tokenizer.pad_token_id)
    assert empty["input_ids"].shape == (1, 1) and empty["labels"].item() == IGNORE_INDEX


def test_a_packed_row_computes_what_the_samples_compute_alone(model_and_samples):
    model, tokenizer, samples = model_and_samples
    with torch.no_grad():
        batch = collate(samples, tokenizer.pad_token_id)
        hidden = model.get_decoder()(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).last_hidden_state
        start = 0
        for sample in samples:
            alone = model.get_decoder()(input_ids=torch.tensor([sample.input_ids]), use_cache=False).last_hidden_state
            assert torch.allclose(hidden[0, start : start + len(sample)], alone[0], atol=1e-4)
            start += len(sample)
        loss = PackedLossModel(model)
        packed = loss(**batch)
        separate = sum(loss(**collate([s], tokenizer.pad_token_id)) for s in samples)
        assert torch.allclose(packed, separate, rtol=1e-5)
        chunked = PackedLossModel(model, loss_chunk_tokens=7)(**batch)
        assert torch.allclose(packed, chunked, rtol=1e-5)


def test_varied_length_samples_spread_out(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    lengths = [len(render_sample(tokenizer, s)) for s in varied_length_samples(20, seed=3)]
    assert max(lengths) > 3 * min(lengths)
