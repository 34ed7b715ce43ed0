"""Durable pull consumers with explicit acks, heartbeats, bounded redelivery and dead letters.

`EventConsumer.run` fetches from a durable pull consumer and hands each message to an async
handler as a `Delivery`, at most `concurrency` at a time. While the handler works, a heartbeat
calls `in_progress()` every third of `ack_wait`, so long work is not redelivered. A handler
that returns gets its message acked (confirmed with `ack_sync`); one that raises gets a `nak`
with the next backoff delay; on the last allowed delivery, or when it raises `PoisonMessage`,
the message is written to the dead-letter stream as a `DeadLetter` record and terminated.
A handler that raises `DependencyUnavailable` (the sandbox, the policy endpoint, another service
did not answer) is not charged: the consumer keeps the message (heartbeats go on), stops
fetching new ones, marks the dependency down (dependencies.py), and runs the handler again with
backoff until it goes through; then fetching resumes. A stop while waiting hands the message
back with a plain `nak`. A durable consumer deleted under a running loop (which nats-py would
otherwise wait on silently forever) is noticed within `liveness_check_seconds` and raises
`ConsumerLost`, for the scaffold's supervisor to restart it.
Handlers must be idempotent (see idempotency.py): a crash after the effect and before the ack
redelivers the message, and the server can accept a late ack after a redelivery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import FetchTimeoutError, NotFoundError

from limi.bus.v1 import bus_pb2
from limi_core import bus
from limi_core.dependencies import DependencyBoard
from limi_core.errors import DependencyUnavailable
from limi_core.events import HEADER_MSG_ID, HEADER_PAYLOAD_OBJECT, EventPublisher, PayloadStore, event_id

log = logging.getLogger(__name__)


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be processed: dead-letter it now."""


class ConsumerLost(Exception):
    """The durable consumer no longer exists on the server (deleted): the loop must start again."""


class _HandBack(Exception):
    """The service stops while the message waits for a dependency: give it back uncharged."""


