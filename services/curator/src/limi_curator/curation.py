"""Choosing the training set: quality filters, one trajectory per query, one type per argument key, coverage.

Stages (each counted in the funnel): `quality` (trajectory_quality.assess: status, empty turns,
loops, failed tool calls, token length); `argument_types` (drop a sample whose tool-argument types
conflict with the types most samples use, LIMI's columnar rule); `per_query` (the best
`max_per_query` trajectories of each query by score, then id; LIMI trains on one per query);
`selection` (N by category and repository coverage, coverage.py). `draw_at_random` is the
uncurated baseline instead: N drawn uniformly at random, whatever their quality. The facets of a trajectory come
from its query in the pool (category, provenance repository), else from its `category` and
`repository` labels. It writes nothing (dataset_store.py does).
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Callable

from limi.trajectory.v1 import trajectory_pb2
from limi_curator.coverage import select_with_coverage
from limi_curator.funnel import Funnel
from limi_curator.tokens import TokenCounter
from limi_curator.trajectory_quality import ArgumentTypes, Assessment, QualityConfig, assess

Facets = Callable[[trajectory_pb2.Trajectory], tuple[str, str]]


@dataclasses.dataclass
class CurationResult:
    selected: list[Assessment]
    categories: list[str]
    funnel: Funnel


def curate(
    trajectories: list[trajectory_pb2.Trajectory],
    *,
    size: int,
    counter: TokenCounter,
    config: QualityConfig,
    max_per_query: int,
    facets: Facets,
) -> CurationResult:
    funnel = Funnel()
    funnel.keep("input", len(trajectories))
    passing: list[Assessment] = []
    for trajectory in trajectories:
        assessment = assess(trajectory, counter, config)
        if assessment.problem:
            funnel.drop("quality", trajectory.id, *assessment.problem)
        else:
            funnel.keep("quality")
            passing.append(assessment)

    types = ArgumentTypes.by_majority([a.sample for a in passing])
    consistent: list[Assessment] = []
    for assessment in passing:
        conflict = types.conflict(assessment.sample)
        if conflict:
            funnel.drop("argument_types", assessment.id, "argument_type_conflict", conflict)
            continue
        consistent.append(assessment)
    funnel.keep("argument_types", len(consistent))

    by_query: dict[str, list[Assessment]] = defaultdict(list)
    for assessment in consistent:
        by_query[assessment.trajectory.lineage.query_id or assessment.id].append(assessment)
    best: list[Assessment] = []
    for group in by_query.values():
        group.sort(key=lambda a: (-a.score, a.id))
        best.extend(group[:max_per_query])
        for extra in group[max_per_query:]:
            funnel.drop("per_query", extra.id, "not_best_for_query", f"query {extra.trajectory.lineage.query_id}")
    funnel.keep("per_query", len(best))

    facet_of = {a.id: facets(a.trajectory) for a in best}
    selected = select_with_coverage(
        best,
        size,
        [(lambda a: facet_of[a.id][0], 2.0), (lambda a: facet_of[a.id][1], 1.0)],
        score=lambda a: a.score,
        key=lambda a: a.id,
    )
    chosen = {a.id for a in selected}
    funnel.keep("selection", len(selected))
    for assessment in best:
        if assessment.id not in chosen:
            funnel.drop("selection", assessment.id, "not_selected", "coverage already reached by others")
    return CurationResult(selected, [facet_of[a.id][0] for a in selected], funnel)


def draw_at_random(
    trajectories: list[trajectory_pb2.Trajectory],
    *,
    size: int,
    seed: int,
    counter: TokenCounter,
    max_tokens: int,
    facets: Facets,
) -> CurationResult:
    """No curation: `size` trajectories drawn uniformly at random (the same for the same seed).

    Only what cannot be written as a LIMI sample, or is longer than `max_tokens`, is left out;
    failed, looping and erroneous trajectories stay in, as they would in raw logs.
    """
    funnel = Funnel()
    funnel.keep("input", len(trajectories))
    permissive = QualityConfig(
        max_tokens, include_failed=True, max_failed_tool_rate=1.0, loop_repeats=1 << 30, max_empty_turns=1 << 30
    )
    usable: list[Assessment] = []
    for trajectory in sorted(trajectories, key=lambda t: t.id):
        assessment = assess(trajectory, counter, permissive)
        if assessment.problem:
            funnel.drop("usable", trajectory.id, *assessment.problem)
        else:
            usable.append(assessment)
    funnel.keep("usable", len(usable))
    selected = random.Random(seed).sample(usable, min(size, len(usable)))
    chosen = {a.id for a in selected}
    funnel.keep("random_draw", len(selected))
    for assessment in usable:
        if assessment.id not in chosen:
            funnel.drop("random_draw", assessment.id, "not_drawn", f"seed {seed}")
    return CurationResult(selected, [facets(a.trajectory)[0] for a in selected], funnel)
