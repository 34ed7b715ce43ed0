"""Picking N items that cover as many categories and repositories as possible (greedy, deterministic).

Each round picks the item with the largest coverage gain: for every facet (category, repository
...) the facet's weight divided by one plus the number of already chosen items sharing its value.
A category never seen before therefore beats a repeated one, and with the default weights
(category 2, repository 1) a new category beats a new repository. Ties go to the higher quality
score, then to the smaller key, so the same input always gives the same selection. It does not
score quality itself: callers pass `score`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def select_with_coverage(
    items: Sequence[T],
    size: int,
    facets: Sequence[tuple[Callable[[T], str], float]],
    *,
    score: Callable[[T], float],
    key: Callable[[T], str],
) -> list[T]:
    """Up to `size` items, in the order they were picked."""
    remaining = sorted(items, key=key)
    counts = [Counter() for _ in facets]
    chosen: list[T] = []
    while remaining and len(chosen) < size:
        best_index, best_rank = 0, None
        for index, item in enumerate(remaining):
            gain = sum(weight / (1 + counts[f][value(item)]) for f, (value, weight) in enumerate(facets))
            rank = (gain, score(item))
            if best_rank is None or rank > best_rank:
                best_index, best_rank = index, rank
        picked = remaining.pop(best_index)
        for f, (value, _weight) in enumerate(facets):
            counts[f][value(picked)] += 1
        chosen.append(picked)
    return chosen
