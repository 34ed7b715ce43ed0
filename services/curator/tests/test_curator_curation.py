"""Trajectory curation: quality filters, argument types, coverage selection, versioned datasets and their report."""

from __future__ import annotations

import hashlib
import json
import pathlib
import struct

import pytest

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2
from limi_core import limi_format
from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_curator.curator import Curator
from limi_curator.tokens import FALLBACK_NAME, WordPunctFallback, load_token_counter, render_for_counting
from limi_curator.trajectory_quality import ArgumentTypes, QualityConfig, assess

COMPLETED, FAILED = trajectory_pb2.OUTCOME_STATUS_COMPLETED, trajectory_pb2.OUTCOME_STATUS_FAILED
CATEGORIES = ("backend", "frontend", "debugging", "deployment", "optimization", "data_processing")


@pytest.fixture
def curator(settings):
    curator = Curator(settings)
    yield curator
    curator.close()


def _pool(curator, count: int) -> list[query_pb2.Query]:
    rows = [
        {
            "text": f"Task {i}: fix the request handlers of service {i} so that an empty body no longer crashes them, and add tests.",
            "category": CATEGORIES[i % len(CATEGORIES)],
            "repository": f"org/repo-{i % 4}",
        }
        for i in range(count)
    ]
    ids = curator.import_queries(
        "jsonl", "\n".join(json.dumps(r) for r in rows).encode(), "pool.jsonl", query_pb2.QUERY_SOURCE_REAL
    )[0]
    return [curator.pool.get(query_id) for query_id in ids]


def test_each_defect_is_caught_under_its_reason(trajectory_factory):
    counter, config = WordPunctFallback(), QualityConfig(max_tokens=5_000)
    cases = {
        "clean": (trajectory_factory("clean"), None),
        "failed": (trajectory_factory("failed", status=FAILED), "not_completed"),
        "empty": (trajectory_factory("empty", empty_turns=1), "empty_turns"),
        "loop": (trajectory_factory("loop", loop=3), "looping"),
        "broken-tools": (trajectory_factory("broken-tools", turns=1, failed_calls=4), "failed_tool_calls"),
        "long": (trajectory_factory("long", turns=6, padding=400), "too_long"),
    }
    for name, (trajectory, reason) in cases.items():
        result = assess(trajectory, counter, config)
        assert (result.problem[0] if result.problem else None) == reason, (name, result.problem)
    clean = assess(cases["clean"][0], counter, config)
    assert clean.tool_calls == 12 and clean.failed_tool_calls == 0 and clean.score == 1.0
    assert clean.tokens == counter.count(
        render_for_counting(limi_format.trajectory_to_limi(cases["clean"][0], strict=True))
    )
    assert assess(cases["failed"][0], counter, QualityConfig(include_failed=True)).problem is None
    assert assess(trajectory_factory("two-loops", loop=2), counter, config).problem is None


def test_argument_types_follow_limis_columnar_rule(trajectory_factory):
    types = ArgumentTypes()
    first = limi_format.trajectory_to_limi(trajectory_factory("a", timeout_value=60), strict=True)
    as_text = limi_format.trajectory_to_limi(trajectory_factory("b", timeout_value="60"), strict=True)
    as_float = limi_format.trajectory_to_limi(trajectory_factory("c", timeout_value=60.5), strict=True)
    assert types.conflict(first) is None
    types.keep(first)
    assert types.conflict(as_text) == "argument 'timeout' is str here but int elsewhere"
    assert types.conflict(as_float) == "argument 'timeout' is float here but int elsewhere"
    majority = ArgumentTypes.by_majority(
        [as_text, first, limi_format.trajectory_to_limi(trajectory_factory("d"), strict=True)]
    )
    assert majority.types["timeout"] == "int" and majority.conflict(as_text) and majority.conflict(first) is None


def test_token_lengths_with_a_tokenizer_json_differ_from_the_fallback(trajectory_factory, tiny_tokenizer):
    text = render_for_counting(limi_format.trajectory_to_limi(trajectory_factory("t"), strict=True))
    exact = load_token_counter(tiny_tokenizer)
    assert exact.count(text) > 0 and exact.count(text) != WordPunctFallback().count(text)
    assert load_token_counter(None).name == FALLBACK_NAME


