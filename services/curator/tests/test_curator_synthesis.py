"""The synthetic track end to end against a scripted OpenAI-compatible server: filters, synthesis, alignment,
decontamination, coverage selection, the incremental cache, and broken inputs."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from limi.query.v1 import query_pb2
from limi_core.errors import DependencyUnavailable, InvalidArgument
from limi_core.policy_client import PolicyUnavailable
from limi_core.processes import free_port
from limi_curator.alignment import check_alignment
from limi_curator.curator import Curator
from limi_curator.funnel import Funnel
from limi_curator.pr_filters import FilterConfig, apply_filters
from limi_curator.pull_requests import parse_pull_requests
from limi_curator.settings import DEFAULT_BENCHMARKS_DIR
from limi_curator.synthesis_prompt import AnswerError, build_messages, parse_answer, prompt_hash
from limi_curator.tokens import WordPunctFallback, load_token_counter
from limi_testing.synthetic_prs import generate_pull_requests

SCRIPTED_TO_REASON = {
    "leak": "leaks_solution",
    "unrelated": "does_not_match_diff",
    "not_json": "unparseable_answer",
    "unknown_category": "unknown_category",
}


def _jsonl(records) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


@pytest.fixture
def curator(settings):
    curator = Curator(settings)
    yield curator
    curator.close()


@pytest.fixture(scope="module")
def corpus():
    return generate_pull_requests(240)


def test_the_generated_corpus_is_deterministic_and_has_every_kind_of_pr(corpus):
    assert generate_pull_requests(240) == corpus
    records = parse_pull_requests(_jsonl(corpus), "prs.jsonl")
    counter = WordPunctFallback()
    assert len(records) == 240
    assert len({r.repository for r in records}) == 20
    assert sum(r.stars <= 10_000 for r in records) >= 20
    assert sum(r.markdown_only() for r in records) >= 8
    assert sum(len(r.changed_files) > 1 for r in records) >= 40
    assert sum(counter.count(r.diff) >= 1_200 for r in records if len(r.changed_files) == 1) >= 2
    assert len(Counter(r["kind"] for r in corpus)) == 11


def test_filters_count_each_reason_in_order_and_are_configurable(corpus):
    records = parse_pull_requests(_jsonl(corpus), "prs.jsonl")
    funnel = Funnel()
    kept = apply_filters(records, FilterConfig(), WordPunctFallback(), funnel)
    counts = funnel.flat_counts()
    assert counts["input.kept"] == 240
    dropped = sum(v for k, v in counts.items() if ".dropped." in k)
    assert dropped + len(kept) == 240 == counts["input.kept"]
    assert counts["stars.dropped.below_min_stars"] == sum(r.stars < 10_001 for r in records)
    assert counts["diff_tokens.kept"] == len(kept)
    assert all(r.stars > 10_000 and len(r.changed_files) == 1 and not r.markdown_only() for r in kept)
    relaxed = apply_filters(
        records,
        FilterConfig(min_stars=0, max_changed_files=3, exclude_markdown_only=False, max_diff_tokens=100_000),
        WordPunctFallback(),
        Funnel(),
    )
    assert len(relaxed) == 240


def test_diff_tokens_use_the_given_tokenizer(corpus, tiny_tokenizer):
    records = parse_pull_requests(_jsonl(corpus[:5]), "prs.jsonl")
    exact = load_token_counter(tiny_tokenizer)
    assert exact.name == f"tokenizer.json:{tiny_tokenizer.resolve()}"
    assert all(exact.count(r.diff) != WordPunctFallback().count(r.diff) for r in records)
    with pytest.raises(InvalidArgument, match="^tokenizer: '/nope/tokenizer.json' is not a tokenizer.json file"):
        load_token_counter("/nope/tokenizer.json")


def test_prompt_holds_the_pr_and_its_hash_covers_model_and_prompt(corpus):
    record = parse_pull_requests(_jsonl(corpus[:1]), "prs.jsonl")[0]
    messages = build_messages(record)
    assert record.title in messages[1]["content"] and record.diff.strip() in messages[1]["content"]
    assert "do NOT paste code" in messages[1]["content"]
    first = prompt_hash(messages, "model-a", 0.2)
    assert first == prompt_hash(build_messages(record), "model-a", 0.2)
    assert first != prompt_hash(messages, "model-b", 0.2) != prompt_hash(messages, "model-a", 0.7)


def test_answers_are_read_from_fenced_json_and_limi_categories():
    task = parse_answer(
        'Here you go:\n```json\n{"test_query": "Speed up the importer in src/importer.py.", '
        '"task_category": "5-1.codebase-resolve-issues/debugging", "reasoning": "bug"}\n```'
    )
    assert task.category == query_pb2.QUERY_CATEGORY_DEBUGGING and task.category_name == "debugging"
    for text, reason in [
        ("no json at all", "unparseable_answer"),
        ('{"test_query": ""}', "malformed_answer"),
        ('{"test_query": "x", "task_category": "astrology"}', "unknown_category"),
        ('{"test_query": "x"', "unparseable_answer"),
    ]:
        with pytest.raises(AnswerError) as caught:
            parse_answer(text)
        assert caught.value.reason == reason


def test_alignment_rejects_leaks_unrelated_tasks_and_wrong_files(corpus):
    record = next(r for r in parse_pull_requests(_jsonl(corpus), "prs.jsonl") if "calibration" in r.title)
    good = parse_answer(
        json.dumps(
            {
                "test_query": f"Our evaluation report only shows accuracy. Add an expected calibration error metric in "
                f"{record.changed_files[0]} with equal-width bins and report it next to accuracy.",
                "task_category": "research",
            }
        )
    )
    assert check_alignment(good, record) is None
    added_line = max(record.added_lines(), key=len).strip()
    leaking = parse_answer(
        json.dumps({"test_query": good.text + " Use exactly: " + added_line, "task_category": "research"})
    )
    assert check_alignment(leaking, record)[0] == "leaks_solution"
    fenced = parse_answer(json.dumps({"test_query": good.text + "\n@@ -1,2 +1,3 @@\n+x", "task_category": "research"}))
    assert check_alignment(fenced, record) == ("leaks_solution", "contains diff markup")
    unrelated = parse_answer(
        json.dumps(
            {
                "test_query": "Please redesign the marketing landing page with a darker theme and a newsletter form for phones.",
                "task_category": "frontend",
            }
        )
    )
    assert check_alignment(unrelated, record)[0] == "does_not_match_diff"
    wrong_files = parse_answer(
        json.dumps({"test_query": good.text, "task_category": "research", "modified_files": ["web/index.html"]})
    )
    assert check_alignment(wrong_files, record)[0] == "does_not_match_diff"
    short = parse_answer(json.dumps({"test_query": "Add ECE.", "task_category": "research"}))
    assert check_alignment(short, record)[0] == "too_short"


def test_synthesis_over_240_prs_counts_every_stage_and_selects_for_coverage(curator, scripted_llm, corpus, capsys):
    result, added, note = curator.synthesize(
        content=_jsonl(corpus),
        origin="prs.jsonl",
        endpoint=scripted_llm.url,
        model="scripted-gpt",
        select=18,
        filters={},
        tokenizer="",
        add_to_pool=True,
    )
    funnel = result.funnel
    stages = [stage.name for stage in funnel.stages]
    assert stages == [
        "input",
        "stars",
        "markdown_only",
        "changed_files",
        "diff_tokens",
        "synthesis",
        "alignment",
        "decontamination",
        "selection",
    ]
    previous = funnel.stages[0].kept
    for stage in funnel.stages[1:]:
        assert stage.kept + sum(stage.dropped.values()) == previous, stage
        previous = stage.kept
    assert len(result.accepted) == funnel.stage("decontamination").kept
    assert len(result.selected) == 18
    # Each scripted misbehaviour is caught under its own reason; good answers all pass alignment.
    for rejection in funnel.rejections:
        if rejection.stage in ("synthesis", "alignment"):
            assert SCRIPTED_TO_REASON[scripted_llm.behaviour(rejection.item)] == rejection.reason, rejection
    synthesized = funnel.stage("synthesis").kept + sum(funnel.stage("synthesis").dropped.values())
    assert result.endpoint_calls == synthesized and result.cache_hits == 0
    flaky = [
        label
        for label in (r.label for r in parse_pull_requests(_jsonl(corpus), "prs.jsonl"))
        if scripted_llm.behaviour(label) == "flaky"
    ]
    assert max(scripted_llm.requests.values()) == 2 and flaky, "flaky PRs are answered after one retry"
    categories = Counter(candidate.task.category_name for candidate in result.selected)
    repositories = {candidate.record.repository for candidate in result.selected}
    assert len(categories) >= 10 and max(categories.values()) <= 2 and len(repositories) >= 14
    for candidate in result.selected:
        query = candidate.query
        assert query.source == query_pb2.QUERY_SOURCE_SYNTHETIC and query.provenance.author == "synth:scripted-gpt"
        assert query.text.endswith(
            f"You only need to modify the {candidate.record.changed_files[0]} to complete the task."
        )
        assert query.provenance.head_sha == candidate.record.head_sha and query.labels["prompt_hash"]
    assert sorted(added) == sorted(c.query.id for c in result.selected)
    assert len(curator.pool.list(source=query_pb2.QUERY_SOURCE_SYNTHETIC, page_size=100)[0]) == 18
    with capsys.disabled():
        print(
            "\nsynthesis over",
            len(corpus),
            "PR records:",
            json.dumps(funnel.flat_counts()),
            f"accepted {len(result.accepted)} selected {len(result.selected)}",
        )


def test_a_rerun_asks_only_for_what_changed(curator, scripted_llm, corpus):
    arguments = dict(
        origin="prs.jsonl", endpoint=scripted_llm.url, select=18, filters={}, tokenizer="", add_to_pool=False
    )
    first, _, _ = curator.synthesize(content=_jsonl(corpus[:120]), model="scripted-gpt", **arguments)
    asked = scripted_llm.total_requests
    again, _, _ = curator.synthesize(content=_jsonl(corpus[:120]), model="scripted-gpt", **arguments)
    assert (
        again.endpoint_calls == 0 and again.cache_hits == first.endpoint_calls and scripted_llm.total_requests == asked
    )
    assert [c.query.id for c in again.selected] == [c.query.id for c in first.selected]
    grown, _, _ = curator.synthesize(content=_jsonl(corpus[:160]), model="scripted-gpt", **arguments)
    assert (
        grown.cache_hits == first.endpoint_calls
        and grown.endpoint_calls == grown.funnel.stage("diff_tokens").kept - first.endpoint_calls
    )
    other_model, _, _ = curator.synthesize(content=_jsonl(corpus[:120]), model="another-model", **arguments)
    assert other_model.cache_hits == 0 and other_model.endpoint_calls == first.endpoint_calls


def test_a_refusing_endpoint_is_counted_and_a_dead_one_stops_the_run(curator, scripted_llm, corpus):
    arguments = dict(
        origin="prs.jsonl", endpoint=scripted_llm.url, model="m", select=5, filters={}, tokenizer="", add_to_pool=False
    )
    scripted_llm.mode = "refuse"
    refused, _, _ = curator.synthesize(content=_jsonl(corpus[:40]), **arguments)
    assert (
        refused.accepted == []
        and refused.funnel.stage("synthesis").dropped["endpoint_refused"] == refused.funnel.stage("diff_tokens").kept
    )
    scripted_llm.mode = "normal"
    recovered, _, _ = curator.synthesize(content=_jsonl(corpus[:40]), **arguments)
    assert recovered.cache_hits == 0 and recovered.accepted, "refusals are not cached"
    scripted_llm.mode = "fail"
    with pytest.raises(PolicyUnavailable, match=r"HTTP 500 from .*; gave up after 4 attempts") as failed:
        curator.synthesize(content=_jsonl(corpus[40:80]), **arguments)
    assert isinstance(failed.value, DependencyUnavailable) and failed.value.dependency == "synthesis"
    with pytest.raises(PolicyUnavailable, match="ConnectError talking to .*; gave up after 4 attempts"):
        curator.synthesize(
            content=_jsonl(corpus[40:80]), **{**arguments, "endpoint": f"http://127.0.0.1:{free_port()}/v1"}
        )


@pytest.mark.skipif(not DEFAULT_BENCHMARKS_DIR.is_dir(), reason="needs ../shared/benchmarks")
def test_a_candidate_that_copies_an_agencybench_task_is_decontaminated(curator, scripted_llm, corpus):
    description = json.loads(
        (DEFAULT_BENCHMARKS_DIR / "agencybench-v2" / "Game" / "scenario2" / "description.json").read_text()
    )
    copied = " ".join(description["subtask1"].split("Deliverables:")[0].replace("Query:", "").split())
    record = dict(
        corpus[0],
        number=99_001,
        title="Add a splash screen for the 2048 puzzle",
        body=copied,
        stars=50_000,
        changed_files=["src/game/splash.ts"],
        head_sha="ab" * 20,
        diff=corpus[0]["diff"].replace(corpus[0]["changed_files"][0], "src/game/splash.ts"),
    )
    record["repository"] = "pixelcraft/canvas-kit"
    assert scripted_llm.behaviour("pixelcraft/canvas-kit#99001") in ("good", "flaky")
    result, _, _ = curator.synthesize(
        content=_jsonl([record]),
        origin="prs.jsonl",
        endpoint=scripted_llm.url,
        model="m",
        select=1,
        filters={},
        tokenizer="",
        add_to_pool=False,
    )
    rejection = next(r for r in result.funnel.rejections if r.stage == "decontamination")
    assert rejection.reason in ("benchmark_overlap", "benchmark_near_duplicate")
    assert rejection.detail.startswith("agencybench-v2:Game/scenario2/subtask1")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"repository": "a/b", "stars": 1', "prs.jsonl line 1 field (line): is not valid JSON"),
        ('{"repository": "nope", "stars": 1}', "prs.jsonl line 1 field repository: must be owner/name, got 'nope'"),
        ('{"repository": "a/b", "stars": "many"}', "prs.jsonl line 1 field stars: must be an integer"),
        (
            '{"repository": "a/b", "stars": 5, "number": 3, "title": "t", "diff": "+x", "changed_files": [], "base_sha": "abc1234", "head_sha": "abc1235"}',
            "prs.jsonl line 1 field changed_files: must be a non-empty list",
        ),
        (
            '{"repository": "a/b", "stars": 5, "number": 3, "title": "t", "diff": "+x", "changed_files": ["a.py"], "base_sha": "zzz", "head_sha": "abc1235"}',
            "prs.jsonl line 1 field base_sha: must be a hexadecimal commit sha",
        ),
        (
            '{"repository": "a/b", "stars": 5, "number": 3, "title": "t", "changed_files": ["a.py"], "base_sha": "abc1234", "head_sha": "abc1235"}',
            "prs.jsonl line 1 field diff: is missing",
        ),
    ],
)
def test_broken_pr_records_name_line_and_field(line, message):
    with pytest.raises(InvalidArgument) as caught:
        parse_pull_requests(line.encode(), "prs.jsonl")
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_repeated_pr_is_named(corpus):
    with pytest.raises(InvalidArgument, match=r"^prs.jsonl line 3 field number: .* repeats line 1"):
        parse_pull_requests(_jsonl([corpus[0], corpus[1], corpus[0]]), "prs.jsonl")


def test_synthesis_request_fields_are_checked(curator, scripted_llm, corpus):
    content = _jsonl(corpus[:3])
    base = dict(
        content=content,
        origin="prs.jsonl",
        endpoint=scripted_llm.url,
        model="m",
        select=1,
        filters={},
        tokenizer="",
        add_to_pool=False,
    )
    for change, field in [
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"model": ""}, "model"),
        ({"select": -1}, "select"),
        ({"filters": {"max_changed_files": 0}}, "filters.max_changed_files"),
        ({"content": b" "}, "pull_requests_jsonl"),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            curator.synthesize(**{**base, **change})
        assert caught.value.field == field
