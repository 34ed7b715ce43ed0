"""A dependency outage costs no work: the sandbox down for 60 s, then the policy endpoint down for 60 s.

Real processes: nats-server, the sandbox and the rollout service with the demo's rollout settings
(limi_cli.demo.rollout_env: concurrency, ack wait, redelivery backoff), and a scripted policy
served over HTTP that is really stopped (its port refuses connections, its open connections are
closed) and started again on the same port. While 24 queries are collected, the sandbox service
is stopped (SIGTERM, as a pod deletion does) for 60 s, then the policy endpoint for 60 s. Every
query must end COMPLETED with exactly one trajectory, on its first attempt, with tool results that
are the real ones (the script checks each), and each outage must show in the rollout's metrics and
health while it lasts. The figures (attempts, time to recover) are printed for the record.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import urllib.request

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_cli.demo import rollout_env
from limi_core import bus
from limi_core.consumer import read_dead_letters
from limi_core.events import EventPublisher, event_id
from limi_core.health_check import check_health, wait_for_health
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer

QUERIES = [f"outage-{n:02d}" for n in range(24)]
OUTAGE_SECONDS = 60.0
TURN_SECONDS = 0.4  # a policy that takes its time, so that both outages fall inside the collection


def worker(body: dict) -> Reply:
    """Echo the query's id in the sandbox, write it to a file and read it back, then report both outputs."""
    time.sleep(TURN_SECONDS)
    query = next(m["content"] for m in body["messages"] if m["role"] == "user").split()[-1]
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if len(results) == 0:
        return Reply(tool_calls=(("shell", json.dumps({"command": f"echo marker-{query}"})),))
    if len(results) == 1:
        return Reply(tool_calls=(("write_file", json.dumps({"path": "id.txt", "content": query})),))
    if len(results) == 2:
        return Reply(tool_calls=(("read_file", json.dumps({"path": "id.txt"})),))
    ok = f"marker-{query}" in results[0] and "exit code 0" in results[0] and results[2].strip() == query
    return Reply(content=f"{'verified' if ok else 'BROKEN'} {query}")


async def emit(js, nc, query_ids: list[str]) -> None:
    publisher = EventPublisher.for_connection(nc, js)
    for query_id in query_ids:
        task = query_pb2.QueryTask(
            query=query_pb2.Query(id=query_id, text=f"task {query_id}"), query_set_id="outages", episodes=1
        )
        await publisher.publish(bus.QUERY_TASKS, task, event_id("query", "outages", query_id))


async def trajectories(js) -> list[tp.Trajectory]:
    info = await js.stream_info("LIMI_TRAJECTORIES")
    if info.state.messages == 0:
        return []
    return [
        tp.Trajectory.FromString((await js.get_msg("LIMI_TRAJECTORIES", seq)).data)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


def metric(address: str, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def count(js) -> int:
    return len(await trajectories(js))


async def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        await asyncio.sleep(interval)


async def outage(js, rollout, dependency: str, stop, start, *, after: int) -> dict:
    """Stop `dependency` once `after` trajectories exist, check the outage shows, restart it after 60 s."""
    await wait_until(lambda: _at_least(js, after), 120, f"{after} trajectories before the {dependency} outage")
    gauge = f'limi_dependency_up{{dependency="{dependency}",service="rollout"}}'
    stopped_at = time.monotonic()
    stop()
    before = await count(js)

    async def seen_down() -> bool:
        return (
            metric(rollout.metrics_address, gauge) == 0.0
            and check_health(rollout.grpc_address, service=f"limi.dependency.{dependency}") == "NOT_SERVING"
        )

    await wait_until(
        seen_down, OUTAGE_SECONDS - 5, f"the {dependency} outage showing in the rollout's metrics and health"
    )
    shown_after = time.monotonic() - stopped_at
    assert check_health(rollout.grpc_address) == "SERVING"  # the API still answers; only the work waits
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
    during = await count(js) - before
    assert metric(rollout.metrics_address, gauge) == 0.0, f"the {dependency} outage stopped showing while it lasted"
    start()
    restarted_at = time.monotonic()
    # Recovered: a trajectory finished after the restart, and the rollout says the dependency is back.
    await wait_until(lambda: _at_least(js, before + during + 1), 120, f"a trajectory after the {dependency} came back")
    first_after = time.monotonic() - restarted_at
    await wait_until(
        lambda: _async(metric(rollout.metrics_address, gauge) == 1.0), 60, f"the rollout seeing the {dependency} back"
    )
    return {
        "dependency": dependency,
        "shown_after_s": round(shown_after, 1),
        "finished_during_outage": during,
        "pending_at_restart": len(QUERIES) - before - during,
        "first_trajectory_after_restart_s": round(first_after, 1),
    }


async def _at_least(js, n: int) -> bool:
    return await count(js) >= n


async def _async(value):
    return value


async def test_sandbox_and_policy_outages_during_collection_cost_no_attempt(service_process, nats_client, jetstream):
    policy = ScriptedPolicyServer(worker, model="scripted").start()
    port = policy.port
    env = rollout_env(policy.endpoint, "scripted")
    try:
        sandbox = service_process("sandbox")
        wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
        rollout = service_process("rollout", env={**env, "LIMI_ROLLOUT_SANDBOX_ADDRESS": sandbox.grpc_address})
        wait_for_health(rollout.grpc_address, timeout=60, process=rollout.process)
        started = time.monotonic()
        await emit(jetstream, nats_client, QUERIES)

        def restart_policy() -> None:
            nonlocal policy
            policy = ScriptedPolicyServer(worker, model="scripted", port=port).start()

        figures = [
            await outage(jetstream, rollout, "sandbox", sandbox.stop, sandbox.start, after=4),
            await outage(jetstream, rollout, "policy", policy.stop, restart_policy, after=await count(jetstream) + 4),
        ]
        found = await wait_until(lambda: _all(jetstream), 240, "every query's trajectory")
        await asyncio.sleep(2.0)  # a duplicate, if any, would land now
        found = await trajectories(jetstream)
        dead = await read_dead_letters(jetstream)
    finally:
        policy.stop()
    per_query = collections.Counter(t.lineage.query_id for t in found)
    attempts = collections.Counter(t.lineage.attempt for t in found)
    print(
        f"\noutage figures: {len(QUERIES)} queries in {time.monotonic() - started:.0f} s; attempts used {dict(attempts)}; {figures}"
    )
    assert per_query == {q: 1 for q in QUERIES}, per_query
    assert all(
        t.outcome.status == tp.OUTCOME_STATUS_COMPLETED and t.outcome.kind == tp.OUTCOME_KIND_ANSWERED for t in found
    )
    assert all(t.steps[-1].content == f"verified {t.lineage.query_id}" for t in found), [
        t.steps[-1].content for t in found
    ]
    assert not any(s.tool_result.is_error for t in found for s in t.steps)
    assert attempts == {1: len(QUERIES)}, attempts  # no query was charged for either outage
    assert dead == []
    # Both outages fell inside the collection: work was waiting when each dependency came back.
    assert all(f["pending_at_restart"] > 0 for f in figures), figures


async def _all(js):
    found = await trajectories(js)
    return found if len(found) >= len(QUERIES) else None
