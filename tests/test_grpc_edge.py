"""The gRPC edge against a real curator process: typed errors become status codes naming the field."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi.sandbox.v1 import sandbox_pb2
from limi.trajectory.v1 import trajectory_pb2
from limi_core.health_check import wait_for_health


@pytest.fixture
def curator(service_process):
    service = service_process("curator")
    wait_for_health(service.grpc_address, "SERVING", timeout=60, process=service.process)
    with grpc.insecure_channel(service.grpc_address) as channel:
        yield curator_pb2_grpc.CuratorServiceStub(channel), channel, service


def _trajectory() -> trajectory_pb2.Trajectory:
    trajectory = trajectory_pb2.Trajectory(id="t1")
    trajectory.steps.add(index=0, role=trajectory_pb2.ROLE_USER, content="list the files")
    assistant = trajectory.steps.add(index=1, role=trajectory_pb2.ROLE_ASSISTANT, content="")
    assistant.tool_calls.add(id="c1", name="shell", arguments_json='{"command":"ls"}')
    tool = trajectory.steps.add(index=2, role=trajectory_pb2.ROLE_TOOL)
    tool.tool_result.tool_call_id = "c1"
    tool.tool_result.output = "README.md\n"
    trajectory.steps.add(index=3, role=trajectory_pb2.ROLE_ASSISTANT, content="There is one file.")
    return trajectory


def test_convert_round_trip_through_the_service(curator):
    stub, _channel, _service = curator
    sample = stub.ConvertToLimi(curator_pb2.ConvertToLimiRequest(trajectory=_trajectory()), timeout=10).sample_json
    back = stub.ConvertFromLimi(curator_pb2.ConvertFromLimiRequest(sample_json=sample), timeout=10).trajectory
    assert back == _trajectory()


@pytest.mark.parametrize(
    "request_, field",
    [
        (curator_pb2.ConvertToLimiRequest(), "trajectory"),
        (curator_pb2.ConvertToLimiRequest(trajectory=trajectory_pb2.Trajectory(id="x")), "trajectory.steps"),
    ],
)
def test_malformed_convert_to_limi_names_the_field(curator, request_, field):
    stub, _channel, _service = curator
    with pytest.raises(grpc.RpcError) as caught:
        stub.ConvertToLimi(request_, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")


@pytest.mark.parametrize(
    "sample_json, field",
    [
        ("", "sample_json"),
        ("{not json", "sample_json"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}', "sample_json.messages[0].role"),
        ('{"messages": [{"role": "tool", "content": "out"}]}', "sample_json.messages[0].tool_call_id"),
    ],
)
def test_malformed_limi_sample_names_the_field(curator, sample_json, field):
    stub, _channel, _service = curator
    with pytest.raises(grpc.RpcError) as caught:
        stub.ConvertFromLimi(curator_pb2.ConvertFromLimiRequest(sample_json=sample_json), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: "), caught.value.details()


async def test_unimplemented_method_says_so_and_names_itself():
    from limi_core.grpc_edge import EdgeInterceptor

    server = grpc.aio.server(interceptors=[EdgeInterceptor("edge-test")])
    curator_pb2_grpc.add_CuratorServiceServicer_to_server(curator_pb2_grpc.CuratorServiceServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await curator_pb2_grpc.CuratorServiceStub(channel).ListQueries(
                    curator_pb2.ListQueriesRequest(), timeout=10
                )
    finally:
        await server.stop(0)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "limi.curator.v1.CuratorService/ListQueries is not implemented yet" in caught.value.details()


def test_oversize_request_is_resource_exhausted_and_the_server_lives_on(curator):
    stub, _channel, _service = curator
    with pytest.raises(grpc.RpcError) as caught:
        stub.ConvertFromLimi(curator_pb2.ConvertFromLimiRequest(sample_json="x" * (17 * 1024 * 1024)), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    sample = stub.ConvertToLimi(curator_pb2.ConvertToLimiRequest(trajectory=_trajectory()), timeout=10).sample_json
    assert '"role":"tool"' in sample.replace(" ", "")


def test_bytes_that_are_not_a_request_get_a_status_not_a_crash(curator):
    _stub, channel, service = curator
    raw = channel.unary_unary(
        "/limi.curator.v1.CuratorService/ConvertToLimi", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "request: ends inside a field tag"
    assert service.process.poll() is None


def test_reflection_lists_the_service(curator):
    _stub, channel, _service = curator
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert "limi.curator.v1.CuratorService" in names
    assert "grpc.health.v1.Health" in names
    assert sandbox_pb2.DESCRIPTOR.services_by_name["SandboxService"].full_name not in names
