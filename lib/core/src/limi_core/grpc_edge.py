"""The gRPC edge: one server interceptor for metrics and for turning typed errors into status.

Every call is counted by method and status code and timed in a histogram. A `LimiError` raised
by a servicer becomes its status code with its message; `NotImplementedError` (what generated
servicers raise for methods not written yet) becomes UNIMPLEMENTED naming the method; any other
exception is logged with its traceback and becomes INTERNAL without leaking internals. Bytes
that do not parse as the request message get INVALID_ARGUMENT naming the field that breaks it
(`trajectory.steps[2].content: is not valid UTF-8`), for single and streamed requests alike.
Every status message is bounded (`bounded`): a long value quoted in it is cut to a short prefix
and the whole fits in 1 KiB, far below gRPC's 16 KiB metadata limit, so a 1 MB id in a request
cannot turn its own error into a lost stream. A streaming servicer's generator is closed as soon
as the call ends, cancelled calls included, so the work behind it (a sandbox command, a watcher)
stops at once rather than whenever the garbage collector gets to it.
"""

from __future__ import annotations

import inspect
import logging
import re
import time

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Gauge, Histogram

from limi_core.errors import InvalidArgument, LimiError

log = logging.getLogger(__name__)

REQUESTS = Counter("limi_grpc_requests_total", "gRPC calls by method and status code", ["service", "method", "code"])
LATENCY = Histogram(
    "limi_grpc_request_duration_seconds",
    "gRPC call latency (for streams: until the stream ends)",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
IN_FLIGHT = Gauge("limi_grpc_in_flight", "gRPC calls in progress", ["service", "method"])


MAX_STATUS_BYTES = 1024
_LONG_RUN = re.compile(r"\S{121,}")
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def bounded(message: str, limit: int = MAX_STATUS_BYTES) -> str:
    """`message` made fit for a status: every run of more than 120 characters without a space
    (a quoted value, a path) cut to its first 60 with its length, control characters escaped,
    and the whole cut to `limit` bytes of UTF-8, so the field named at its start survives."""
    text = _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", message)
    text = _LONG_RUN.sub(lambda m: f"{m.group()[:60]}...[{len(m.group())} characters]", text)
    encoded = text.encode("utf-8", "backslashreplace")
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    tail = f"...[{len(encoded)} bytes in all]"
    return encoded[: limit - len(tail)].decode("utf-8", "ignore") + tail


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise IndexError
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def wire_fault(descriptor, data: bytes, prefix: str = "") -> tuple[str, str] | None:
    """The field of `data` that makes it no valid `descriptor` message, as (field path, reason).

    Walks the protobuf wire format the way the parser does and reports the first length-delimited
    field that runs past its end, string that is not UTF-8, or tag that cannot be read; None
    when it finds no fault (the parser's complaint is then about the message as a whole).
    """
    pos, seen = 0, {}
    while pos < len(data):
        where = prefix.rstrip(".") or "request"
        try:
            key, pos = _varint(data, pos)
        except IndexError:
            return where, "ends inside a field tag"
        number, wire_type = key >> 3, key & 7
        field = descriptor.fields_by_number.get(number)
        name = prefix + field.name if field is not None else where
        if field is not None and field.is_repeated and not _is_map(field):
            name += f"[{seen.get(number, 0)}]"
            seen[number] = seen.get(number, 0) + 1
        try:
            if wire_type == 0:
                _, pos = _varint(data, pos)
                continue
            if wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
                if pos > len(data):
                    return name, "is cut short"
                continue
            if wire_type != 2:
                return name, f"has wire type {wire_type}, which these messages do not use"
            length, pos = _varint(data, pos)
        except IndexError:
            return name, "is cut short"
        chunk, pos = data[pos : pos + length], pos + length
        if pos > len(data):
            return name, f"says it holds {length} bytes but the message ends first"
        if field is None:
            continue
        if field.type == field.TYPE_STRING:
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                return name, f"is not valid UTF-8 (bad byte at offset {exc.start})"
        elif field.type == field.TYPE_MESSAGE:
            inner = wire_fault(field.message_type, chunk, name + ".")
            if inner is not None:
                return (name, f"has a {inner[0].rsplit('.', 1)[-1]} that {inner[1]}") if _is_map(field) else inner
    return None


def _is_map(field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _parse(deserializer, raw: bytes, method: str):
    try:
        return deserializer(raw)
    except DecodeError as exc:
        message_type = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
        fault = wire_fault(message_type, raw) if message_type is not None else None
        if fault is not None:
            raise InvalidArgument(*fault) from None
        raise InvalidArgument("request", f"is not a valid message for {method}: {exc}") from None


def _parsing(behavior, deserializer, method: str):
    if deserializer is None:
        return behavior

    def parse_then_call(raw: bytes, context):
        return behavior(_parse(deserializer, raw, method), context)

    return parse_then_call


def _parsing_each(behavior, deserializer, method: str):
    """For streamed requests: each message is parsed as the servicer reads it, with the same errors."""
    if deserializer is None:
        return behavior

    def parse_each_then_call(raw_requests, context):
        async def requests():
            async for raw in raw_requests:
                yield _parse(deserializer, raw, method)

        return behavior(requests(), context)

    return parse_each_then_call


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.lstrip("/")
        # Requests arrive as bytes and are parsed inside the call, so that bytes which are not a
        # valid message get INVALID_ARGUMENT naming the field rather than the library's UNKNOWN.
        if handler.unary_unary:
            behavior = _parsing(handler.unary_unary, handler.request_deserializer, method)
            return grpc.unary_unary_rpc_method_handler(self._unary(behavior, method), None, handler.response_serializer)
        if handler.unary_stream:
            behavior = _parsing(handler.unary_stream, handler.request_deserializer, method)
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(behavior, method), None, handler.response_serializer
            )
        if handler.stream_unary:
            behavior = _parsing_each(handler.stream_unary, handler.request_deserializer, method)
            return grpc.stream_unary_rpc_method_handler(
                self._unary(behavior, method), None, handler.response_serializer
            )
        behavior = _parsing_each(handler.stream_stream, handler.request_deserializer, method)
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(behavior, method), None, handler.response_serializer
        )

    def _unary(self, behavior, method: str):
        async def wrapped(request, context):
            started = time.perf_counter()
            IN_FLIGHT.labels(self._service, method).inc()
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except BaseException as exc:
                await self._fail(exc, context, method)
            finally:
                self._observe(context, method, started)

        return wrapped

    def _streaming(self, behavior, method: str):
        # A coroutine that writes, not a generator that yields: gRPC leaves a generator handler
        # suspended when the call is cancelled during a write; here `finally` closes it.
        async def wrapped(request, context):
            started = time.perf_counter()
            IN_FLIGHT.labels(self._service, method).inc()
            result = None
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        await context.write(item)
                elif result is not None:
                    for item in result:
                        await context.write(item)
            except BaseException as exc:
                await self._fail(exc, context, method)
            finally:
                if hasattr(result, "aclose"):
                    await result.aclose()
                self._observe(context, method, started)

        return wrapped

    async def _fail(self, exc: BaseException, context, method: str) -> None:
        if isinstance(exc, LimiError):
            await context.abort(exc.code, bounded(str(exc)))
        if isinstance(exc, NotImplementedError):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
        if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
            log.error("unhandled error in %s", method, exc_info=exc)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the {self._service} log")
        raise exc

    def _observe(self, context, method: str, started: float) -> None:
        IN_FLIGHT.labels(self._service, method).dec()
        LATENCY.labels(self._service, method).observe(time.perf_counter() - started)
        code = context.code()
        if code is None:
            code = grpc.StatusCode.CANCELLED if context.cancelled() else grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        REQUESTS.labels(self._service, method, name).inc()
