"""The PR-to-task prompt, its hash, and reading the model's answer.

The prompt follows LIMI's released one (scripts/data_collection/task_meta.py): the model reads
the PR (repository, title, description, changed files, diff) and answers with JSON holding a
realistic `test_query` written as a developer asking for help, a `task_category`, the
`modified_files`, `related_files`, and a short `reasoning`. Unlike LIMI's, it names limi's
eleven categories and tells the model not to paste code from the diff. `prompt_hash` covers the
prompt version, the model, the sampling temperature and the rendered messages, so the synthesis
cache (keyed by PR and prompt hash) misses whenever any of them changes. `parse_answer` raises
`AnswerError` with a counted reason; it does not judge alignment (alignment.py does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from limi_curator.categories import CATEGORY_NAMES, UnknownName, category_from_name
from limi_curator.pull_requests import PullRequest

PROMPT_VERSION = "limi-pr2task-v1"
MAX_BODY_CHARS = 4000

SYSTEM_PROMPT = (
    "You are an expert software development analyst. You convert GitHub pull requests into specific, "
    "actionable development tasks used to test AI coding agents."
)

INSTRUCTIONS = """## Task categories
{categories}

## Instructions
1. Read the pull request: title, description and the changes.
2. Pick the single category that best matches its core technical work.
3. Write `test_query`: a realistic request from a developer to an AI agent that would lead to this change.
   State the goal, the expected behaviour and the files involved. Describe the problem; do NOT paste code
   or lines from the diff, and do not reveal the exact solution.
4. List the files that must change (`modified_files`) and files that give useful context (`related_files`).
5. Explain your choice in one or two sentences (`reasoning`).

Answer with one JSON object and nothing else:
{{"test_query": "...", "task_category": "<one of: {names}>", "modified_files": ["..."], "related_files": ["..."], "reasoning": "..."}}"""


@dataclasses.dataclass(frozen=True)
class SynthesizedTask:
    text: str
    category: int
    category_name: str
    rationale: str
    modified_files: tuple[str, ...]
    related_files: tuple[str, ...]


class AnswerError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def build_messages(record: PullRequest) -> list[dict]:
    body = record.body if len(record.body) <= MAX_BODY_CHARS else record.body[:MAX_BODY_CHARS] + "\n[... truncated]"
    pr_data = {
        "repository": record.repository,
        "number": record.number,
        "title": record.title,
        "body": body,
        "changed_files": list(record.changed_files),
        "base_sha": record.base_sha,
    }
    names = ", ".join(CATEGORY_NAMES)
    categories = "\n".join(f"- {name}" for name in CATEGORY_NAMES)
    user = (
        "# Pull request to task\n\n## Pull request\n```json\n"
        + json.dumps(pr_data, ensure_ascii=False, indent=2)
        + "\n```\n\n"
        "## Diff\n```diff\n"
        + record.diff.rstrip("\n")
        + "\n```\n\n"
        + INSTRUCTIONS.format(categories=categories, names=names)
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def prompt_hash(messages: list[dict], model: str, temperature: float) -> str:
    material = json.dumps(
        {"version": PROMPT_VERSION, "model": model, "temperature": temperature, "messages": messages},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _json_object(text: str) -> dict:
    start = text.find("{")
    if start < 0:
        raise AnswerError("unparseable_answer", "no JSON object in the answer")
    try:
        value, _end = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise AnswerError("unparseable_answer", f"invalid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise AnswerError("unparseable_answer", "the JSON is not an object")
    return value


def _paths(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AnswerError("malformed_answer", f"{key} is not a list of paths")
    return tuple(item.strip() for item in value if item.strip())


def parse_answer(text: str) -> SynthesizedTask:
    answer = _json_object(text)
    query = answer.get("test_query")
    if not isinstance(query, str) or not query.strip():
        raise AnswerError("malformed_answer", "test_query is missing or empty")
    category = answer.get("task_category")
    if not isinstance(category, str):
        raise AnswerError("unknown_category", "task_category is missing")
    try:
        number = category_from_name(category)
    except UnknownName:
        raise AnswerError("unknown_category", f"{category[:60]!r} is not a category") from None
    rationale = answer.get("reasoning", "")
    if not isinstance(rationale, str):
        raise AnswerError("malformed_answer", "reasoning is not text")
    name = next(key for key, value in CATEGORY_NAMES.items() if value == number)
    return SynthesizedTask(
        query.strip(),
        number,
        name,
        rationale.strip(),
        _paths(answer.get("modified_files"), "modified_files"),
        _paths(answer.get("related_files"), "related_files"),
    )
