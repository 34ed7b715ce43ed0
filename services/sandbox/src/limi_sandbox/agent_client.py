"""The service's side of the agent protocol: frames over a byte channel, many calls at once.

`AgentClient` wraps the reading end (an asyncio.StreamReader) and the writing end (anything with
`write(bytes)`, `async drain()` and `close()`) of one sandbox's agent. It numbers requests,
routes the answering frames to their caller, and turns the agent's errors into the typed errors
of limi_core. The agent runs with the sandbox's privileges, so its frames are untrusted input:
sizes are capped, JSON is checked, and a call that receives more than it may is a broken
sandbox. When the channel ends, every waiting call fails with `SandboxGone`. It knows nothing
about gRPC, sessions or backends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any, Protocol

from limi_core.errors import FailedPrecondition, InvalidArgument, LimiError, NotFound, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

FRAME = struct.Struct("!II")
MAX_HEADER_BYTES = 4 << 20
MAX_BODY_BYTES = 64 << 20
# An agent that does not take its input for this long is stuck; its session is given up.
SEND_TIMEOUT_SECONDS = 30.0
ERRORS = {"not_found": NotFound, "failed_precondition": FailedPrecondition, "resource_exhausted": ResourceExhausted}


class SandboxGone(FailedPrecondition):
    """The sandbox's agent is gone (killed, out of memory, or it broke the protocol)."""


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return FRAME.pack(len(encoded), len(body)) + encoded + body


class _Call:
    def __init__(self, budget: int) -> None:
        self.queue: asyncio.Queue[tuple[dict, bytes] | None] = asyncio.Queue()
        # Body bytes and frames this call may still receive: an honest agent sends each output byte
        # once and never an empty output frame, so neither can exceed the budget.
        self.budget, self.frames_left = budget, budget + 16


class AgentClient:
    def __init__(self, reader: asyncio.StreamReader, writer: ByteWriter, name: str) -> None:
        self._reader, self._writer, self.name = reader, writer, name
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read_frames(), name=f"agent-reader-{name}")
        self.gone_reason: str | None = None

    @property
    def alive(self) -> bool:
        return self.gone_reason is None

    async def wait_ready(self, timeout: float) -> dict:
        return await asyncio.wait_for(asyncio.shield(self._ready), timeout)

    async def call(self, op: str, header: dict[str, Any], body: bytes = b"", timeout: float = 60.0, budget: int = MAX_BODY_BYTES) -> tuple[dict, bytes]:
        """One request and its one answer (a result, or an error raised as a typed LimiError)."""
        async for reply, payload in self.stream(op, header, body, timeout=timeout, budget=budget):
            return reply, payload
        raise SandboxGone(f"sandbox {self.name} ended the call without an answer")

    async def stream(self, op: str, header: dict[str, Any], body: bytes = b"", timeout: float = 60.0,
                     budget: int = MAX_BODY_BYTES) -> AsyncIterator[tuple[dict, bytes]]:
        """Frames for one request up to and including its result. Leaving early kills the request."""
        self._check_alive()
        rid = next(self._ids)
        call = _Call(budget)
        self._calls[rid] = call
        finished = False
        try:
            await self._send({**header, "id": rid, "op": op}, body)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    item = await asyncio.wait_for(call.queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    raise Unavailable(f"sandbox {self.name} did not answer {op} within {timeout:g} s") from None
                if item is None:
                    raise SandboxGone(f"the sandbox of this session has exited ({self.gone_reason}); create a new session")
                reply, payload = item
                kind = reply.get("type")
                if kind == "error":
                    finished = True
                    raise _error_from(reply)
                if kind == "result":
                    finished = True
                yield reply, payload
                if finished:
                    return
        finally:
            self._calls.pop(rid, None)
            if not finished and self.alive:
                await self._send_quietly({"id": 0, "op": "kill", "target": rid})

    async def close(self) -> None:
        self._mark_gone("closed by the service")
        try:
            self._writer.close()
        except OSError:
            pass
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def _check_alive(self) -> None:
        if not self.alive:
            raise SandboxGone(f"the sandbox of this session has exited ({self.gone_reason}); create a new session")

    async def _send(self, header: dict[str, Any], body: bytes) -> None:
        try:
            self._writer.write(encode_frame(header, body))
            await asyncio.wait_for(self._writer.drain(), SEND_TIMEOUT_SECONDS)
        except (ConnectionError, OSError, RuntimeError, asyncio.TimeoutError) as exc:
            self._mark_gone(f"its input closed or stalled: {exc!r}")
            raise SandboxGone(f"the sandbox of this session has exited ({self.gone_reason}); create a new session") from None

    async def _send_quietly(self, header: dict[str, Any]) -> None:
        try:
            await self._send(header, b"")
        except SandboxGone:
            pass

    async def _read_frames(self) -> None:
        try:
            while True:
                prefix = await self._reader.readexactly(FRAME.size)
                header_size, body_size = FRAME.unpack(prefix)
                if header_size > MAX_HEADER_BYTES or body_size > MAX_BODY_BYTES:
                    raise ValueError(f"a frame of {header_size}+{body_size} bytes")
                header = json.loads(await self._reader.readexactly(header_size))
                body = await self._reader.readexactly(body_size) if body_size else b""
                if not isinstance(header, dict) or not isinstance(header.get("id"), int):
                    raise ValueError("a frame without a numeric id")
                self._route(header, body)
        except asyncio.IncompleteReadError:
            self._mark_gone("its agent exited")
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("sandbox %s broke the agent protocol: %s", self.name, exc)
            self._mark_gone(f"it broke the agent protocol: {exc}")
        except (ConnectionError, OSError) as exc:
            self._mark_gone(f"its output failed: {exc}")

    def _route(self, header: dict, body: bytes) -> None:
        if header["id"] == 0 and header.get("type") == "ready":
            if not self._ready.done():
                self._ready.set_result(header)
            return
        call = self._calls.get(header["id"])
        if call is None:
            return  # a late frame for a call that was given up
        call.budget -= len(body)
        call.frames_left -= 1
        if call.budget < 0 or call.frames_left < 0:
            raise ValueError(f"more output than allowed for call {header['id']}")
        call.queue.put_nowait((header, body))

    def _mark_gone(self, reason: str) -> None:
        if self.gone_reason is not None:
            return
        self.gone_reason = reason
        if not self._ready.done():
            self._ready.set_exception(SandboxGone(f"sandbox {self.name} did not start: {reason}"))
            self._ready.exception()  # retrieved here so an unawaited failure is not logged
        for call in self._calls.values():
            call.queue.put_nowait(None)


def _error_from(reply: dict) -> LimiError:
    code, field, message = reply.get("code"), str(reply.get("field") or ""), str(reply.get("message") or "failed")
    if code == "invalid_argument":
        return InvalidArgument(field or "request", message)
    if code in ERRORS:
        return ERRORS[code](f"{field}: {message}" if field else message)
    return FailedPrecondition(f"the sandbox could not do it: {message}")
