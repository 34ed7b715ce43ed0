"""The scaffold (limi_core.service) in-process against a real nats-server: start-up gate, liveness
versus readiness, and supervised consumers whose task is killed or whose loop raises.

A tiny app serves the rollout's gRPC service (one method answered) and consumes one subject; the
runner is the same `ServiceRunner` every service runs on. Health is asked over a real channel.
"""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2
from limi_core import bus
from limi_core.consumer import ConsumerSpec, Delivery
from limi_core.events import EventPublisher
from limi_core.processes import free_port
from limi_core.service import LIVENESS, BusLink, ServiceContext, ServiceRunner
from limi_core.settings import ServiceSettings

TRAJECTORIES = bus.stream_for(bus.TRAJECTORIES_RECORDED).name


class Episodes(rollout_pb2_grpc.RolloutServiceServicer):
    async def ListEpisodes(self, request, context):
        return rollout_pb2.ListEpisodesResponse()


class TinyApp:
    name = "tiny"
    service_names = (rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name,)

    def __init__(self, spec: ConsumerSpec | None, *, uses_nats: bool = True) -> None:
        self.bus = BusLink(self.name) if uses_nats else None
        self.spec = spec
        self.handled: list[str] = []
        self.may_start = asyncio.Event()
        self.may_start.set()

    def register(self, server: grpc.aio.Server) -> None:
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server(Episodes(), server)

    async def start(self, context: ServiceContext) -> None:
        await self.may_start.wait()
        if self.spec is not None:
            context.consume(self.spec, self.handle)

    async def handle(self, delivery: Delivery) -> None:
        self.handled.append(delivery.msg_id)

    async def stop(self, grace_seconds: float) -> None:
        return None


@dataclasses.dataclass
class Running:
    runner: ServiceRunner
    app: TinyApp
    address: str
    task: asyncio.Task

    async def health(self, service: str = "") -> str:
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2
                )
            except grpc.aio.AioRpcError:
                return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def wait_health(self, status: str, service: str = "", timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while await self.health(service) != status:
                assert not self.task.done(), self.task
                await asyncio.sleep(0.05)


@pytest.fixture
async def run_app(nats_server, tmp_path):
    started: list[Running] = []

    async def run(app: TinyApp, nats_url: str | None = None) -> Running:
        address = f"127.0.0.1:{free_port()}"
        settings = ServiceSettings(
            grpc_address=address,
            metrics_address=f"127.0.0.1:{free_port()}",
            nats_url=nats_url or nats_server.url,
            data_dir=tmp_path,
            shutdown_grace_seconds=2,
            nats_connect_timeout_seconds=10,
        )
        runner = ServiceRunner(app, settings)
        running = Running(runner, app, address, asyncio.create_task(runner.run()))
        started.append(running)
        return running

    yield run
    for running in started:
        running.runner.stop_requested.set()
        await asyncio.wait_for(running.task, 30)


def spec(durable: str) -> ConsumerSpec:
    return ConsumerSpec(
        TRAJECTORIES, durable, bus.TRAJECTORIES_RECORDED, ack_wait_seconds=5, liveness_check_seconds=0.5
    )


async def publish(nats_client, jetstream, msg_id: str) -> None:
    await EventPublisher.for_connection(nats_client, jetstream).publish(
        bus.TRAJECTORIES_RECORDED, trajectory_pb2.Trajectory(id=msg_id), msg_id
    )


async def eventually(condition, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def restarts(loop: str, reason: str | None = None) -> float:
    """limi_loop_restarts_total of the tiny service's `loop`, for one reason or all of them."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "limi_loop_restarts_total"
                and labels.get("service") == "tiny"
                and labels.get("loop") == loop
                and reason in (None, labels.get("reason"))
            ):
                total += sample.value
    return total


async def test_calls_before_start_get_unavailable_and_liveness_is_not_readiness(run_app):
    app = TinyApp(None)
    app.may_start.clear()
    running = await run_app(app)
    await running.wait_health("SERVING", LIVENESS)
    assert await running.health() == "NOT_SERVING"
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListEpisodes(rollout_pb2.ListEpisodesRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details().startswith("the tiny service is starting")
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # a server-streaming method is refused the same way
            async for _step in stub.WatchEpisode(rollout_pb2.WatchEpisodeRequest(episode_id="e"), timeout=5):
                pass
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        app.may_start.set()
        await running.wait_health("SERVING")
        assert (
            await stub.ListEpisodes(rollout_pb2.ListEpisodesRequest(), timeout=5) == rollout_pb2.ListEpisodesResponse()
        )


async def test_a_killed_consumer_task_is_restarted_and_consumes_again(run_app, nats_client, jetstream):
    app = TinyApp(spec("tiny-killed"))
    running = await run_app(app)
    await running.wait_health("SERVING")
    await publish(nats_client, jetstream, "before")
    await eventually(lambda: app.handled == ["before"])
    before = restarts("consumer tiny-killed", "cancelled")
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "consumer tiny-killed"]
    task.cancel()
    await eventually(lambda: restarts("consumer tiny-killed", "cancelled") == before + 1)
    # Not SERVING-and-idle: readiness drops while the consumer is down and returns once it runs.
    assert await running.health() == "NOT_SERVING"
    await running.wait_health("SERVING")
    await publish(nats_client, jetstream, "after")
    await eventually(lambda: app.handled == ["before", "after"])


async def test_a_deleted_durable_is_noticed_and_the_consumer_recreated(run_app, nats_client, jetstream):
    app = TinyApp(spec("tiny-deleted"))
    running = await run_app(app)
    await running.wait_health("SERVING")
    before = restarts("consumer tiny-deleted", "ConsumerLost")
    await jetstream.delete_consumer(TRAJECTORIES, "tiny-deleted")
    await eventually(lambda: restarts("consumer tiny-deleted", "ConsumerLost") == before + 1)
    await running.wait_health("SERVING")
    await publish(nats_client, jetstream, "after-delete")
    await eventually(lambda: app.handled == ["after-delete"])


async def test_a_consumer_that_cannot_run_keeps_readiness_not_serving(run_app):
    broken = ConsumerSpec("NO_SUCH_STREAM", "tiny-broken", "limi.nowhere", liveness_check_seconds=0.5)
    running = await run_app(TinyApp(broken))
    await running.wait_health("SERVING", LIVENESS)
    await eventually(lambda: restarts("consumer tiny-broken") >= 1)
    await asyncio.sleep(1.0)
    assert await running.health() == "NOT_SERVING"
    assert await running.health(LIVENESS) == "SERVING"
    assert "is not running" in running.runner._why_not_ready()


async def test_an_app_without_a_bus_is_serving_without_nats(run_app):
    running = await run_app(TinyApp(None, uses_nats=False), nats_url=f"nats://127.0.0.1:{free_port()}")
    await running.wait_health("SERVING")
    assert not running.task.done()
