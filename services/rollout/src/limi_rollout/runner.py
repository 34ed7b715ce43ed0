"""Starting episodes and finding them again: the part the servicer and the query intake share.

`EpisodeRunner` runs each episode in its own sandbox session: one it opens, seeded with the
query's `workspace_files`, and closes again, or one the caller owns and names (the evaluator
does, to check the workspace between rounds and continue an earlier round in it with feedback);
an attached session is used as it is and the query's workspace files are ignored, because its
owner set up the workspace. Live and recent episodes stay in a bounded registry so that people
can `Correct` and `WatchEpisode` them by id. It does not publish anything and holds no network
client of its own beyond what it is given.
"""

from __future__ import annotations

import collections
import dataclasses
import uuid
from collections.abc import Sequence
from typing import Protocol

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core.errors import NotFound
from limi_core.policy_client import PolicyClient, Sampling
from limi_rollout.episode import Episode, EpisodeLimits
from limi_rollout.tools import ToolBox


class ToolBoxFactory(Protocol):
    async def open(self, files: Sequence[query_pb2.WorkspaceFile] = ()) -> ToolBox:
        """A new sandbox session whose workspace starts with `files`."""

    async def attach(self, session_id: str) -> ToolBox:
        """The caller's existing session, workspace untouched."""


@dataclasses.dataclass(frozen=True)
class EpisodeRequest:
    query: query_pb2.Query
    system_prompt: str
    sampling: Sampling
    limits: EpisodeLimits
    episode_id: str = ""
    attempt: int = 1
    query_set_id: str = ""
    continue_from: tp.Trajectory | None = None
    feedback: str = ""
    feedback_author: str = "rubric"
    sandbox_session_id: str = ""


class EpisodeRunner:
    def __init__(self, policy: PolicyClient, toolboxes: ToolBoxFactory, *, keep_recent: int = 512) -> None:
        self.policy, self.toolboxes = policy, toolboxes
        self._episodes: collections.OrderedDict[str, Episode] = collections.OrderedDict()
        self._keep_recent = keep_recent

    def get(self, episode_id: str) -> Episode:
        episode = self._episodes.get(episode_id)
        if episode is None:
            raise NotFound(
                f"episode {episode_id!r} is not running here and not among the {self._keep_recent} most recent"
            )
        return episode

    def episodes(self) -> list[Episode]:
        return list(self._episodes.values())

    async def run(self, request: EpisodeRequest, policy: PolicyClient | None = None) -> Episode:
        """Run one episode (or one more round of a continued one) to its end."""
        episode_id = request.episode_id or f"ep-{uuid.uuid4().hex[:16]}"
        continuing = request.continue_from is not None
        session_id = request.sandbox_session_id or (request.continue_from.sandbox.session_id if continuing else "")
        if session_id:
            toolbox = await self.toolboxes.attach(session_id)
        else:
            toolbox = await self.toolboxes.open(request.query.workspace_files)
        try:
            episode = Episode(
                episode_id,
                request.query,
                system_prompt=request.system_prompt,
                policy=policy or self.policy,
                toolbox=toolbox,
                sampling=request.sampling,
                limits=request.limits,
                attempt=request.attempt,
                query_set_id=request.query_set_id,
                history=request.continue_from,
            )
            if continuing:
                episode.add_feedback(request.feedback, request.feedback_author)
            self._remember(episode)
            await episode.run()
            return episode
        finally:
            if not session_id:
                await toolbox.close()

    def _remember(self, episode: Episode) -> None:
        self._episodes[episode.episode_id] = episode
        self._episodes.move_to_end(episode.episode_id)
        while len(self._episodes) > self._keep_recent:
            oldest_id, oldest = next(iter(self._episodes.items()))
            if not oldest.finished:
                break
            del self._episodes[oldest_id]
