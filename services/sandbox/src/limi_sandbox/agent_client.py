"""The service's side of the agent protocol: frames over a byte channel, many calls at once.

`AgentClient` wraps the reading end (an asyncio.StreamReader) and the writing end (anything with
`write(bytes)`, `async drain()` and `close()`) of one sandbox's agent. It numbers requests,
routes the answering frames to their caller, and turns the agent's errors into the typed errors
of limi_core. It knows nothing about gRPC, sessions or backends.

Everything that comes back is hostile input: code in the sandbox may have taken the agent over.
- A frame header is at most MAX_HEADER_BYTES of JSON nested at most MAX_HEADER_DEPTH deep,
  checked before it is parsed (no recursion to exhaust); a body is at most MAX_BODY_BYTES.
- Every byte of every frame for a call, headers included, counts against that call's budget,
  checked before the body is read. A call that was given up keeps what was left of its budget
  for the frames still on their way; a frame for any other call breaks the protocol.
- A call holds at most CALL_BUFFER_BYTES of frames its caller has not taken. Beyond that the
  reader stops reading the channel until the caller catches up (the agent then stops reading
  its commands' output, and they block): a slow client slows its own sandbox, never grows the
  service. Until then the other calls of that sandbox wait too.
- Results must have the shape their operation promises (`RESULTS`), JSON bodies included.
Any breach ends the channel: every waiting call fails with `SandboxGone`, `on_gone` tells the
sandbox to end itself, and nothing outside this sandbox notices.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from limi_core.errors import FailedPrecondition, InvalidArgument, LimiError, NotFound, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

FRAME = struct.Struct("!II")
MAX_HEADER_BYTES = 64 << 10
MAX_HEADER_DEPTH = 8
MAX_BODY_BYTES = 64 << 20
# The largest request header the agent accepts (agent.py MAX_HEADER).
AGENT_MAX_HEADER_BYTES = 1 << 20
CALL_BUFFER_BYTES = 1 << 20
# Calls given up whose late frames are still accepted (charged to what was left of their budget).
ABANDONED_CALLS_KEPT = 1024
# An agent that does not take its input for this long is stuck; its session is given up.
SEND_TIMEOUT_SECONDS = 30.0
# What an honest agent adds to a command's output: up to 32768 output frame headers (agent_commands.py
# MAX_OUTPUT_FRAMES, under 48 bytes each) and the result.
EXEC_OVERHEAD_BYTES = 32768 * 48 + (64 << 10)
SMALL_RESULT_BYTES = 64 << 10
ERRORS = {"not_found": NotFound, "failed_precondition": FailedPrecondition, "resource_exhausted": ResourceExhausted}


class Number:
    """A JSON number within [low, high] (an integer if `integral`): what fits the proto field it goes to."""

    def __init__(self, low: float, high: float, integral: bool) -> None:
        self.low, self.high, self.integral = low, high, integral
        self.__name__ = "integer" if integral else "number"

    def accepts(self, value: Any) -> bool:
        kinds = (int,) if self.integral else (int, float)
        return type(value) in kinds and self.low <= value <= self.high


INT32, INT64 = Number(-(1 << 31), (1 << 31) - 1, True), Number(-(1 << 63), (1 << 63) - 1, True)
SECONDS = Number(0.0, 1e9, False)
# The fields each result may carry (all optional) and, for list and search, the JSON in the body.
EXEC_RESULT = {
    "exit_code": INT32,
    "signal": INT32,
    "duration": SECONDS,
    "cpu_seconds": SECONDS,
    "timed_out": bool,
    "cancelled": bool,
    "output_truncated": bool,
    "memory_hint": bool,
    "cpu_limit_exceeded": bool,
}
RESULTS: dict[str, dict[str, Any]] = {
    "exec": EXEC_RESULT,
    "ping": {"pid": INT64},
    "read": {"size": INT64, "truncated": bool},
    "write": {"bytes_written": INT64},
    "edit": {"replacements": INT32},
    "list": {"truncated": bool},
    "search": {"truncated": bool, "cut_short": bool},
    "upload": {"files": INT32},
    "download": {},
}
JSON_BODIES: dict[str, Any] = {
    "list": [{"name": str, "is_dir": bool, "is_symlink": bool, "size": INT64}],
    "search": [{"path": str, "line": INT32, "text": str}],
}
ERROR_FIELDS = {"code": str, "field": str, "message": str}


class SandboxGone(FailedPrecondition):
    """The sandbox's agent is gone (killed, out of memory, or it broke the protocol)."""


