"""Emitting a published query set to the rollout subject, once per (set, query).

Each query becomes one `limi.query.v1.QueryTask` on `bus.QUERY_TASKS` under the message id
`query:<set id>:<query id>`, carrying the policy model the rollout should ask for (empty: its own). A query recorded as emitted is skipped; one published but not yet
recorded (a crash between the two) is published again under the same id, which the broker's
duplicate window stores once. The publish function is passed in, so this module needs no NATS.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from limi.query.v1 import query_pb2
from limi_core import bus
from limi_core.errors import InvalidArgument
from limi_core.events import event_id
from limi_curator.query_pool import QueryPool

Publish = Callable[[str, Message, str], Awaitable[object]]
MAX_EPISODES = 1000


@dataclasses.dataclass(frozen=True)
class EmitResult:
    emitted: int
    already_emitted: int


def query_task_msg_id(query_set_id: str, query_id: str) -> str:
    return event_id("query", query_set_id, query_id)


async def emit_query_set(
    pool: QueryPool, publish: Publish, query_set_id: str, episodes: int, policy_model: str = ""
) -> EmitResult:
    if not query_set_id:
        raise InvalidArgument("query_set_id", "is required")
    if episodes < 0 or episodes > MAX_EPISODES:
        raise InvalidArgument("episodes_per_query", f"must be between 1 and {MAX_EPISODES} (0 means 1), got {episodes}")
    episodes = episodes or 1
    plan = await asyncio.to_thread(pool.emission_plan, query_set_id)
    emitted = already = 0
    for query, was_emitted in plan:
        if was_emitted:
            already += 1
            continue
        msg_id = query_task_msg_id(query_set_id, query.id)
        task = query_pb2.QueryTask(query=query, query_set_id=query_set_id, episodes=episodes, policy_model=policy_model)
        await publish(bus.QUERY_TASKS, task, msg_id)
        await asyncio.to_thread(pool.mark_emitted, query_set_id, query.id, episodes, msg_id)
        emitted += 1
    return EmitResult(emitted, already)
