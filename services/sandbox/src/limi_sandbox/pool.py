"""A warm pool: sandboxes of one backend started ahead of time, so CreateSession need not wait.

`WarmPool.take(spec)` hands over a ready sandbox whose fixed properties (workspace size, image)
fit the request, or None (the caller then starts one cold). A background task keeps `size`
sandboxes ready, starting one at a time so that refilling never competes with running sessions
for more than one core, and backs off when starts fail. Pool sandboxes run with the default
limits; the session applies its own on take. It does not count toward the session quota.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets

from limi_core.errors import LimiError
from limi_sandbox import metrics
from limi_sandbox.backends import Backend, Sandbox, SandboxSpec

log = logging.getLogger(__name__)


class WarmPool:
    def __init__(self, backend: Backend, size: int, spec: SandboxSpec) -> None:
        self.backend, self.size, self.spec = backend, size, spec
        self._ready: list[Sandbox] = []
        self._wanted = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._names = (f"pool-{backend.name}-{secrets.token_hex(4)}-{n}" for n in itertools.count())
        self.failures = 0

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        if self.size > 0 and self._task is None:
            self._task = asyncio.create_task(self._keep_full(), name=f"warm-pool-{self.backend.name}")

    async def fill_one(self) -> None:
        """Start one sandbox now (raises what the backend raises); for a check at service start."""
        self._ready.append(await self.backend.start(self.spec, next(self._names)))
        metrics.POOL_SIZE.labels(self.backend.name).set(len(self._ready))

    def take(self, spec: SandboxSpec) -> Sandbox | None:
        while self._ready:
            sandbox = self._ready.pop(0)
            self._wanted.set()
            metrics.POOL_SIZE.labels(self.backend.name).set(len(self._ready))
            if not sandbox.agent.alive:
                asyncio.create_task(sandbox.close())
                continue
            if sandbox.fits(spec):
                return sandbox
            self._ready.insert(0, sandbox)
            metrics.POOL_SIZE.labels(self.backend.name).set(len(self._ready))
            return None
        self._wanted.set()
        return None

    async def _keep_full(self) -> None:
        backoff = 0.5
        while True:
            while len(self._ready) < self.size:
                try:
                    await self.fill_one()
                    backoff = 0.5
                except (LimiError, OSError) as exc:
                    self.failures += 1
                    log.warning(
                        "warm pool for %s could not start a sandbox: %s; retrying in %g s",
                        self.backend.name,
                        exc,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
            self._wanted.clear()
            await self._wanted.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        ready, self._ready = self._ready, []
        await asyncio.gather(*(sandbox.close() for sandbox in ready))
        metrics.POOL_SIZE.labels(self.backend.name).set(0)
