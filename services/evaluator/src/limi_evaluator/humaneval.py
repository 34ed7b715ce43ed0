"""HumanEval in the sandbox: completion mode, tool-use mode, and the reference sanity runs.

Problems are read in place from `humaneval/HumanEval.jsonl.gz`. Completion mode asks a
`CompletionSource` for n continuations of each prompt (an OpenAI `/v1/completions` server, or
the reference source: the canonical solution, or nothing for the bare prompt) and runs
`prompt + completion + test + check(entry_point)` with RunPython in a pool of sandbox sessions,
`parallel` programs at a time, one after another inside each session. Each problem gives a
`TaskResult` (one round per sample, score = 10 * passed / n) and pass@k comes from scores.py.
Tool-use mode turns each problem into a one-subtask task for the multi-round harness: the agent
must write the function in `solution.py`; the hidden tests run in the sandbox as the rubric.
Programs never run on the host. A completion server that does not answer (limi_core's policy
client, after its retries) ends the run with `PolicyUnavailable`, a `DependencyUnavailable`, so
that nothing is scored zero for an outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import pathlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi_core.errors import FailedPrecondition
from limi_core.policy_client import PolicyClient, PolicyRejected, Sampling
from limi_core.retry import RetryPolicy
from limi_evaluator.suite import Check, Subtask, Suite, Task
from limi_evaluator.workspace import ExecOutcome, WorkspaceFactory

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
RELATIVE_PATH = pathlib.Path("humaneval") / "HumanEval.jsonl.gz"


@dataclasses.dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str

    @property
    def slug(self) -> str:
        return self.task_id.replace("/", "-")


def load_problems(benchmarks_dir: pathlib.Path) -> list[Problem]:
    """The 164 problems, in file order.

    Raises:
        FailedPrecondition: the file is missing or a line does not parse.
    """
    path = benchmarks_dir / RELATIVE_PATH
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        return [Problem(r["task_id"], r["prompt"], r["canonical_solution"], r["test"], r["entry_point"]) for r in rows]
    except (OSError, ValueError, KeyError) as exc:
        raise FailedPrecondition(
            f"HumanEval cannot be read from {path} ({type(exc).__name__}: {exc}); "
            "set LIMI_EVALUATOR_BENCHMARKS_DIR to the folder holding humaneval/"
        ) from None


def truncate_completion(text: str) -> str:
    """Cut a completion at the first top-level statement after the function body."""
    cut = len(text)
    for stop in STOP_SEQUENCES:
        position = text.find(stop)
        if position != -1:
            cut = min(cut, position)
    return text[:cut]


def completion_program(problem: Problem, completion: str) -> str:
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


class CompletionSource(Protocol):
    async def complete(self, problem: Problem, n: int) -> list[str]: ...


class ReferenceCompletions:
    """The sanity sources: "canonical" (the reference solution) or "prompt" (no body at all)."""

    def __init__(self, kind: str) -> None:
        if kind not in ("canonical", "prompt"):
            raise ValueError(f"reference must be canonical or prompt, got {kind!r}")
        self.kind = kind

    async def complete(self, problem: Problem, n: int) -> list[str]:
        return [problem.canonical_solution if self.kind == "canonical" else ""] * n


class OpenAICompletions:
    """Continuations from an OpenAI-compatible `/v1/completions` endpoint (vLLM serves one)."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        temperature: float,
        top_p: float,
        max_tokens: int = 512,
        timeout_seconds: float = 300.0,
        attempts: int = 4,
    ) -> None:
        self.endpoint, self.model = endpoint.rstrip("/"), model
        self.sampling = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=STOP_SEQUENCES)
        self._client = PolicyClient(
            endpoint,
            model,
            retry=RetryPolicy(attempts=attempts, first_backoff_seconds=0.5),
            timeout_seconds=timeout_seconds,
        )

    async def complete(self, problem: Problem, n: int) -> list[str]:
        try:
            texts = await self._client.complete_text(problem.prompt, n=n, sampling=self.sampling)
        except PolicyRejected:
            # The server refused this prompt (too long, say): the samples fail, the run goes on.
            return [""] * n
        return [truncate_completion(text) for text in texts]

    async def close(self) -> None:
        await self._client.close()


