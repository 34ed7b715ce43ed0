"""Evaluating every saved checkpoint: the handler of `limi.checkpoint.v1.Checkpoint` events.

For each configured benchmark the handler prepares an evaluation with the deterministic id
`evaluation:<checkpoint id>:<benchmark>`; those not finished yet run with one policy brought up
for the checkpoint (a vLLM child process on its directory, by default); then every result is
published on `limi.evaluations.finished` under its id, so a redelivered event republishes the
same message (stored once) and re-runs nothing. A crash mid-evaluation leaves the finished
tasks in the store and the event unacked: the redelivery resumes. A checkpoint that can never
be evaluated (no id, missing directory, a broken suite in the configuration) is dead-lettered
at once with the reason; an unreachable policy, sandbox or rollout service raises
`DependencyUnavailable`, and the consumer holds the event, uncharged, until it answers.
"""

from __future__ import annotations

import logging

from limi.checkpoint.v1 import checkpoint_pb2
from limi_core import bus
from limi_core.consumer import Delivery, PoisonMessage
from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_core.events import EventPublisher
from limi_evaluator.evaluation import EvaluationSpec, Evaluator
from limi_evaluator.policy import CheckpointUnusable, PolicyProvider

log = logging.getLogger(__name__)
SIZE_KEYS = ("dataset_size", "train_samples", "num_samples", "samples")


def dataset_size(checkpoint: checkpoint_pb2.Checkpoint) -> int | None:
    """Training samples behind a checkpoint: its trajectory ids, else a size in its hyperparameters or metrics."""
    if checkpoint.trajectory_ids:
        return len(checkpoint.trajectory_ids)
    for key in SIZE_KEYS:
        if key in checkpoint.hyperparameters:
            try:
                return int(float(checkpoint.hyperparameters[key]))
            except ValueError:
                continue
        if key in checkpoint.metrics:
            return int(checkpoint.metrics[key])
    return None


class CheckpointEvaluations:
    def __init__(
        self,
        evaluator: Evaluator,
        policies: PolicyProvider,
        publisher: EventPublisher,
        benchmarks: tuple[str, ...],
        *,
        final_only: bool = False,
        task_limit: int = 0,
    ) -> None:
        self.evaluator, self.policies, self.publisher = evaluator, policies, publisher
        self.benchmarks, self.final_only, self.task_limit = benchmarks, final_only, task_limit

    async def handle(self, delivery: Delivery) -> None:
        checkpoint = delivery.decode(checkpoint_pb2.Checkpoint)
        if not checkpoint.id:
            raise PoisonMessage("the checkpoint has no id")
        if self.final_only and not checkpoint.final:
            log.info("skipping a checkpoint that is not final", extra={"fields": {"checkpoint": checkpoint.id}})
            return
        try:
            prepared = [
                self.evaluator.prepare(
                    EvaluationSpec(
                        checkpoint.id,
                        name,
                        dataset_size=dataset_size(checkpoint),
                        step=checkpoint.step,
                        limit=self.task_limit,
                    )
                )
                for name in self.benchmarks
            ]
        except (InvalidArgument, FailedPrecondition) as exc:
            raise PoisonMessage(f"cannot evaluate checkpoint {checkpoint.id}: {exc}") from exc
        store = self.evaluator.store
        results = {p.evaluation_id: store.get(p.evaluation_id) for p in prepared}
        pending = [p for p in prepared if results[p.evaluation_id] is None]
        if pending:
            log.info(
                "evaluating checkpoint",
                extra={
                    "fields": {
                        "checkpoint": checkpoint.id,
                        "benchmarks": [p.benchmark for p in pending],
                        "delivery": delivery.deliveries,
                    }
                },
            )
            try:
                async with self.policies.serve(checkpoint.storage_uri) as policy:
                    for p in pending:
                        results[p.evaluation_id] = await self.evaluator.run(p, policy)
            except (InvalidArgument, CheckpointUnusable) as exc:
                raise PoisonMessage(f"cannot evaluate checkpoint {checkpoint.id}: {exc}") from exc
        for p in prepared:
            result = results[p.evaluation_id]
            await self.publisher.publish(bus.EVALUATIONS_FINISHED, result, result.id)
            log.info(
                "evaluation published",
                extra={
                    "fields": {
                        "evaluation": result.id,
                        **{k: round(v, 2) for k, v in result.aggregate.items() if k in ("Avg", "S_avg", "pass@1")},
                    }
                },
            )
