"""The session manager: creating sessions (warm pool first), finding them, quotas, idle expiry, shutdown.

`SessionManager.create()` resolves the backend and the limits, refuses beyond `max_sessions`
with ResourceExhausted, takes a fitting sandbox from the backend's warm pool or starts one cold,
writes the initial files or archive, and registers the session under an unguessable id (128
random bits: knowing a session id is what grants access to it). A reaper closes sessions idle
longer than `idle_timeout_seconds` or older than `max_session_seconds`. `stop()` stops the
pools and closes every session. It does not know about gRPC.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Callable

from limi_core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from limi_sandbox import metrics
from limi_sandbox.backends import Backend, SandboxSpec
from limi_sandbox.limits import SessionLimits, default_limits
from limi_sandbox.pool import WarmPool
from limi_sandbox.session import ExecSlots, Session
from limi_sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

REAP_INTERVAL_SECONDS = 1.0
COLD_STARTS_AT_ONCE = 8


class SessionManager:
    def __init__(
        self, settings: SandboxSettings, backends: dict[str, Backend], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings, self.backends, self.clock = settings, backends, clock
        self.sessions: dict[str, Session] = {}
        self.slots = ExecSlots(settings.max_concurrent_execs)
        sizes = {
            "bwrap": settings.pool_size,
            "gvisor": settings.gvisor_pool_size,
            "kubernetes": settings.kubernetes_pool_size,
        }
        self.pools = {
            name: WarmPool(backend, sizes.get(name, 0), SandboxSpec(default_limits(settings), backend.image_for("")))
            for name, backend in backends.items()
            if backend.unavailable_reason() is None
        }
        self._creating = 0
        # Sandboxes started inside CreateSession at once; more wait, so a burst cannot start hundreds together.
        self._cold_starts = asyncio.Semaphore(COLD_STARTS_AT_ONCE)
        self._recently_closed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._reaper: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        """Check that the default backend starts a sandbox (it becomes the pool's first), then fill pools."""
        default = self.settings.default_backend
        reason = self.backends[default].unavailable_reason()
        if reason is not None:
            raise Unavailable(f"the default backend {default} cannot run here: {reason}")
        if self.pools[default].size > 0:
            await self.pools[default].fill_one()
        for pool in self.pools.values():
            pool.start()
        self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")

    def backend_for(self, name: str) -> Backend:
        name = name or self.settings.default_backend
        backend = self.backends.get(name)
        if backend is None:
            raise InvalidArgument(
                "backend", f"must be one of {', '.join(sorted(self.backends))} on this service, got {name!r}"
            )
        reason = backend.unavailable_reason()
        if reason is not None:
            raise FailedPrecondition(f"backend {name} is not available: {reason}")
        return backend

    async def create(
        self, *, backend: str, limits: SessionLimits, image: str, files: list[tuple[str, bytes, int]], archive: bytes
    ) -> Session:
        if self._stopping:
            raise Unavailable("the sandbox service is shutting down")
        chosen = self.backend_for(backend)
        image = chosen.image_for(image)
        if len(self.sessions) + self._creating >= self.settings.max_sessions:
            metrics.REJECTED.labels("sessions").inc()
            raise ResourceExhausted(
                f"{self.settings.max_sessions} sessions are open, the most this service holds; close one or retry later"
            )
        self._creating += 1
        try:
            spec = SandboxSpec(limits, image)
            pool = self.pools.get(chosen.name)
            sandbox = pool.take(spec) if pool is not None else None
            warm = sandbox is not None
            session_id = "sbx-" + secrets.token_hex(16)
            if sandbox is None:
                async with self._cold_starts:
                    sandbox = await chosen.start(spec, f"cold-{chosen.name}-{session_id[4:16]}")
            try:
                sandbox.apply_limits(limits)
                session = Session(session_id, sandbox, limits, self.settings, self.slots, warm, self.clock)
                for path, content, mode in files:
                    await session.write_file(path, content, mode)
                if archive:
                    await session.upload(archive, "")
                if self._stopping:
                    raise Unavailable("the sandbox service is shutting down")
            except BaseException:
                await sandbox.close()
                raise
        finally:
            self._creating -= 1
        self.sessions[session.id] = session
        metrics.SESSIONS_CREATED.labels(chosen.name, "warm" if warm else "cold").inc()
        metrics.ACTIVE_SESSIONS.labels(chosen.name).inc()
        return session

    def get(self, session_id: str) -> Session:
        if not session_id:
            raise InvalidArgument("session_id", "is required")
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound(
                f"session {session_id[:80]!r} does not exist (closed, expired after being idle, or never created)"
            )
        return session

    async def close(self, session_id: str, reason: str = "client") -> None:
        if session_id in self._recently_closed:
            return  # a retried close
        session = self.get(session_id)
        await self._close(session, reason)

    async def _close(self, session: Session, reason: str) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        self._recently_closed[session.id] = None
        while len(self._recently_closed) > 10_000:
            self._recently_closed.popitem(last=False)
        metrics.ACTIVE_SESSIONS.labels(session.backend).dec()
        metrics.SESSIONS_CLOSED.labels(reason).inc()
        await session.close()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_SECONDS)
            await self.reap_once()

    async def reap_once(self) -> None:
        now = self.clock()
        for session in list(self.sessions.values()):
            if now - session.created > self.settings.max_session_seconds:
                log.info("closing session %s: older than %g s", session.id, self.settings.max_session_seconds)
                await self._close(session, "lifetime")
            elif session.calls == 0 and now - session.last_used > self.settings.idle_timeout_seconds:
                log.info("closing session %s: idle for %g s", session.id, now - session.last_used)
                await self._close(session, "idle")

    async def stop(self, grace_seconds: float = 0.0) -> None:
        """Refuse new sessions, give calls in flight up to `grace_seconds` to finish, then close everything."""
        self._stopping = True
        deadline = self.clock() + grace_seconds
        while any(session.calls for session in self.sessions.values()) and self.clock() < deadline:
            await asyncio.sleep(0.05)
        if self._reaper is not None:
            self._reaper.cancel()
            try:
                await self._reaper
            except asyncio.CancelledError:
                pass
        await asyncio.gather(*(pool.stop() for pool in self.pools.values()))
        await asyncio.gather(*(self._close(session, "shutdown") for session in list(self.sessions.values())))
        for backend in self.backends.values():
            await backend.stop()
