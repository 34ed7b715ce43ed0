"""Query intake: each `QueryTask` from the curator becomes episodes whose trajectories are published once.

For each wanted episode of a query the trajectory's message id is deterministic
(`trajectory:<query set>:<query>:<n>`), so a redelivered query that already published stores no
second copy, and a local ledger skips episodes already published before a crash. A rollout
killed mid-episode publishes nothing for it: the broker redelivers the query (heartbeats stop)
and the episode runs again as the next attempt; after `max_attempts` deliveries the query's
missing episodes are published as FAILED trajectories (kind TASK_FAILED), never as COMPLETED.
An episode that ended because the policy or the sandbox was down (its `Outcome.kind` says so)
is not the query's failure: the handler raises `DependencyUnavailable`, the consumer holds the
query without charging it an attempt, and the episode runs again from the start once the
dependency answers. Workspace files the sandbox refuses fail the query at once (TASK_FAILED).
A QueryTask's `policy_model` picks the model asked of the policy endpoint (the rollout's own when
empty). Only whole, finished trajectories are published.
"""

from __future__ import annotations

import logging

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import bus
from limi_core.consumer import Delivery, PoisonMessage
from limi_core.errors import DependencyUnavailable, InvalidArgument
from limi_core.events import EventPublisher, event_id
from limi_core.idempotency import IdempotentSink
from limi_core.policy_client import Sampling
from limi_rollout import metrics
from limi_rollout.episode import EpisodeLimits, _now
from limi_rollout.runner import EpisodeRequest, EpisodeRunner

log = logging.getLogger(__name__)


def trajectory_msg_id(task: query_pb2.QueryTask, index: int) -> str:
    return event_id("trajectory", task.query_set_id or "-", task.query.id, index)


def episode_id_for(task: query_pb2.QueryTask, index: int, attempt: int) -> str:
    return f"{task.query.id}.{index}.a{attempt}"


class QueryIntake:
    def __init__(
        self,
        runner: EpisodeRunner,
        publisher: EventPublisher,
        ledger: IdempotentSink,
        *,
        system_prompt: str,
        sampling: Sampling,
        limits: EpisodeLimits,
        max_attempts: int,
    ) -> None:
        self.runner, self.publisher, self.ledger = runner, publisher, ledger
        self.system_prompt, self.sampling, self.limits = system_prompt, sampling, limits
        self.max_attempts = max_attempts
        self._policies: dict = {}

    async def handle(self, delivery: Delivery) -> None:
        task = delivery.decode(query_pb2.QueryTask)
        if not task.query.id or not task.query.text.strip():
            raise PoisonMessage("a QueryTask needs query.id and query.text")
        attempt = delivery.deliveries
        for index in range(max(1, task.episodes)):
            msg_id = trajectory_msg_id(task, index)
            if self.ledger.applied(msg_id):
                continue
            if attempt > self.max_attempts:
                trajectory = self._failed(
                    task,
                    index,
                    attempt,
                    f"no finished episode after {self.max_attempts} attempts "
                    "(the rollout crashed or stopped during each)",
                )
            else:
                trajectory = await self._run_episode(task, index, attempt)
            await self.publisher.publish(bus.TRAJECTORIES_RECORDED, trajectory, msg_id)
            self.ledger.apply_once(msg_id, lambda _db: None)
            metrics.TRAJECTORIES_PUBLISHED.labels(
                tp.OutcomeStatus.Name(trajectory.outcome.status).removeprefix("OUTCOME_STATUS_").lower()
            ).inc()

    async def _run_episode(self, task: query_pb2.QueryTask, index: int, attempt: int) -> tp.Trajectory:
        """The finished episode's trajectory.

        Raises:
            DependencyUnavailable: the policy or the sandbox was down; the episode must run again.
        """
        request = EpisodeRequest(
            query=task.query,
            system_prompt=self.system_prompt,
            sampling=self.sampling,
            limits=self.limits,
            episode_id=episode_id_for(task, index, attempt),
            attempt=attempt,
            query_set_id=task.query_set_id,
        )
        try:
            episode = await self.runner.run(request, self._policy_for(task.policy_model))
        except InvalidArgument as exc:
            return self._failed(task, index, attempt, f"the query cannot run: {exc}")
        if episode.unavailable_dependency:
            raise DependencyUnavailable(
                episode.unavailable_dependency, f"query {task.query.id}: {episode.trajectory.outcome.reason}"
            )
        return episode.trajectory

    def _policy_for(self, model: str):
        """The rollout's policy client, or one per other model a QueryTask asks for (kept for later tasks)."""
        if not model or model == self.runner.policy.model:
            return None
        if model not in self._policies:
            self._policies[model] = self.runner.policy.for_model(model)
        return self._policies[model]

    def _failed(self, task: query_pb2.QueryTask, index: int, attempt: int, reason: str) -> tp.Trajectory:
        trajectory = tp.Trajectory(id=episode_id_for(task, index, attempt))
        trajectory.lineage.query_id, trajectory.lineage.attempt, trajectory.lineage.query_set_id = (
            task.query.id,
            attempt,
            task.query_set_id,
        )
        trajectory.lineage.episode_id = trajectory.id
        trajectory.outcome.status, trajectory.outcome.kind, trajectory.outcome.reason = (
            tp.OUTCOME_STATUS_FAILED,
            tp.OUTCOME_KIND_TASK_FAILED,
            reason,
        )
        trajectory.steps.add(index=0, role=tp.ROLE_USER, content=task.query.text, started_at=_now())
        trajectory.started_at.CopyFrom(_now())
        trajectory.finished_at.CopyFrom(trajectory.started_at)
        return trajectory