def _failure(outcome: ExecOutcome) -> str:
    if outcome.timed_out:
        return "timed out"
    lines = [line for line in outcome.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit code {outcome.exit_code}"


async def run_completion_mode(
    problems: list[Problem],
    source: CompletionSource,
    workspaces: WorkspaceFactory,
    *,
    samples: int,
    parallel: int,
    timeout_seconds: float,
    on_problem_done: Callable[[ev.TaskResult], Awaitable[None]],
) -> None:
    """Generate and run every problem's samples; `on_problem_done` gets each problem's result."""
    queue: asyncio.Queue[Problem] = asyncio.Queue()
    for problem in problems:
        queue.put_nowait(problem)

    async def worker(index: int) -> None:
        if queue.empty():
            return
        workspace = await workspaces.create((), label=f"humaneval-{index}")
        try:
            while not queue.empty():
                problem = queue.get_nowait()
                completions = await source.complete(problem, samples)
                result = ev.TaskResult(task_id=problem.task_id, attempts=samples)
                for number, completion in enumerate(completions, start=1):
                    outcome = await workspace.run_python(completion_program(problem, completion), timeout_seconds)
                    passed = outcome.exit_code == 0 and not outcome.timed_out
                    result.rounds.add(
                        round=number,
                        score=10.0 if passed else 0.0,
                        passed=passed,
                        failed_items=[] if passed else [_failure(outcome)],
                    )
                correct = sum(r.passed for r in result.rounds)
                result.score = 10.0 * correct / samples
                result.passed = correct == samples
                result.metrics.update({"n": float(samples), "c": float(correct)})
                await on_problem_done(result)
        finally:
            await workspace.close()

    workers = [asyncio.create_task(worker(i)) for i in range(max(1, min(parallel, len(problems))))]
    try:
        await asyncio.gather(*workers)
    finally:
        # One worker failed (or we were cancelled): stop the others and let them close their sessions.
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def tool_check(problem: Problem, timeout_seconds: float) -> Check:
    code = (
        "import pathlib\n"
        "source = pathlib.Path('solution.py').read_text()\n"
        f"program = source + '\\n\\n' + {problem.test!r} + '\\n\\ncheck({problem.entry_point})\\n'\n"
        "exec(compile(program, 'solution.py', 'exec'), {'__name__': 'humaneval_check'})\n"
    )
    return Check(
        name=f"solution.py passes the hidden tests of {problem.task_id}", python=code, timeout_seconds=timeout_seconds
    )


def tool_query(problem: Problem) -> str:
    return (
        f"Implement the Python function `{problem.entry_point}` in the file solution.py. The file already holds its "
        f"signature and docstring; write a body that makes it correct, keep the name, and answer briefly when done.\n\n"
        f"```python\n{problem.prompt}```"
    )


def tool_suite(problems: list[Problem], timeout_seconds: float, max_rounds: int = 1) -> Suite:
    """HumanEval as a tool-use suite: one task per problem, passed only when every hidden test passes."""
    tasks = tuple(
        Task(
            id=problem.slug,
            description=problem.task_id,
            files=(("solution.py", (problem.prompt + "    pass\n").encode()),),
            subtasks=(
                Subtask(
                    "1",
                    tool_query(problem),
                    deliverables=("solution.py",),
                    checks=(tool_check(problem, timeout_seconds),),
                ),
            ),
            labels=(("humaneval", problem.task_id),),
        )
        for problem in problems
    )
    return Suite(name="humaneval-tools", tasks=tasks, max_rounds=max_rounds, pass_score=10.0, origin="humaneval")
