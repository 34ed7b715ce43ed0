"""Deterministic, made-up pull-request records for tests, demos and benchmarks of the synthetic track.

`generate_pull_requests(count, seed)` writes records in the input form of limi_curator.pull_requests over
twenty invented repositories (none of them real; star counts from 3k to 48k, so some fall under
LIMI's 10k threshold) in Python, Go, TypeScript and Rust, with YAML deployment files. The mix
covers ten categories of change (a guard against a crash, a cache, an API parameter, a UI prop, a
deployment probe, a parser fix, a test, an extracted helper, a faster algorithm, a new metric),
Markdown-only documentation PRs, multi-file PRs (code plus test), and oversized diffs (generated
lookup tables, in the changed file or beside it). The
same (count, seed) always gives the same records. `python -m limi_testing.synthetic_prs N` prints
N records as JSONL. It is not real GitHub data and must not be mistaken for it.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable

from limi_testing.synthetic_pr_changes import Change, sha, unified_diff
from limi_testing.synthetic_pr_features import algorithm, backend, deployment, frontend, refactoring, research
from limi_testing.synthetic_pr_fixes import data_processing, debugging, optimization, testing

REPOSITORIES = (
    ("lumen-ui/lumen", 48_200, "ts"),
    ("quarkdb/quark", 23_400, "go"),
    ("pyflow-dev/pyflow", 15_100, "py"),
    ("ferrite-rs/ferrite", 31_700, "rs"),
    ("helmsman-io/helmsman", 12_300, "go"),
    ("neuronkit/neuronkit", 27_900, "py"),
    ("webforge/forge-cli", 19_600, "ts"),
    ("streamline-hq/streamline", 11_200, "go"),
    ("pixelcraft/canvas-kit", 8_500, "ts"),
    ("orbit-sh/orbit", 3_200, "go"),
    ("evalkit/evalkit", 14_000, "py"),
    ("cachet-io/cachet", 17_300, "rs"),
    ("railyard/railyard", 41_000, "py"),
    ("kubeplane/kubeplane", 26_100, "go"),
    ("sparrow-db/sparrow", 13_800, "rs"),
    ("inkwell-labs/inkwell", 22_400, "py"),
    ("formkit-js/formkit", 10_500, "ts"),
    ("tinyhttp-dev/tinyhttp", 6_100, "go"),
    ("graphweave/graphweave", 12_600, "py"),
    ("logpipe/logpipe", 9_900, "rs"),
)
CHANGE_KINDS: dict[str, Callable[..., Change]] = {
    "debugging": debugging,
    "optimization": optimization,
    "backend": backend,
    "frontend": frontend,
    "deployment": deployment,
    "data_processing": data_processing,
    "testing": testing,
    "refactoring": refactoring,
    "algorithm": algorithm,
    "research": research,
}
LANGUAGE_OF_KIND = {
    "debugging": ("py", "go", "ts", "rs"),
    "optimization": ("py", "go", "ts", "rs"),
    "backend": ("py", "go"),
    "frontend": ("ts",),
    "deployment": ("py", "go", "ts", "rs"),
    "data_processing": ("py", "go", "rs"),
    "testing": ("py", "go", "ts", "rs"),
    "refactoring": ("py", "ts", "go"),
    "algorithm": ("py", "go", "rs"),
    "research": ("py",),
}
MODULES = (
    "auth",
    "billing",
    "catalog",
    "ingest",
    "scheduler",
    "search",
    "storage",
    "telemetry",
    "session",
    "export",
    "routing",
    "metrics",
    "queue",
    "profile",
    "render",
    "sync",
)
NOUNS = (
    "invoice",
    "segment",
    "shard",
    "ticket",
    "snapshot",
    "batch",
    "token",
    "widget",
    "record",
    "channel",
    "tenant",
    "report",
)


def _markdown_change(rng: random.Random, repository: str) -> Change:
    page = rng.choice(
        ("README.md", "docs/getting-started.md", "docs/configuration.md", "CONTRIBUTING.md", "docs/faq.md")
    )
    topic = rng.choice(
        (
            "installation on Apple silicon",
            "the configuration reference",
            "the release process",
            "proxy settings",
            "upgrading from v1",
        )
    )
    added = [
        f"## {topic.capitalize()}",
        "",
        f"This section explains {topic} for {repository.split('/')[1]}.",
        "Run `make docs` after editing and check the rendered page.",
        "",
    ]
    diff = unified_diff(page, rng.randint(10, 200), "", ["", "## Overview"], [], added, ["", "## License"])
    return Change(
        "docs",
        f"docs: describe {topic}",
        f"The docs never mention {topic}; several issues asked about it.",
        [page],
        diff,
    )


def _large_change(rng: random.Random, kind: str, repository: str, language: str) -> Change:
    change = CHANGE_KINDS[kind](rng, _context(rng, repository, language))
    table = [f'    "{rng.choice(NOUNS)}_{i:04d}": {rng.randint(1, 10**6)},' for i in range(rng.randint(260, 420))]
    if rng.random() < 0.5:
        # The table lands in the changed file itself: one file, but far over the diff budget.
        diff = change.diff + unified_diff(change.files[0], 900, "", [], [], ["LOOKUP = {", *table, "}"], [])
        return Change(
            change.category,
            change.title + " (inline lookup table)",
            change.body + " The lookup table now lives beside the code.",
            list(change.files),
            diff,
        )
    path = f"data/generated_{rng.choice(MODULES)}_table.{'py' if language == 'py' else 'json'}"
    diff = change.diff + unified_diff(path, 1, "", [], [], ["TABLE = {", *table, "}"], [])
    return Change(
        change.category,
        change.title + " (regenerate lookup table)",
        change.body + " The lookup table is regenerated as well.",
        [*change.files, path],
        diff,
    )


def _context(rng: random.Random, repository: str, language: str) -> dict:
    module, noun = rng.choice(MODULES), rng.choice(NOUNS)
    return {
        "repository": repository,
        "language": language,
        "module": module,
        "noun": noun,
        "issue": rng.randint(100, 9000),
        "limit": rng.choice((50, 100, 250, 500, 1000)),
        "seconds": rng.choice((5, 10, 30, 60)),
    }


def generate_pull_requests(count: int = 240, seed: int = 7) -> list[dict]:
    """`count` PR records; about 8% Markdown-only, 10% oversized (half of them in one file), a third multi-file."""
    rng = random.Random(seed)
    records = []
    numbers: dict[str, int] = {}
    for index in range(count):
        repository, stars, language = (
            REPOSITORIES[index % len(REPOSITORIES)] if index < len(REPOSITORIES) else rng.choice(REPOSITORIES)
        )
        roll = rng.random()
        kinds = [kind for kind, languages in LANGUAGE_OF_KIND.items() if language in languages]
        kind = rng.choice(kinds)
        if roll < 0.08:
            change = _markdown_change(rng, repository)
        elif roll < 0.18:
            change = _large_change(rng, kind, repository, language)
        else:
            change = CHANGE_KINDS[kind](rng, _context(rng, repository, language))
            if rng.random() < 0.3 and kind != "testing":
                test = CHANGE_KINDS["testing"](rng, _context(rng, repository, language), subject=change)
                change = Change(
                    change.category,
                    change.title,
                    change.body + " Adds a regression test.",
                    [*change.files, *test.files],
                    change.diff + test.diff,
                )
        numbers[repository] = numbers.get(repository, 1000 + rng.randint(0, 3000)) + rng.randint(1, 40)
        number = numbers[repository]
        records.append(
            {
                "repository": repository,
                "stars": stars,
                "number": number,
                "title": change.title,
                "body": f"{change.body}\n\nFixes #{rng.randint(100, 9000)}.",
                "diff": change.diff,
                "changed_files": change.files,
                "base_sha": sha(repository, number, "base"),
                "head_sha": sha(repository, number, "head"),
                "url": f"https://github.com/{repository}/pull/{number}",
                "kind": change.category,
            }
        )
    return records


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else 240
    for record in generate_pull_requests(count):
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
