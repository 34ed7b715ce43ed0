"""Request-id dedupe: a call retried with the same request_id gets the recorded answer, never a second run.

`RequestLog.unary(key, fingerprint, run)` runs `run()` once per key: a retry while the first
attempt is in flight waits for it, a retry afterwards gets the recorded result. `stream()` does
the same for a stream of items (Exec): a retry replays what was produced so far and then follows
it live; if the first attempt is cancelled mid-stream, the stream is closed with the item
`on_abort()` makes (a "cancelled" result), so a retry learns what happened instead of running
the command again. Failures before the first item are not recorded, so a call refused by a
quota can be retried for real. The same key with a different request is InvalidArgument.
Entries expire after `ttl_seconds` and the oldest finished ones are dropped beyond `max_bytes`.
An empty key means no dedupe. It knows nothing of gRPC.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from limi_core.errors import InvalidArgument, Unavailable


class _Entry:
    def __init__(self, fingerprint: bytes, now: float) -> None:
        self.fingerprint, self.created = fingerprint, now
        self.items: list[Any] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.changed = asyncio.Condition()
        self.size = 0


class RequestLog:
    def __init__(self, ttl_seconds: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_bytes, self.clock = ttl_seconds, max_bytes, clock
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _existing(self, key: str, fingerprint: bytes) -> _Entry | None:
        self._expire()
        entry = self._entries.get(key)
        if entry is not None and entry.fingerprint != fingerprint:
            raise InvalidArgument("request_id", "was already used for a different request")
        return entry

    def _add(self, key: str, fingerprint: bytes) -> _Entry:
        entry = _Entry(fingerprint, self.clock())
        self._entries[key] = entry
        return entry

    def _drop(self, key: str, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
            self._bytes -= entry.size

    def _grow(self, entry: _Entry, size: int) -> None:
        entry.size += size
        self._bytes += size

    def _expire(self) -> None:
        now = self.clock()
        for key, entry in list(self._entries.items()):
            too_old = now - entry.created > self.ttl
            if entry.done and (too_old or self._bytes > self.max_bytes):
                self._drop(key, entry)
            elif not too_old and self._bytes <= self.max_bytes:
                break

    async def unary(
        self,
        key: str,
        fingerprint: bytes,
        run: Callable[[], Awaitable[Any]],
        size: Callable[[Any], int] = lambda _: 256,
    ) -> Any:
        if not key:
            return await run()
        entry = self._existing(key, fingerprint)
        if entry is not None:
            async with entry.changed:
                await entry.changed.wait_for(lambda: entry.done)
            if entry.error is not None:
                raise _for_follower(entry.error)
            return entry.result
        entry = self._add(key, fingerprint)
        try:
            entry.result = await run()
        except BaseException as exc:
            entry.error = exc
            self._drop(key, entry)
            raise
        finally:
            entry.done = True
            async with entry.changed:
                entry.changed.notify_all()
        self._grow(entry, size(entry.result))
        return entry.result

    async def stream(
        self,
        key: str,
        fingerprint: bytes,
        run: Callable[[], AsyncIterator[Any]],
        size: Callable[[Any], int],
        on_abort: Callable[[], Any],
    ) -> AsyncIterator[Any]:
        if not key:
            async with aclosing(run()) as items:
                async for item in items:
                    yield item
            return
        entry = self._existing(key, fingerprint)
        if entry is not None:
            async for item in self._replay(entry):
                yield item
            return
        entry = self._add(key, fingerprint)
        try:
            async with aclosing(run()) as items:
                async for item in items:
                    entry.items.append(item)
                    self._grow(entry, size(item))
                    async with entry.changed:
                        entry.changed.notify_all()
                    yield item
        except BaseException as exc:
            if entry.items:
                entry.items.append(on_abort())
            else:
                entry.error = exc
                self._drop(key, entry)
            raise
        finally:
            entry.done = True
            async with entry.changed:
                entry.changed.notify_all()

    async def _replay(self, entry: _Entry) -> AsyncIterator[Any]:
        sent = 0
        while True:
            async with entry.changed:
                await entry.changed.wait_for(lambda sent=sent: entry.done or len(entry.items) > sent)
                batch, finished = entry.items[sent:], entry.done
            for item in batch:
                yield item
            sent += len(batch)
            if finished and sent >= len(entry.items):
                if entry.error is not None:
                    raise _for_follower(entry.error)
                return


def _for_follower(error: BaseException) -> BaseException:
    """What a waiting retry raises when the first attempt failed: the same error, unless it was cancelled."""
    if isinstance(error, Exception):
        return error
    return Unavailable("the first attempt with this request_id was cancelled before it did anything; retry it")
