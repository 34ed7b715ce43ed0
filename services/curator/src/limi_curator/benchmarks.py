"""Evaluation texts the query pool must not overlap: HumanEval prompts and AgencyBench queries.

Read in place from the benchmarks directory (default `../shared/benchmarks` beside the
repository, or LIMI_CURATOR_BENCHMARKS_DIR); nothing is copied into the project:
- `humaneval/HumanEval.jsonl.gz`: each problem's `prompt` ("humaneval:HumanEval/12");
- `agencybench-v1/task*/*.json`: the `query`, one text per "Subtask N" section plus the shared
  preamble ("agencybench-v1:task3/subtask2");
- `agencybench-v2/<capability>/<scenario>/description.json`: every `subtaskN` string
  ("agencybench-v2:Game/scenario2/subtask1") and, apart, its `Query:` section (".../subtask1/query"),
  so that a query pasting only the task part still overlaps most of one text.
A directory with none of these raises `FailedPrecondition` naming the variable. Files that do not
parse raise it too, naming the file. It does not compare anything (dedupe.py does).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import pathlib
import re

from limi_core.errors import FailedPrecondition

SUBTASK_HEADING = re.compile(r"(?=\bSubtask\s+\d+\b)")
QUERY_SECTION = re.compile(r"Query:(.*?)(?:Deliverables:|Rubric:|$)", re.S)
VARIABLE = "LIMI_CURATOR_BENCHMARKS_DIR"


@dataclasses.dataclass(frozen=True)
class BenchmarkText:
    id: str
    text: str


def _read_json(path: pathlib.Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"benchmark file {path} cannot be read: {exc}") from None
    if not isinstance(value, dict):
        raise FailedPrecondition(f"benchmark file {path} is not a JSON object")
    return value


def _humaneval(root: pathlib.Path) -> list[BenchmarkText]:
    path = root / "humaneval" / "HumanEval.jsonl.gz"
    if not path.is_file():
        return []
    texts = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    problem = json.loads(line)
                    texts.append(BenchmarkText(f"humaneval:{problem['task_id']}", problem["prompt"]))
    except (OSError, ValueError, KeyError) as exc:
        raise FailedPrecondition(f"benchmark file {path} cannot be read: {exc}") from None
    return texts


def _agencybench_v1(root: pathlib.Path) -> list[BenchmarkText]:
    texts = []
    for path in sorted((root / "agencybench-v1").glob("task*/*.json")):
        query = _read_json(path).get("query")
        if not isinstance(query, str):
            continue
        task = path.parent.name
        for number, section in enumerate(part for part in SUBTASK_HEADING.split(query) if part.strip()):
            texts.append(
                BenchmarkText(f"agencybench-v1:{task}/{'preamble' if number == 0 else f'part{number}'}", section)
            )
    return texts


def _agencybench_v2(root: pathlib.Path) -> list[BenchmarkText]:
    texts = []
    for path in sorted((root / "agencybench-v2").glob("*/*/description.json")):
        description = _read_json(path)
        scenario = f"{path.parent.parent.name}/{path.parent.name}"
        for key in sorted(k for k in description if re.fullmatch(r"subtask\d+", k)):
            if isinstance(description[key], str):
                text = description[key]
                texts.append(BenchmarkText(f"agencybench-v2:{scenario}/{key}", text))
                query = QUERY_SECTION.search(text)
                if query:
                    texts.append(BenchmarkText(f"agencybench-v2:{scenario}/{key}/query", query.group(1)))
    return texts


@functools.lru_cache(maxsize=4)
def load_benchmark_texts(root: pathlib.Path) -> tuple[BenchmarkText, ...]:
    if not root.is_dir():
        raise FailedPrecondition(f"the benchmarks directory {root} does not exist; set {VARIABLE}")
    texts = _humaneval(root) + _agencybench_v1(root) + _agencybench_v2(root)
    if not texts:
        raise FailedPrecondition(
            f"the benchmarks directory {root} holds no HumanEval or AgencyBench files; set {VARIABLE}"
        )
    return tuple(texts)
