"""Training on published datasets: the handler of the durable `Dataset` event consumer.

Each `limi.dataset.v1.Dataset` event is recorded (so StartRun can name it by id) and, when
auto-training is on, becomes a run with the service's base model, preset and overrides. The handler waits
for that run to finish while the consumer keeps the message alive with `in_progress`
heartbeats, so the event is acknowledged only once its training is done:
- succeeded or cancelled by a person: acknowledged;
- failed because the input cannot be trained on: dead-lettered at once (PoisonMessage);
- crashed for good, or the service stopping mid-run: not acknowledged, so the event comes back
  and the same run (same id) resumes from its last checkpoint.
A redelivered event names the same run, so no dataset is trained twice.
"""

from __future__ import annotations

import asyncio
import logging

from limi.dataset.v1 import dataset_pb2
from limi_core.consumer import Delivery, PoisonMessage
from limi_trainer.dataset import DatasetInput
from limi_trainer.run_store import RunState, RunStore
from limi_trainer.supervisor import RunRequest, RunSupervisor

log = logging.getLogger(__name__)


class RunNotFinished(Exception):
    """The run of a dataset event crashed; the event is redelivered and the run resumes."""


class DatasetIntake:
    def __init__(
        self,
        supervisor: RunSupervisor,
        store: RunStore,
        *,
        auto_train: bool,
        base_model: str,
        preset: str,
        stop: asyncio.Event,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self._supervisor, self._store = supervisor, store
        self._auto_train, self._base_model, self._preset = auto_train, base_model, preset
        self._overrides = dict(overrides or {})
        self._stop = stop

    async def handle(self, delivery: Delivery) -> None:
        dataset = delivery.decode(dataset_pb2.Dataset)
        if not dataset.id or not dataset.storage_uri:
            raise PoisonMessage("a Dataset event needs an id and a storage_uri")
        self._store.put_dataset(dataset)
        if not self._auto_train:
            return
        request = RunRequest(
            DatasetInput(
                uri=dataset.storage_uri,
                dataset_id=dataset.id,
                content_hash=dataset.content_hash,
                trajectory_ids=tuple(dataset.trajectory_ids),
            ),
            self._base_model,
            self._preset,
            self._overrides,
        )
        run = await self._supervisor.submit(request, retry_failed=True)
        log.info(
            "training on dataset",
            extra={
                "fields": {
                    "dataset": dataset.id,
                    "run": run.id,
                    "state": run.state.value,
                    "delivery": delivery.deliveries,
                }
            },
        )
        final = await self._supervisor.wait_terminal(run.id, self._stop)
        if final.state == RunState.FAILED and final.failure_kind == "invalid_input":
            raise PoisonMessage(f"run {final.id} cannot train on dataset {dataset.id}: {final.error}")
        if final.state == RunState.FAILED:
            raise RunNotFinished(f"run {final.id} crashed: {final.error}")
