"""One evaluation from start to finish: a checkpoint's policy on one benchmark, resumable.

`Evaluator.prepare(spec)` checks the request before anything expensive starts (the benchmark
exists, the suite parses, every subtask has executable checks, the HumanEval options make
sense) and raises `InvalidArgument` / `FailedPrecondition` / `SuiteError` otherwise.
`Evaluator.run(prepared, policy)` then runs the tasks that the store does not already hold
for this evaluation id (a crashed run resumes where it stopped), persisting each task as it
ends, computes the aggregate (scores.py), writes the HTML report with its trajectories and
plots (report.py), records the result in the store's leaderboard, and returns the
`EvalResult`. A finished evaluation is returned from the store without running again. Bringing
up the policy (policy.py) and publishing the event (server.py) are the caller's part.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import time

from google.protobuf import timestamp_pb2

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_core.events import event_id
from limi_evaluator import humaneval, metrics, report, scores
from limi_evaluator.agencybench import per_model_result
from limi_evaluator.catalog import HUMANEVAL, HUMANEVAL_TOOLS, Catalog
from limi_evaluator.harness import Harness, TaskRun, run_tasks
from limi_evaluator.policy import Policy
from limi_evaluator.rollout_client import EpisodeSettings, RolloutDriver
from limi_evaluator.settings import EvaluatorSettings
from limi_evaluator.store import EvaluationStore
from limi_evaluator.suite import Suite
from limi_evaluator.workspace import WorkspaceFactory

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvaluationSpec:
    checkpoint_id: str
    benchmark: str
    max_rounds: int = 0
    task_ids: tuple[str, ...] = ()
    limit: int = 0
    samples: int = 0
    ks: tuple[int, ...] = ()
    dataset_size: int | None = None
    step: int | None = None
    # HumanEval sanity runs without a policy: "canonical" or "prompt".
    reference: str = ""


@dataclasses.dataclass(frozen=True)
class Prepared:
    spec: EvaluationSpec
    kind: str
    benchmark: str
    evaluation_id: str
    suite: Suite | None = None
    problems: tuple[humaneval.Problem, ...] = ()
    samples: int = 1
    ks: tuple[int, ...] = (1,)

    @property
    def needs_policy(self) -> bool:
        return not self.spec.reference


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


class Evaluator:
    def __init__(
        self,
        settings: EvaluatorSettings,
        store: EvaluationStore,
        catalog: Catalog,
        workspaces: WorkspaceFactory,
        *,
        reports_dir: pathlib.Path | None = None,
    ) -> None:
        self.settings, self.store, self.catalog, self.workspaces = settings, store, catalog, workspaces
        self.reports_dir = reports_dir or settings.reports_dir
        self._running: dict[str, asyncio.Lock] = {}

    def prepare(self, spec: EvaluationSpec) -> Prepared:
        if not spec.checkpoint_id.strip():
            raise InvalidArgument("checkpoint_id", "must not be empty")
        if spec.max_rounds < 0 or spec.max_rounds > 10:
            raise InvalidArgument("max_rounds", "must be between 1 and 10 (0: the suite's own)")
        benchmark = self.catalog.resolve(spec.benchmark)
        if spec.reference and benchmark.kind != HUMANEVAL:
            raise InvalidArgument("reference", "reference solutions exist only for the humaneval benchmark")
        if benchmark.kind == HUMANEVAL:
            return self._prepare_humaneval(spec)
        if benchmark.kind == HUMANEVAL_TOOLS:
            problems = self._problems(spec)
            suite = humaneval.tool_suite(
                problems, self.settings.humaneval_timeout_seconds, max_rounds=spec.max_rounds or 1
            )
        else:
            suite = self.catalog.load_suite(benchmark).only(spec.task_ids, spec.limit)
        for task in suite.tasks:
            for subtask in task.subtasks:
                if not subtask.checks:
                    raise FailedPrecondition(
                        f"subtask {task.id}/{subtask.id} of {suite.name} has no executable rubric checks"
                    )
        name = suite.name if benchmark.kind == "suite" else benchmark.name
        return Prepared(spec, benchmark.kind, name, event_id("evaluation", spec.checkpoint_id, name), suite=suite)

    def _problems(self, spec: EvaluationSpec) -> list[humaneval.Problem]:
        problems = self.catalog.problems()
        if spec.task_ids:
            by_id = {p.task_id: p for p in problems} | {p.slug: p for p in problems}
            unknown = [t for t in spec.task_ids if t not in by_id]
            if unknown:
                raise InvalidArgument("task_ids", f"HumanEval has no problem {unknown[0]!r}")
            problems = [by_id[t] for t in spec.task_ids]
        limit = spec.limit or self.settings.humaneval_limit
        return problems[:limit] if limit else problems

    def _prepare_humaneval(self, spec: EvaluationSpec) -> Prepared:
        samples = spec.samples or self.settings.humaneval_samples
        ks = spec.ks or tuple(k for k in self.settings.humaneval_k if k <= samples) or (1,)
        if samples < 1 or samples > 200:
            raise InvalidArgument("samples", "must be between 1 and 200")
        if any(k < 1 or k > samples for k in ks):
            raise InvalidArgument("k", f"each k must be between 1 and the number of samples ({samples})")
        if spec.reference and spec.reference not in ("canonical", "prompt"):
            raise InvalidArgument("reference", f"must be canonical or prompt, got {spec.reference!r}")
        name = HUMANEVAL if not spec.reference else f"{HUMANEVAL}-{spec.reference}"
        return Prepared(
            spec,
            HUMANEVAL,
            name,
            event_id("evaluation", spec.checkpoint_id, name),
            problems=tuple(self._problems(spec)),
            samples=samples,
            ks=ks,
        )

    async def run(self, prepared: Prepared, policy: Policy | None) -> ev.EvalResult:
        if prepared.needs_policy and policy is None:
            raise FailedPrecondition(f"evaluation {prepared.evaluation_id} needs a policy")
        lock = self._running.setdefault(prepared.evaluation_id, asyncio.Lock())
        async with lock:
            finished = self.store.get(prepared.evaluation_id)
            if finished is not None:
                return finished
            metrics.RUNNING.inc()
            started, wall = _now(), time.perf_counter()
            spec = prepared.spec
            self.store.begin(
                prepared.evaluation_id,
                spec.checkpoint_id,
                prepared.benchmark,
                dataset_size=spec.dataset_size,
                step=spec.step,
            )
            try:
                await self._run_missing(prepared, policy)
                result = self._finish(prepared, policy, started)
            except BaseException as exc:
                self.store.fail(prepared.evaluation_id, f"{type(exc).__name__}: {exc}")
                metrics.EVALUATIONS.labels(prepared.benchmark, "failed").inc()
                raise
            finally:
                metrics.RUNNING.dec()
            metrics.EVALUATIONS.labels(prepared.benchmark, "finished").inc()
            metrics.EVALUATION_SECONDS.labels(prepared.benchmark).observe(time.perf_counter() - wall)
            for name, value in result.aggregate.items():
                metrics.SCORE.labels(spec.checkpoint_id, prepared.benchmark, name).set(value)
            return result

    async def _run_missing(self, prepared: Prepared, policy: Policy | None) -> None:
        done = self.store.finished_tasks(prepared.evaluation_id)
        if done:
            metrics.TASKS_RESUMED.labels(prepared.benchmark).inc(len(done))
            log.info("resuming", extra={"fields": {"evaluation": prepared.evaluation_id, "finished_tasks": len(done)}})
        if prepared.kind == HUMANEVAL:
            await self._run_completions(prepared, policy, [p for p in prepared.problems if p.task_id not in done])
        else:
            await self._run_suite(prepared, policy, [t for t in prepared.suite.tasks if t.id not in done])

    async def _run_suite(self, prepared: Prepared, policy: Policy, tasks) -> None:
        if not tasks:
            return
        s = self.settings
        driver = RolloutDriver(
            s.rollout_address,
            EpisodeSettings(
                endpoint=policy.endpoint,
                model=policy.model,
                temperature=s.temperature,
                top_p=s.top_p,
                max_tokens=s.max_tokens,
                max_turns=s.max_turns,
                max_wall_seconds=s.round_wall_seconds,
            ),
        )
        harness = Harness(
            driver,
            self.workspaces,
            evaluation_id=prepared.evaluation_id,
            max_rounds=prepared.spec.max_rounds or None,
            check_timeout_cap=s.check_timeout_seconds,
        )

        async def persist(run: TaskRun) -> None:
            self.store.save_task(prepared.evaluation_id, run.task_id, run.results, run.trajectories)
            for result in run.results:
                metrics.TASKS.labels(prepared.benchmark, "passed" if result.passed else "failed").inc()

        try:
            await run_tasks(harness, prepared.suite, list(tasks), concurrency=s.task_concurrency, on_task_done=persist)
        finally:
            await driver.close()

    async def _run_completions(self, prepared: Prepared, policy: Policy | None, problems) -> None:
        if not problems:
            return
        s = self.settings
        if prepared.spec.reference:
            source = humaneval.ReferenceCompletions(prepared.spec.reference)
        else:
            source = humaneval.OpenAICompletions(
                policy.endpoint,
                policy.model,
                temperature=s.temperature,
                top_p=s.top_p,
                max_tokens=min(s.max_tokens, 512),
            )

        async def persist(result: ev.TaskResult) -> None:
            self.store.save_task(prepared.evaluation_id, result.task_id, [result], {})
            metrics.TASKS.labels(prepared.benchmark, "passed" if result.passed else "failed").inc()

        try:
            await humaneval.run_completion_mode(
                list(problems),
                source,
                self.workspaces,
                samples=prepared.samples,
                parallel=s.humaneval_parallel,
                timeout_seconds=s.humaneval_timeout_seconds,
                on_problem_done=persist,
            )
        finally:
            if isinstance(source, humaneval.OpenAICompletions):
                await source.close()

    def _finish(self, prepared: Prepared, policy: Policy | None, started: timestamp_pb2.Timestamp) -> ev.EvalResult:
        done = self.store.finished_tasks(prepared.evaluation_id)
        order = (
            [p.task_id for p in prepared.problems]
            if prepared.kind == HUMANEVAL
            else [t.id for t in prepared.suite.tasks]
        )
        tasks = [result for task_id in order for result in done.get(task_id, [])]
        if prepared.kind == HUMANEVAL:
            aggregate = scores.code_metrics([(int(t.metrics["n"]), int(t.metrics["c"])) for t in tasks], prepared.ks)
            max_rounds = 1
        else:
            max_rounds = prepared.spec.max_rounds or prepared.suite.max_rounds
            aggregate = scores.agentic_metrics(tasks, max_rounds)
            if prepared.kind == HUMANEVAL_TOOLS:
                aggregate["pass@1"] = aggregate["Pass@1"]
        result = ev.EvalResult(
            id=prepared.evaluation_id,
            checkpoint_id=prepared.spec.checkpoint_id,
            benchmark=prepared.benchmark,
            tasks=tasks,
            aggregate=aggregate,
            policy_endpoint=policy.endpoint if policy else f"reference:{prepared.spec.reference}",
            started_at=started,
            finished_at=_now(),
        )
        v2 = per_model_result(
            prepared.spec.checkpoint_id,
            "limi-evaluator executable rubrics",
            max_rounds,
            [
                {
                    "name": f"{t.task_id}/{t.subtask_id}" if t.subtask_id else t.task_id,
                    "attempts": t.attempts,
                    "best_score": t.score,
                    "best_attempt": int(t.metrics.get("best_round", 1)) if t.rounds else 0,
                }
                for t in tasks
            ],
        )
        history = self.store.leaderboard(prepared.benchmark)
        path = report.write_report(
            self.reports_dir / report.folder_name(prepared.evaluation_id),
            result,
            self.store.trajectories(prepared.evaluation_id),
            history,
            per_model=v2,
            dataset_size=prepared.spec.dataset_size,
            step=prepared.spec.step,
        )
        result.report_uri = path.resolve().as_uri()
        self.store.finish(result)
        return result
