"""The one way limi retries a call to another process: bounded attempts, exponential backoff, jitter.

`retrying(operation, policy, give_up=...)` runs `operation(attempt)`; when it raises `TryAgain`
(the caller's verdict that this failure is transient) it waits and runs it again, at most
`policy.attempts` times, then raises what `give_up(last, attempts)` returns. Anything else
the operation raises propagates at once. The retryable answers are named here once for every
client: HTTP 408, 429 and 5xx gateway codes plus connection errors and timeouts; gRPC
UNAVAILABLE and RESOURCE_EXHAUSTED (a busy server). Our own loop rather than tenacity: it is
30 lines, async, honours a server's Retry-After, and needs no extra dependency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRYABLE_GRPC_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 20.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure, with +-20 % jitter."""
        base = min(self.first_backoff_seconds * 2 ** (failures - 1), self.max_backoff_seconds)
        return base * (0.8 + 0.4 * random.random())


class TryAgain(Exception):
    """Raised by an operation whose failure is transient.

    `after` is a delay the server asked for; `code` the status it answered (an HTTP status or
    a grpc.StatusCode, None for a connection error), for `give_up` to choose its error by.
    """

    def __init__(self, problem: str, after: float = 0.0, code: object = None) -> None:
        super().__init__(problem)
        self.problem, self.after, self.code = problem, after, code


async def retrying(
    operation: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    give_up: Callable[[TryAgain, int], Exception],
    what: str = "call",
) -> T:
    """`operation(attempt)`'s result, retried on `TryAgain` (attempt counts from 1).

    Raises:
        What `give_up(last TryAgain, attempts)` returns, once the attempts are spent.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return await operation(attempt)
        except TryAgain as exc:
            if attempt == policy.attempts:
                raise give_up(exc, attempt) from exc
            delay = max(policy.delay(attempt), min(exc.after, 60.0))
            log.warning(
                "retrying",
                extra={"fields": {"what": what, "attempt": attempt, "problem": exc.problem, "delay": round(delay, 2)}},
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: attempts must be at least 1")


# A client channel reconnects within seconds of a server coming back (gRPC's default backoff
# grows to two minutes), and carries messages up to 64 MiB (archives, long trajectories).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 3000),
]


def client_channel(address: str) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to another limi service, with CHANNEL_OPTIONS."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def grpc_verdict(exc: grpc.aio.AioRpcError, what: str) -> TryAgain | None:
    """A TryAgain for a retryable gRPC status, None for one that retrying cannot fix."""
    if exc.code() in RETRYABLE_GRPC_CODES:
        return TryAgain(f"{what}: {exc.code().name}: {exc.details()}", code=exc.code())
    return None
