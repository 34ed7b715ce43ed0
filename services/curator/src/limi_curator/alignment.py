"""The automatic query-PR alignment check (LIMI had four annotators; this is the first pass).

A synthesized query is rejected when it
- leaks the solution: it contains diff markup, quotes a line the PR adds (20+ characters), or
  shares a run of `LEAK_NGRAM` code tokens with the added lines;
- does not match the diff: it names none of the changed files (path, file name or stem) and none
  of the identifiers the diff touches, or the model's own `modified_files` miss every changed file;
- is too short to be a task (under `MIN_WORDS` words).
It returns the reason and a short detail, or None when the query passes. It cannot judge whether
the task is solvable or interesting; people still should read the selected few.
"""

from __future__ import annotations

import pathlib
import re

from limi_curator.pull_requests import PullRequest
from limi_curator.synthesis_prompt import SynthesizedTask

LEAK_NGRAM = 10
MIN_QUOTED_LINE = 20
MIN_WORDS = 12
DIFF_MARKUP = re.compile(r"(^|\n)\s*(diff --git |@@ -\d|\+\+\+ b/|--- a/)")
CODE_TOKEN = re.compile(r"\w+|[^\w\s]")
IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def _tokens(text: str) -> list[str]:
    return CODE_TOKEN.findall(text)


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _leak(query: str, record: PullRequest) -> str | None:
    if DIFF_MARKUP.search(query):
        return "contains diff markup"
    flat_query = " ".join(query.split())
    added = [" ".join(line.split()) for line in record.added_lines()]
    for line in added:
        if len(line) >= MIN_QUOTED_LINE and line in flat_query:
            return f"quotes an added line: {line[:60]!r}"
    query_grams = _ngrams(_tokens(query), LEAK_NGRAM)
    for line in added:
        shared = _ngrams(_tokens(line), LEAK_NGRAM) & query_grams
        if shared:
            return f"shares {LEAK_NGRAM} code tokens with the patch: {' '.join(next(iter(shared)))[:60]!r}"
    return None


def _file_mentions(query: str, files: tuple[str, ...]) -> bool:
    lowered = query.lower()
    for path in files:
        name = pathlib.PurePosixPath(path)
        candidates = {path.lower(), name.name.lower()}
        if len(name.stem) >= 4:
            candidates.add(name.stem.lower())
        if any(candidate in lowered for candidate in candidates):
            return True
    return False


def _diff_identifiers(record: PullRequest) -> set[str]:
    lines = [line[1:] for line in record.diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    lines += [line.split("@@")[-1] for line in record.diff.splitlines() if line.startswith("@@")]
    found = set()
    for line in lines:
        for name in IDENTIFIER.findall(line):
            if len(name) >= 6 and (("_" in name) or (name != name.lower() and name != name.upper())):
                found.add(name)
    return found


def check_alignment(task: SynthesizedTask, record: PullRequest) -> tuple[str, str] | None:
    """None when the query fits the PR, else (reason, detail)."""
    if len(task.text.split()) < MIN_WORDS:
        return "too_short", f"{len(task.text.split())} words"
    leak = _leak(task.text, record)
    if leak:
        return "leaks_solution", leak
    if task.modified_files and not set(task.modified_files) & set(record.changed_files):
        return "does_not_match_diff", f"modified_files {list(task.modified_files)[:3]} miss the changed files"
    if _file_mentions(task.text, record.changed_files):
        return None
    identifiers = {name for name in _diff_identifiers(record) if name in task.text}
    if identifiers:
        return None
    return "does_not_match_diff", "names no changed file and no identifier from the diff"
