"""Publishing protobuf events exactly once, and carrying payloads too large for one NATS message.

`EventPublisher.publish` sets a deterministic `Nats-Msg-Id` chosen by the caller (see
`event_id`) and retries with the same id on timeouts and lost connections, so JetStream's
duplicate window stores one copy however many times the publish is retried; a duplicate ack
counts as success. A payload above the inline limit goes to the `limi-payloads` object store
under a name derived from the message id, and the stream message carries only a pointer
header; consumers fetch it transparently (consumer.py). It does not consume, and it does not
retry errors that retrying cannot fix (a full stream, a subject with no stream).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging

import nats.errors
from google.protobuf.message import Message
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError, ServiceUnavailableError

from limi_core import bus
from limi_core.errors import Unavailable
from limi_core.retry import RetryPolicy, TryAgain, retrying

log = logging.getLogger(__name__)

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_TYPE = "Limi-Type"
HEADER_PAYLOAD_OBJECT = "Limi-Payload-Object"
HEADER_PAYLOAD_BYTES = "Limi-Payload-Bytes"
HEADER_ROOM = 4096

# JetStream error codes that no retry can fix: the stream is full (discard=new) or the message too big.
STREAM_FULL_CODES = {
    10047: "the stream is full (maximum bytes)",
    10077: "the stream is full (maximum messages)",
    10054: "the message is larger than the stream allows",
}

RETRYABLE = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    ServiceUnavailableError,
    asyncio.TimeoutError,
)


class PublishFailed(Unavailable):
    """The event could not be stored; `retryable` says whether a later try may succeed."""

    def __init__(self, subject: str, msg_id: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"publish of {msg_id} to {subject} failed: {reason}")
        self.subject, self.msg_id, self.retryable = subject, msg_id, retryable


@dataclasses.dataclass(frozen=True)
class PublishReceipt:
    stream: str
    sequence: int
    duplicate: bool
    attempts: int
    offloaded: bool


def event_id(kind: str, *parts: object) -> str:
    """A deterministic message id, e.g. event_id("trajectory", query_id, attempt)."""
    return ":".join([kind, *(str(p) for p in parts)])


def payload_object_name(msg_id: str) -> str:
    return hashlib.sha256(msg_id.encode()).hexdigest()


class PayloadStore:
    """Payloads by name in the JetStream object store (chunked by the server, any size)."""

    def __init__(self, js: JetStreamContext, bucket: str = bus.PAYLOAD_BUCKET) -> None:
        self._js, self._bucket, self._store = js, bucket, None

    async def _object_store(self):
        if self._store is None:
            self._store = await self._js.object_store(self._bucket)
        return self._store

    async def put(self, name: str, data: bytes) -> None:
        store = await self._object_store()
        await store.put(name, data)

    async def get(self, name: str) -> bytes:
        store = await self._object_store()
        result = await store.get(name)
        return result.data or b""


class EventPublisher:
    """Publishes protobuf messages to JetStream with deterministic ids and bounded retries."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        inline_limit: int,
        payloads: PayloadStore | None = None,
        attempts: int = 8,
        first_backoff: float = 0.1,
        max_backoff: float = 3.0,
        ack_timeout: float = 5.0,
    ) -> None:
        self._js = js
        self._payloads = payloads or PayloadStore(js)
        self.inline_limit = inline_limit
        self._retry = RetryPolicy(
            attempts=attempts, first_backoff_seconds=first_backoff, max_backoff_seconds=max_backoff
        )
        self._ack_timeout = ack_timeout

    @classmethod
    def for_connection(cls, nc: Client, js: JetStreamContext, **options) -> EventPublisher:
        """Inline limit from the server's max_payload and the streams' max_msg_size."""
        stream_limit = min(spec.max_msg_size for spec in bus.STREAMS)
        return cls(js, inline_limit=min(nc.max_payload, stream_limit) - HEADER_ROOM, **options)

    async def publish(self, subject: str, message: Message, msg_id: str) -> PublishReceipt:
        """Store `message` on `subject` once under `msg_id`.

        Raises:
            PublishFailed: the retry budget ran out, or the server refused the message.
        """
        if not msg_id:
            raise ValueError("msg_id must not be empty: exactly-once needs a deterministic id")
        data = message.SerializeToString()
        headers = {HEADER_MSG_ID: msg_id, HEADER_TYPE: message.DESCRIPTOR.full_name}
        offloaded = len(data) > self.inline_limit
        if offloaded:
            name = payload_object_name(msg_id)
            await self._retrying(subject, msg_id, lambda: self._payloads.put(name, data))
            headers[HEADER_PAYLOAD_OBJECT] = name
            headers[HEADER_PAYLOAD_BYTES] = str(len(data))
            data = b""
        attempts, ack = await self._retrying(
            subject, msg_id, lambda: self._js.publish(subject, data, headers=headers, timeout=self._ack_timeout)
        )
        return PublishReceipt(ack.stream, ack.seq, bool(ack.duplicate), attempts, offloaded)

    async def _retrying(self, subject: str, msg_id: str, operation):
        async def once(attempt: int):
            try:
                return attempt, await operation()
            except RETRYABLE as exc:
                if getattr(exc, "err_code", None) in STREAM_FULL_CODES:
                    raise PublishFailed(subject, msg_id, STREAM_FULL_CODES[exc.err_code], retryable=False) from exc
                raise TryAgain(type(exc).__name__) from exc
            except APIError as exc:
                raise PublishFailed(subject, msg_id, str(exc), retryable=False) from exc

        return await retrying(
            once,
            self._retry,
            what=f"publish {msg_id} to {subject}",
            give_up=lambda last, attempts: PublishFailed(
                subject, msg_id, f"{last.problem} after {attempts} attempts", retryable=True
            ),
        )
