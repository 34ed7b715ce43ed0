"""The synthetic track: PR records in, a few well-covering synthetic queries out, every drop counted.

Stages, in order: the PR filters (pr_filters.py); synthesis through an OpenAI-compatible endpoint
(answers cached by PR and prompt hash, so a re-run only asks for what changed); the alignment
check (alignment.py); decontamination against the pool and the benchmarks (dedupe.py); and the
coverage selection of N (coverage.py). Like LIMI's released code, the selected query ends with
the sentence naming the files to modify. The endpoint is asked through limi_core's one policy
client, `concurrency` requests at a time. A PR whose request the endpoint refuses (a 4xx such
as a prompt over the context length) is dropped and counted; an endpoint that cannot be reached
stops the run with `PolicyUnavailable` (answers received so far stay cached). It does not store
queries in the pool (the caller does, when asked).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence

from limi.query.v1 import query_pb2
from limi_core.policy_client import PolicyClient, PolicyRejected, Sampling
from limi_curator.alignment import check_alignment
from limi_curator.coverage import select_with_coverage
from limi_curator.db import CuratorDatabase
from limi_curator.dedupe import Deduplicator
from limi_curator.funnel import Funnel
from limi_curator.pr_filters import FilterConfig, apply_filters
from limi_curator.pull_requests import PullRequest
from limi_curator.query_import import content_hash, default_query_id
from limi_curator.synthesis_prompt import (
    PROMPT_VERSION,
    AnswerError,
    SynthesizedTask,
    build_messages,
    parse_answer,
    prompt_hash,
)
from limi_curator.tokens import TokenCounter


@dataclasses.dataclass(frozen=True)
class SynthesisOptions:
    filters: FilterConfig
    select: int
    model: str
    temperature: float = 0.2
    concurrency: int = 4
    origin: str = "pull_requests.jsonl"


@dataclasses.dataclass(frozen=True)
class Candidate:
    record: PullRequest
    task: SynthesizedTask
    query: query_pb2.Query


@dataclasses.dataclass
class SynthesisResult:
    funnel: Funnel
    accepted: list[Candidate]
    selected: list[Candidate]
    cache_hits: int
    endpoint_calls: int
    tokenizer: str


class SynthesisCache:
    """Raw model answers by (PR key, prompt hash), in the curator's database."""

    def __init__(self, db: CuratorDatabase) -> None:
        self._db = db

    def get(self, pr_key: str, digest: str) -> str | None:
        rows = self._db.read(
            "SELECT response FROM synthesis_cache WHERE pr_key = ? AND prompt_hash = ?", (pr_key, digest)
        )
        return rows[0][0] if rows else None

    def put(self, pr_key: str, digest: str, response: str) -> None:
        with self._db.transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO synthesis_cache (pr_key, prompt_hash, response) VALUES (?, ?, ?)",
                (pr_key, digest, response),
            )


def file_hint(files: Sequence[str]) -> str:
    """LIMI's closing sentence (scripts/data_collection/final_filter.py)."""
    target = f"the {files[0]}" if len(files) == 1 else f"these files: {', '.join(files)}"
    return f" You only need to modify {target} to complete the task."


def _query(
    candidate_record: PullRequest, task: SynthesizedTask, options: SynthesisOptions, digest: str
) -> query_pb2.Query:
    text = task.text + file_hint(candidate_record.changed_files)
    query = query_pb2.Query(
        id=default_query_id(text),
        text=text,
        source=query_pb2.QUERY_SOURCE_SYNTHETIC,
        category=task.category,
        content_hash=content_hash(text),
    )
    provenance = query.provenance
    provenance.repository, provenance.pull_request = candidate_record.repository, candidate_record.number
    provenance.author, provenance.url = f"synth:{options.model}", candidate_record.url
    provenance.base_sha, provenance.head_sha, provenance.origin_file = (
        candidate_record.base_sha,
        candidate_record.head_sha,
        options.origin,
    )
    query.labels.update(
        {
            "rationale": task.rationale,
            "modified_files": ",".join(candidate_record.changed_files),
            "related_files": ",".join(task.related_files),
            "stars": str(candidate_record.stars),
            "prompt_version": PROMPT_VERSION,
            "prompt_hash": digest,
        }
    )
    return query


