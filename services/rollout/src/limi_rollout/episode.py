"""One agent episode: the policy calls tools in its own sandbox session until it answers.

`Episode.run()` sends the system prompt and the query to the policy, executes the tool calls of
each answer in order through the episode's `ToolBox`, feeds the results back, and stops when the
policy answers without tool calls, or at a limit (turns, context tokens, wall time). Every
message becomes a `Step` of the episode's `Trajectory` as it happens, with timings and token
usage, and is offered to watchers. A malformed tool call goes back to the model as a tool error
and is recorded; it never ends the episode. `correct()` queues a person's message for the next
turn boundary; `add_feedback()` plus another `run()` continues a finished episode in the same
workspace (the multi-round feedback hook). Every end sets `Outcome.kind` (the contract's enum)
beside the sentence in `Outcome.reason`: the policy or the sandbox failing after their retries
ends the episode FAILED with kind POLICY_UNAVAILABLE or SANDBOX_UNAVAILABLE, and the caller
decides whether to run it again. Publishing is not done here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator

from google.protobuf import duration_pb2, timestamp_pb2

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core.errors import FailedPrecondition
from limi_core.policy_client import PolicyClient, PolicyRejected, PolicyTurn, PolicyUnavailable, Sampling
from limi_core.sandbox_client import SandboxUnavailable
from limi_rollout import metrics
from limi_rollout.tools import ToolBox, ToolCallChecker, ToolCallError, ToolOutcome


@dataclasses.dataclass(frozen=True)
class EpisodeLimits:
    max_turns: int = 50
    max_context_tokens: int = 131_072
    max_wall_seconds: float = 3600.0
    max_tool_output_bytes: int = 16_384


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def truncate_output(output: str, limit: int) -> tuple[str, bool]:
    """Cut `output` to `limit` bytes (UTF-8) with a visible marker."""
    raw = output.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return output, False
    kept = raw[:limit].decode("utf-8", errors="ignore")
    return f"{kept}\n[limi: output truncated: {limit} of {len(raw)} bytes shown]", True


def openai_messages(trajectory: tp.Trajectory) -> list[dict]:
    """The conversation so far in OpenAI chat form (reasoning is not sent back)."""
    messages: list[dict] = []
    for step in trajectory.steps:
        if step.role == tp.ROLE_SYSTEM:
            messages.append({"role": "system", "content": step.content})
        elif step.role == tp.ROLE_USER:
            messages.append({"role": "user", "content": step.content})
        elif step.role == tp.ROLE_ASSISTANT:
            message: dict = {"role": "assistant", "content": step.content}
            if step.tool_calls:
                message["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                    for c in step.tool_calls
                ]
            messages.append(message)
        elif step.role == tp.ROLE_TOOL:
            messages.append(
                {"role": "tool", "tool_call_id": step.tool_result.tool_call_id, "content": step.tool_result.output}
            )
    return messages


class Episode:
    def __init__(
        self,
        episode_id: str,
        query: query_pb2.Query,
        *,
        system_prompt: str,
        policy: PolicyClient,
        toolbox: ToolBox,
        sampling: Sampling = Sampling(),
        limits: EpisodeLimits = EpisodeLimits(),
        attempt: int = 1,
        query_set_id: str = "",
        history: tp.Trajectory | None = None,
    ) -> None:
        self.episode_id = episode_id
        self.policy, self.toolbox, self.sampling, self.limits = policy, toolbox, sampling, limits
        self.checker = ToolCallChecker(toolbox.tools())
        self._corrections: list[tuple[str, str]] = []
        self._watchers: set[asyncio.Queue] = set()
        self._running = False
        self.done = asyncio.Event()
        self.model_seconds = self.tool_seconds = 0.0
        self._turns = 0
        # Per turn: seconds spent neither waiting for the model nor in tools (our own overhead).
        self.turn_overheads: list[float] = []
        self.trajectory = tp.Trajectory()
        if history is not None:
            self.trajectory.CopyFrom(history)
            self.trajectory.ClearField("outcome")
            self.trajectory.ClearField("finished_at")
        else:
            self._start_trajectory(query, system_prompt, attempt, query_set_id)

    def _start_trajectory(self, query: query_pb2.Query, system_prompt: str, attempt: int, query_set_id: str) -> None:
        t = self.trajectory
        t.id = self.episode_id
        t.started_at.CopyFrom(_now())
        t.lineage.query_id, t.lineage.attempt, t.lineage.query_set_id, t.lineage.episode_id = (
            query.id,
            attempt,
            query_set_id,
            self.episode_id,
        )
        t.policy.model, t.policy.endpoint = self.policy.model, self.policy.endpoint
        s = t.policy.sampling
        s.temperature, s.top_p, s.max_tokens = self.sampling.temperature, self.sampling.top_p, self.sampling.max_tokens
        s.stop.extend(self.sampling.stop)
        if self.sampling.seed is not None:
            s.seed = self.sampling.seed
        t.sandbox.backend, t.sandbox.image, t.sandbox.session_id = (
            self.toolbox.backend,
            self.toolbox.image,
            self.toolbox.session_id,
        )
        for tool in self.toolbox.tools():
            function = tool["function"]
            t.tools.add(
                name=function["name"],
                description=function.get("description", ""),
                parameters_json=json.dumps(function.get("parameters", {}), ensure_ascii=False, separators=(",", ":")),
            )
        if system_prompt:
            self._append(tp.Step(role=tp.ROLE_SYSTEM, content=system_prompt))
        self._append(tp.Step(role=tp.ROLE_USER, content=query.text))

    # -- people and evaluators ------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.trajectory.outcome.status != tp.OUTCOME_STATUS_UNSPECIFIED and not self._running

    def correct(self, text: str, author: str = "human") -> int:
        """Queue a user message for the next turn boundary; the index of the step it will follow."""
        if self.finished or not self._running:
            raise FailedPrecondition(
                f"episode {self.episode_id} is not running; a correction can only join a live episode"
            )
        self._corrections.append((text, author))
        metrics.CORRECTIONS.inc()
        return len(self.trajectory.steps) - 1

    def add_feedback(self, text: str, author: str = "rubric", kind: int = tp.FEEDBACK_KIND_RUBRIC) -> None:
        """Append feedback after a finished round; the next `run()` continues from it."""
        if self._running:
            raise FailedPrecondition(f"episode {self.episode_id} is still running; feedback joins after a round ends")
        self.trajectory.ClearField("outcome")
        self._append_feedback(text, author, kind)

    async def watch(self) -> AsyncIterator[tp.Step]:
        """Every step so far, then each new one, until the episode finishes."""
        queue: asyncio.Queue = asyncio.Queue()
        self._watchers.add(queue)
        try:
            # Counted before yielding: steps appended while the caller holds a yielded one arrive
            # through the queue, and must not be taken for steps already sent.
            snapshot = list(self.trajectory.steps)
            seen = len(snapshot)
            for step in snapshot:
                yield step
            while not self.done.is_set() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                waiter = asyncio.ensure_future(self.done.wait())
                finished, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if getter in finished:
                    step = getter.result()
                    if step.index >= seen:
                        yield step
                else:
                    getter.cancel()
        finally:
            self._watchers.discard(queue)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> tp.Trajectory:
        self._running = True
        self.done.clear()
        self.model_seconds = self.tool_seconds = 0.0
        metrics.EPISODES_ACTIVE.inc()
        started = time.perf_counter()
        self._turns = 0
        try:
            async with asyncio.timeout(self.limits.max_wall_seconds):
                status, kind, reason = await self._loop()
        except TimeoutError:
            status, kind, reason = (
                tp.OUTCOME_STATUS_ABORTED,
                tp.OUTCOME_KIND_LIMIT_REACHED,
                f"wall-time limit of {self.limits.max_wall_seconds:g} s reached",
            )
        except PolicyUnavailable as exc:
            status, kind, reason = (
                tp.OUTCOME_STATUS_FAILED,
                tp.OUTCOME_KIND_POLICY_UNAVAILABLE,
                f"policy unavailable: {exc}",
            )
        except PolicyRejected as exc:
            status, kind, reason = (
                tp.OUTCOME_STATUS_FAILED,
                tp.OUTCOME_KIND_POLICY_REJECTED,
                f"policy rejected the request: {exc}",
            )
        except SandboxUnavailable as exc:
            status, kind, reason = (
                tp.OUTCOME_STATUS_FAILED,
                tp.OUTCOME_KIND_SANDBOX_UNAVAILABLE,
                f"sandbox unavailable: {exc}",
            )
        except asyncio.CancelledError:
            self._finish(tp.OUTCOME_STATUS_ABORTED, tp.OUTCOME_KIND_CANCELLED, "cancelled", started)
            raise
        self._finish(status, kind, reason, started)
        return self.trajectory

    @property
    def unavailable_dependency(self) -> str:
        """ "policy" or "sandbox" when the episode ended because that dependency was down, else ""."""
        return {tp.OUTCOME_KIND_POLICY_UNAVAILABLE: "policy", tp.OUTCOME_KIND_SANDBOX_UNAVAILABLE: "sandbox"}.get(
            self.trajectory.outcome.kind, ""
        )

    async def _loop(self) -> tuple[int, int, str]:
        while True:
            self._inject_corrections()
            if self._turns >= self.limits.max_turns:
                return (
                    tp.OUTCOME_STATUS_ABORTED,
                    tp.OUTCOME_KIND_LIMIT_REACHED,
                    f"turn limit of {self.limits.max_turns} reached",
                )
            turn_started, model_before, tool_before = time.perf_counter(), self.model_seconds, self.tool_seconds
            turn = await self._ask_policy()
            self._turns += 1
            await self._run_tool_calls(turn)
            waited = (self.model_seconds - model_before) + (self.tool_seconds - tool_before)
            self.turn_overheads.append(max(0.0, time.perf_counter() - turn_started - waited))
            if turn.prompt_tokens + turn.completion_tokens >= self.limits.max_context_tokens:
                return (
                    tp.OUTCOME_STATUS_ABORTED,
                    tp.OUTCOME_KIND_LIMIT_REACHED,
                    f"context limit of {self.limits.max_context_tokens} tokens reached",
                )
            if not turn.tool_calls and not self._corrections:
                if turn.finish_reason == "length":
                    return tp.OUTCOME_STATUS_ABORTED, tp.OUTCOME_KIND_LIMIT_REACHED, "the answer was cut at max_tokens"
                return tp.OUTCOME_STATUS_COMPLETED, tp.OUTCOME_KIND_ANSWERED, "the policy answered without tool calls"

    async def _ask_policy(self) -> PolicyTurn:
        started_at = _now()
        turn = await self.policy.complete(openai_messages(self.trajectory), self.toolbox.tools(), self.sampling)
        self.model_seconds += turn.latency_seconds
        metrics.POLICY_LATENCY.observe(turn.latency_seconds)
        metrics.TOKENS.labels("in").inc(turn.prompt_tokens)
        metrics.TOKENS.labels("out").inc(turn.completion_tokens)
        step = tp.Step(
            role=tp.ROLE_ASSISTANT,
            content=turn.content,
            reasoning_content=turn.reasoning_content,
            started_at=started_at,
            duration=_duration(turn.latency_seconds),
            finish_reason=turn.finish_reason,
            usage=tp.TokenUsage(
                prompt_tokens=turn.prompt_tokens,
                completion_tokens=turn.completion_tokens,
                reasoning_tokens=turn.reasoning_tokens,
            ),
            token_ids=turn.token_ids,
            logprobs=turn.logprobs,
        )
        for call in turn.tool_calls:
            step.tool_calls.add(id=call.id, name=call.name, arguments_json=call.arguments)
        self._append(step)
        return turn

    async def _run_tool_calls(self, turn: PolicyTurn) -> None:
        for call in turn.tool_calls:
            started_at, started = _now(), time.perf_counter()
            in_tool = 0.0
            try:
                arguments = self.checker.check(call)
            except ToolCallError as exc:
                outcome = ToolOutcome(output=f"error: {exc}", exit_code=-1, is_error=True, error=str(exc))
                metrics.TOOL_CALLS.labels(call.name if self.checker.knows(call.name) else "unknown", "malformed").inc()
            else:
                outcome = await self.toolbox.call(call.name, arguments)
                in_tool = time.perf_counter() - started
                metrics.TOOL_CALLS.labels(call.name, _outcome_label(outcome)).inc()
            self.tool_seconds += in_tool
            elapsed = time.perf_counter() - started
            output, cut = truncate_output(outcome.output, self.limits.max_tool_output_bytes)
            result = tp.ToolResult(
                tool_call_id=call.id,
                output=output,
                exit_code=outcome.exit_code,
                truncated=outcome.truncated or cut,
                duration=_duration(outcome.duration_seconds or elapsed),
                is_error=outcome.is_error,
                error=outcome.error,
            )
            self._append(
                tp.Step(role=tp.ROLE_TOOL, tool_result=result, started_at=started_at, duration=_duration(elapsed))
            )

    def _inject_corrections(self) -> None:
        while self._corrections:
            text, author = self._corrections.pop(0)
            self._append_feedback(text, author, tp.FEEDBACK_KIND_HUMAN)

    def _append_feedback(self, text: str, author: str, kind: int) -> None:
        after = len(self.trajectory.steps) - 1
        feedback = tp.Feedback(author=author, kind=kind, text=text, after_step=after, at=_now())
        self._append(tp.Step(role=tp.ROLE_USER, content=text, feedback=feedback, started_at=feedback.at))

    def _append(self, step: tp.Step) -> None:
        step.index = len(self.trajectory.steps)
        if not step.HasField("started_at"):
            step.started_at.CopyFrom(_now())
        self.trajectory.steps.append(step)
        stored = self.trajectory.steps[-1]
        for queue in self._watchers:
            queue.put_nowait(stored)

    def _finish(self, status: int, kind: int, reason: str, started: float) -> None:
        turns = self._turns
        self._running = False
        outcome = self.trajectory.outcome
        outcome.status, outcome.kind, outcome.reason = status, kind, reason
        self.trajectory.finished_at.CopyFrom(_now())
        wall = time.perf_counter() - started
        metrics.EPISODES_ACTIVE.dec()
        metrics.EPISODES_FINISHED.labels(tp.OutcomeStatus.Name(status).removeprefix("OUTCOME_STATUS_").lower()).inc()
        metrics.TURNS_PER_EPISODE.observe(turns)
        metrics.TIME_SPENT.labels("model").inc(self.model_seconds)
        metrics.TIME_SPENT.labels("tool").inc(self.tool_seconds)
        metrics.TIME_SPENT.labels("other").inc(max(0.0, wall - self.model_seconds - self.tool_seconds))
        self.done.set()


def _outcome_label(outcome: ToolOutcome) -> str:
    if outcome.is_error:
        return "error"
    if outcome.truncated:
        return "truncated"
    return "ok" if outcome.exit_code == 0 else "nonzero"
