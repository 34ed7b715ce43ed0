"""The demo's bundled query pool: 78 workspace-basics queries, 60 "real" and 18 "synthetic", as LIMI had.

`pool_records(count, seed)` draws instances of the evaluator's workspace-basics family from its
*train* split (the held-out `limi-basics` suite is drawn from the *test* split, so no query is
scored that was trained on) and turns every subtask into one curator import row: the text, an
id, a category per kind of task, the source, provenance and the workspace files the subtask
starts from (the file to edit, the file to copy, the module a chained function imports).
The first 60 rows are `real` (written by a person in the LIMI recipe; here the family's
sentence templates), the last 18 `synthetic` (in LIMI synthesized from pull requests; here drawn
from the same generator, marked so, with a made-up repository as provenance). The bundled file
`demo_queries.jsonl` is what `python -m limi_cli.demo_pool` writes; a test keeps the two equal.
`uncurated_records(factor)` draws the larger pool of `limi demo --uncurated`: other tasks of the
same split, made on the fly (not bundled).
It runs nothing.
"""

from __future__ import annotations

import json
import pathlib
import sys

from limi_evaluator import basics

BUNDLED = pathlib.Path(__file__).with_name("demo_queries.jsonl")
POOL_SIZE, REAL_QUERIES, SEED, UNCURATED_SEED = 78, 60, 7, 11
CATEGORY_OF_KIND = {
    "write-file": "data_processing",
    "python-function": "algorithm",
    "replace-word": "refactoring",
    "copy-file": "deployment",
    "chain": "backend",
}


def _start_files(task: basics.Task, index: int) -> dict[str, str]:
    """The workspace a subtask starts from: the task's files, plus what earlier subtasks produce."""
    files = {path: content.decode() for path, content in task.files}
    for earlier in task.subtasks[:index]:
        for step in basics.plan_for(earlier.query) or ():
            if step.name == "write_file":
                files[step.arguments["path"]] = step.arguments["content"]
    return files


def pool_records(
    count: int = POOL_SIZE,
    seed: int = SEED,
    real: int = REAL_QUERIES,
    *,
    prefix: str = "demo",
    exclude: frozenset[str] = frozenset(),
    exclude_texts: frozenset[str] = frozenset(),
) -> list[dict]:
    """`count` import rows from the train split, deterministic for the arguments.

    Tasks in `exclude` are skipped, and so is a subtask whose text is in `exclude_texts` or came
    earlier (a chain's first step can read like a python-function task): the curator's pool holds
    one query per text.
    """
    records: list[dict] = []
    seen = set(exclude_texts)
    for task in basics.generate(seed, "train", 2 * count, exclude=exclude):
        for index, subtask in enumerate(task.subtasks):
            if len(records) == count:
                return records
            if subtask.query in seen:
                continue
            seen.add(subtask.query)
            kind = task.label("kind")
            synthetic = len(records) >= real
            record = {
                "id": f"{prefix}-{task.id}-{subtask.id}",
                "text": subtask.query,
                "category": CATEGORY_OF_KIND[kind],
                "source": "synthetic" if synthetic else "real",
                "author": "limi-demo generator" if synthetic else "limi-demo",
                "labels": {"family": basics.FAMILY, "kind": kind, "task": task.id, "subtask": subtask.id},
            }
            if synthetic:
                record["repository"] = "limi-demo/workspace-basics"
            files = _start_files(task, index)
            if files:
                record["files"] = files
            records.append(record)
    return records


def uncurated_records(factor: int, seed: int = UNCURATED_SEED) -> list[dict]:
    """The uncurated pool: `factor` times the curated pool's size, from other tasks of the train split.

    The same kinds and vocabulary as the curated pool, never the same task; all "real" (raw logs).
    """
    curated = pool_records()
    count = factor * POOL_SIZE
    return pool_records(
        count,
        seed,
        real=count,
        prefix="uncurated",
        exclude=frozenset(r["labels"]["task"] for r in curated),
        exclude_texts=frozenset(r["text"] for r in curated),
    )


def render(records: list[dict]) -> str:
    return "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)


def main() -> None:
    BUNDLED.write_text(render(pool_records()))
    print(f"wrote {BUNDLED}", file=sys.stderr)


if __name__ == "__main__":
    main()
