"""Wiring of the rollout service: servicer, policy client, sandbox tools and the query intake.

On start (the scaffold has connected NATS) a supervised durable consumer takes `QueryTask`s from
the curator's subject, `concurrency` at a time. A query whose episode found the policy or the
sandbox down is held, uncharged, until they answer (limi_core.consumer). On stop it takes no new
queries and lets the episodes in flight finish within the grace period; an episode cut off there
is not acked, so the broker gives its query to another rollout.
"""

from __future__ import annotations

import grpc

from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi_core import bus
from limi_core.consumer import ConsumerSpec
from limi_core.idempotency import IdempotentSink
from limi_core.policy_client import PolicyClient, Sampling
from limi_core.retry import RetryPolicy
from limi_core.service import BusLink, ServiceContext, run_main
from limi_rollout.episode import EpisodeLimits
from limi_rollout.intake import QueryIntake
from limi_rollout.runner import EpisodeRunner
from limi_rollout.sandbox_tools import SandboxToolBoxFactory
from limi_rollout.servicer import Defaults, RolloutServicer
from limi_rollout.settings import RolloutSettings


class RolloutApp:
    name = "rollout"
    service_names = (rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name,)

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.bus = BusLink(self.name)
        retry = RetryPolicy(
            attempts=settings.policy_attempts, first_backoff_seconds=settings.policy_first_backoff_seconds
        )
        self.defaults = Defaults(
            system_prompt=settings.system_prompt,
            sampling=Sampling(temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens),
            limits=EpisodeLimits(
                settings.max_turns,
                settings.max_context_tokens,
                settings.max_wall_seconds,
                settings.max_tool_output_bytes,
            ),
            retry=retry,
            policy_timeout_seconds=settings.policy_timeout_seconds,
        )
        self.policy = PolicyClient(
            settings.policy_endpoint,
            settings.policy_model,
            api_key=settings.policy_api_key,
            retry=retry,
            timeout_seconds=settings.policy_timeout_seconds,
            return_token_ids=settings.return_token_ids,
            logprobs=settings.return_logprobs,
        )
        self.toolboxes = SandboxToolBoxFactory(settings.sandbox_address, settings.sandbox_backend)
        self.runner = EpisodeRunner(self.policy, self.toolboxes)
        self.servicer = RolloutServicer(self.runner, self.defaults, self.bus)

    def register(self, server: grpc.aio.Server) -> None:
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server(self.servicer, server)

    async def start(self, context: ServiceContext) -> None:
        if not self.settings.consume_queries:
            return
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        intake = QueryIntake(
            self.runner,
            self.bus.publisher,
            IdempotentSink(self.settings.data_dir / "published.sqlite"),
            system_prompt=self.defaults.system_prompt,
            sampling=self.defaults.sampling,
            limits=self.defaults.limits,
            max_attempts=self.settings.max_attempts,
        )
        context.consume(
            ConsumerSpec(
                bus.stream_for(bus.QUERY_TASKS).name,
                "rollout",
                bus.QUERY_TASKS,
                ack_wait_seconds=self.settings.ack_wait_seconds,
                # One delivery more than the attempts: the last one records the query as FAILED.
                max_deliver=self.settings.max_attempts + 1,
                backoff_seconds=self.settings.redelivery_backoff_seconds,
                concurrency=self.settings.concurrency,
                fetch_batch=self.settings.concurrency,
            ),
            intake.handle,
        )

    async def stop(self, grace_seconds: float) -> None:
        await self.policy.close()
        await self.toolboxes.close()


def main() -> None:
    run_main(RolloutApp, RolloutSettings)
