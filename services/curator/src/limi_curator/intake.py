"""The trajectory intake: a durable consumer on `limi.trajectories.recorded` that stores each one once.

Each delivery is decoded as a `limi.trajectory.v1.Trajectory` and stored through
`TrajectoryStore.record_consumed`, an idempotent effect keyed by the event's message id, so a
redelivery (a crash after storing and before the ack) stores nothing twice. Bytes that are not a
trajectory are poison: dead-lettered at once. The scaffold runs and restarts the consumer.
"""

from __future__ import annotations

import asyncio

from google.protobuf.message import DecodeError

from limi.trajectory.v1 import trajectory_pb2
from limi_core import bus
from limi_core.consumer import ConsumerSpec, Delivery, PoisonMessage
from limi_curator import metrics
from limi_curator.trajectory_store import TrajectoryStore

TRAJECTORY_CONSUMER = ConsumerSpec(
    stream=bus.stream_for(bus.TRAJECTORIES_RECORDED).name,
    durable="curator-trajectories",
    subject=bus.TRAJECTORIES_RECORDED,
    ack_wait_seconds=60.0,
    max_deliver=5,
    backoff_seconds=(1.0, 5.0, 30.0),
    concurrency=4,
    fetch_batch=32,
)


class TrajectoryIntake:
    def __init__(self, store: TrajectoryStore) -> None:
        self._store = store

    async def handle(self, delivery: Delivery) -> None:
        try:
            trajectory = delivery.decode(trajectory_pb2.Trajectory)
        except DecodeError as exc:
            raise PoisonMessage(f"not a limi.trajectory.v1.Trajectory: {exc}") from None
        applied = await asyncio.to_thread(self._store.record_consumed, trajectory, delivery.msg_id)
        if applied:
            metrics.TRAJECTORIES_CONSUMED.labels(trajectory_pb2.OutcomeStatus.Name(trajectory.outcome.status)).inc()
        else:
            metrics.TRAJECTORIES_REDELIVERED.inc()
