"""Every service boots to SERVING on a real NATS, serves metrics, and stops cleanly on SIGTERM; liveness
is not readiness; the sandbox needs no NATS; a consumer that dies inside a running service comes back."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2
from limi_core import bus
from limi_core.events import EventPublisher
from limi_core.health_check import check_health, wait_for_health
from limi_core.settings import SERVICES


@pytest.mark.parametrize("name", SERVICES)
def test_service_boots_serving_then_not_serving_and_exits_on_sigterm(name, service_process):
    service = service_process(name)
    wait_for_health(service.grpc_address, "SERVING", timeout=60, process=service.process)

    metrics = urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=5).read().decode()
    assert f'limi_service_serving{{service="{name}"}} 1.0' in metrics
    # The health check we just made was counted by the edge interceptor.
    assert 'limi_grpc_requests_total{code="OK",method="grpc.health.v1.Health/Check"' in metrics

    statuses: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        with grpc.insecure_channel(service.grpc_address) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
            try:
                for reply in stream:
                    statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                    watching.set()
            except grpc.RpcError:
                pass  # the server closing the stream on shutdown ends the watch

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert watching.wait(10)
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(30) == 0
    watcher.join(10)
    assert statuses[0] == "SERVING"
    assert "NOT_SERVING" in statuses, statuses
    assert '"msg": "stopped"' in service.log()


def test_service_reports_not_serving_while_nats_is_down_and_recovers(service_process, nats_server):
    service = service_process("trainer")
    wait_for_health(service.grpc_address, "SERVING", timeout=60, process=service.process)
    nats_server.stop()
    wait_for_health(service.grpc_address, "NOT_SERVING", timeout=30, process=service.process)
    # Not ready, but alive: a liveness probe must not restart a pod for NATS's outage.
    assert check_health(service.grpc_address, service="liveness") == "SERVING"
    nats_server.start()
    wait_for_health(service.grpc_address, "SERVING", timeout=30, process=service.process)


def test_the_sandbox_is_serving_and_runs_commands_with_nats_stopped(service_process, nats_server):
    nats_server.stop()
    sandbox = service_process("sandbox", env={"LIMI_NATS_CONNECT_TIMEOUT_SECONDS": "2"})
    wait_for_health(sandbox.grpc_address, "SERVING", timeout=60, process=sandbox.process)
    with grpc.insecure_channel(sandbox.grpc_address) as channel:
        stub = sandbox_pb2_grpc.SandboxServiceStub(channel)
        session = stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=60)
        events = list(
            stub.Exec(sandbox_pb2.ExecRequest(session_id=session.id, command="echo no nats needed"), timeout=60)
        )
    assert b"".join(e.stdout for e in events) == b"no nats needed\n"
    assert [e.result.exit_code for e in events if e.WhichOneof("event") == "result"] == [0]
    time.sleep(3)  # longer than the NATS connect timeout: a service waiting for NATS would have exited 4 by now
    assert sandbox.process.poll() is None and check_health(sandbox.grpc_address) == "SERVING"


def _sample(metrics_address: str, name: str) -> float:
    text = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_a_consumer_lost_inside_a_running_service_is_restarted_and_consumes(
    service_process, nats_client, jetstream
):
    curator = service_process("curator")
    wait_for_health(curator.grpc_address, "SERVING", timeout=60, process=curator.process)
    stream = bus.stream_for(bus.TRAJECTORIES_RECORDED).name
    await jetstream.delete_consumer(stream, "curator-trajectories")  # the consumer's loop now fetches from nothing
    restarted = 'limi_loop_restarts_total{loop="consumer curator-trajectories",reason="ConsumerLost",service="curator"}'
    deadline = time.monotonic() + 40
    while _sample(curator.metrics_address, restarted) < 1:
        assert time.monotonic() < deadline, "the lost consumer was never restarted"
        await asyncio.sleep(0.5)
    wait_for_health(curator.grpc_address, "SERVING", timeout=30, process=curator.process)
    trajectory = trajectory_pb2.Trajectory(id="after-restart")
    trajectory.outcome.status = trajectory_pb2.OUTCOME_STATUS_COMPLETED
    await EventPublisher.for_connection(nats_client, jetstream).publish(
        bus.TRAJECTORIES_RECORDED, trajectory, "trajectory:after-restart"
    )
    consumed = 'limi_curator_trajectories_consumed_total{outcome="OUTCOME_STATUS_COMPLETED"}'
    deadline = time.monotonic() + 30
    while _sample(curator.metrics_address, consumed) < 1:
        assert time.monotonic() < deadline, "the restarted consumer did not consume"
        await asyncio.sleep(0.2)


def test_service_without_nats_stays_not_serving_then_exits_with_a_sentence(service_process, tmp_path):
    from limi_core.processes import free_port

    service = service_process(
        "evaluator", env={"LIMI_NATS_CONNECT_TIMEOUT_SECONDS": "2"}, nats_url=f"nats://127.0.0.1:{free_port()}"
    )
    wait_for_health(service.grpc_address, "NOT_SERVING", timeout=30, process=service.process)
    assert service.process.wait(30) == 4
    assert "cannot reach NATS at nats://127.0.0.1:" in service.log()


def test_bad_environment_variable_is_named_and_exits_2(service_process):
    service = service_process("curator", env={"LIMI_CURATOR_METRICS_ADDRESS": "nonsense"})
    assert service.process.wait(30) == 2
    assert "environment variable LIMI_CURATOR_METRICS_ADDRESS must be HOST:PORT, got 'nonsense'" in service.log()


def test_taken_grpc_port_is_reported_and_exits_3(service_process):
    first = service_process("rollout")
    wait_for_health(first.grpc_address, "SERVING", timeout=60, process=first.process)
    second = service_process("rollout", env={"LIMI_ROLLOUT_GRPC_ADDRESS": first.grpc_address})
    assert second.process.wait(30) == 3
    assert f"cannot listen for gRPC on {first.grpc_address}" in second.log()
    assert check_health(first.grpc_address) == "SERVING"