def test_curation_keeps_the_best_per_query_and_covers_categories(curator, trajectory_factory, tiny_tokenizer):
    queries = _pool(curator, 12)
    stored = []
    for i, query in enumerate(queries):
        stored.append(trajectory_factory(f"traj-{i}-a", query, turns=2 + i % 5, score=0.9))
        stored.append(trajectory_factory(f"traj-{i}-b", query, turns=3, score=0.6))
    stored += [
        trajectory_factory("defect-loop", queries[0], loop=4),
        trajectory_factory("defect-failed", queries[1], status=FAILED),
        trajectory_factory("defect-types", queries[2], timeout_value="sixty", score=0.95),
    ]
    for number, trajectory in enumerate(stored):
        assert curator.trajectories.record_consumed(trajectory, f"trajectory:{trajectory.id}:{number}")
    dataset, new = curator.curate_dataset(
        name="agentic-v1",
        size=6,
        tokenizer=str(tiny_tokenizer),
        max_tokens=0,
        query_set_ids=[],
        include_failed=False,
        overrides={},
    )
    assert new and dataset.version == 1 and dataset.stats.count == 6
    assert set(dataset.stats.categories) == set(CATEGORIES), "six picks, six categories"
    assert all(tid.endswith("-a") for tid in dataset.trajectory_ids)
    assert dataset.tokenizer == f"tokenizer.json:{tiny_tokenizer.resolve()}"
    _dataset, counts, lengths = curator.datasets.details(dataset.id)
    assert counts["quality.dropped.looping"] == 1 and counts["quality.dropped.not_completed"] == 1
    assert counts["argument_types.dropped.argument_type_conflict"] == 1, (
        "the 'sixty' sample loses to the integer timeouts of the others"
    )
    assert counts["per_query.dropped.not_best_for_query"] == 12 and counts["selection.kept"] == 6
    assert dataset.stats.tokens_min == min(lengths) and dataset.stats.tokens_max == max(lengths)
    assert dataset.stats.tokens_mean == pytest.approx(sum(lengths) / len(lengths))

    path = pathlib.Path(dataset.storage_uri.removeprefix("file://"))
    content = path.read_bytes()
    assert hashlib.sha256(content).hexdigest() == dataset.content_hash
    lines = content.decode().splitlines()
    assert len(lines) == 6
    for line, trajectory_id in zip(lines, dataset.trajectory_ids, strict=True):
        sample = json.loads(line)
        assert set(sample) == {"tools", "messages", "limi"}
        assert limi_format.limi_to_trajectory(sample) == next(t for t in stored if t.id == trajectory_id)
        call = next(m for m in sample["messages"] if m.get("tool_calls"))["tool_calls"][0]
        assert isinstance(call["function"]["arguments"], dict)

    again, new_again = curator.curate_dataset(
        name="agentic-v1",
        size=6,
        tokenizer=str(tiny_tokenizer),
        max_tokens=0,
        query_set_ids=[],
        include_failed=False,
        overrides={},
    )
    assert (again.id, new_again) == (dataset.id, False)
    bigger, _ = curator.curate_dataset(
        name="agentic-v1",
        size=8,
        tokenizer=str(tiny_tokenizer),
        max_tokens=0,
        query_set_ids=[],
        include_failed=False,
        overrides={},
    )
    assert bigger.version == 2 and bigger.id != dataset.id


def test_the_report_has_a_png_histogram_and_a_markdown_summary(curator, trajectory_factory):
    queries = _pool(curator, 6)
    for i, query in enumerate(queries):
        curator.trajectories.record_consumed(trajectory_factory(f"t{i}", query, turns=1 + i), f"m{i}")
    dataset, _ = curator.curate_dataset(
        name="report-check", size=6, tokenizer="", max_tokens=0, query_set_ids=[], include_failed=False, overrides={}
    )
    rendered, counts, _ = curator.report(dataset.id)
    assert rendered.png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", rendered.png[16:24])
    assert (width, height) == (1100, 420)
    assert rendered.png_path.read_bytes() == rendered.png and rendered.markdown_path.read_text() == rendered.markdown
    assert "- samples: 6" in rendered.markdown and f"tokenizer: {FALLBACK_NAME}" in rendered.markdown
    for category in CATEGORIES:
        assert f"| {category} | 1 |" in rendered.markdown
    assert "| selection.kept | 6 |" in rendered.markdown and counts["selection.kept"] == 6


