"""Grading a subtask: run its rubric checks in the task's workspace and weigh them into 0-10.

Each `Check` runs in the sandbox workspace (a shell command through Exec, or Python through
RunPython) with its own timeout. An item scores 1 when the exit code and the stdout conditions
hold, 0 otherwise; with `score_from_stdout` the last stdout line is the item's partial credit in
[0, 1]. The grade is `round(10 * sum(weight * score) / sum(weight), round_digits)`, the shape of
AgencyBench v2's `round(10 * (0.3*B + 0.5*P + 0.2*M))`. Every item that is not fully met gets
a one-line reason (exit code, output seen, assertion message), and `feedback_text` turns them
into the next round's feedback ("Focus on fixing these rubric gaps: ..."). The checks run in
the agent's workspace and may leave files there (bytecode writing is switched off). It does not
choose rounds or keep state: harness.py does.
"""

from __future__ import annotations

import dataclasses
import re

from limi_evaluator.suite import Check, Subtask
from limi_evaluator.workspace import ExecOutcome, Workspace

FEEDBACK_HEAD = "Focus on fixing these rubric gaps:"
SHELL_PRELUDE = "export PYTHONDONTWRITEBYTECODE=1\n"
PYTHON_PRELUDE = "import sys as _limi_sys\n_limi_sys.dont_write_bytecode = True\ndel _limi_sys\n"
DETAIL_CHARS = 300


@dataclasses.dataclass(frozen=True)
class ItemResult:
    name: str
    weight: float
    score: float
    detail: str = ""

    @property
    def met(self) -> bool:
        return self.score >= 1.0


@dataclasses.dataclass(frozen=True)
class RubricResult:
    grade: float
    items: tuple[ItemResult, ...]

    @property
    def failed_items(self) -> list[str]:
        return [f"{item.name}: {item.detail}" if item.detail else item.name for item in self.items if not item.met]


def _short(text: str, limit: int = DETAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def judge(check: Check, outcome: ExecOutcome) -> tuple[float, str]:
    """The item's score in [0, 1] and, below 1, why."""
    if outcome.timed_out:
        return 0.0, f"timed out after {check.timeout_seconds:g} s"
    if outcome.memory_exceeded:
        return 0.0, "ran out of memory"
    if check.expect_exit is not None and outcome.exit_code != check.expect_exit:
        why = _last_line(outcome.stderr) or _last_line(outcome.stdout)
        return 0.0, f"exit code {outcome.exit_code}, expected {check.expect_exit}" + (
            f" ({_short(why, 200)})" if why else ""
        )
    stdout = outcome.stdout
    if check.stdout_equals is not None and stdout.rstrip("\n") != check.stdout_equals.rstrip("\n"):
        return 0.0, f"printed {_short(stdout, 120)!r}, expected {_short(check.stdout_equals, 120)!r}"
    missing = [part for part in check.stdout_contains if part not in stdout]
    if missing:
        return 0.0, f"output lacks {_short(missing[0], 120)!r}"
    if check.stdout_regex is not None and not re.search(check.stdout_regex, stdout, re.MULTILINE):
        return 0.0, f"output does not match /{_short(check.stdout_regex, 120)}/"
    if check.score_from_stdout:
        last = _last_line(stdout)
        try:
            value = float(last)
        except ValueError:
            return 0.0, f"the last output line {_short(last, 80)!r} is not a score between 0 and 1"
        value = min(max(value, 0.0), 1.0)
        return value, "" if value >= 1.0 else f"partial credit {value:.2f}" + (
            f" ({_short(_last_line(outcome.stderr), 200)})" if outcome.stderr.strip() else ""
        )
    return 1.0, ""


async def run_check(workspace: Workspace, check: Check, timeout_cap: float | None = None) -> ItemResult:
    timeout = min(check.timeout_seconds, timeout_cap) if timeout_cap else check.timeout_seconds
    if check.command:
        outcome = await workspace.exec(SHELL_PRELUDE + check.command, timeout)
    else:
        outcome = await workspace.run_python(PYTHON_PRELUDE + check.python, timeout)
    score, detail = judge(dataclasses.replace(check, timeout_seconds=timeout), outcome)
    return ItemResult(check.name, check.weight, score, detail)


async def grade_subtask(workspace: Workspace, subtask: Subtask, *, timeout_cap: float | None = None) -> RubricResult:
    """Run every check of `subtask` in order (they may depend on each other's files) and grade."""
    items = []
    for check in subtask.checks:
        items.append(await run_check(workspace, check, timeout_cap))
    total = sum(item.weight for item in items)
    grade = (
        round(10.0 * sum(item.weight * item.score for item in items) / total, subtask.round_digits) if total else 0.0
    )
    return RubricResult(grade, tuple(items))


def feedback_text(result: RubricResult) -> str:
    """The next round's feedback: the unmet rubric items with their reasons."""
    lines = [f"- {line}" for line in result.failed_items]
    return "\n".join([FEEDBACK_HEAD, *lines]) if lines else ""
