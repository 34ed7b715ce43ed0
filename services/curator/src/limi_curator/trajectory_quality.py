"""Scoring one trajectory for training, and the cross-sample tool-argument type rule.

`assess` converts the trajectory to its LIMI sample and checks, in this order:
- status: only COMPLETED episodes unless failed ones are asked for (`not_completed`);
- empty turns: assistant turns with no text and no tool call (`empty_turns`, above the maximum);
- loops: the same assistant action (tool name and arguments, or the same text) repeated in a row
  `loop_repeats` times or more (`looping`);
- failed tool calls: the share of calls whose result says the call never ran (unknown tool,
  invalid JSON, schema violation: `ToolResult.is_error`) or whose arguments are not a JSON
  object (`failed_tool_calls`, above the maximum rate). A command that ran and exited non-zero
  is not a failed call: agents run failing tests on purpose;
- length: tokens of the sample rendered as a chat (tokens.py) above the maximum (`too_long`,
  LIMI: 125,000).
The score of a passing trajectory is the verifier's score when there is one (else 1 for a
completed episode, 0.3 otherwise) minus half its failed-call rate.

`ArgumentTypes` is LIMI's columnar-storage rule: a top-level argument key must have one Python type
across the dataset (e.g. `timeout` as "30" in one sample and 30 in another conflicts). LIMI keeps the
type of the first sample in file order; `ArgumentTypes.by_majority` instead keeps the type most
samples use, so one odd sample cannot evict all the others. It does not select anything.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from limi.trajectory.v1 import trajectory_pb2
from limi_core import limi_format
from limi_curator.tokens import TokenCounter, render_for_counting


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    max_tokens: int = 125_000
    include_failed: bool = False
    max_failed_tool_rate: float = 0.5
    loop_repeats: int = 3
    max_empty_turns: int = 0


@dataclasses.dataclass
class Assessment:
    trajectory: trajectory_pb2.Trajectory
    sample: dict
    tokens: int = 0
    tool_calls: int = 0
    failed_tool_calls: int = 0
    empty_turns: int = 0
    longest_repeat: int = 0
    score: float = 0.0
    problem: tuple[str, str] | None = None

    @property
    def id(self) -> str:
        return self.trajectory.id


def _action(step: trajectory_pb2.Step) -> str:
    if step.tool_calls:
        return json.dumps([(call.name, call.arguments_json) for call in step.tool_calls])
    return "text:" + " ".join(step.content.split())


def _longest_repeat(steps) -> int:
    longest = run = 0
    previous = None
    for step in steps:
        if step.role != trajectory_pb2.ROLE_ASSISTANT:
            continue
        action = _action(step)
        run = run + 1 if action == previous else 1
        previous = action
        longest = max(longest, run)
    return longest


def _arguments_object(arguments_json: str) -> dict | None:
    try:
        value = json.loads(arguments_json)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def assess(trajectory: trajectory_pb2.Trajectory, counter: TokenCounter, config: QualityConfig) -> Assessment:
    try:
        sample = limi_format.trajectory_to_limi(trajectory, strict=True)
    except ValueError as exc:
        return Assessment(trajectory, {}, problem=("unconvertible", str(exc)))
    result = Assessment(trajectory, sample)
    steps = trajectory.steps
    completed = trajectory.outcome.status == trajectory_pb2.OUTCOME_STATUS_COMPLETED
    assistant = [s for s in steps if s.role == trajectory_pb2.ROLE_ASSISTANT]
    result.empty_turns = sum(
        1 for s in assistant if not s.content.strip() and not s.reasoning_content.strip() and not s.tool_calls
    )
    result.longest_repeat = _longest_repeat(steps)
    calls = [call for s in assistant for call in s.tool_calls]
    result.tool_calls = len(calls)
    errors = {
        s.tool_result.tool_call_id for s in steps if s.role == trajectory_pb2.ROLE_TOOL and s.tool_result.is_error
    }
    result.failed_tool_calls = sum(
        1 for call in calls if call.id in errors or _arguments_object(call.arguments_json) is None
    )
    failed_rate = result.failed_tool_calls / result.tool_calls if result.tool_calls else 0.0
    verifier = trajectory.outcome.score if trajectory.outcome.HasField("score") else (1.0 if completed else 0.3)
    result.score = verifier - 0.5 * failed_rate
    if not completed and not config.include_failed:
        name = trajectory_pb2.OutcomeStatus.Name(trajectory.outcome.status)
        result.problem = ("not_completed", name)
    elif result.empty_turns > config.max_empty_turns:
        result.problem = ("empty_turns", f"{result.empty_turns} empty assistant turns > {config.max_empty_turns}")
    elif result.longest_repeat >= config.loop_repeats:
        result.problem = ("looping", f"the same action {result.longest_repeat} times in a row")
    elif failed_rate > config.max_failed_tool_rate:
        result.problem = ("failed_tool_calls", f"{result.failed_tool_calls}/{result.tool_calls} calls failed")
    else:
        result.tokens = counter.count(render_for_counting(sample))
        if result.tokens > config.max_tokens:
            result.problem = ("too_long", f"{result.tokens} tokens > {config.max_tokens}")
    return result


class ArgumentTypes:
    """One Python type per top-level tool-argument key across the kept samples."""

    def __init__(self, types: dict[str, str] | None = None) -> None:
        self.types: dict[str, str] = dict(types or {})

    @classmethod
    def by_majority(cls, samples: list[dict]) -> ArgumentTypes:
        """For each key, the type most samples give it (ties: the type seen first), so one odd sample cannot evict the rest."""
        votes: dict[str, Counter] = {}
        for sample in samples:
            for key, kind in {(key, kind) for key, kind in _argument_types(sample)}:
                votes.setdefault(key, Counter())[kind] += 1
        return cls({key: counter.most_common(1)[0][0] for key, counter in votes.items()})

    def conflict(self, sample: dict) -> str | None:
        """The first conflict of `sample` with the types kept so far (or within itself), else None."""
        seen = dict(self.types)
        for key, kind in _argument_types(sample):
            if seen.setdefault(key, kind) != kind:
                return f"argument {key!r} is {kind} here but {seen[key]} elsewhere"
        return None

    def keep(self, sample: dict) -> None:
        for key, kind in _argument_types(sample):
            self.types.setdefault(key, kind)


def _argument_types(sample: dict) -> list[tuple[str, str]]:
    return [
        (key, type(value).__name__)
        for message in sample.get("messages", [])
        for call in message.get("tool_calls") or []
        for key, value in call["function"]["arguments"].items()
    ]
