"""A client for OpenAI-compatible chat completions (vLLM's server, or any other) with tools.

`PolicyClient.complete(messages, tools)` sends one chat completion with `tool_choice: auto` and
the episode's sampling parameters, and returns a `PolicyTurn`: content, reasoning content when
the server returns it (`reasoning_content` or `reasoning`), raw tool calls (arguments exactly as
generated, possibly invalid JSON), usage, finish reason, and token ids and logprobs when asked
for. 429, 5xx, timeouts and connection errors are retried with exponential backoff; after the
retry budget `PolicyUnavailable` says why. Any other 4xx is `PolicyRejected` at once. It does not
execute tools or keep conversation state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from typing import Any

import httpx

from limi_core.errors import FailedPrecondition, Unavailable

log = logging.getLogger(__name__)


class PolicyUnavailable(Unavailable):
    """The policy server did not answer within the retry budget."""


class PolicyRejected(FailedPrecondition):
    """The policy server refused the request (4xx other than 429): retrying will not help."""


@dataclasses.dataclass(frozen=True)
class Sampling:
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 4096
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RawToolCall:
    id: str
    name: str
    arguments: str


@dataclasses.dataclass(frozen=True)
class PolicyTurn:
    content: str
    reasoning_content: str
    tool_calls: tuple[RawToolCall, ...]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    latency_seconds: float
    attempts: int


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    first_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 20.0
    request_timeout_seconds: float = 300.0


RETRY_STATUS = {429, 500, 502, 503, 504}


class PolicyClient:
    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str = "",
        retry: RetryPolicy = RetryPolicy(),
        return_token_ids: bool = False,
        logprobs: bool = False,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self._retry = retry
        self._return_token_ids = return_token_ids
        self._logprobs = logprobs
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(retry.request_timeout_seconds, connect=10.0))

    async def close(self) -> None:
        await self._http.aclose()

    def request_body(self, messages: list[dict], tools: list[dict], sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if self._return_token_ids:
            body["return_token_ids"] = True
        if self._logprobs:
            body["logprobs"] = True
        return body

    async def complete(self, messages: list[dict], tools: list[dict], sampling: Sampling) -> PolicyTurn:
        """One chat completion, retried on transient failures.

        Raises:
            PolicyUnavailable: the retry budget ran out.
            PolicyRejected: the server refused the request.
        """
        body = self.request_body(messages, tools, sampling)
        delay = self._retry.first_backoff_seconds
        started = time.perf_counter()
        for attempt in range(1, self._retry.attempts + 1):
            try:
                response = await self._http.post(f"{self.endpoint}/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__} talking to {self.endpoint}"
            else:
                if response.status_code == 200:
                    return parse_turn(response.json(), time.perf_counter() - started, attempt)
                if response.status_code not in RETRY_STATUS:
                    raise PolicyRejected(f"policy at {self.endpoint} answered {response.status_code}: {response.text[:500]}")
                problem = f"HTTP {response.status_code} from {self.endpoint}"
                retry_after = _retry_after_seconds(response)
                delay = max(delay, retry_after) if retry_after else delay
            if attempt == self._retry.attempts:
                raise PolicyUnavailable(f"{problem}; gave up after {attempt} attempts")
            log.warning("policy retry", extra={"fields": {"attempt": attempt, "problem": problem, "delay": round(delay, 2)}})
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self._retry.max_backoff_seconds)
        raise AssertionError("unreachable")


def _retry_after_seconds(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", "0")), 60.0)
    except ValueError:
        return 0.0


def parse_turn(payload: dict, latency: float, attempts: int) -> PolicyTurn:
    """Read one chat completion response; a malformed one is PolicyUnavailable (a broken server)."""
    try:
        choice = payload["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise PolicyUnavailable(f"policy response has no choices[0].message: {json.dumps(payload)[:300]}") from None
    calls = []
    for n, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(RawToolCall(id=call.get("id") or f"call_{n}", name=function.get("name") or "", arguments=arguments))
    usage = payload.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    logprob_items = ((choice.get("logprobs") or {}).get("content")) or []
    return PolicyTurn(
        content=message.get("content") or "",
        reasoning_content=message.get("reasoning_content") or message.get("reasoning") or "",
        tool_calls=tuple(calls),
        finish_reason=choice.get("finish_reason") or "",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        reasoning_tokens=int(details.get("reasoning_tokens") or 0),
        token_ids=tuple(int(t) for t in (choice.get("token_ids") or [])),
        logprobs=tuple(float(item.get("logprob", 0.0)) for item in logprob_items),
        latency_seconds=latency,
        attempts=attempts,
    )
