"""HumanEval in the real sandbox: the reference sanity figures, and tool-use mode through the rollout.

The sanity test runs the 164 canonical solutions and the 164 bare prompts at the same time, in
parallel sandbox sessions, and must get exactly 164/164 and 0/164 (the known facts of the data);
it prints the wall time of the canonical run.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import time

import pytest

from limi_evaluator.catalog import Catalog
from limi_evaluator.evaluation import EvaluationSpec, Evaluator
from limi_evaluator.humaneval import completion_program, load_problems, truncate_completion
from limi_evaluator.policy import Policy
from limi_evaluator.sandbox_client import SandboxWorkspaces
from limi_evaluator.settings import DEFAULT_BENCHMARKS_DIR, EvaluatorSettings
from limi_evaluator.store import EvaluationStore
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer


def evaluator_for(
    tmp_path: pathlib.Path, sandbox_address: str, rollout_address: str = "127.0.0.1:1", **overrides
) -> Evaluator:
    settings = EvaluatorSettings(
        data_dir=tmp_path / "evaluator",
        sandbox_address=sandbox_address,
        rollout_address=rollout_address,
        benchmarks_dir=DEFAULT_BENCHMARKS_DIR,
        **overrides,
    )
    return Evaluator(
        settings,
        EvaluationStore(settings.data_dir / "evaluations.sqlite"),
        Catalog(settings.benchmarks_dir),
        SandboxWorkspaces(sandbox_address),
    )


def test_programs_are_prompt_completion_test_and_check():
    problems = load_problems(DEFAULT_BENCHMARKS_DIR)
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    program = completion_program(problems[0], problems[0].canonical_solution)
    assert program.startswith(problems[0].prompt + problems[0].canonical_solution) and program.rstrip().endswith(
        "check(has_close_elements)"
    )
    assert truncate_completion("    return x\n\ndef helper():\n    pass\n") == "    return x\n"
    assert truncate_completion("    return x\nif __name__ == '__main__':\n    main()") == "    return x"


async def test_sanity_canonical_solutions_pass_all_and_bare_prompts_none(sandbox, tmp_path):
    evaluator = evaluator_for(tmp_path, sandbox.grpc_address, humaneval_parallel=4)
    canonical = evaluator.prepare(
        EvaluationSpec(checkpoint_id="reference", benchmark="humaneval", reference="canonical")
    )
    bare = evaluator.prepare(EvaluationSpec(checkpoint_id="reference", benchmark="humaneval", reference="prompt"))
    timings = {}

    async def timed(prepared):
        started = time.perf_counter()
        result = await evaluator.run(prepared, None)
        timings[prepared.benchmark] = time.perf_counter() - started
        return result

    try:
        passed, failed = await asyncio.gather(timed(canonical), timed(bare))
    finally:
        await evaluator.workspaces.close()
    print(
        f"\nHumanEval sanity in the sandbox (4 sessions each, run together): canonical {timings['humaneval-canonical']:.1f} s, "
        f"bare prompts {timings['humaneval-prompt']:.1f} s"
    )
    assert len(passed.tasks) == 164 and sum(t.passed for t in passed.tasks) == 164
    assert passed.aggregate["pass@1"] == 100.0 and passed.aggregate["problems"] == 164
    assert len(failed.tasks) == 164 and sum(t.passed for t in failed.tasks) == 0 and failed.aggregate["pass@1"] == 0.0
    # Every bare prompt fails on an assertion (or a missing value), not on a sandbox error.
    reasons = {t.rounds[0].failed_items[0].split(":")[0] for t in failed.tasks}
    assert reasons <= {
        "AssertionError",
        "TypeError",
        "AttributeError",
        "ValueError",
        "IndexError",
        "KeyError",
        "NameError",
        "exit code 1",
    }
    assert passed.id == "evaluation:reference:humaneval-canonical"


def tool_policy(body: dict) -> Reply:
    """Solves HumanEval/0 with write_file, writes a wrong body for the others."""
    if any(m["role"] == "tool" for m in body["messages"]):
        return Reply(content="Implemented.")
    query = next(m["content"] for m in body["messages"] if m["role"] == "user")
    prompt = re.search(r"```python\n(.*)```", query, re.S).group(1)
    body_text = (
        (
            "    for i, a in enumerate(numbers):\n        for b in numbers[i + 1:]:\n            if abs(a - b) < threshold:\n"
            "                return True\n    return False\n"
        )
        if "has_close_elements" in prompt
        else "    return None\n"
    )
    return Reply(tool_calls=(("write_file", json.dumps({"path": "solution.py", "content": prompt + body_text})),))


async def test_tool_use_mode_runs_the_hidden_tests_on_the_agents_solution(stack, tmp_path):
    evaluator = evaluator_for(tmp_path, stack.sandbox_address, stack.rollout_address)
    try:
        with ScriptedPolicyServer(tool_policy) as server:
            prepared = evaluator.prepare(EvaluationSpec(checkpoint_id="scripted", benchmark="humaneval-tools", limit=2))
            result = await evaluator.run(prepared, Policy(server.endpoint, "scripted", "scripted"))
    finally:
        await evaluator.workspaces.close()
    assert [(t.task_id, t.passed, t.attempts) for t in result.tasks] == [
        ("HumanEval-0", True, 1),
        ("HumanEval-1", False, 1),
    ]
    assert "hidden tests" in result.tasks[1].rounds[0].failed_items[0]
    assert result.aggregate["pass@1"] == pytest.approx(50.0) and result.aggregate["SR@1"] == pytest.approx(50.0)
