"""The demo's collect stage: wait until every emitted query has its trajectory, correcting some on the way.

`Reviewer` plays the person who watches live episodes: it sends one correction (`Correct`) to
the live episode of every n-th query of the curated pool, and lets the scripted teacher go on
(it holds its first reply to those queries until then, so the correction always lands).
`wait_for_trajectories` polls the curator's query statuses (a query is done once its trajectory
is stored, COMPLETED or FAILED), reviews, and restarts whatever died, until every query of the
given sets is done. It sends nothing else to the services.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from limi.curator.v1 import curator_pb2
from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2
from limi_cli.demo_services import DemoError, StackClient
from limi_cli.demo_teacher import CORRECTION, Teacher

DONE_STATUSES = {query_pb2.QUERY_STATUS_COMPLETED, query_pb2.QUERY_STATUS_FAILED}


class Reviewer:
    """Sends one correction to the live episode of every n-th query, and lets the teacher go on."""

    def __init__(self, client: StackClient, texts: dict[str, str], every: int, teacher: Teacher | None) -> None:
        self.client, self.teacher, self.texts = client, teacher, texts
        ordered = list(texts)
        self.targets = {query_id for i, query_id in enumerate(ordered) if every and i % every == every - 1}
        self.corrected: set[str] = set()
        if teacher is not None:
            for query_id in self.targets:
                teacher.hold(texts[query_id])

    def review(self) -> None:
        if not self.targets:
            return
        episodes = self.client.call("rollout", "ListEpisodes", rollout_pb2.ListEpisodesRequest(), timeout=10)
        for episode in episodes.episodes:
            if episode.running and episode.query_id in self.targets and episode.episode_id not in self.corrected:
                try:
                    self.client.call(
                        "rollout",
                        "Correct",
                        rollout_pb2.CorrectRequest(
                            episode_id=episode.episode_id, text=CORRECTION, author="demo-reviewer"
                        ),
                        timeout=10,
                    )
                    self.corrected.add(episode.episode_id)
                except grpc.RpcError:
                    pass  # it finished in between: nothing to correct
                if self.teacher is not None:
                    self.teacher.release(self.texts[episode.query_id])


def wait_for_trajectories(
    client: StackClient,
    query_sets: list[query_pb2.QuerySet],
    reviewer: Reviewer,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    deadline = time.monotonic() + timeout
    last_said, last_count = 0.0, -1
    total = sum(len(s.query_ids) for s in query_sets)
    while True:
        done = failed = 0
        for query_set in query_sets:
            listing = client.call(
                "curator", "ListQueries", curator_pb2.ListQueriesRequest(query_set_id=query_set.id, page_size=1000)
            )
            statuses = [listing.status_by_id.get(q) for q in query_set.query_ids]
            done += sum(1 for s in statuses if s in DONE_STATUSES)
            failed += sum(1 for s in statuses if s == query_pb2.QUERY_STATUS_FAILED)
        if done != last_count and (time.monotonic() - last_said > 5 or done == total):
            say(f"trajectories stored: {done}/{total} ({failed} failed); corrections sent: {len(reviewer.corrected)}")
            last_said, last_count = time.monotonic(), done
        if done == total:
            return
        if time.monotonic() > deadline:
            raise DemoError(
                f"only {done} of {total} queries have a trajectory after {timeout:g} s (logs in {client.stack.logs})"
            )
        reviewer.review()
        client.heal()
        time.sleep(0.3)
