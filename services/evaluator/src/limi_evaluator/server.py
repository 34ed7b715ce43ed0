"""Wiring of the evaluator service: servicer, store, sandbox and policy clients, checkpoint consumer.

On start (the scaffold has connected NATS) a supervised durable consumer takes `Checkpoint`
events from `limi.checkpoints.saved`, one at a time (an evaluation holds a policy server and
sandbox sessions), with heartbeats while it works. An evaluation that finds the policy, the
sandbox or the rollout service down is held, uncharged, until they answer (limi_core.consumer).
On stop it takes no new checkpoint and waits for the evaluation in flight up to the grace period;
one cut off there is not acked and resumes, from its finished tasks, on the redelivery.
"""

from __future__ import annotations

import grpc

from limi.evaluator.v1 import evaluator_pb2, evaluator_pb2_grpc
from limi_core import bus
from limi_core.consumer import ConsumerSpec
from limi_core.service import BusLink, ServiceContext, run_main
from limi_evaluator import metrics
from limi_evaluator.catalog import Catalog
from limi_evaluator.checkpoints import CheckpointEvaluations
from limi_evaluator.evaluation import Evaluator
from limi_evaluator.policy import PolicyProvider
from limi_evaluator.sandbox_client import SandboxWorkspaces
from limi_evaluator.servicer import EvaluatorServicer
from limi_evaluator.settings import EvaluatorSettings
from limi_evaluator.store import EvaluationStore


class EvaluatorApp:
    name = "evaluator"
    service_names = (evaluator_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name,)

    def __init__(self, settings: EvaluatorSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = EvaluationStore(settings.data_dir / "evaluations.sqlite")
        for row in self.store.leaderboard():  # the scores survive a restart of the service
            for name, value in row.aggregate.items():
                metrics.SCORE.labels(row.checkpoint_id, row.benchmark, name).set(value)
        self.workspaces = SandboxWorkspaces(settings.sandbox_address, settings.sandbox_backend)
        self.evaluator = Evaluator(
            settings, self.store, Catalog(settings.benchmarks_dir, settings.suites_dir), self.workspaces
        )
        self.policies = PolicyProvider(settings)
        self.bus = BusLink(self.name)
        self.servicer = EvaluatorServicer(settings, self.evaluator, self.policies, lambda: self.bus.publisher)

    def register(self, server: grpc.aio.Server) -> None:
        evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server(self.servicer, server)

    async def start(self, context: ServiceContext) -> None:
        if not self.settings.consume_checkpoints:
            return
        handler = CheckpointEvaluations(
            self.evaluator,
            self.policies,
            self.bus.publisher,
            self.settings.benchmarks,
            final_only=self.settings.final_checkpoints_only,
            task_limit=self.settings.checkpoint_task_limit,
        )
        spec = ConsumerSpec(
            bus.stream_for(bus.CHECKPOINTS_SAVED).name,
            "evaluator",
            bus.CHECKPOINTS_SAVED,
            ack_wait_seconds=self.settings.ack_wait_seconds,
            max_deliver=self.settings.max_deliver,
            backoff_seconds=self.settings.redelivery_backoff_seconds,
            concurrency=1,
            fetch_batch=1,
        )
        context.consume(spec, handler.handle)

    async def stop(self, grace_seconds: float) -> None:
        await self.workspaces.close()
        self.store.close()


def main() -> None:
    run_main(EvaluatorApp, EvaluatorSettings)
