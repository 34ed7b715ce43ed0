"""Rounds of episodes through the rollout service: the gRPC side of harness.EpisodeDriver.

`RolloutDriver.run_round` calls `RunEpisode` with the evaluator's sandbox session, pointing the
episode at the policy under evaluation (`endpoint`, `model`) with the evaluation's sampling and
limits. Round 1 sends the query; later rounds send `continue_from` (the previous round's
trajectory) and the rubric feedback, so the rollout continues the same conversation in the same
workspace. A call is retried with limi_core.retry (the same request id, which the rollout
answers once). An unreachable rollout service is `DependencyUnavailable("rollout")`; a request
it rejects is `InvalidArgument` with its reason.
"""

from __future__ import annotations

import dataclasses

import grpc

from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core.errors import DependencyUnavailable, FailedPrecondition, InvalidArgument
from limi_core.retry import RetryPolicy, TryAgain, client_channel, grpc_verdict, retrying


@dataclasses.dataclass(frozen=True)
class EpisodeSettings:
    endpoint: str
    model: str
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 1024
    max_turns: int = 30
    max_wall_seconds: float = 900.0
    seed: int = 0


class RolloutDriver:
    def __init__(self, address: str, settings: EpisodeSettings, *, attempts: int = 4) -> None:
        self.address, self.settings = address, settings
        self.retry = RetryPolicy(attempts=attempts, first_backoff_seconds=0.5, max_backoff_seconds=8.0)
        self._channel = client_channel(address)
        self._stub = rollout_pb2_grpc.RolloutServiceStub(self._channel)

    def _request(
        self, query, session_id, system_prompt, previous, feedback, request_id
    ) -> rollout_pb2.RunEpisodeRequest:
        s = self.settings
        request = rollout_pb2.RunEpisodeRequest(
            system_prompt=system_prompt,
            endpoint=s.endpoint,
            model=s.model,
            sandbox_session_id=session_id,
            request_id=request_id,
            sampling=tp.SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed),
            limits=rollout_pb2.EpisodeLimits(max_turns=s.max_turns, max_wall_seconds=int(s.max_wall_seconds)),
        )
        if previous is None:
            request.query.CopyFrom(query)
        else:
            request.continue_from.CopyFrom(previous)
            request.feedback, request.feedback_author = feedback, "rubric"
        return request

    async def run_round(
        self,
        *,
        query: query_pb2.Query,
        session_id: str,
        system_prompt: str,
        previous: tp.Trajectory | None,
        feedback: str,
        request_id: str,
    ) -> tp.Trajectory:
        request = self._request(query, session_id, system_prompt, previous, feedback, request_id)
        what = f"rollout RunEpisode at {self.address}"

        async def once(_attempt: int) -> tp.Trajectory:
            try:
                return await self._stub.RunEpisode(request, timeout=self.settings.max_wall_seconds + 120)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                message = f"{what} failed: {code.name}: {exc.details()}"
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    field, _, reason = (exc.details() or "").partition(": ")
                    raise InvalidArgument(field or "episode", reason or message) from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise DependencyUnavailable("rollout", message) from None
                raise grpc_verdict(exc, what) or FailedPrecondition(message) from None

        return await retrying(once, self.retry, what=what, give_up=_unavailable)

    async def close(self) -> None:
        await self._channel.close()


def _unavailable(last: TryAgain, attempts: int) -> DependencyUnavailable:
    return DependencyUnavailable("rollout", f"{last.problem} (after {attempts} attempts)")
