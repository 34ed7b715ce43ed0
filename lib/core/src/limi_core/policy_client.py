"""The one client for OpenAI-compatible model endpoints (vLLM's server, or any other).

`PolicyClient.complete(messages, tools, sampling)` sends one chat completion with
`tool_choice: auto` and returns a `PolicyTurn`: content, reasoning content when the server
returns it (`reasoning_content` or `reasoning`), raw tool calls (arguments exactly as
generated, possibly invalid JSON), usage, finish reason, and token ids and logprobs when asked
for. `complete_text` is the plain `/completions` API (HumanEval's completion mode) and
`models()` lists what the endpoint serves. Every call is retried with limi_core.retry on the
shared retryable answers (connection errors, timeouts, 408, 429, 5xx); after the budget it
raises `PolicyUnavailable`, a `DependencyUnavailable` naming the dependency, so a consumer
waits for the endpoint instead of failing the work. Any other 4xx is `PolicyRejected` at once.
It keeps no conversation state and executes no tools.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from typing import Any

import httpx

from limi_core.errors import DependencyUnavailable, FailedPrecondition
from limi_core.retry import RETRYABLE_HTTP_STATUS, RetryPolicy, TryAgain, retrying


class PolicyUnavailable(DependencyUnavailable):
    """The endpoint did not answer within the retry budget (or answered nonsense)."""


class PolicyRejected(FailedPrecondition):
    """The endpoint refused the request (a 4xx other than 408/429): retrying will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


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


POLICY_RETRY = RetryPolicy(attempts=6, first_backoff_seconds=0.5, max_backoff_seconds=20.0)


class PolicyClient:
    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str = "",
        retry: RetryPolicy = POLICY_RETRY,
        timeout_seconds: float = 300.0,
        return_token_ids: bool = False,
        logprobs: bool = False,
        dependency: str = "policy",
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.dependency = dependency
        self._retry, self._timeout = retry, timeout_seconds
        self._return_token_ids, self._logprobs = return_token_ids, logprobs
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Made on first use, inside the event loop that uses it.
        self._http: httpx.AsyncClient | None = None

    def for_model(self, model: str) -> PolicyClient:
        """A client of the same endpoint, key and settings that asks for another model (`model` empty: this one)."""
        if not model or model == self.model:
            return self
        other = copy.copy(self)
        other.model, other._http = model, None
        return other

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

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
            PolicyUnavailable: the retry budget ran out, or the answer is not a chat completion.
            PolicyRejected: the server refused the request.
        """
        started = time.perf_counter()
        body = self.request_body(messages, tools, sampling)

        async def once(attempt: int) -> PolicyTurn:
            payload = await self._send("POST", "/chat/completions", body)
            return parse_turn(payload, time.perf_counter() - started, attempt, self)

        return await self._retrying(once)

    async def complete_text(self, prompt: str, *, n: int, sampling: Sampling) -> list[str]:
        """`n` continuations of `prompt` from `/completions`, in index order (missing ones empty)."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": sampling.max_tokens,
            "n": n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(sampling.stop),
        }

        async def once(_attempt: int) -> list[str]:
            payload = await self._send("POST", "/completions", body)
            choices = sorted(payload.get("choices") or [], key=lambda c: c.get("index", 0))
            texts = [c.get("text") or "" for c in choices][:n]
            return texts + [""] * (n - len(texts))

        return await self._retrying(once)

    async def models(self) -> list[str]:
        """The model ids the endpoint serves (`GET /models`)."""

        async def once(_attempt: int) -> list[str]:
            payload = await self._send("GET", "/models")
            return [m.get("id", "") for m in payload.get("data") or []]

        return await self._retrying(once)

    async def _retrying(self, once):
        return await retrying(
            once,
            self._retry,
            what=f"{self.dependency} at {self.endpoint}",
            give_up=lambda last, attempts: PolicyUnavailable(
                self.dependency, f"{last.problem}; gave up after {attempts} attempts"
            ),
        )

    async def _send(self, method: str, path: str, body: dict | None = None) -> dict:
        if self._http is None:
            self._http = httpx.AsyncClient(
                headers=self._headers, timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0))
            )
        url = self.endpoint + path
        try:
            response = await self._http.request(method, url, json=body)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TryAgain(f"{type(exc).__name__} talking to {self.endpoint}") from exc
        if response.status_code in RETRYABLE_HTTP_STATUS:
            raise TryAgain(
                f"HTTP {response.status_code} from {self.endpoint}",
                after=_retry_after_seconds(response),
                code=response.status_code,
            )
        if response.status_code != 200:
            raise PolicyRejected(
                f"{self.dependency} at {self.endpoint} answered {response.status_code}: {response.text[:500]}",
                response.status_code,
            )
        try:
            payload = response.json()
        except ValueError:
            raise PolicyUnavailable(
                self.dependency,
                f"{self.dependency} at {self.endpoint} answered {method} {path} with "
                f"something that is not JSON: {response.text[:200]!r}",
            ) from None
        if not isinstance(payload, dict):
            raise PolicyUnavailable(
                self.dependency, f"{self.dependency} at {self.endpoint} answered {method} {path} with {payload!r:.200}"
            )
        return payload


def _retry_after_seconds(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", "0"))
    except ValueError:
        return 0.0


def parse_turn(payload: dict, latency: float, attempts: int, client: PolicyClient | None = None) -> PolicyTurn:
    """Read one chat completion response; a malformed one is PolicyUnavailable (a broken server)."""
    try:
        choice = payload["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        dependency = client.dependency if client else "policy"
        raise PolicyUnavailable(
            dependency, f"policy response has no choices[0].message: {json.dumps(payload)[:300]}"
        ) from None
    calls = []
    for n, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(
            RawToolCall(id=call.get("id") or f"call_{n}", name=function.get("name") or "", arguments=arguments)
        )
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
