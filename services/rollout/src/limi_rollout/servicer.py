"""The rollout service's gRPC servicer: validation at the edge, then the runner and the registry.

Every request is checked against the field tables below first (ids, numeric ranges, an http(s)
endpoint, workspace file paths that stay inside the workspace), then against the rules that tie
fields together (a continued round needs feedback and its sandbox session).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib

from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import bus
from limi_core.errors import InvalidArgument
from limi_core.events import event_id
from limi_core.policy_client import PolicyClient, Sampling
from limi_core.request_checks import (
    IDENTIFIER,
    MAX_PATH_CHARS,
    REQUIRED_IDENTIFIER,
    Between,
    Each,
    Entries,
    Known,
    Text,
    TimesInRange,
    Url,
    check_fields,
)
from limi_core.retry import RetryPolicy
from limi_core.service import BusLink
from limi_rollout.episode import EpisodeLimits
from limi_rollout.runner import EpisodeRequest, EpisodeRunner

MAX_TEXT_BYTES = 1024 * 1024


def _workspace_path(field: str, path: str) -> None:
    parts = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH_CHARS
        or path.startswith("/")
        or "\x00" in path
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise InvalidArgument(field, "must be a relative path inside the workspace, without empty, '.' or '..' parts")


def _workspace_file(field: str, file: query_pb2.WorkspaceFile) -> None:
    _workspace_path(f"{field}.path", file.path)
    if file.mode > 0o7777:
        raise InvalidArgument(f"{field}.mode", f"must be permission bits (at most 0o7777), got {file.mode:#o}")


RUN_EPISODE = {
    "query.id": IDENTIFIER,
    "query.text": Text(MAX_TEXT_BYTES),
    "query.source": Known(query_pb2.QuerySource),
    "query.category": Known(query_pb2.QueryCategory),
    "query.labels": Entries(key=IDENTIFIER, value=Text(64 * 1024)),
    "query.workspace_files": Each(_workspace_file),
    "system_prompt": Text(MAX_TEXT_BYTES),
    "endpoint": Url(),
    "model": IDENTIFIER,
    "sampling.temperature": Between(0, 2),
    "sampling.top_p": Between(0, 1),
    "sampling.max_tokens": Between(0, 10_000_000),
    "sampling.stop": Each(Text(1024), max_items=16),
    "limits.max_turns": Between(0, 10_000),
    "limits.max_context_tokens": Between(0, 100_000_000),
    "limits.max_wall_seconds": Between(0, 7 * 24 * 3600),
    "limits.max_tool_output_bytes": Between(0, 64 * 1024 * 1024),
    "sandbox_session_id": IDENTIFIER,
    "request_id": IDENTIFIER,
    "continue_from": TimesInRange(),
    "continue_from.id": IDENTIFIER,
    "continue_from.sandbox.session_id": IDENTIFIER,
    "continue_from.lineage.query_id": IDENTIFIER,
    "continue_from.lineage.episode_id": IDENTIFIER,
    "feedback": Text(MAX_TEXT_BYTES),
    "feedback_author": IDENTIFIER,
    "episode_id": IDENTIFIER,
}
CORRECT = {"episode_id": REQUIRED_IDENTIFIER, "text": Text(MAX_TEXT_BYTES, required=True), "author": IDENTIFIER}
WATCH_EPISODE = {"episode_id": REQUIRED_IDENTIFIER}


@dataclasses.dataclass(frozen=True)
class Defaults:
    system_prompt: str
    sampling: Sampling
    limits: EpisodeLimits
    retry: RetryPolicy
    policy_timeout_seconds: float = 300.0


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, runner: EpisodeRunner, defaults: Defaults, bus: BusLink) -> None:
        self.runner, self.defaults = runner, defaults
        self._bus = bus
        self._by_request: collections.OrderedDict[str, asyncio.Future] = collections.OrderedDict()

    async def RunEpisode(self, request: rollout_pb2.RunEpisodeRequest, context) -> tp.Trajectory:
        episode_request = self._episode_request(request)
        if request.request_id and request.request_id in self._by_request:
            return await asyncio.shield(self._by_request[request.request_id])
        policy = (
            PolicyClient(
                request.endpoint,
                request.model or self.runner.policy.model,
                retry=self.defaults.retry,
                timeout_seconds=self.defaults.policy_timeout_seconds,
            )
            if request.endpoint
            else None
        )
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
            await self._bus.publisher.publish(
                bus.TRAJECTORIES_RECORDED,
                episode.trajectory,
                event_id("trajectory", "rpc", request.request_id or episode.episode_id),
            )
        return episode.trajectory

    def _episode_request(self, request: rollout_pb2.RunEpisodeRequest) -> EpisodeRequest:
        check_fields(request, RUN_EPISODE)
        continuing = request.HasField("continue_from")
        if not continuing and not request.query.text.strip():
            raise InvalidArgument("query.text", "must not be empty")
        if continuing and not request.feedback.strip():
            raise InvalidArgument("feedback", "is required when continue_from is set")
        if continuing and not (request.sandbox_session_id or request.continue_from.sandbox.session_id):
            raise InvalidArgument(
                "continue_from.sandbox.session_id", "must name the sandbox session of the round being continued"
            )
        sampling = self.defaults.sampling
        if request.HasField("sampling"):
            s = request.sampling
            sampling = Sampling(
                temperature=s.temperature,
                top_p=s.top_p or sampling.top_p,
                max_tokens=s.max_tokens or sampling.max_tokens,
                seed=s.seed or None,
                stop=tuple(s.stop),
            )
        limits = self.defaults.limits
        if request.HasField("limits"):
            asked = request.limits
            limits = EpisodeLimits(
                max_turns=asked.max_turns or limits.max_turns,
                max_context_tokens=asked.max_context_tokens or limits.max_context_tokens,
                max_wall_seconds=float(asked.max_wall_seconds or limits.max_wall_seconds),
                max_tool_output_bytes=asked.max_tool_output_bytes or limits.max_tool_output_bytes,
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
        check_fields(request, CORRECT)
        after = self.runner.get(request.episode_id).correct(request.text, request.author or "human")
        return rollout_pb2.CorrectResponse(after_step=after)

    async def WatchEpisode(self, request: rollout_pb2.WatchEpisodeRequest, context):
        check_fields(request, WATCH_EPISODE)
        episode = self.runner.get(request.episode_id)
        async for step in episode.watch():
            yield step

    async def ListEpisodes(self, request: rollout_pb2.ListEpisodesRequest, context) -> rollout_pb2.ListEpisodesResponse:
        return rollout_pb2.ListEpisodesResponse(
            episodes=[
                rollout_pb2.EpisodeSummary(
                    episode_id=e.episode_id,
                    query_id=e.trajectory.lineage.query_id,
                    steps=len(e.trajectory.steps),
                    status=e.trajectory.outcome.status,
                    reason=e.trajectory.outcome.reason,
                    running=not e.finished,
                )
                for e in self.runner.episodes()
            ]
        )
