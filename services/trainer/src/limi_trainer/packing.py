"""The data order of a run and the packing of each optimizer step into fixed token budgets.

`optimizer_steps` fixes, from the seed alone, which samples every optimizer step trains on:
each epoch is a seeded permutation of the sample indices, the epochs are concatenated, and the
stream is cut into global batches. It depends on nothing that changes when a run resumes, so a
resumed run continues the same order (no sample skipped or repeated).

`plan_step` packs one step's samples into micro-batches of at most `budget` tokens
(first-fit-decreasing, improved by a bounded search towards ceil(tokens / budget) packs), then
deals the packs to the ranks so that every rank runs the same number of micro-batches (an empty
pack runs with zero loss weight where a rank has fewer). `collate` concatenates a pack into one
row whose position ids restart at 0 for every sample: attention reads the sample boundaries from
them (flash attention's varlen path on GPU, per-sample SDPA from varlen_attention.py on CPU, or
a block-diagonal causal mask that transformers derives for plain sdpa/eager), so no token
attends across samples. The label of the first token of every sample is ignored so that no
sample predicts the next one's first token. This module does not tokenize and does not touch the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
from collections.abc import Sequence

import torch

from limi_trainer.rendering import RenderedSample

IGNORE_INDEX = -100


def optimizer_steps(
    indices: Sequence[int], *, epochs: int, global_batch_size: int, seed: int, drop_last: bool = False
) -> list[list[int]]:
    """The sample indices of every optimizer step, in training order."""
    stream: list[int] = []
    for epoch in range(epochs):
        order = list(indices)
        random.Random(f"limi-data-order:{seed}:{epoch}").shuffle(order)
        stream.extend(order)
    steps = [stream[i : i + global_batch_size] for i in range(0, len(stream), global_batch_size)]
    if drop_last and steps and len(steps[-1]) < global_batch_size:
        steps.pop()
    return steps


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """One optimizer step: for each rank, its packs (lists of sample indices, [] = empty pack)."""

    samples: tuple[int, ...]
    packs_per_rank: tuple[tuple[tuple[int, ...], ...], ...]
    tokens: int
    trained_tokens: int

    @property
    def micro_batches(self) -> int:
        return len(self.packs_per_rank[0])


def first_fit_decreasing(lengths: dict[int, int], indices: Sequence[int], budget: int) -> list[list[int]]:
    """Pack `indices` into bins of at most `budget` tokens; ties keep the data order."""
    position = {index: p for p, index in enumerate(indices)}
    order = sorted(indices, key=lambda i: (-lengths[i], position[i]))
    bins: list[list[int]] = []
    room: list[int] = []
    for index in order:
        length = lengths[index]
        if length > budget:
            raise ValueError(f"sample {index} has {length} tokens, over the pack budget of {budget}")
        for b, free in enumerate(room):
            if length <= free:
                bins[b].append(index)
                room[b] -= length
                break
        else:
            bins.append([index])
            room.append(budget - length)
    return bins


def pack_samples(
    lengths: dict[int, int], indices: Sequence[int], budget: int, *, multiple_of: int = 1, restarts: int = 8
) -> list[list[int]]:
    """Pack `indices` into as few bins of at most `budget` tokens as a bounded search finds.

    Starts from first-fit-decreasing; then, for each bin count from the lower bound
    ceil(tokens / budget) up to first-fit-decreasing's count (only multiples of `multiple_of`,
    so that every rank gets the same number of packs), tries a few deterministic starting
    assignments and repairs overfull bins by moving or swapping samples; the first that fits
    wins. Deterministic; the samples of a bin keep their data order.
    """
    best = first_fit_decreasing(lengths, indices, budget)
    floor = math.ceil(sum(lengths[i] for i in indices) / budget)
    ceiling = math.ceil(len(best) / multiple_of) * multiple_of
    for count in range(math.ceil(floor / multiple_of) * multiple_of, ceiling + 1, multiple_of):
        if count == len(best):
            break
        starts = [_largest_first(lengths, indices, count)] + [
            _random_fit(lengths, indices, count, budget, seed) for seed in range(restarts)
        ]
        found = next((bins for bins in (_repair(lengths, start, budget) for start in starts) if bins is not None), None)
        if found is not None:
            best = found
            break
    position = {index: p for p, index in enumerate(indices)}
    packs = [sorted(b, key=position.__getitem__) for b in best if b]
    return sorted(packs, key=lambda pack: position[pack[0]])


def _largest_first(lengths: dict[int, int], indices: Sequence[int], count: int) -> list[list[int]]:
    bins: list[list[int]] = [[] for _ in range(count)]
    load = [0] * count
    for index in sorted(indices, key=lambda i: -lengths[i]):
        b = min(range(count), key=load.__getitem__)
        bins[b].append(index)
        load[b] += lengths[index]
    return bins


def _random_fit(lengths: dict[int, int], indices: Sequence[int], count: int, budget: int, seed: int) -> list[list[int]]:
    chooser = random.Random(f"limi-pack:{seed}")
    bins: list[list[int]] = [[] for _ in range(count)]
    load = [0] * count
    for index in sorted(indices, key=lambda i: -lengths[i]):
        fits = [b for b in range(count) if load[b] + lengths[index] <= budget]
        b = chooser.choice(fits) if fits else min(range(count), key=load.__getitem__)
        bins[b].append(index)
        load[b] += lengths[index]
    return bins


def _repair(
    lengths: dict[int, int], bins: list[list[int]], budget: int, max_rounds: int = 400
) -> list[list[int]] | None:
    """Move one or two samples out of an overfull bin (optionally swapping one back) while the
    total overflow shrinks; the bins when none is overfull, else None."""
    load = [sum(lengths[i] for i in b) for b in bins]

    def overflow(tokens: int) -> int:
        return max(0, tokens - budget)

    for _ in range(max_rounds):
        hot = [b for b in range(len(bins)) if load[b] > budget]
        if not hot:
            return bins
        best_gain, best_move = 0, None
        for h in hot:
            for group in [(a,) for a in bins[h]] + list(itertools.combinations(bins[h], 2)):
                moved = sum(lengths[a] for a in group)
                for b in range(len(bins)):
                    if b == h:
                        continue
                    before = overflow(load[h]) + overflow(load[b])
                    for back in [None, *bins[b]]:
                        delta = moved - (lengths[back] if back is not None else 0)
                        if delta <= 0:
                            continue
                        gain = before - overflow(load[h] - delta) - overflow(load[b] + delta)
                        if gain > best_gain:
                            best_gain, best_move = gain, (h, group, b, back)
        if best_move is None:
            return None
        h, group, b, back = best_move
        for a in group:
            bins[h].remove(a)
            bins[b].append(a)
            load[h] -= lengths[a]
            load[b] += lengths[a]
        if back is not None:
            bins[b].remove(back)
            bins[h].append(back)
            load[b] -= lengths[back]
            load[h] += lengths[back]
    return None


def plan_step(
    samples: Sequence[int], lengths: dict[int, int], trained: dict[int, int], budget: int, world_size: int
) -> StepPlan:
    """Pack one step's samples and deal the packs to `world_size` ranks, balancing tokens."""
    packs = pack_samples(lengths, samples, budget, multiple_of=world_size)
    per_rank: list[list[tuple[int, ...]]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for pack in sorted(packs, key=lambda p: -sum(lengths[i] for i in p)):
        rank = min(range(world_size), key=lambda r: (len(per_rank[r]), load[r]))
        per_rank[rank].append(tuple(pack))
        load[rank] += sum(lengths[i] for i in pack)
    depth = max(len(packs) for packs in per_rank)
    for packs in per_rank:
        packs.extend([()] * (depth - len(packs)))
    return StepPlan(
        samples=tuple(samples),
        packs_per_rank=tuple(tuple(packs) for packs in per_rank),
        tokens=sum(lengths[i] for i in samples),
        trained_tokens=sum(trained[i] for i in samples),
    )


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    steps: tuple[StepPlan, ...]
    budget: int
    world_size: int

    @property
    def total_steps(self) -> int:
        return len(self.steps)

    @property
    def packing_efficiency(self) -> float:
        """Real tokens over the token budget of every micro-batch run (empty packs included)."""
        slots = sum(step.micro_batches * self.world_size for step in self.steps) * self.budget
        return sum(step.tokens for step in self.steps) / slots if slots else 0.0

    def digest(self) -> str:
        """Identifies the data order and packing; a checkpoint resumes only the plan it was written for."""
        text = json.dumps([[list(packs) for packs in step.packs_per_rank] for step in self.steps])
        return hashlib.sha256(f"{self.budget}:{self.world_size}:{text}".encode()).hexdigest()[:16]


def build_plan(
    lengths: dict[int, int],
    trained: dict[int, int],
    *,
    epochs: int,
    global_batch_size: int,
    seed: int,
    drop_last: bool,
    budget: int,
    world_size: int,
) -> TrainingPlan:
    """The whole run's plan from each sample's token count and trained-label count."""
    steps = optimizer_steps(
        sorted(lengths), epochs=epochs, global_batch_size=global_batch_size, seed=seed, drop_last=drop_last
    )
    return TrainingPlan(
        tuple(plan_step(step, lengths, trained, budget, world_size) for step in steps), budget, world_size
    )


def trained_labels(sample: RenderedSample) -> int:
    """Trained tokens that are predicted from context (every one except a sample's first token)."""
    return sum(sample.loss_mask[1:])


def collate(pack: Sequence[RenderedSample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One packed row: input_ids, position_ids restarting per sample, labels (-100 where untrained).

    An empty pack becomes a one-token row with no label (a rank's filler micro-batch).
    """
    if not pack:
        one = torch.tensor([[pad_token_id]])
        return {"input_ids": one, "position_ids": torch.zeros_like(one), "labels": torch.full_like(one, IGNORE_INDEX)}
    ids, positions, labels = [], [], []
    for sample in pack:
        ids.extend(sample.input_ids)
        positions.extend(range(len(sample)))
        sample_labels = [
            token if trained else IGNORE_INDEX
            for token, trained in zip(sample.input_ids, sample.loss_mask, strict=False)
        ]
        sample_labels[0] = IGNORE_INDEX
        labels.extend(sample_labels)
    return {
        "input_ids": torch.tensor([ids]),
        "position_ids": torch.tensor([positions]),
        "labels": torch.tensor([labels]),
    }


def packing_efficiency(
    lengths: Sequence[int], budget: int, *, global_batch_size: int, epochs: int = 1, world_size: int = 1, seed: int = 0
) -> float:
    """Packing efficiency of a length distribution under the trainer's own plan (no model needed)."""
    by_index = dict(enumerate(lengths))
    plan = build_plan(
        by_index,
        dict.fromkeys(by_index, 0),
        epochs=epochs,
        global_batch_size=global_batch_size,
        seed=seed,
        drop_last=False,
        budget=budget,
        world_size=world_size,
    )
    return plan.packing_efficiency
