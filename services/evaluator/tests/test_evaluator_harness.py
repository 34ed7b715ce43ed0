"""The multi-round harness end to end: real sandbox and rollout processes, scripted policies over HTTP.

The evaluator owns each task's sandbox session, runs round 1 through the rollout service, checks
the rubric in that session, and continues the same conversation in the same workspace with the
unmet rubric items as feedback. These tests check the rounds, the feedback the policy sees, the
workspace carried between rounds and subtasks (restored to the best round), the metrics, and
that the scripted expert passes every held-out workspace-basics task in its first round.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_evaluator.catalog import Catalog
from limi_evaluator.evaluation import EvaluationSpec, Evaluator
from limi_evaluator.harness import Harness, PolicyUnreachable
from limi_evaluator.policy import Policy
from limi_evaluator.rollout_client import EpisodeSettings, RolloutDriver
from limi_evaluator.sandbox_client import SandboxWorkspaces
from limi_evaluator.settings import DEFAULT_BENCHMARKS_DIR, EvaluatorSettings
from limi_evaluator.store import EvaluationStore
from limi_evaluator.suite import Check, Subtask, Suite, Task
from limi_testing.expert import expert_reply
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer, Status


def file_check(path: str, text: str) -> Check:
    return Check(
        name=f"{path} holds {text}",
        python=f"import pathlib\nassert pathlib.Path({path!r}).read_text().strip() == {text!r}, 'wrong or missing'\n",
    )


def conversation(body: dict) -> str:
    return json.dumps(body["messages"])


def tool_count_since_last_user(body: dict) -> int:
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return sum(1 for m in messages[last_user + 1 :] if m["role"] == "tool")


def write(path: str, content: str) -> Reply:
    return Reply(tool_calls=(("write_file", json.dumps({"path": path, "content": content})),))


PROGRESSIVE = Suite(
    name="progressive",
    max_rounds=3,
    pass_score=10.0,
    tasks=(
        Task(
            id="chain",
            subtasks=(
                # Round 1 writes only a.txt (grade 5); the feedback names b.txt; round 2 adds it (10).
                Subtask(
                    "first",
                    "FIRST: write a.txt and b.txt",
                    checks=(file_check("a.txt", "one"), file_check("b.txt", "two")),
                ),
                # Round 1 keeps a.txt (5); rounds 2 and 3 break it (0): the next subtask starts from round 1's workspace.
                Subtask(
                    "worse", "WORSE: write c.txt", checks=(file_check("a.txt", "one"), file_check("c.txt", "three"))
                ),
                # Needs a.txt as subtask 1 left it (restored), copies it.
                Subtask("last", "LAST: copy a.txt to d.txt", checks=(file_check("d.txt", "one"),)),
            ),
        ),
    ),
)


def progressive_policy(body: dict) -> Reply:
    text, made = conversation(body), tool_count_since_last_user(body)
    user = [m["content"] for m in body["messages"] if m["role"] == "user"]
    feedback = len(user) > 1
    if made:
        return Reply(content="done")
    if user[0].startswith("FIRST"):
        return write("b.txt", "two") if feedback else write("a.txt", "one")
    if user[0].startswith("WORSE"):
        return write("a.txt", "broken") if feedback else write("nothing.txt", "x")
    assert "LAST" in text
    return Reply(tool_calls=(("shell", json.dumps({"command": "cp a.txt d.txt"})),))


async def test_rounds_get_rubric_feedback_in_the_same_workspace_and_the_next_subtask_starts_from_the_best(stack):
    with ScriptedPolicyServer(progressive_policy) as policy:
        workspaces = SandboxWorkspaces(stack.sandbox_address)
        driver = RolloutDriver(
            stack.rollout_address, EpisodeSettings(endpoint=policy.endpoint, model="scripted", max_turns=5)
        )
        try:
            run = await Harness(driver, workspaces, evaluation_id="evaluation:test:progressive").run_task(
                PROGRESSIVE, PROGRESSIVE.tasks[0]
            )
        finally:
            await driver.close()
            await workspaces.close()
    first, worse, last = run.results
    assert [(r.round, r.score, r.passed) for r in first.rounds] == [(1, 5.0, False), (2, 10.0, True)]
    assert first.rounds[0].failed_items == [
        "b.txt holds two: exit code 1, expected 0 (FileNotFoundError: [Errno 2] No such file or directory: 'b.txt')"
    ]
    assert (first.score, first.passed, first.attempts) == (10.0, True, 2)
    assert [r.score for r in worse.rounds] == [5.0, 0.0, 0.0] and not worse.passed and worse.metrics["best_round"] == 1
    assert [(r.score, r.passed) for r in last.rounds] == [(10.0, True)]  # a.txt was restored to round 1's "one"

    # The second round continued the first one's conversation after the rubric feedback.
    round1, round2 = run.trajectories["chain__first__r1"], run.trajectories["chain__first__r2"]
    assert round2.steps[: len(round1.steps)] == round1.steps
    feedback = round2.steps[len(round1.steps)]
    assert feedback.feedback.kind == tp.FEEDBACK_KIND_RUBRIC and feedback.content.startswith(
        "Focus on fixing these rubric gaps:\n- b.txt holds two"
    )
    assert round2.sandbox.session_id == round1.sandbox.session_id
    assert (round2.labels["limi.round"], round2.labels["limi.grade"], round2.outcome.score) == ("2", "10", 10.0)
    assert sorted(run.trajectories) == [
        "chain__first__r1",
        "chain__first__r2",
        "chain__last__r1",
        "chain__worse__r1",
        "chain__worse__r2",
        "chain__worse__r3",
    ]


async def test_a_policy_that_stops_answering_fails_the_task_instead_of_scoring_zero(stack):
    with ScriptedPolicyServer(lambda body: Status(503)) as policy:
        workspaces = SandboxWorkspaces(stack.sandbox_address)
        driver = RolloutDriver(stack.rollout_address, EpisodeSettings(endpoint=policy.endpoint, model="scripted"))
        try:
            with pytest.raises(PolicyUnreachable, match="policy unavailable"):
                await Harness(driver, workspaces, evaluation_id="e").run_task(PROGRESSIVE, PROGRESSIVE.tasks[0])
        finally:
            await driver.close()
            await workspaces.close()


def make_evaluator(stack, tmp_path: pathlib.Path, **overrides) -> tuple[Evaluator, EvaluationStore, SandboxWorkspaces]:
    settings = EvaluatorSettings(
        data_dir=tmp_path / "evaluator",
        sandbox_address=stack.sandbox_address,
        rollout_address=stack.rollout_address,
        benchmarks_dir=DEFAULT_BENCHMARKS_DIR,
        task_concurrency=2,
        max_turns=6,
        **overrides,
    )
    store = EvaluationStore(settings.data_dir / "evaluations.sqlite")
    workspaces = SandboxWorkspaces(settings.sandbox_address)
    return Evaluator(settings, store, Catalog(settings.benchmarks_dir), workspaces), store, workspaces


async def test_the_expert_passes_every_held_out_basics_task_in_the_first_round(stack, tmp_path):
    evaluator, store, workspaces = make_evaluator(stack, tmp_path)
    try:
        with ScriptedPolicyServer(expert_reply, model="expert") as server:
            prepared = evaluator.prepare(
                EvaluationSpec(checkpoint_id="expert", benchmark="limi-basics", dataset_size=0)
            )
            result = await evaluator.run(prepared, Policy(server.endpoint, "expert", "scripted expert"))
            requests = len(server.requests)
            again = await evaluator.run(prepared, Policy(server.endpoint, "expert", "scripted expert"))
            assert len(server.requests) == requests  # a finished evaluation is not run again
    finally:
        await workspaces.close()
    assert result.id == "evaluation:expert:limi-basics" and again == result
    assert len(result.tasks) == 14 and all(t.passed and t.attempts == 1 and t.score == 10 for t in result.tasks)
    for metric in ("FTFC", "SR@3", "RC@3", "Avg", "S_avg", "Pass@1"):
        assert result.aggregate[metric] == pytest.approx(100.0), metric
    assert result.aggregate["Att"] == 1.0 and result.aggregate["tokens"] > 0
    report = pathlib.Path(result.report_uri.removeprefix("file://"))
    assert report.is_file() and len(list((report.parent / "trajectories").glob("*.json"))) == 14
    v2 = json.loads((report.parent / "agencybench_v2.json").read_text())
    assert v2["model"] == "expert" and v2["max_attempts"] == 3 and len(v2["subtasks"]) == 14
    assert set(v2["subtasks"][0]) >= {"name", "attempts", "best_score", "best_attempt"}
    assert [row.checkpoint_id for row in store.leaderboard("limi-basics")] == ["expert"]
