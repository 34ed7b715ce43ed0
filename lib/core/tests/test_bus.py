"""The event bus against a real nats-server: exactly-once publishing, redelivery, dead letters, big payloads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest
from nats.js import api
from nats.js.errors import ServerError

from limi.trajectory.v1 import trajectory_pb2
from limi_core import bus
from limi_core.consumer import ConsumerSpec, Delivery, EventConsumer, PoisonMessage, read_dead_letters
from limi_core.events import EventPublisher, PublishFailed, event_id
from limi_core.idempotency import IdempotentSink
from limi_core.processes import LOCAL_MAX_FILE_STORE_BYTES

TRAJECTORIES = bus.stream_for(bus.TRAJECTORIES_RECORDED).name


def _trajectory(trajectory_id: str, output_bytes: int = 10) -> trajectory_pb2.Trajectory:
    trajectory = trajectory_pb2.Trajectory(id=trajectory_id)
    trajectory.lineage.query_id = "q-" + trajectory_id
    tool = trajectory.steps.add(index=0, role=trajectory_pb2.ROLE_TOOL)
    tool.tool_result.output = ("0123456789abcdef" * (output_bytes // 16 + 1))[:output_bytes]
    return trajectory


async def _stream_messages(js, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def _run_until(consumer: EventConsumer, condition, timeout: float = 20.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def test_publish_retried_with_the_same_id_stores_one_copy(nats_client, jetstream):
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    receipts = [
        await publisher.publish(bus.TRAJECTORIES_RECORDED, _trajectory("t1"), event_id("trajectory", "q1", 1))
        for _ in range(3)
    ]
    assert [r.duplicate for r in receipts] == [False, True, True]
    assert len({r.sequence for r in receipts}) == 1
    assert await _stream_messages(jetstream, TRAJECTORIES) == 1


async def test_publish_during_a_broker_restart_retries_and_stores_one_copy(nats_server, nats_client, jetstream):
    publisher = EventPublisher.for_connection(nats_client, jetstream, ack_timeout=0.5, attempts=40, max_backoff=0.5)
    nats_server.stop()
    publishing = asyncio.create_task(publisher.publish(bus.TRAJECTORIES_RECORDED, _trajectory("t2"), "trajectory:q2:1"))
    await asyncio.sleep(1.5)
    assert not publishing.done()
    nats_server.start()
    receipt = await asyncio.wait_for(publishing, 30)
    assert receipt.attempts > 1
    assert await _stream_messages(jetstream, TRAJECTORIES) == 1


async def test_five_megabyte_trajectory_round_trips(nats_client, jetstream):
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    big = _trajectory("big", output_bytes=5 * 1024 * 1024)
    assert big.ByteSize() > nats_client.max_payload
    receipt = await publisher.publish(bus.TRAJECTORIES_RECORDED, big, "trajectory:big:1")
    assert receipt.offloaded
    received: list[trajectory_pb2.Trajectory] = []

    async def handle(delivery: Delivery) -> None:
        received.append(delivery.decode(trajectory_pb2.Trajectory))

    spec = ConsumerSpec(TRAJECTORIES, "big-reader", bus.TRAJECTORIES_RECORDED)
    await _run_until(EventConsumer(jetstream, spec, handle, publisher=publisher), lambda: received)
    assert received == [big]


async def test_poison_message_ends_in_the_dead_letter_record_after_max_deliver(nats_client, jetstream):
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    await publisher.publish(bus.TRAJECTORIES_RECORDED, _trajectory("poison"), "trajectory:poison:1")
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> None:
        attempts.append(delivery.deliveries)
        raise ValueError("cannot parse the tool output")

    spec = ConsumerSpec(
        TRAJECTORIES,
        "poison-reader",
        bus.TRAJECTORIES_RECORDED,
        ack_wait_seconds=2,
        max_deliver=3,
        backoff_seconds=(0.05,),
    )
    dead: list = []

    async def dead_letters_arrived() -> None:
        dead.extend(await read_dead_letters(jetstream))

    consumer = EventConsumer(jetstream, spec, handle, publisher=publisher)
    await _run_until(consumer, lambda: len(attempts) >= 3)
    await asyncio.sleep(0.5)  # a fourth delivery would arrive now if the message were not terminated
    await dead_letters_arrived()
    assert attempts == [1, 2, 3]
    assert len(dead) == 1
    record = dead[0]
    assert (record.msg_id, record.deliveries, record.consumer) == ("trajectory:poison:1", 3, "poison-reader")
    assert "ValueError: cannot parse the tool output" in record.error
    assert trajectory_pb2.Trajectory.FromString(record.payload).id == "poison"
    info = await jetstream.consumer_info(TRAJECTORIES, "poison-reader")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_handler_can_declare_a_message_poison_at_once(nats_client, jetstream):
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    await publisher.publish(bus.TRAJECTORIES_RECORDED, _trajectory("bad"), "trajectory:bad:1")
    calls: list[int] = []

    async def handle(delivery: Delivery) -> None:
        calls.append(delivery.deliveries)
        raise PoisonMessage("schema version 99 is unknown")

    spec = ConsumerSpec(TRAJECTORIES, "strict-reader", bus.TRAJECTORIES_RECORDED, max_deliver=5)
    await _run_until(EventConsumer(jetstream, spec, handle, publisher=publisher), lambda: calls)
    await asyncio.sleep(0.3)
    dead = await read_dead_letters(jetstream)
    assert calls == [1]
    assert [d.error for d in dead] == ["poison: schema version 99 is unknown"]


async def test_work_longer_than_ack_wait_is_not_redelivered(nats_client, jetstream):
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    await publisher.publish(bus.TRAJECTORIES_RECORDED, _trajectory("slow"), "trajectory:slow:1")
    deliveries: list[int] = []
    finished: list[bool] = []

    async def handle(delivery: Delivery) -> None:
        deliveries.append(delivery.deliveries)
        await asyncio.sleep(3.0)  # three times the ack wait; heartbeats keep it ours
        finished.append(True)

    spec = ConsumerSpec(TRAJECTORIES, "slow-reader", bus.TRAJECTORIES_RECORDED, ack_wait_seconds=1.0, concurrency=2)
    await _run_until(EventConsumer(jetstream, spec, handle, publisher=publisher), lambda: finished)
    await asyncio.sleep(1.5)
    assert deliveries == [1]


async def test_full_stream_rejects_instead_of_dropping_old_data(nats_client):
    js = nats_client.jetstream()
    small = bus.StreamSpec("LIMI_TEST_SMALL", ("limi.test.small",), max_msgs=2)
    await bus.ensure_streams(js, (small,))
    publisher = EventPublisher(js, inline_limit=100_000)
    for n in range(2):
        await publisher.publish("limi.test.small", _trajectory(f"s{n}"), f"small:{n}")
    with pytest.raises(PublishFailed) as caught:
        await publisher.publish("limi.test.small", _trajectory("s2"), "small:2")
    assert not caught.value.retryable
    assert "the stream is full (maximum messages)" in str(caught.value)
    first = await js.get_msg("LIMI_TEST_SMALL", 1)
    assert trajectory_pb2.Trajectory.FromString(first.data).id == "s0"


CRASHING_CONSUMER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from limi_core import bus
    from limi_core.consumer import ConsumerSpec, EventConsumer
    from limi_core.events import EventPublisher
    from limi_core.idempotency import IdempotentSink

    async def main():
        nc = await bus.connect(sys.argv[1], "crashing-consumer", connect_timeout=10)
        js = nc.jetstream()
        sink = IdempotentSink(sys.argv[2])
        stop = asyncio.Event()

        async def handle(delivery):
            applied = sink.apply_once(delivery.msg_id, lambda db: db.execute(
                "CREATE TABLE IF NOT EXISTS effects (msg_id TEXT, deliveries INT)") and db.execute(
                "INSERT INTO effects VALUES (?, ?)", (delivery.msg_id, delivery.deliveries)))
            print(f"delivery={delivery.deliveries} applied={applied}", flush=True)
            if os.environ.get("CRASH_BEFORE_ACK"):
                os.kill(os.getpid(), signal.SIGKILL)
            stop.set()

        spec = ConsumerSpec("LIMI_TRAJECTORIES", "sink", bus.TRAJECTORIES_RECORDED, ack_wait_seconds=1.0)
        await EventConsumer(js, spec, handle, publisher=EventPublisher.for_connection(nc, js)).run(stop)
        await nc.drain()

    asyncio.run(main())
    """
)