@dataclasses.dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    subject: str
    ack_wait_seconds: float = 60.0
    max_deliver: int = 5
    # Delay before redelivery after the n-th failure (the last value repeats).
    backoff_seconds: tuple[float, ...] = (1.0, 5.0, 30.0)
    concurrency: int = 1
    fetch_batch: int = 32
    # Delay before running a held message's handler again while a dependency is down (last repeats).
    dependency_backoff_seconds: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    # How often an idle loop checks that its durable consumer still exists.
    liveness_check_seconds: float = 10.0

    def config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_deliver,
            filter_subject=self.subject,
            max_ack_pending=max(self.concurrency * 4, self.fetch_batch),
        )

    def delay_after(self, failures: int) -> float:
        return self.backoff_seconds[min(failures, len(self.backoff_seconds)) - 1]

    def dependency_delay(self, waits: int) -> float:
        return self.dependency_backoff_seconds[min(waits, len(self.dependency_backoff_seconds)) - 1]


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One message as a handler sees it."""

    msg_id: str
    subject: str
    data: bytes
    deliveries: int
    stream_sequence: int
    headers: dict[str, str]

    def decode(self, message_type: type[Message]) -> Message:
        message = message_type()
        message.ParseFromString(self.data)
        return message


Handler = Callable[[Delivery], Awaitable[None]]


class EventConsumer:
    """Runs one durable consumer until stopped."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        publisher: EventPublisher,
        payloads: PayloadStore | None = None,
        dependencies: DependencyBoard | None = None,
    ) -> None:
        self._js, self.spec, self._handler = js, spec, handler
        self._publisher = publisher
        self._payloads = payloads or PayloadStore(js)
        self._dependencies = dependencies or DependencyBoard(spec.durable)
        self._in_flight: set[asyncio.Task] = set()
        self._held = 0  # messages in hand waiting for a dependency
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event, on_running: Callable[[], None] | None = None) -> None:
        """Fetch and handle until `stop` is set, then wait for the messages in flight.

        `on_running` is called once the durable consumer is bound (the loop is consuming).

        Raises:
            ConsumerLost: the durable consumer was deleted on the server.
        """
        self._stop = stop
        subscription = await self._js.pull_subscribe(
            self.spec.subject, durable=self.spec.durable, stream=self.spec.stream, config=self.spec.config()
        )
        if on_running is not None:
            on_running()
        idle_since = asyncio.get_running_loop().time()
        try:
            while not stop.is_set():
                free = self.spec.concurrency - len(self._in_flight)
                if free <= 0:
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if self._held:
                    # A dependency is down: take nothing new until the held work goes through.
                    await _stopped_within(stop, 0.5)
                    continue
                try:
                    messages = await subscription.fetch(min(free, self.spec.fetch_batch), timeout=1.0)
                except (TimeoutError, FetchTimeoutError):
                    now = asyncio.get_running_loop().time()
                    if now - idle_since >= self.spec.liveness_check_seconds:
                        idle_since = now
                        await self._check_consumer_exists(subscription)
                    continue
                idle_since = asyncio.get_running_loop().time()
                for msg in messages:
                    task = asyncio.create_task(self._handle(msg))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
        except asyncio.CancelledError:
            # Cut off (the grace period ran out): hand the messages in flight back now.
            for task in self._in_flight:
                task.cancel()
            raise
        finally:
            if self._in_flight:
                await asyncio.wait(self._in_flight)
            await subscription.unsubscribe()

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        headers = dict(msg.headers or {})
        delivery = Delivery(
            msg_id=headers.get(HEADER_MSG_ID, f"{meta.stream}:{meta.sequence.stream}"),
            subject=msg.subject,
            data=msg.data,
            deliveries=meta.num_delivered,
            stream_sequence=meta.sequence.stream,
            headers=headers,
        )
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            if HEADER_PAYLOAD_OBJECT in headers:
                delivery = dataclasses.replace(delivery, data=await self._payloads.get(headers[HEADER_PAYLOAD_OBJECT]))
            await self._handle_while_dependencies_recover(delivery)
        except PoisonMessage as exc:
            await self._dead_letter(msg, delivery, f"poison: {exc}")
        except _HandBack:
            await msg.nak()
        except asyncio.CancelledError:
            await msg.nak()
            raise
        except Exception as exc:  # the handler's failure is reported to the broker, not swallowed
            log.warning(
                "handler failed",
                exc_info=True,
                extra={
                    "fields": {
                        "consumer": self.spec.durable,
                        "msg_id": delivery.msg_id,
                        "deliveries": delivery.deliveries,
                    }
                },
            )
            if delivery.deliveries >= self.spec.max_deliver:
                await self._dead_letter(msg, delivery, f"{type(exc).__name__}: {exc}")
            else:
                await msg.nak(delay=self.spec.delay_after(delivery.deliveries))
        else:
            await msg.ack_sync()
        finally:
            heartbeat.cancel()

    async def _handle_while_dependencies_recover(self, delivery: Delivery) -> None:
        """The handler, run again (same delivery, no attempt charged) while a dependency is down."""
        held_for, waits = "", 0
        try:
            while True:
                try:
                    await self._handler(delivery)
                    return
                except DependencyUnavailable as exc:
                    if not held_for:
                        self._held += 1
                    held_for, waits = exc.dependency, waits + 1
                    await self._dependencies.mark_down(exc.dependency, str(exc))
                    log.info(
                        "holding a message until its dependency answers",
                        extra={
                            "fields": {
                                "consumer": self.spec.durable,
                                "msg_id": delivery.msg_id,
                                "dependency": exc.dependency,
                                "waits": waits,
                            }
                        },
                    )
                    if await _stopped_within(self._stop, self.spec.dependency_delay(waits)):
                        raise _HandBack(exc.dependency) from exc
        finally:
            if held_for:
                self._held -= 1
                # Whatever the handler did last, the dependency answered it (or we are stopping).
                if not self._stop.is_set():
                    await self._dependencies.mark_up(held_for)

    async def _check_consumer_exists(self, subscription) -> None:
        try:
            await subscription.consumer_info()
        except NotFoundError:
            raise ConsumerLost(
                f"the durable consumer {self.spec.durable} on {self.spec.stream} no longer exists"
            ) from None
        except (TimeoutError, nats.errors.Error):
            pass  # the broker is unreachable: the connection's own reconnect handles that

    async def _heartbeat(self, msg: Msg) -> None:
        interval = max(self.spec.ack_wait_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            await msg.in_progress()

    async def _dead_letter(self, msg: Msg, delivery: Delivery, error: str) -> None:
        dead_at = timestamp_pb2.Timestamp()
        dead_at.GetCurrentTime()
        record = bus_pb2.DeadLetter(
            stream=self.spec.stream,
            consumer=self.spec.durable,
            subject=delivery.subject,
            msg_id=delivery.msg_id,
            stream_sequence=delivery.stream_sequence,
            deliveries=delivery.deliveries,
            error=error[:4000],
            payload=b"" if HEADER_PAYLOAD_OBJECT in delivery.headers else delivery.data,
            headers=delivery.headers,
            dead_at=dead_at,
        )
        dead_id = event_id("deadletter", self.spec.stream, self.spec.durable, delivery.stream_sequence)
        await self._publisher.publish(bus.DEAD_LETTERS, record, dead_id)
        log.error(
            "dead-lettered",
            extra={"fields": {"consumer": self.spec.durable, "msg_id": delivery.msg_id, "error": error}},
        )
        await msg.term()


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True if `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def read_dead_letters(js: JetStreamContext, limit: int = 100) -> list[bus_pb2.DeadLetter]:
    """The newest dead letters (for `limi dead-letters` and tests), oldest first."""
    spec = bus.stream_for(bus.DEAD_LETTERS)
    info = await js.stream_info(spec.name)
    if info.state.messages == 0:
        return []
    records = []
    first = max(info.state.first_seq, info.state.last_seq - limit + 1)
    for seq in range(first, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(spec.name, seq)
        except NotFoundError:
            continue
        record = bus_pb2.DeadLetter()
        record.ParseFromString(raw.data or b"")
        records.append(record)
    return records
