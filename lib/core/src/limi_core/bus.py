"""The event bus on NATS JetStream: subjects, stream definitions, and connecting.

Every subject limi publishes on is a constant here, and every stream is declared once in
`STREAMS` with explicit limits and `discard=new` (a full stream rejects a publish instead of
silently dropping old data). `connect` returns a client that reconnects forever and tells the
caller about disconnects (services turn them into NOT_SERVING). Publishing and consuming live
in events.py and consumer.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

log = logging.getLogger(__name__)

# Subjects: one constant each, never a literal elsewhere.
QUERY_TASKS = "limi.queries.tasks"
TRAJECTORIES_RECORDED = "limi.trajectories.recorded"
DATASETS_PUBLISHED = "limi.datasets.published"
CHECKPOINTS_SAVED = "limi.checkpoints.saved"
EVALUATIONS_FINISHED = "limi.evaluations.finished"
DEAD_LETTERS = "limi.deadletters"

PAYLOAD_BUCKET = "limi-payloads"
GIB = 1024**3
DAY = 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    work_queue: bool = False
    max_bytes: int = 1 * GIB
    max_msgs: int = 1_000_000
    max_msg_size: int = 1024 * 1024
    # Must exceed the publishers' retry horizon (events.py retries for well under a minute).
    duplicate_window_seconds: float = 2 * 3600.0
    replicas: int = 1

    def config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=api.RetentionPolicy.WORK_QUEUE if self.work_queue else api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.NEW,
            max_bytes=self.max_bytes,
            max_msgs=self.max_msgs,
            max_msg_size=self.max_msg_size,
            duplicate_window=self.duplicate_window_seconds,
            num_replicas=self.replicas,
        )


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("LIMI_QUERIES", (QUERY_TASKS,), work_queue=True),
    StreamSpec("LIMI_TRAJECTORIES", (TRAJECTORIES_RECORDED,), max_bytes=8 * GIB),
    StreamSpec("LIMI_DATASETS", (DATASETS_PUBLISHED,)),
    StreamSpec("LIMI_CHECKPOINTS", (CHECKPOINTS_SAVED,)),
    StreamSpec("LIMI_EVALUATIONS", (EVALUATIONS_FINISHED,)),
    StreamSpec("LIMI_DEADLETTERS", (DEAD_LETTERS,)),
)
PAYLOAD_BUCKET_MAX_BYTES = 16 * GIB


def stream_for(subject: str) -> StreamSpec:
    for spec in STREAMS:
        if subject in spec.subjects:
            return spec
    raise KeyError(f"no stream declared for subject {subject!r}")


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout: float = 60.0,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect to NATS, retrying for up to `connect_timeout` seconds, then reconnecting forever.

    Raises:
        nats.errors.NoServersError: no server answered within `connect_timeout`.
    """

    async def disconnected() -> None:
        log.warning("disconnected from NATS", extra={"fields": {"url": url}})
        if on_disconnect:
            await on_disconnect()

    async def reconnected() -> None:
        log.info("reconnected to NATS", extra={"fields": {"url": url}})
        if on_reconnect:
            await on_reconnect()

    async def error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    # nats-py keeps retrying the first connection too (max_reconnect_attempts=-1): bound it.
    try:
        return await asyncio.wait_for(
            nats.connect(
                url,
                name=name,
                connect_timeout=2,
                reconnect_time_wait=0.5,
                max_reconnect_attempts=-1,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            ),
            timeout=connect_timeout,
        )
    except (TimeoutError, OSError):
        raise nats.errors.NoServersError() from None


async def ensure_streams(js: JetStreamContext, streams: tuple[StreamSpec, ...] = STREAMS, *, replicas: int = 1) -> None:
    """Create each stream (with `replicas` copies), or update it to the declared limits; create the payload bucket."""
    for spec in streams:
        config = dataclasses.replace(spec, replicas=replicas).config()
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with another config: converge it on ours (limits may change between releases).
            await js.update_stream(config)
    try:
        await js.object_store(PAYLOAD_BUCKET)
    except NotFoundError:
        await js.create_object_store(
            PAYLOAD_BUCKET,
            config=api.ObjectStoreConfig(
                description="limi event payloads larger than the server's maximum message size",
                storage=api.StorageType.FILE,
                max_bytes=PAYLOAD_BUCKET_MAX_BYTES,
                replicas=replicas,
            ),
        )