async def test_consumer_killed_after_its_work_before_the_ack_applies_the_effect_once(nats_client, jetstream, tmp_path):
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    await publisher.publish(bus.TRAJECTORIES_RECORDED, _trajectory("once"), "trajectory:once:1")
    script = tmp_path / "consumer.py"
    script.write_text(CRASHING_CONSUMER)
    database = tmp_path / "sink.sqlite"

    def run(crash: bool) -> subprocess.CompletedProcess:
        env = {**os.environ, **({"CRASH_BEFORE_ACK": "1"} if crash else {})}
        return subprocess.run(
            [sys.executable, str(script), nats_client.connected_url.geturl(), str(database)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = await asyncio.to_thread(run, True)
    assert first.returncode == -9, first.stderr
    assert "delivery=1 applied=True" in first.stdout
    second = await asyncio.to_thread(run, False)
    assert second.returncode == 0, second.stderr
    assert "delivery=2 applied=False" in second.stdout

    sink = IdempotentSink(database)
    rows = sink.connection.execute("SELECT msg_id, deliveries FROM effects").fetchall()
    assert rows == [("trajectory:once:1", 1)]
    info = await jetstream.consumer_info(TRAJECTORIES, "sink")
    assert info.num_ack_pending == 0 and info.num_pending == 0


def test_idempotent_sink_rolls_back_an_effect_that_fails(tmp_path):
    sink = IdempotentSink(tmp_path / "sink.sqlite")
    sink.connection.execute("CREATE TABLE effects (n INT)")

    def failing(db):
        db.execute("INSERT INTO effects VALUES (1)")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        sink.apply_once("k", failing)
    assert not sink.applied("k")
    assert sink.connection.execute("SELECT COUNT(*) FROM effects").fetchone() == (0,)
    assert sink.apply_once("k", lambda db: db.execute("INSERT INTO effects VALUES (2)"))
    assert not sink.apply_once("k", lambda db: db.execute("INSERT INTO effects VALUES (3)"))
    assert sink.connection.execute("SELECT n FROM effects").fetchall() == [(2,)]


async def test_streams_are_declared_with_discard_new_and_file_storage(jetstream):
    for spec in bus.STREAMS:
        info = await jetstream.stream_info(spec.name)
        assert info.config.discard == api.DiscardPolicy.NEW
        assert info.config.storage == api.StorageType.FILE
        assert info.config.duplicate_window >= 3600
    queries = await jetstream.stream_info("LIMI_QUERIES")
    assert queries.config.retention == api.RetentionPolicy.WORK_QUEUE


async def test_the_streams_reserve_against_the_local_servers_fixed_limit_not_the_free_disk(jetstream):
    # CI once failed every stream creation on a machine with little free disk: nats-server's
    # default limit is 75% of it. The local server's limit is fixed, so what fits is known.
    reserved = sum(spec.max_bytes for spec in bus.STREAMS) + bus.PAYLOAD_BUCKET_MAX_BYTES
    assert reserved < LOCAL_MAX_FILE_STORE_BYTES
    spare = LOCAL_MAX_FILE_STORE_BYTES - reserved

    def stream(name: str, max_bytes: int) -> api.StreamConfig:
        return api.StreamConfig(
            name=name, subjects=[f"spare.{name}"], storage=api.StorageType.FILE, max_bytes=max_bytes
        )

    with pytest.raises(ServerError, match="insufficient storage"):
        await jetstream.add_stream(stream("TOO_BIG", spare + bus.GIB))
    await jetstream.add_stream(stream("FITS", spare))
