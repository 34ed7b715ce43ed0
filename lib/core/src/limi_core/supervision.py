"""Long-running loops of a service (its consumers) that are restarted whenever they stop on their own.

`SupervisedLoop(service, name, run, stop, on_change)` runs `run(stop, running)` as its own task;
the loop calls `running()` once it is doing its work (a consumer: once bound to its durable).
When the task ends while the service is not stopping (it raised, it returned, or something
cancelled it), the loop is marked not running, the reason is logged and counted in
`limi_loop_restarts_total{service, loop, reason}`, and it starts again after a backoff
(1 s doubling to 30 s; back to 1 s after it ran). `on_change` is called whenever `running`
changes, for the scaffold to turn readiness NOT_SERVING while any loop is down: a service is
never SERVING while a consumer it needs has stopped. `stop(grace)` lets the loop finish what
it holds, then cancels it. It knows nothing about NATS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

RESTARTS = Counter(
    "limi_loop_restarts_total",
    "Supervised loops (consumers) restarted after they stopped on their own",
    ["service", "loop", "reason"],
)
RUNNING = Gauge("limi_loop_running", "1 while a supervised loop (consumer) is doing its work", ["service", "loop"])
BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)

Loop = Callable[[asyncio.Event, Callable[[], None]], Awaitable[None]]


class SupervisedLoop:
    def __init__(self, service: str, name: str, run: Loop, stop: asyncio.Event, on_change: Callable[[], None]) -> None:
        self.service, self.name = service, name
        self._run, self._stop, self._on_change = run, stop, on_change
        self.running = False
        self.last_error = ""
        self._task: asyncio.Task | None = None
        self._inner: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"supervisor of {self.name}")

    def _set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            RUNNING.labels(self.service, self.name).set(1 if running else 0)
            self._on_change()

    async def _supervise(self) -> None:
        failures = 0
        while not self._stop.is_set():
            ran = False

            def running() -> None:
                nonlocal ran
                ran = True
                self._set_running(True)

            self._inner = asyncio.create_task(self._run(self._stop, running), name=self.name)
            # wait() rather than await: a cancel aimed at the loop's own task must not end the supervisor.
            await asyncio.wait({self._inner})
            self._set_running(False)
            if self._stop.is_set():
                break
            failures = 1 if ran else failures + 1
            reason, detail = _why(self._inner)
            self.last_error = detail
            RESTARTS.labels(self.service, self.name, reason).inc()
            delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1]
            log.error(
                "loop stopped on its own; restarting",
                exc_info=None if self._inner.cancelled() else self._inner.exception(),
                extra={"fields": {"loop": self.name, "reason": detail, "failures": failures, "restart_in": delay}},
            )
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass

    async def stop(self, grace_seconds: float) -> None:
        """Wait up to `grace_seconds` for the loop to finish (its stop event is already set), then cancel it."""
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace_seconds)
        if not done:
            log.warning(
                "%s still busy after the %g s grace period; its unacked messages will be redelivered",
                self.name,
                grace_seconds,
            )
            for task in (self._inner, self._task):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (self._inner, self._task) if t is not None), return_exceptions=True)


def _why(task: asyncio.Task) -> tuple[str, str]:
    """A bounded label and a sentence for why a loop's task ended."""
    if task.cancelled():
        return "cancelled", "its task was cancelled"
    exc = task.exception()
    if exc is None:
        return "returned", "it returned while the service runs"
    return type(exc).__name__, f"{type(exc).__name__}: {exc}"
