"""Query intake: every query gets exactly one trajectory, also when the rollout is killed mid-episode,
and a policy outage costs a query no attempt while a policy's refusal is recorded as a failure once."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import time
import urllib.request

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import bus
from limi_core.events import EventPublisher, event_id
from limi_core.health_check import check_health, wait_for_health
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer, Status


def slow_worker(body):
    """Two slow shell calls, then an answer naming the query."""
    done = [m for m in body["messages"] if m["role"] == "tool"]
    if len(done) < 2:
        return Reply(tool_calls=(("shell", json.dumps({"command": "sleep 0.4; echo working"})),))
    return Reply(content="finished: " + [m["content"] for m in body["messages"] if m["role"] == "user"][0])


async def emit(js, nc, query_ids: list[str]) -> None:
    publisher = EventPublisher.for_connection(nc, js)
    for query_id in query_ids:
        task = query_pb2.QueryTask(
            query=query_pb2.Query(id=query_id, text=f"task {query_id}"), query_set_id="set1", episodes=1
        )
        await publisher.publish(bus.QUERY_TASKS, task, event_id("query", "set1", query_id))


async def trajectories(js) -> list[tp.Trajectory]:
    info = await js.stream_info("LIMI_TRAJECTORIES")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        found.append(tp.Trajectory.FromString((await js.get_msg("LIMI_TRAJECTORIES", seq)).data))
    return found


async def wait_for_trajectories(js, count: int, timeout: float = 120) -> list[tp.Trajectory]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await trajectories(js)
        if len(found) >= count:
            await asyncio.sleep(1.0)  # a duplicate, if any, would land now
            return await trajectories(js)
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {len(await trajectories(js))} of {count} trajectories after {timeout} s")


def rollout_env(policy: ScriptedPolicyServer, sandbox, **extra) -> dict[str, str]:
    return {
        "LIMI_ROLLOUT_POLICY_ENDPOINT": policy.endpoint,
        "LIMI_ROLLOUT_SANDBOX_ADDRESS": sandbox.grpc_address,
        "LIMI_ROLLOUT_CONCURRENCY": "2",
        "LIMI_ROLLOUT_ACK_WAIT_SECONDS": "2",
        "LIMI_ROLLOUT_REDELIVERY_BACKOFF_SECONDS": "0.2",
        "LIMI_ROLLOUT_POLICY_ATTEMPTS": "2",
        "LIMI_ROLLOUT_POLICY_FIRST_BACKOFF_SECONDS": "0.05",
        **extra,
    }


async def test_kill_9_mid_episode_still_gives_exactly_one_trajectory_per_query(service_process, nats_client, jetstream):
    queries = [f"q{n}" for n in range(6)]
    with ScriptedPolicyServer(slow_worker) as policy:
        sandbox = service_process("sandbox")
        wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
        first = service_process("rollout", env=rollout_env(policy, sandbox))
        wait_for_health(first.grpc_address, timeout=60, process=first.process)
        await emit(jetstream, nats_client, queries)
        while len(policy.requests) < 5:  # mid-episode: some tool calls have run
            await asyncio.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        published_before = len(await trajectories(jetstream))
        second = service_process("rollout", env=rollout_env(policy, sandbox))
        found = await wait_for_trajectories(jetstream, len(queries))
    per_query = collections.Counter(t.lineage.query_id for t in found)
    assert per_query == {q: 1 for q in queries}, per_query
    assert all(t.outcome.status == tp.OUTCOME_STATUS_COMPLETED for t in found)
    assert all(t.steps[-1].content == f"finished: task {t.lineage.query_id}" for t in found)
    assert published_before < len(queries)  # the kill really cut work off
    assert max(t.lineage.attempt for t in found) >= 2  # and some query was redelivered
    assert second.process.poll() is None


def metric(service, name: str) -> float | None:
    """A sample's value from the service's /metrics, e.g. 'limi_dependency_up{dependency="policy",service="rollout"}'."""
    text = urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_policy_outage_holds_the_query_without_charging_an_attempt(service_process, nats_client, jetstream):
    down = True
    policy_up = 'limi_dependency_up{dependency="policy",service="rollout"}'
    with ScriptedPolicyServer(lambda body: Status(503) if down else Reply(content="done")) as policy:
        sandbox = service_process("sandbox")
        wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
        rollout = service_process("rollout", env=rollout_env(policy, sandbox, LIMI_ROLLOUT_MAX_ATTEMPTS="2"))
        wait_for_health(rollout.grpc_address, timeout=60, process=rollout.process)
        await emit(jetstream, nats_client, ["down1"])
        deadline = time.monotonic() + 30
        while metric(rollout, policy_up) != 0.0:
            assert time.monotonic() < deadline, "the outage never showed in the rollout's metrics"
            await asyncio.sleep(0.2)
        # Old behaviour: two attempts burnt within a second, then a FAILED trajectory. Now: held.
        await asyncio.sleep(6)
        assert await trajectories(jetstream) == []
        assert check_health(rollout.grpc_address, service="limi.dependency.policy") == "NOT_SERVING"
        assert check_health(rollout.grpc_address) == "SERVING"  # it still answers its API
        asked_while_down = len(policy.requests)
        down = False
        found = await wait_for_trajectories(jetstream, 1, timeout=60)
        assert metric(rollout, policy_up) == 1.0
        assert check_health(rollout.grpc_address, service="limi.dependency.policy") == "SERVING"
    assert asked_while_down >= 4  # it kept trying while it held the query
    assert len(found) == 1 and found[0].outcome.status == tp.OUTCOME_STATUS_COMPLETED
    assert found[0].outcome.kind == tp.OUTCOME_KIND_ANSWERED and found[0].lineage.attempt == 1


async def test_a_query_whose_policy_refuses_is_recorded_failed_once(service_process, nats_client, jetstream):
    with ScriptedPolicyServer(lambda body: Status(400, "model 'limi-policy' does not exist")) as policy:
        sandbox = service_process("sandbox")
        wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
        rollout = service_process("rollout", env=rollout_env(policy, sandbox, LIMI_ROLLOUT_MAX_ATTEMPTS="2"))
        wait_for_health(rollout.grpc_address, timeout=60, process=rollout.process)
        await emit(jetstream, nats_client, ["refused1"])
        found = await wait_for_trajectories(jetstream, 1, timeout=60)
    assert len(found) == 1
    failed = found[0]
    assert failed.outcome.status == tp.OUTCOME_STATUS_FAILED and failed.outcome.kind == tp.OUTCOME_KIND_POLICY_REJECTED
    assert "answered 400" in failed.outcome.reason and failed.lineage.attempt == 1


async def test_a_query_task_names_the_policy_model_its_episodes_ask_for(service_process, nats_client, jetstream):
    def answer(body):
        return Reply(content=f"answered by {body['model']}")

    with ScriptedPolicyServer(answer, model="default-model") as policy:
        sandbox = service_process("sandbox")
        wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
        rollout = service_process(
            "rollout", env=rollout_env(policy, sandbox, LIMI_ROLLOUT_POLICY_MODEL="default-model")
        )
        wait_for_health(rollout.grpc_address, timeout=60, process=rollout.process)
        publisher = EventPublisher.for_connection(nats_client, jetstream)
        for query_id, model in (("plain", ""), ("noisy", "noisy-model")):
            task = query_pb2.QueryTask(
                query=query_pb2.Query(id=query_id, text=f"task {query_id}"),
                query_set_id="set1",
                episodes=1,
                policy_model=model,
            )
            await publisher.publish(bus.QUERY_TASKS, task, event_id("query", "set1", query_id))
        found = {t.lineage.query_id: t for t in await wait_for_trajectories(jetstream, 2)}
    assert found["plain"].steps[-1].content == "answered by default-model"
    assert found["noisy"].steps[-1].content == "answered by noisy-model"
    assert found["noisy"].policy.model == "noisy-model"