def test_consumed_trajectories_are_stored_once_and_move_their_query_status(curator, trajectory_factory):
    first, second = _pool(curator, 2)
    done = trajectory_factory("done", first)
    assert curator.trajectories.record_consumed(done, "trajectory:q1:1")
    assert not curator.trajectories.record_consumed(done, "trajectory:q1:1"), "a redelivery changes nothing"
    assert curator.trajectories.record_consumed(done, "trajectory:q1:1-republished"), (
        "another message id, same trajectory"
    )
    assert curator.trajectories.count() == 1
    assert curator.pool.status(first.id) == query_pb2.QUERY_STATUS_COMPLETED
    curator.trajectories.record_consumed(trajectory_factory("bad", second, status=FAILED), "trajectory:q2:1")
    assert curator.pool.status(second.id) == query_pb2.QUERY_STATUS_FAILED
    curator.trajectories.record_consumed(trajectory_factory("late-failure", first, status=FAILED), "trajectory:q1:2")
    assert curator.pool.status(first.id) == query_pb2.QUERY_STATUS_COMPLETED, "a failure never undoes a completion"


def test_curation_requests_are_checked(curator, trajectory_factory):
    base = dict(name="d", size=1, tokenizer="", max_tokens=0, query_set_ids=[], include_failed=False, overrides={})
    with pytest.raises(FailedPrecondition, match="no trajectories are stored yet"):
        curator.curate_dataset(**base)
    curator.trajectories.record_consumed(trajectory_factory("only", loop=5), "m1")
    with pytest.raises(FailedPrecondition, match="no trajectory passed the filters: .*'quality.dropped.looping': 1"):
        curator.curate_dataset(**base)
    for change, field in [
        ({"size": 0}, "size"),
        ({"name": "no spaces"}, "name"),
        ({"query_set_ids": ["ghost"]}, "query_set_ids[0]"),
        ({"overrides": {"max_per_query": 0}}, "filters.max_per_query"),
        ({"overrides": {"loop_repeats": 1}}, "filters.loop_repeats"),
        ({"tokenizer": "/missing/tokenizer.json"}, "tokenizer"),
        ({"max_tokens": -5}, "max_tokens"),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            curator.curate_dataset(**{**base, **change})
        assert caught.value.field == field


def test_random_draw_keeps_defects_and_repeats_for_the_same_seed(trajectory_factory):
    from limi_curator.curation import draw_at_random

    trajectories = [trajectory_factory(f"clean-{i}") for i in range(6)] + [
        trajectory_factory("failed", status=FAILED),
        trajectory_factory("loop", loop=3),
        trajectory_factory("broken-tools", turns=1, failed_calls=4),
        trajectory_factory("long", turns=6, padding=400),
    ]

    def facets(_t):
        return ("backend", "")

    counter = WordPunctFallback()
    drawn = draw_at_random(trajectories, size=100, seed=3, counter=counter, max_tokens=5_000, facets=facets)
    # Every defect but the one no model could train on (too long) stays in.
    assert {a.id for a in drawn.selected} == {t.id for t in trajectories} - {"long"}
    first = [
        a.id
        for a in draw_at_random(trajectories, size=4, seed=3, counter=counter, max_tokens=5_000, facets=facets).selected
    ]
    again = [
        a.id
        for a in draw_at_random(trajectories, size=4, seed=3, counter=counter, max_tokens=5_000, facets=facets).selected
    ]
    other = [
        a.id
        for a in draw_at_random(trajectories, size=4, seed=4, counter=counter, max_tokens=5_000, facets=facets).selected
    ]
    assert first == again and len(first) == 4 and other != first


def test_random_curation_refuses_filters(curator):
    with pytest.raises(InvalidArgument) as caught:
        curator.curate_dataset(
            name="raw",
            size=4,
            tokenizer="",
            max_tokens=0,
            query_set_ids=[],
            include_failed=False,
            overrides={"loop_repeats": 2},
            at_random=True,
            seed=1,
        )
    assert caught.value.field == "filters.loop_repeats"