def synthesize(
    records: list[PullRequest],
    *,
    options: SynthesisOptions,
    client: PolicyClient,
    cache: SynthesisCache,
    counter: TokenCounter,
    deduplicator: Deduplicator | None = None,
    pool_texts: Sequence[tuple[str, str]] = (),
) -> SynthesisResult:
    funnel = Funnel()
    kept = apply_filters(records, options.filters, counter, funnel)
    prompts = []
    for record in kept:
        messages = build_messages(record)
        prompts.append((record, messages, prompt_hash(messages, options.model, options.temperature)))
    answers: dict[str, str] = {}
    missing = []
    for record, messages, digest in prompts:
        cached = cache.get(record.key, digest)
        if cached is None:
            missing.append((record, messages, digest))
        else:
            answers[record.key] = cached
    refused: dict[str, str] = {}
    if missing:
        asyncio.run(_ask_all(client, missing, options, cache, answers, refused))

    aligned: list[Candidate] = []
    for record, _messages, digest in prompts:
        if record.key in refused:
            funnel.drop("synthesis", record.label, "endpoint_refused", refused[record.key][:200])
            continue
        try:
            task = parse_answer(answers[record.key])
        except AnswerError as exc:
            funnel.drop("synthesis", record.label, exc.reason, exc.detail)
            continue
        funnel.keep("synthesis")
        problem = check_alignment(task, record)
        if problem:
            funnel.drop("alignment", record.label, *problem)
            continue
        funnel.keep("alignment")
        aligned.append(Candidate(record, task, _query(record, task, options, digest)))

    accepted = aligned
    if deduplicator is not None:
        by_label = {candidate.record.label: candidate for candidate in aligned}
        duplicates = deduplicator.find([(c.record.label, c.task.text) for c in aligned], reference=pool_texts)
        dropped = {d.id for d in duplicates}
        for duplicate in duplicates:
            funnel.drop(
                "decontamination", duplicate.id, duplicate.reason, f"{duplicate.matched} ({duplicate.similarity:.2f})"
            )
        accepted = [by_label[label] for label in by_label if label not in dropped]
        funnel.keep("decontamination", len(accepted))

    selected = select_with_coverage(
        accepted,
        options.select,
        [(lambda c: c.task.category_name, 2.0), (lambda c: c.record.repository, 1.0)],
        score=lambda c: math.log10(1 + c.record.stars),
        key=lambda c: c.record.label,
    )
    chosen = {c.record.label for c in selected}
    funnel.keep("selection", len(selected))
    for candidate in accepted:
        if candidate.record.label not in chosen:
            funnel.drop("selection", candidate.record.label, "not_selected", "coverage already reached by others")
    return SynthesisResult(funnel, accepted, selected, len(prompts) - len(missing), len(missing), counter.name)


async def _ask_all(
    client: PolicyClient,
    missing: list[tuple[PullRequest, list[dict], str]],
    options: SynthesisOptions,
    cache: SynthesisCache,
    answers: dict[str, str],
    refused: dict[str, str],
) -> None:
    """Ask the endpoint for every missing answer, `options.concurrency` at a time; the first outage ends it."""
    gate = asyncio.Semaphore(options.concurrency)
    sampling = Sampling(temperature=options.temperature, max_tokens=1024)

    async def ask(record: PullRequest, messages: list[dict], digest: str) -> None:
        async with gate:
            try:
                turn = await client.complete(messages, [], sampling)
            except PolicyRejected as exc:
                refused[record.key] = str(exc)
                return
        cache.put(record.key, digest, turn.content)
        answers[record.key] = turn.content

    try:
        async with asyncio.TaskGroup() as group:
            for item in missing:
                group.create_task(ask(*item))
    except BaseExceptionGroup as failures:
        first = failures.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    finally:
        await client.close()


def synthesis_report_markdown(result: SynthesisResult) -> str:
    categories = sorted({c.task.category_name for c in result.selected})
    repositories = sorted({c.record.repository for c in result.selected})
    lines = [
        "# PR-to-task synthesis",
        "",
        f"Accepted {len(result.accepted)} candidates, selected {len(result.selected)} covering {len(categories)} categories "
        f"and {len(repositories)} repositories. Endpoint calls {result.endpoint_calls}, cache hits {result.cache_hits}. "
        f"Diff tokens counted with {result.tokenizer}.",
        "",
        result.funnel.markdown_table(),
        "",
        "| selected PR | category | query |",
        "| --- | --- | --- |",
    ]
    for candidate in result.selected:
        text = " ".join(candidate.query.text.split())[:120].replace("|", "\\|")
        lines.append(f"| {candidate.record.label} | {candidate.task.category_name} | {text} |")
    return "\n".join(lines) + "\n"
