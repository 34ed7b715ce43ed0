"""The rollout service's gRPC servicer: validation at the edge, then the runner and the registry."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib

from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import bus
from limi_core.errors import InvalidArgument
from limi_core.events import EventPublisher, event_id
from limi_rollout.episode import EpisodeLimits
from limi_rollout.policy import PolicyClient, RetryPolicy, Sampling
from limi_rollout.runner import EpisodeRequest, EpisodeRunner


@dataclasses.dataclass(frozen=True)
class Defaults:
    system_prompt: str
    sampling: Sampling
    limits: EpisodeLimits
    retry: RetryPolicy


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, runner: EpisodeRunner, defaults: Defaults, publisher_ref) -> None:
        self.runner, self.defaults = runner, defaults
        self._publisher_ref = publisher_ref  # a callable returning the EventPublisher once NATS is up
        self._by_request: collections.OrderedDict[str, asyncio.Future] = collections.OrderedDict()

    async def RunEpisode(self, request: rollout_pb2.RunEpisodeRequest, context) -> tp.Trajectory:
        episode_request = self._episode_request(request)
        if request.request_id and request.request_id in self._by_request:
            return await asyncio.shield(self._by_request[request.request_id])
        policy = PolicyClient(request.endpoint, request.model or self.runner.policy.model, retry=self.defaults.retry) if request.endpoint else None
        work = asyncio.ensure_future(self._run(episode_request, policy, request))
        if request.request_id:
            self._by_request[request.request_id] = work
            while len(self._by_request) > 1024:
                self._by_request.popitem(last=False)
        return await asyncio.shield(work)

    async def _run(self, episode_request: EpisodeRequest, policy: PolicyClient | None, request) -> tp.Trajectory:
        try:
            episode = await self.runner.run(episode_request, policy)
        finally:
            if policy is not None:
                await policy.close()
        if request.publish:
            publisher: EventPublisher = self._publisher_ref()
            await publisher.publish(bus.TRAJECTORIES_RECORDED, episode.trajectory, event_id("trajectory", "rpc", request.request_id or episode.episode_id))
        return episode.trajectory

    def _episode_request(self, request: rollout_pb2.RunEpisodeRequest) -> EpisodeRequest:
        continuing = request.HasField("continue_from")
        if not continuing and not request.query.text.strip():
            raise InvalidArgument("query.text", "must not be empty")
        if continuing and not request.feedback.strip():
            raise InvalidArgument("feedback", "is required when continue_from is set")
        if continuing and not (request.sandbox_session_id or request.continue_from.sandbox.session_id):
            raise InvalidArgument("continue_from.sandbox.session_id", "must name the sandbox session of the round being continued")
        if request.endpoint and not request.endpoint.startswith(("http://", "https://")):
            raise InvalidArgument("endpoint", f"must be an http(s) URL, got {request.endpoint!r}")
        sampling = self.defaults.sampling
        if request.HasField("sampling"):
            s = request.sampling
            if not 0 <= s.temperature <= 2:
                raise InvalidArgument("sampling.temperature", "must be between 0 and 2")
            if not 0 <= s.top_p <= 1:
                raise InvalidArgument("sampling.top_p", "must be between 0 and 1")
            sampling = Sampling(
                temperature=s.temperature, top_p=s.top_p or sampling.top_p, max_tokens=s.max_tokens or sampling.max_tokens,
                seed=s.seed or None, stop=tuple(s.stop),
            )
        limits = self.defaults.limits
        if request.HasField("limits"):
            l = request.limits
            for name in ("max_turns", "max_context_tokens", "max_wall_seconds", "max_tool_output_bytes"):
                if getattr(l, name) < 0:
                    raise InvalidArgument(f"limits.{name}", "must not be negative")
            limits = EpisodeLimits(
                max_turns=l.max_turns or limits.max_turns,
                max_context_tokens=l.max_context_tokens or limits.max_context_tokens,
                max_wall_seconds=float(l.max_wall_seconds or limits.max_wall_seconds),
                max_tool_output_bytes=l.max_tool_output_bytes or limits.max_tool_output_bytes,
            )
        query = request.query
        if continuing and not query.id:
            query.id = request.continue_from.lineage.query_id
        if not query.id:
            query.id = "adhoc-" + hashlib.sha256(query.text.encode()).hexdigest()[:12]
        return EpisodeRequest(
            query=query,
            system_prompt=request.system_prompt or self.defaults.system_prompt,
            sampling=sampling,
            limits=limits,
            episode_id=request.episode_id or (request.continue_from.lineage.episode_id if continuing else ""),
            continue_from=request.continue_from if continuing else None,
            feedback=request.feedback,
            feedback_author=request.feedback_author or "rubric",
            sandbox_session_id=request.sandbox_session_id,
        )

    async def Correct(self, request: rollout_pb2.CorrectRequest, context) -> rollout_pb2.CorrectResponse:
        if not request.episode_id:
            raise InvalidArgument("episode_id", "must not be empty")
        if not request.text.strip():
            raise InvalidArgument("text", "must not be empty")
        after = self.runner.get(request.episode_id).correct(request.text, request.author or "human")
        return rollout_pb2.CorrectResponse(after_step=after)

    async def WatchEpisode(self, request: rollout_pb2.WatchEpisodeRequest, context):
        if not request.episode_id:
            raise InvalidArgument("episode_id", "must not be empty")
        episode = self.runner.get(request.episode_id)
        async for step in episode.watch():
            yield step

    async def ListEpisodes(self, request: rollout_pb2.ListEpisodesRequest, context) -> rollout_pb2.ListEpisodesResponse:
        return rollout_pb2.ListEpisodesResponse(
            episodes=[
                rollout_pb2.EpisodeSummary(
                    episode_id=e.episode_id, query_id=e.trajectory.lineage.query_id, steps=len(e.trajectory.steps),
                    status=e.trajectory.outcome.status, reason=e.trajectory.outcome.reason, running=not e.finished,
                )
                for e in self.runner.episodes()
            ]
        )
