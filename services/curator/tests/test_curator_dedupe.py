"""Dedupe and decontamination: MinHash estimates, near-duplicates in the pool, overlap with HumanEval and AgencyBench."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from limi.query.v1 import query_pb2
from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_curator.curator import Curator
from limi_curator.minhash import MinHasher, band_layout, estimated_jaccard, jaccard
from limi_curator.settings import DEFAULT_BENCHMARKS_DIR, CuratorSettings

needs_benchmarks = pytest.mark.skipif(not DEFAULT_BENCHMARKS_DIR.is_dir(), reason="needs ../shared/benchmarks")

BASE = (
    "Build a command line tool in Go that watches a directory for new CSV exports from the billing system, validates every row "
    "against the schema in schema.json, writes the valid rows to PostgreSQL in batches of five hundred, and moves rejected files to a "
    "quarantine folder with a report that explains which line and which column failed."
)
NEAR = BASE.replace("in batches of five hundred", "in batches of one thousand").replace(
    "Build a command line tool", "Write a command line tool"
)
OTHER = (
    "Investigate why the React settings page re-renders forty times on load, find the component that creates a new context value "
    "on every render, and fix it without changing the public props of the page."
)


@pytest.fixture
def curator(settings):
    curator = Curator(settings)
    yield curator
    curator.close()


def _import(curator, rows, source=query_pb2.QUERY_SOURCE_REAL):
    content = "\n".join(json.dumps(row) for row in rows).encode()
    return curator.import_queries("jsonl", content, "pool.jsonl", source)[0]


def test_minhash_estimates_jaccard_of_word_shingles():
    hasher = MinHasher(128, 3)
    rng = random.Random(3)
    words = BASE.split()
    for _ in range(20):
        edited = list(words)
        for _ in range(rng.randint(0, 12)):
            edited[rng.randrange(len(edited))] = rng.choice(("alpha", "beta", "gamma", "delta"))
        a, b = hasher.shingles(BASE), hasher.shingles(" ".join(edited))
        assert abs(estimated_jaccard(hasher.signature(a), hasher.signature(b)) - jaccard(a, b)) < 0.15
    assert hasher.shingles("Hello, World") == hasher.shingles("hello world")
    bands, rows = band_layout(128, 0.7)
    assert bands * rows <= 128 and (1 / bands) ** (1 / rows) <= 0.6


@needs_benchmarks
def test_dedupe_finds_pool_duplicates_and_benchmark_overlap_and_applies_on_request(curator):
    with gzip.open(DEFAULT_BENCHMARKS_DIR / "humaneval" / "HumanEval.jsonl.gz", "rt") as lines:
        humaneval = [json.loads(line) for line in lines][12]
    v1 = json.loads(next((DEFAULT_BENCHMARKS_DIR / "agencybench-v1" / "task3").glob("*.json")).read_text())["query"]
    subtask = v1[v1.index("Subtask 2") : v1.index("Subtask 3")]
    ids = _import(
        curator,
        [
            {"text": BASE, "id": "billing-import"},
            {"text": OTHER, "id": "react-renders"},
            {
                "text": "Please implement this function and add tests for it:\n" + humaneval["prompt"],
                "id": "copied-humaneval",
            },
            {"text": "For my game project: " + subtask, "id": "copied-agencybench"},
        ],
    )
    _import(curator, [{"text": NEAR, "id": "billing-import-again"}], source=query_pb2.QUERY_SOURCE_SYNTHETIC)
    report = curator.dedupe(jaccard_threshold=0, containment_threshold=0, include_benchmarks=True, apply=False)
    found = {d.id: d for d in report.dropped}
    assert set(found) == {"billing-import-again", "copied-humaneval", "copied-agencybench"}
    assert (
        found["billing-import-again"].reason == "near_duplicate"
        and found["billing-import-again"].matched == "billing-import"
    )
    assert found["copied-humaneval"].matched == f"humaneval:{humaneval['task_id']}"
    assert found["copied-humaneval"].reason in ("benchmark_overlap", "benchmark_near_duplicate")
    assert found["copied-agencybench"].matched.startswith("agencybench-v1:task3/")
    assert report.scanned == 5 and report.benchmark_texts > 300
    assert "| copied-humaneval | " in report.markdown and "Dropped 3:" in report.markdown
    assert curator.pool.status("copied-humaneval") == query_pb2.QUERY_STATUS_PENDING, "report only"
    curator.dedupe(jaccard_threshold=0, containment_threshold=0, include_benchmarks=True, apply=True)
    assert curator.pool.status("copied-humaneval") == query_pb2.QUERY_STATUS_DROPPED
    assert {q.id for q in curator.pool.all_active()} == {ids[0], ids[1]}
    assert (
        curator.dedupe(jaccard_threshold=0, containment_threshold=0, include_benchmarks=True, apply=True).dropped == []
    )


def test_the_real_query_is_kept_over_its_synthetic_twin_whatever_the_order(curator):
    _import(curator, [{"text": NEAR, "id": "synthetic-first"}], source=query_pb2.QUERY_SOURCE_SYNTHETIC)
    _import(curator, [{"text": BASE, "id": "real-second"}])
    dropped = curator.dedupe(
        jaccard_threshold=0.5, containment_threshold=0, include_benchmarks=False, apply=False
    ).dropped
    assert [(d.id, d.matched) for d in dropped] == [("synthetic-first", "real-second")]
    assert 0.5 <= dropped[0].similarity < 1


def test_missing_benchmarks_and_bad_thresholds_are_named(tmp_path):
    curator = Curator(CuratorSettings(data_dir=tmp_path / "data", benchmarks_dir=tmp_path))
    try:
        with pytest.raises(
            FailedPrecondition, match="holds no HumanEval or AgencyBench files; set LIMI_CURATOR_BENCHMARKS_DIR"
        ):
            curator.dedupe(jaccard_threshold=0, containment_threshold=0, include_benchmarks=True, apply=False)
        with pytest.raises(InvalidArgument, match="^jaccard_threshold: must be between 0 and 1"):
            curator.dedupe(jaccard_threshold=1.5, containment_threshold=0, include_benchmarks=False, apply=False)
    finally:
        curator.close()