class AgentProtocolError(ValueError):
    """A frame from the agent that an honest agent never sends."""


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return FRAME.pack(len(encoded), len(body)) + encoded + body


def nesting_depth(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (at least), counted without recursion."""
    opened = raw.count(b"[") + raw.count(b"{")
    if opened <= MAX_HEADER_DEPTH:
        return opened  # the usual header: one object, no deeper than its brackets, however many sit in strings
    structural = raw.translate(None, _NOT_STRUCTURAL)  # only [ ] { } " \ remain
    depth = deepest = 0
    in_string = escaped = False
    for byte in structural:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'[]{}"\\')


def decode_json(raw: bytes, what: str) -> Any:
    """JSON from the agent, refused (AgentProtocolError) when it is not JSON or nests too deep."""
    if nesting_depth(raw) > MAX_HEADER_DEPTH:
        raise AgentProtocolError(f"{what} nests deeper than {MAX_HEADER_DEPTH}")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except ValueError as exc:  # not JSON, not UTF-8, or a number too long to convert
        raise AgentProtocolError(f"{what} is not JSON: {str(exc)[:200]}") from None


def _no_constant(name: str) -> None:
    raise AgentProtocolError(f"{name} in JSON")


def check_shape(value: Any, shape: Any, what: str, optional: bool = False) -> None:
    """Refuse `value` unless it has `shape`: str or bool, a Number, [shape of each item], or {key: shape}.

    An object's keys are required unless `optional`; keys not in the shape are ignored.
    """
    if isinstance(shape, list):
        if not isinstance(value, list):
            raise AgentProtocolError(f"{what} is not a list")
        for item in value:
            check_shape(item, shape[0], what)
    elif isinstance(shape, dict):
        if not isinstance(value, dict):
            raise AgentProtocolError(f"{what} is not an object")
        for key, inner in shape.items():
            if key in value:
                check_shape(value[key], inner, f"{what}.{key}")
            elif not optional:
                raise AgentProtocolError(f"{what} has no {key}")
    elif not (shape.accepts(value) if isinstance(shape, Number) else type(value) is shape):
        raise AgentProtocolError(f"{what} is not a {shape.__name__} in range: {str(value)[:40]!r}")
    elif shape is str and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: no proto string can carry it
            raise AgentProtocolError(f"{what} is not valid Unicode") from None


def decode_header(raw: bytes) -> dict:
    header = decode_json(raw, "a frame header")
    check_shape(header, {"id": Number(0, 1 << 62, True), "type": str}, "a frame header")
    return header


class _Call:
    """One request's frames on their way to its caller, and what it may still receive."""

    def __init__(self, op: str, budget: int) -> None:
        self.op, self.budget = op, budget
        self.frames: collections.deque[tuple[dict, bytes, int]] = collections.deque()
        self.buffered = 0
        self.complete = False  # its result or error arrived: nothing more may come
        self.closed = False  # its caller left
        self.arrived: asyncio.Future | None = None
        self.drained: asyncio.Future | None = None

    def put(self, header: dict, body: bytes, size: int) -> None:
        self.frames.append((header, body, size))
        self.buffered += size
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)

    def take(self) -> tuple[dict, bytes]:
        header, body, size = self.frames.popleft()
        self.buffered -= size
        self.wake_reader()
        return header, body

    def wake_reader(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def wake_caller(self) -> None:
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)


