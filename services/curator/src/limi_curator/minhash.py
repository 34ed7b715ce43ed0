"""MinHash signatures over word shingles, and an LSH index that finds candidate near-duplicates.

Written here rather than taken from `datasketch`: the part we need is about sixty lines of numpy,
it stays deterministic across versions (fixed seed, blake2b shingle hashes, multiply-shift
permutations), and it adds no dependency (datasketch pulls scipy). Texts are lower-cased and split
into runs of word characters; a shingle is `shingle_words` consecutive words (a shorter text is one
shingle). Each of the `permutations` hash functions is h(x) = (a*x + b mod 2^64) >> 32 with odd a,
a 2-universal family; the signature keeps the minimum per function, and the share of equal
positions estimates the Jaccard similarity of two shingle sets. `LshIndex` bands the signature so
that pairs above roughly `threshold - 0.1` collide in at least one band; callers verify each
candidate with the exact Jaccard similarity of the shingle sets.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict

import numpy as np

WORD = re.compile(r"\w+")
SEED = 20250917
EMPTY = np.iinfo(np.uint64).max


class MinHasher:
    def __init__(self, permutations: int = 128, shingle_words: int = 3, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed)
        self.permutations, self.shingle_words = permutations, shingle_words
        self._a = rng.integers(1, 2**63, size=permutations, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=permutations, dtype=np.uint64)

    def shingles(self, text: str) -> frozenset[int]:
        words = WORD.findall(text.lower())
        if not words:
            return frozenset()
        k = self.shingle_words
        grams = [" ".join(words)] if len(words) < k else [" ".join(words[i : i + k]) for i in range(len(words) - k + 1)]
        return frozenset(
            int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little") for gram in grams
        )

    def signature(self, shingles: frozenset[int]) -> np.ndarray:
        if not shingles:
            return np.full(self.permutations, EMPTY, dtype=np.uint64)
        values = np.fromiter(shingles, dtype=np.uint64, count=len(shingles))
        with np.errstate(over="ignore"):
            hashed = (values[:, None] * self._a[None, :] + self._b[None, :]) >> np.uint64(32)
        return hashed.min(axis=0)


def estimated_jaccard(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.mean(first == second))


def jaccard(first: frozenset[int], second: frozenset[int]) -> float:
    if not first and not second:
        return 1.0
    shared = len(first & second)
    return shared / (len(first) + len(second) - shared)


def band_layout(permutations: int, threshold: float) -> tuple[int, int]:
    """(bands, rows) whose collision threshold (1/bands)^(1/rows) is the largest not above threshold - 0.1."""
    target = max(threshold - 0.1, 0.05)
    best, best_threshold = (permutations, 1), 0.0
    for rows in range(1, permutations + 1):
        bands = permutations // rows
        collision = (1 / bands) ** (1 / rows)
        if best_threshold < collision <= target:
            best, best_threshold = (bands, rows), collision
    return best


class LshIndex:
    """Signatures by band; `candidates` gives the keys sharing at least one band with a signature."""

    def __init__(self, permutations: int, threshold: float) -> None:
        self.bands, self.rows = band_layout(permutations, threshold)
        self._buckets: list[dict[bytes, list[str]]] = [defaultdict(list) for _ in range(self.bands)]

    def _band_keys(self, signature: np.ndarray) -> list[bytes]:
        return [signature[b * self.rows : (b + 1) * self.rows].tobytes() for b in range(self.bands)]

    def add(self, key: str, signature: np.ndarray) -> None:
        for bucket, band in zip(self._buckets, self._band_keys(signature), strict=True):
            bucket[band].append(key)

    def candidates(self, signature: np.ndarray) -> list[str]:
        found: dict[str, None] = {}
        for bucket, band in zip(self._buckets, self._band_keys(signature), strict=True):
            for key in bucket.get(band, ()):
                found[key] = None
        return list(found)
