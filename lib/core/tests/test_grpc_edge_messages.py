"""The gRPC edge's status messages: bounded, naming the field, for single and streamed requests.

`bounded` and `wire_fault` are checked directly; the interceptor is checked on an in-process
grpc.aio server whose servicer raises what domain code raises (a typed error quoting a 1 MB
value), and against bytes that are no valid request, sent alone and inside a client stream.
"""

from __future__ import annotations

import grpc
import pytest

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2
from limi_core.errors import InvalidArgument, NotFound
from limi_core.grpc_edge import MAX_STATUS_BYTES, EdgeInterceptor, bounded, wire_fault

NOT_UTF8 = b"\xff\xfe\xc0"


def test_a_long_value_quoted_in_a_message_is_cut_to_a_short_prefix_with_its_length():
    message = bounded(f"id: no query {'x' * 1_000_000!r} in the pool")
    assert message.startswith("id: no query 'xxxx") and message.endswith("...[1000002 characters] in the pool")
    assert len(message.encode()) < 200


def test_a_long_message_of_short_words_is_cut_to_the_limit_and_keeps_its_field():
    message = bounded("query.text: " + "word " * 1_000_000)
    assert len(message.encode()) <= MAX_STATUS_BYTES and message.startswith("query.text: word word")
    assert message.endswith(f"...[{len('query.text: ') + 5_000_000} bytes in all]")


def test_multibyte_text_is_cut_on_a_character_boundary():
    message = bounded("text: " + "é " * 10_000)
    assert len(message.encode()) <= MAX_STATUS_BYTES
    message.encode("utf-8", "strict")


def test_control_and_direction_characters_are_escaped_and_short_messages_kept():
    assert bounded("path: a\x00b\u202ec\nd") == "path: a\\u0000b\\u202ec\nd"
    assert bounded("size: must be between 0 and 10, got -1") == "size: must be between 0 and 10, got -1"
    assert bounded("bad: \ud800") == "bad: \\ud800"  # a lone surrogate cannot be sent as UTF-8


def _with_bad_utf8(message, marker: str) -> bytes:
    return message.SerializeToString().replace(marker.encode(), NOT_UTF8 + b"x" * (len(marker) - len(NOT_UTF8)))


def test_wire_fault_names_the_nested_field_that_is_not_utf8():
    request = curator_pb2.ConvertToLimiRequest(trajectory=trajectory_pb2.Trajectory(id="t"))
    request.trajectory.steps.add(content="fine")
    request.trajectory.steps.add(content="MARKER")
    fault = wire_fault(request.DESCRIPTOR, _with_bad_utf8(request, "MARKER"))
    assert fault == ("trajectory.steps[1].content", "is not valid UTF-8 (bad byte at offset 0)")


def test_wire_fault_names_map_fields_and_broken_framing():
    request = curator_pb2.ConvertToLimiRequest(trajectory=trajectory_pb2.Trajectory(labels={"MARKER": "v"}))
    assert wire_fault(request.DESCRIPTOR, _with_bad_utf8(request, "MARKER")) == (
        "trajectory.labels",
        "has a key that is not valid UTF-8 (bad byte at offset 0)",
    )
    assert wire_fault(request.DESCRIPTOR, b"\x0a\x7fab") == (
        "trajectory",
        "says it holds 127 bytes but the message ends first",
    )
    assert wire_fault(request.DESCRIPTOR, b"\xff\xff") == ("request", "ends inside a field tag")
    assert wire_fault(request.DESCRIPTOR, request.SerializeToString()) is None


class RaisingCurator(curator_pb2_grpc.CuratorServiceServicer):
    """What domain code does with a value it cannot use: quote it in a typed error."""

    async def GetQuery(self, request, context):
        raise NotFound(f"no query {request.id!r} in the pool")

    async def PublishQuerySet(self, request, context):
        raise InvalidArgument("name", f"{request.name!r} must be 1-64 letters")

    async def ImportLimiDataset(self, request_iterator, context):
        async for chunk in request_iterator:
            raise InvalidArgument("origin", f"{chunk.origin!r} is not a name")
        return curator_pb2.ImportLimiDatasetResponse()


@pytest.fixture
async def channel():
    server = grpc.aio.server(
        interceptors=[EdgeInterceptor("edge-test")], options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)]
    )
    curator_pb2_grpc.add_CuratorServiceServicer_to_server(RaisingCurator(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        yield channel
    await server.stop(0)


async def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details()


async def test_a_1mb_value_in_an_error_comes_back_as_its_own_status_under_1kib(channel):
    stub = curator_pb2_grpc.CuratorServiceStub(channel)
    code, details = await _status(stub.GetQuery(curator_pb2.GetQueryRequest(id="q" * 1024 * 1024), timeout=10))
    assert (
        code == grpc.StatusCode.NOT_FOUND
        and details.startswith("no query 'qqq")
        and len(details.encode()) <= MAX_STATUS_BYTES
    )
    code, details = await _status(
        stub.PublishQuerySet(curator_pb2.PublishQuerySetRequest(name="n" * 1024 * 1024), timeout=10)
    )
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and details.startswith("name: 'nnn")
        and len(details.encode()) <= MAX_STATUS_BYTES
    )


async def test_streamed_requests_get_the_same_bounded_field_naming_errors(channel):
    stub = curator_pb2_grpc.CuratorServiceStub(channel)

    async def chunks():
        yield curator_pb2.ImportLimiDatasetChunk(origin="o" * 1024 * 1024)

    code, details = await _status(stub.ImportLimiDataset(chunks(), timeout=10))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and details.startswith("origin: 'ooo")
        and len(details.encode()) <= MAX_STATUS_BYTES
    )

    raw = channel.stream_unary("/limi.curator.v1.CuratorService/ImportLimiDataset")
    bad_origin = (
        curator_pb2.ImportLimiDatasetChunk(origin="MARKER").SerializeToString().replace(b"MARKER", NOT_UTF8 + b"xxx")
    )

    async def garbage():
        yield bad_origin

    code, details = await _status(raw(garbage(), timeout=10))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "origin: is not valid UTF-8 (bad byte at offset 0)")


async def test_bytes_that_are_no_message_name_the_field_that_breaks_them(channel):
    raw = channel.unary_unary("/limi.curator.v1.CuratorService/PublishQuerySet")
    request = curator_pb2.PublishQuerySetRequest(name="s", query_ids=["a", "MARKER"])
    code, details = await _status(raw(request.SerializeToString().replace(b"MARKER", NOT_UTF8 + b"xxx"), timeout=10))
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "query_ids[1]: is not valid UTF-8 (bad byte at offset 0)",
    )
