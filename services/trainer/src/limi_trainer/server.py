"""Wiring of the trainer service: servicer, run supervisor, dataset consumer, checkpoint events.

On start (the scaffold has connected NATS) the run supervisor loads its runs (interrupted ones
resume), checkpoints are announced through the exactly-once publisher on `limi.checkpoints.saved`,
and the supervised durable consumer of `limi.datasets.published` starts. On stop the consumer
takes no new dataset, the training process in progress is stopped (its run stays queued and
resumes from its last checkpoint at the next start), and the gRPC server drains (limi_core.service).
"""

from __future__ import annotations

import logging
import pathlib
import sqlite3
import sys

import grpc

from limi.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from limi_core import bus
from limi_core.consumer import ConsumerSpec
from limi_core.exit_codes import EXIT_USAGE
from limi_core.service import BusLink, ServiceContext, run_main
from limi_trainer import lineage
from limi_trainer.dataset_intake import DatasetIntake
from limi_trainer.run_store import RunRecord, RunStore
from limi_trainer.servicer import TrainerServicer
from limi_trainer.settings import TrainerSettings
from limi_trainer.supervisor import RunSupervisor

log = logging.getLogger(__name__)
CONSUMER_NAME = "trainer-datasets"


class TrainerApp:
    name = "trainer"
    service_names = (trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name,)

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.store = RunStore(settings.database_path)
        self.supervisor = RunSupervisor(
            self.store,
            settings.runs_dir,
            self._announce,
            max_queued=settings.max_queued_runs,
            max_attempts=settings.max_attempts,
            poll_seconds=settings.progress_poll_seconds,
            gpus_per_run=settings.gpus_per_run,
            worker_env={"LIMI_TRAINER_MODELS_DIR": str(settings.local_models_dir)},
        )
        self.servicer = TrainerServicer(
            self.supervisor,
            self.store,
            default_base_model=settings.base_model,
            default_preset=settings.preset,
            dataset_roots=settings.allowed_dataset_roots,
            model_roots=settings.allowed_model_roots,
        )
        self.bus = BusLink(self.name)

    def register(self, server: grpc.aio.Server) -> None:
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(self.servicer, server)

    async def start(self, context: ServiceContext) -> None:
        await self.supervisor.start()
        intake = DatasetIntake(
            self.supervisor,
            self.store,
            auto_train=self.settings.auto_train,
            base_model=self.settings.base_model,
            preset=self.settings.preset,
            overrides=self.settings.hyperparameter_overrides,
            stop=context.stopping,
        )
        spec = ConsumerSpec(
            stream=bus.stream_for(bus.DATASETS_PUBLISHED).name,
            durable=CONSUMER_NAME,
            subject=bus.DATASETS_PUBLISHED,
            ack_wait_seconds=self.settings.ack_wait_seconds,
            max_deliver=self.settings.max_deliver,
            concurrency=1,
            fetch_batch=1,
        )
        context.consume(spec, intake.handle)

    async def stop(self, grace_seconds: float) -> None:
        # The scaffold has stopped the consumer (its handler returns once `stopping` is set).
        await self.supervisor.stop(grace_seconds)
        self.store.close()

    async def _announce(self, run: RunRecord, checkpoint_dir: pathlib.Path) -> str:
        event = lineage.describe_checkpoint(
            pathlib.Path(run.run_dir),
            checkpoint_dir,
            trajectory_ids=run.trained_trajectory_ids,
            packing_efficiency=run.packing_efficiency,
        )
        await self.bus.publisher.publish(bus.CHECKPOINTS_SAVED, event, lineage.message_id(event))
        log.info(
            "checkpoint published",
            extra={"fields": {"run": run.id, "checkpoint": event.id, "step": event.step, "final": event.final}},
        )
        return event.id


def build_app(settings: TrainerSettings) -> TrainerApp:
    try:
        return TrainerApp(settings)
    except (OSError, sqlite3.Error) as exc:
        print(f"limi-trainer: cannot open the trainer database {settings.database_path}: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def main() -> None:
    run_main(build_app, TrainerSettings)
