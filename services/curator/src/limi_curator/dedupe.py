"""Near-duplicate detection within the query pool and decontamination against evaluation data.

`Deduplicator.find(texts, reference=...)` walks `texts` in priority order (the first of a group
of near-duplicates is the one kept) and reports every text to drop, with the reason:
- `benchmark_near_duplicate`: the Jaccard similarity of its word shingles with a benchmark text
  reaches the Jaccard threshold;
- `benchmark_overlap`: at least `MIN_SHARED_SHINGLES` of its shingles, and at least the containment
  threshold of its own shingles or of the benchmark text's, appear in one benchmark text (a query
  that pastes part of an AgencyBench subtask, or a HumanEval prompt inside a longer request);
- `near_duplicate`: its Jaccard similarity with an earlier kept text, or with a `reference` text
  (e.g. the pool, when checking new synthetic candidates), reaches the threshold.
Pool candidates come from MinHash LSH and are verified with exact Jaccard; benchmark overlap is
exact, through an inverted index of the benchmarks' shingles (a few hundred texts). It changes
nothing: the caller marks queries DROPPED or skips candidates.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence

from limi_curator.benchmarks import BenchmarkText
from limi_curator.minhash import LshIndex, MinHasher, jaccard

MIN_SHARED_SHINGLES = 8


@dataclasses.dataclass(frozen=True)
class Duplicate:
    id: str
    reason: str
    matched: str
    similarity: float


class BenchmarkIndex:
    """Exact shingle overlap with every benchmark text."""

    def __init__(self, hasher: MinHasher, texts: Sequence[BenchmarkText]) -> None:
        self._ids = [text.id for text in texts]
        self._sizes = []
        self._postings: dict[int, list[int]] = defaultdict(list)
        for position, text in enumerate(texts):
            shingles = hasher.shingles(text.text)
            self._sizes.append(len(shingles))
            for shingle in shingles:
                self._postings[shingle].append(position)

    def __len__(self) -> int:
        return len(self._ids)

    def best_match(
        self, shingles: frozenset[int], jaccard_threshold: float, containment_threshold: float
    ) -> Duplicate | None:
        shared = Counter()
        for shingle in shingles:
            for position in self._postings.get(shingle, ()):
                shared[position] += 1
        best: Duplicate | None = None
        for position, count in shared.items():
            size = self._sizes[position]
            similarity = count / (len(shingles) + size - count)
            if similarity >= jaccard_threshold:
                candidate = Duplicate("", "benchmark_near_duplicate", self._ids[position], similarity)
            elif count >= MIN_SHARED_SHINGLES and max(count / len(shingles), count / size) >= containment_threshold:
                candidate = Duplicate(
                    "", "benchmark_overlap", self._ids[position], max(count / len(shingles), count / size)
                )
            else:
                continue
            if best is None or _rank(candidate) > _rank(best):
                best = candidate
        return best


def _rank(duplicate: Duplicate) -> tuple[bool, float]:
    return duplicate.reason == "benchmark_near_duplicate", duplicate.similarity


class Deduplicator:
    def __init__(
        self,
        hasher: MinHasher,
        jaccard_threshold: float,
        containment_threshold: float,
        benchmarks: BenchmarkIndex | None = None,
    ) -> None:
        self._hasher = hasher
        self.jaccard_threshold, self.containment_threshold = jaccard_threshold, containment_threshold
        self._benchmarks = benchmarks

    def find(self, texts: Sequence[tuple[str, str]], reference: Sequence[tuple[str, str]] = ()) -> list[Duplicate]:
        """Texts to drop among `texts` ((id, text) in priority order); `reference` texts are never dropped."""
        index = LshIndex(self._hasher.permutations, self.jaccard_threshold)
        kept_shingles: dict[str, frozenset[int]] = {}
        for key, text in reference:
            shingles = self._hasher.shingles(text)
            kept_shingles[key] = shingles
            index.add(key, self._hasher.signature(shingles))
        dropped = []
        for key, text in texts:
            shingles = self._hasher.shingles(text)
            if self._benchmarks is not None and shingles:
                match = self._benchmarks.best_match(shingles, self.jaccard_threshold, self.containment_threshold)
                if match is not None:
                    dropped.append(dataclasses.replace(match, id=key))
                    continue
            signature = self._hasher.signature(shingles)
            duplicate = self._nearest_kept(key, shingles, signature, index, kept_shingles)
            if duplicate is not None:
                dropped.append(duplicate)
                continue
            kept_shingles[key] = shingles
            index.add(key, signature)
        return dropped

    def _nearest_kept(
        self, key, shingles, signature, index: LshIndex, kept: dict[str, frozenset[int]]
    ) -> Duplicate | None:
        best: Duplicate | None = None
        for other in index.candidates(signature):
            if other == key:
                continue
            similarity = jaccard(shingles, kept[other])
            if similarity >= self.jaccard_threshold and (best is None or similarity > best.similarity):
                best = Duplicate(key, "near_duplicate", other, similarity)
        return best


def dedupe_report_markdown(
    scanned: int,
    benchmark_texts: int,
    dropped: Sequence[Duplicate],
    jaccard_threshold: float,
    containment_threshold: float,
    texts: dict[str, str],
) -> str:
    reasons = Counter(item.reason for item in dropped)
    lines = [
        "# Dedupe and decontamination",
        "",
        f"Scanned {scanned} queries against each other and {benchmark_texts} benchmark texts "
        f"(Jaccard threshold {jaccard_threshold:g}, containment threshold {containment_threshold:g}).",
        f"Dropped {len(dropped)}: "
        + (", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())) or "none")
        + ".",
    ]
    if dropped:
        lines += ["", "| query | reason | matched | similarity | text |", "| --- | --- | --- | ---: | --- |"]
        for item in dropped:
            snippet = " ".join(texts.get(item.id, "").split())[:80].replace("|", "\\|")
            lines.append(f"| {item.id} | {item.reason} | {item.matched} | {item.similarity:.2f} | {snippet} |")
    return "\n".join(lines) + "\n"
