"""The gRPC edge: one server interceptor for metrics and for turning typed errors into status.

Every call is counted by method and status code and timed in a histogram. A `LimiError` raised
by a servicer becomes its status code with its message; `NotImplementedError` (what generated
servicers raise for methods not written yet) becomes UNIMPLEMENTED naming the method; any other
exception is logged with its traceback and becomes INTERNAL without leaking internals. Bytes
that do not parse as the request message get INVALID_ARGUMENT. A streaming servicer's generator
is closed as soon as the call ends, cancelled calls included, so the work behind it (a sandbox
command, a watcher) stops at once rather than whenever the garbage collector gets to it.
"""

from __future__ import annotations

import inspect
import logging
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


def _parsing(behavior, deserializer, method: str):
    if deserializer is None:
        return behavior

    def parse_then_call(raw: bytes, context):
        try:
            request = deserializer(raw)
        except DecodeError as exc:
            raise InvalidArgument("request", f"is not a valid message for {method}: {exc}") from None
        return behavior(request, context)

    return parse_then_call


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.lstrip("/")
        # Single requests arrive as bytes and are parsed inside the call, so that bytes which are
        # not a valid message get INVALID_ARGUMENT rather than the library's UNKNOWN.
        if handler.unary_unary:
            behavior = _parsing(handler.unary_unary, handler.request_deserializer, method)
            return grpc.unary_unary_rpc_method_handler(self._unary(behavior, method), None, handler.response_serializer)
        if handler.unary_stream:
            behavior = _parsing(handler.unary_stream, handler.request_deserializer, method)
            return grpc.unary_stream_rpc_method_handler(self._streaming(behavior, method), None, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method), handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, method), handler.request_deserializer, handler.response_serializer
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
            await context.abort(exc.code, str(exc))
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