class AgentClient:
    def __init__(
        self, reader: asyncio.StreamReader, writer: ByteWriter, name: str, on_gone: Callable[[str], None] | None = None
    ) -> None:
        self._reader, self._writer, self.name = reader, writer, name
        self._on_gone = on_gone
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._abandoned: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read_frames(), name=f"agent-reader-{name}")
        self.gone_reason: str | None = None

    @property
    def alive(self) -> bool:
        return self.gone_reason is None

    async def wait_ready(self, timeout: float) -> dict:
        return await asyncio.wait_for(asyncio.shield(self._ready), timeout)

    async def call(
        self,
        op: str,
        header: dict[str, Any],
        body: bytes = b"",
        timeout: float = 60.0,
        budget: int = SMALL_RESULT_BYTES,
    ) -> tuple[dict, Any]:
        """One request and its one answer: (result, body), the body decoded for list and search.

        The agent's errors are raised as typed LimiErrors.
        """
        async for reply, payload in self.stream(op, header, body, timeout=timeout, budget=budget):
            if op in JSON_BODIES:
                try:
                    payload = decode_json(payload, f"the body of a {op} result")
                    check_shape(payload, JSON_BODIES[op], f"the body of a {op} result")
                except AgentProtocolError as exc:
                    raise self.broken(exc) from None
            return reply, payload
        raise SandboxGone(f"sandbox {self.name} ended the call without an answer")

    async def stream(
        self,
        op: str,
        header: dict[str, Any],
        body: bytes = b"",
        timeout: float = 60.0,
        budget: int = SMALL_RESULT_BYTES,
    ) -> AsyncIterator[tuple[dict, bytes]]:
        """Frames for one request up to and including its result. Leaving early kills the request.

        `budget` is every byte the agent may send for it, frame headers included.
        """
        self._check_alive()
        rid = next(self._ids)
        call = _Call(op, budget)
        self._calls[rid] = call
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await self._send({**header, "id": rid, "op": op}, body)
            while True:
                while not call.frames:
                    self._check_alive()
                    call.arrived = loop.create_future()
                    try:
                        async with asyncio.timeout_at(deadline):
                            await call.arrived
                    except TimeoutError:
                        raise Unavailable(f"sandbox {self.name} did not answer {op} within {timeout:g} s") from None
                reply, payload = call.take()
                try:
                    kind = self._check_reply(op, reply)
                except AgentProtocolError as exc:
                    raise self.broken(exc) from None
                if kind == "error":
                    raise _error_from(reply)
                yield reply, payload
                if kind == "result":
                    return
        finally:
            self._calls.pop(rid, None)
            call.closed = True
            call.wake_reader()
            if not call.complete and self.alive:
                self._abandoned[rid] = call.budget
                while len(self._abandoned) > ABANDONED_CALLS_KEPT:
                    self._abandoned.popitem(last=False)
                await self._send_quietly({"id": 0, "op": "kill", "target": rid})

    async def close(self) -> None:
        """End the channel (idempotent); never raises, whatever the agent did."""
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

    def broken(self, reason: object) -> SandboxGone:
        """End the channel because the agent sent what an honest one never does; the error to raise."""
        log.warning("sandbox %s broke the agent protocol: %s", self.name, reason)
        self._mark_gone(f"it broke the agent protocol: {reason}")
        return SandboxGone(f"the sandbox of this session has exited ({self.gone_reason}); create a new session")

    @staticmethod
    def _check_reply(op: str, reply: dict) -> str:
        kind = reply["type"]
        if kind == "result":
            check_shape(reply, RESULTS.get(op, {}), f"a {op} result", optional=True)
        elif kind == "error":
            check_shape(reply, ERROR_FIELDS, f"an error for {op}")
        elif not (op == "exec" and kind in ("stdout", "stderr")):
            raise AgentProtocolError(f"a {kind!r} frame for {op}")
        return kind

    async def _send(self, header: dict[str, Any], body: bytes) -> None:
        frame = encode_frame(header, body)
        if FRAME.unpack_from(frame)[0] > AGENT_MAX_HEADER_BYTES:
            raise InvalidArgument(
                "request", f"is too large for the sandbox's agent ({AGENT_MAX_HEADER_BYTES} bytes of fields)"
            )
        try:
            self._writer.write(frame)
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):  # a timer, not a task as wait_for would make
                await self._writer.drain()
        except (ConnectionError, OSError, RuntimeError, TimeoutError) as exc:
            self._mark_gone(f"its input closed or stalled: {exc!r}")
            raise SandboxGone(
                f"the sandbox of this session has exited ({self.gone_reason}); create a new session"
            ) from None

    async def _send_quietly(self, header: dict[str, Any]) -> None:
        try:
            await self._send(header, b"")
        except SandboxGone:
            pass

    async def _read_frames(self) -> None:
        try:
            while True:
                header_size, body_size = FRAME.unpack(await self._reader.readexactly(FRAME.size))
                if header_size > MAX_HEADER_BYTES or body_size > MAX_BODY_BYTES:
                    raise AgentProtocolError(f"a frame of {header_size}+{body_size} bytes")
                header = decode_header(await self._reader.readexactly(header_size))
                await self._route(header, body_size, FRAME.size + header_size + body_size)
        except asyncio.IncompleteReadError:
            self._mark_gone("its agent exited")
        except AgentProtocolError as exc:
            self.broken(exc)
        except (ConnectionError, OSError) as exc:
            self._mark_gone(f"its output failed: {exc}")
        except Exception as exc:  # whatever else hostile input provokes ends this sandbox, never the service
            log.exception("reading from sandbox %s failed", self.name)
            self._mark_gone(f"reading from it failed: {type(exc).__name__}")

    async def _route(self, header: dict, body_size: int, size: int) -> None:
        rid, kind = header["id"], header["type"]
        if rid == 0:
            if kind != "ready" or body_size or self._ready.done():
                raise AgentProtocolError(f"a {kind!r} frame with id 0")
            self._ready.set_result(header)
            return
        call = self._calls.get(rid)
        if call is None or call.closed:
            await self._late_frame(rid, kind, body_size, size)
            return
        if call.complete:
            raise AgentProtocolError(f"a frame for call {rid} after its result")
        call.budget -= size
        if call.budget < 0:
            raise AgentProtocolError(f"more than the budget of call {rid} ({call.op})")
        while call.buffered >= CALL_BUFFER_BYTES and not call.closed:
            call.drained = asyncio.get_running_loop().create_future()
            await call.drained  # backpressure: the caller has not taken what came before
        body = await self._reader.readexactly(body_size) if body_size else b""
        call.complete = kind in ("result", "error")
        if call.closed:
            self._abandoned[rid] = call.budget
            if call.complete:
                self._abandoned.pop(rid, None)
            return
        call.put(header, body, size)

    async def _late_frame(self, rid: int, kind: str, body_size: int, size: int) -> None:
        """A frame for a call given up: charged to what was left of its budget, then skipped."""
        left = self._abandoned.get(rid)
        if left is None:
            raise AgentProtocolError(f"a frame for call {rid}, which is not waiting for one")
        left -= size
        if left < 0:
            raise AgentProtocolError(f"more than the budget of call {rid}")
        if kind in ("result", "error"):
            del self._abandoned[rid]
        else:
            self._abandoned[rid] = left
        while body_size:
            chunk = await self._reader.readexactly(min(body_size, 1 << 20))
            body_size -= len(chunk)

    def _mark_gone(self, reason: str) -> None:
        if self.gone_reason is not None:
            return
        self.gone_reason = reason
        if not self._ready.done():
            self._ready.set_exception(SandboxGone(f"sandbox {self.name} did not start: {reason}"))
            self._ready.exception()  # retrieved here so an unawaited failure is not logged
        for call in self._calls.values():
            call.wake_caller()
        if self._on_gone is not None and reason != "closed by the service":
            self._on_gone(reason)


def _error_from(reply: dict) -> LimiError:
    code, field, message = reply["code"], reply["field"][:200], reply["message"][:2000]
    if code == "invalid_argument":
        return InvalidArgument(field or "request", message)
    if code in ERRORS:
        return ERRORS[code](f"{field}: {message}" if field else message)
    return FailedPrecondition(f"the sandbox could not do it: {message}")
