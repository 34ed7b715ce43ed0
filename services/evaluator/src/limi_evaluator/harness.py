"""The multi-round harness in AgencyBench's shape: subtasks in order, rounds with rubric feedback.

For one task the harness opens a sandbox workspace with the task's files (the evaluator owns
it), and for each subtask in order runs up to R rounds: round 1 is a fresh episode in that
workspace; after each round the rubric is checked in the same workspace; a round that does not
pass feeds its unmet rubric items back ("Focus on fixing these rubric gaps: ...") and the next
round continues the previous round's conversation in the same workspace. The next subtask
starts from the best round's workspace (restored from a snapshot when a later round scored
worse). Each subtask gives one `TaskResult` with every round's grade, failed items and
trajectory key. A round that ended because a dependency was down (the trajectory's
`Outcome.kind`: the policy or the sandbox unavailable) ends the whole task with a
`DependencyUnavailable` (`PolicyUnreachable` for the policy) instead of scoring zero, so the
caller waits for it and retries; a policy that refused the request is `PolicyRefused`. How episodes run is behind
`EpisodeDriver` (rollout_client.py); how workspaces are made is behind `WorkspaceFactory`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core.errors import DependencyUnavailable, FailedPrecondition
from limi_evaluator.rubric import feedback_text, grade_subtask
from limi_evaluator.suite import Suite, Task
from limi_evaluator.workspace import Workspace, WorkspaceFactory

log = logging.getLogger(__name__)


class PolicyUnreachable(DependencyUnavailable):
    """The policy did not answer (after the rollout's retries): the evaluation cannot go on now."""

    def __init__(self, message: str) -> None:
        super().__init__("policy", message)


class PolicyRefused(FailedPrecondition):
    """The policy under evaluation refused the rollout's requests: retrying will not help."""


class EpisodeDriver(Protocol):
    async def run_round(
        self,
        *,
        query: query_pb2.Query,
        session_id: str,
        system_prompt: str,
        previous: tp.Trajectory | None,
        feedback: str,
        request_id: str,
    ) -> tp.Trajectory: ...


@dataclasses.dataclass
class TaskRun:
    """What one task produced: one result per subtask and the trajectories by key."""

    task_id: str
    results: list[ev.TaskResult]
    trajectories: dict[str, tp.Trajectory]


def trajectory_key(task_id: str, subtask_id: str, round_number: int) -> str:
    return f"{task_id}__{subtask_id}__r{round_number}"


def tokens_since(trajectory: tp.Trajectory, first_step: int) -> int:
    return sum(
        s.usage.prompt_tokens + s.usage.completion_tokens
        for s in trajectory.steps[first_step:]
        if s.role == tp.ROLE_ASSISTANT
    )


def check_dependencies_answered(trajectory: tp.Trajectory) -> None:
    """Raise when the round ended because a dependency failed rather than on the policy's merits."""
    outcome = trajectory.outcome
    match outcome.kind:
        case tp.OUTCOME_KIND_POLICY_UNAVAILABLE:
            raise PolicyUnreachable(f"the policy failed during the episode: {outcome.reason}")
        case tp.OUTCOME_KIND_SANDBOX_UNAVAILABLE:
            raise DependencyUnavailable("sandbox", f"the sandbox failed during the episode: {outcome.reason}")
        case tp.OUTCOME_KIND_POLICY_REJECTED:
            raise PolicyRefused(f"the policy refused the episode's requests: {outcome.reason}")


class Harness:
    def __init__(
        self,
        driver: EpisodeDriver,
        workspaces: WorkspaceFactory,
        *,
        evaluation_id: str,
        max_rounds: int | None = None,
        check_timeout_cap: float | None = None,
        restore_best: bool = True,
    ) -> None:
        self.driver, self.workspaces = driver, workspaces
        self.evaluation_id = evaluation_id
        # A fresh prefix per run: a resumed evaluation must not get a crashed run's episodes back.
        self._request_prefix = f"{evaluation_id}#{uuid.uuid4().hex[:8]}"
        self.max_rounds = max_rounds
        self.check_timeout_cap = check_timeout_cap
        self.restore_best = restore_best

    def rounds_for(self, suite: Suite) -> int:
        return self.max_rounds or suite.max_rounds

    async def run_task(self, suite: Suite, task: Task) -> TaskRun:
        run = TaskRun(task.id, [], {})
        workspace = await self.workspaces.create(task.files, label=f"{suite.name}/{task.id}")
        try:
            for position, subtask in enumerate(task.subtasks):
                more_follow = position + 1 < len(task.subtasks)
                run.results.append(await self._run_subtask(suite, task, subtask, workspace, run, more_follow))
        finally:
            await workspace.close()
        return run

    async def _run_subtask(
        self, suite, task, subtask, workspace: Workspace, run: TaskRun, more_follow: bool
    ) -> ev.TaskResult:
        max_rounds = self.rounds_for(suite)
        pass_score = suite.pass_score_of(subtask)
        query = query_pb2.Query(
            id=f"{suite.name}:{task.id}:{subtask.id}",
            text=subtask.query,
            labels={"suite": suite.name, "task": task.id, "subtask": subtask.id},
        )
        result = ev.TaskResult(task_id=task.id, subtask_id=subtask.id)
        previous: tp.Trajectory | None = None
        feedback = ""
        best_grade, best_round, best_snapshot = -1.0, 0, b""
        tokens = 0
        for number in range(1, max_rounds + 1):
            first_new_step = len(previous.steps) if previous is not None else 0
            trajectory = await self.driver.run_round(
                query=query,
                session_id=workspace.session_id,
                system_prompt=suite.system_prompt,
                previous=previous,
                feedback=feedback,
                request_id=f"{self._request_prefix}:{task.id}:{subtask.id}:{number}",
            )
            check_dependencies_answered(trajectory)
            rubric = await grade_subtask(workspace, subtask, timeout_cap=self.check_timeout_cap)
            passed = rubric.grade >= pass_score
            key = trajectory_key(task.id, subtask.id, number)
            stored = tp.Trajectory()
            stored.CopyFrom(trajectory)
            stored.labels.update(
                {
                    "limi.evaluation": self.evaluation_id,
                    "limi.task": task.id,
                    "limi.subtask": subtask.id,
                    "limi.round": str(number),
                    "limi.grade": f"{rubric.grade:g}",
                }
            )
            stored.outcome.score = rubric.grade
            run.trajectories[key] = stored
            round_tokens = tokens_since(trajectory, first_new_step)
            tokens += round_tokens
            result.rounds.add(
                round=number, score=rubric.grade, passed=passed, failed_items=rubric.failed_items, trajectory_id=key
            )
            log.info(
                "round graded",
                extra={
                    "fields": {
                        "evaluation": self.evaluation_id,
                        "task": task.id,
                        "subtask": subtask.id,
                        "round": number,
                        "grade": rubric.grade,
                        "passed": passed,
                    }
                },
            )
            if rubric.grade > best_grade:
                best_grade, best_round = rubric.grade, number
                if self.restore_best and more_follow and not passed and number < max_rounds:
                    best_snapshot = await workspace.snapshot()
            if passed:
                break
            feedback, previous = feedback_text(rubric), trajectory
        if self.restore_best and more_follow and best_round != len(result.rounds) and best_snapshot:
            await workspace.restore(best_snapshot)
        result.score = best_grade
        result.passed = any(r.passed for r in result.rounds)
        result.attempts = len(result.rounds)
        result.metrics.update(
            {
                "first_round_score": result.rounds[0].score,
                "best_round": float(best_round),
                "tokens": float(tokens),
                "pass_score": pass_score,
                "max_rounds": float(max_rounds),
            }
        )
        return result


async def run_tasks(
    harness: Harness,
    suite: Suite,
    tasks: list[Task],
    *,
    concurrency: int,
    on_task_done: Callable[[TaskRun], Awaitable[None]],
) -> None:
    """Run `tasks` at most `concurrency` at a time; `on_task_done` sees each finished task (to persist it).

    The first task that fails cancels the others and its error propagates.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(task: Task) -> None:
        async with gate:
            run = await harness.run_task(suite, task)
            await on_task_done(run)

    try:
        async with asyncio.TaskGroup() as group:
            for task in tasks:
                group.create_task(one(task))
    except BaseExceptionGroup as failures:
        first = failures.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
