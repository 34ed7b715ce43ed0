"""The scaffold every limi service runs on: gRPC, health, reflection, metrics, NATS, consumers, signals.

A service supplies a `ServiceApp` (its servicers, what it starts, what it stops) and calls
`run_main(app_factory, SettingsClass)`. The scaffold does the rest, the same way for all five:

Start-up, in order: metrics; the gRPC server with health and reflection (liveness SERVING,
readiness NOT_SERVING); NATS connected and the streams ensured, unless the app has no `bus`
(the sandbox: it neither publishes nor consumes, so it never needs NATS to be ready);
`app.start(context)`, which starts the app's consumers through `context.consume`; then the
app's own gRPC methods open and readiness turns SERVING. Until then a call to them gets
UNAVAILABLE "the <service> service is starting ..."; health and reflection answer throughout.

Health has two meanings, for two probes:
- liveness (health service name `liveness`): SERVING while the process serves, until shutdown.
  A NATS or dependency outage never fails it, so it never restarts a pod for someone else's outage.
- readiness (the overall "" name and the app's own service names): SERVING only while the app
  has started, NATS is connected (for apps with a bus) and every supervised consumer is running.
  A consumer that stops is restarted with backoff (supervision.py), and readiness is
  NOT_SERVING, with the reason logged and counted, until it runs again.
- `limi.dependency.<name>`: NOT_SERVING while work waits for that dependency (dependencies.py).

Shutdown on SIGTERM or SIGINT, in order: health NOT_SERVING; the app's methods refuse new calls
(UNAVAILABLE "shutting down"); consumers take no new messages and finish, within the grace
period, what they hold; the gRPC server lets the calls in flight finish within the grace period
(a sandbox command ends normally rather than with its session closed under it); then
`app.stop(grace)` releases the app's resources; NATS is drained. Start-up failures exit with one sentence on stderr and a code from exit_codes.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

import grpc
import nats.errors
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import Gauge, start_http_server

from limi_core import bus
from limi_core.config import ConfigError, load_config
from limi_core.consumer import ConsumerSpec, EventConsumer, Handler
from limi_core.dependencies import DependencyBoard, health_name
from limi_core.errors import Unavailable
from limi_core.events import EventPublisher, PayloadStore
from limi_core.exit_codes import EXIT_PORT, EXIT_UNREACHABLE, EXIT_USAGE
from limi_core.grpc_edge import EdgeInterceptor
from limi_core.logs import configure_logging
from limi_core.settings import ServiceSettings, split_host_port
from limi_core.supervision import Loop, SupervisedLoop

log = logging.getLogger(__name__)

SERVING = Gauge("limi_service_serving", "1 while the service's readiness is SERVING", ["service"])
LIVENESS = "liveness"
_STATUS = {True: health_pb2.HealthCheckResponse.SERVING, False: health_pb2.HealthCheckResponse.NOT_SERVING}


@dataclasses.dataclass(frozen=True)
class BusConnection:
    nc: Client
    js: JetStreamContext
    publisher: EventPublisher
    payloads: PayloadStore


class BusLink:
    """The NATS connection as a servicer sees it: filled in by the scaffold before the app starts."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.connection: BusConnection | None = None

    @property
    def publisher(self) -> EventPublisher:
        if self.connection is None:
            raise Unavailable(f"the {self.service} service is not connected to NATS yet")
        return self.connection.publisher


class ServiceApp(Protocol):
    """What one service plugs into the scaffold."""

    name: str
    # Fully qualified gRPC service names, for health, reflection and the start-up gate.
    service_names: tuple[str, ...]
    # Where the scaffold puts the NATS connection; None for a service that uses no NATS.
    bus: BusLink | None

    def register(self, server: grpc.aio.Server) -> None: ...

    async def start(self, context: ServiceContext) -> None: ...

    async def stop(self, grace_seconds: float) -> None: ...


class StartupError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServiceContext:
    """What `app.start` gets: the bus, the stop signal, and supervised consumers."""

    def __init__(self, runner: ServiceRunner) -> None:
        self._runner = runner
        self.stopping = runner.stopping  # set when the service stops taking work
        self.dependencies = runner.dependencies

    @property
    def connection(self) -> BusConnection:
        link = self._runner.app.bus
        if link is None or link.connection is None:
            raise RuntimeError(f"the {self._runner.app.name} app has no NATS connection (its `bus` is None)")
        return link.connection

    def consume(self, spec: ConsumerSpec, handler: Handler) -> None:
        """Run a durable consumer of `spec` with `handler`, supervised (restarted when it stops)."""
        connection = self.connection

        async def run(stop: asyncio.Event, running: Callable[[], None]) -> None:
            consumer = EventConsumer(
                connection.js,
                spec,
                handler,
                publisher=connection.publisher,
                payloads=connection.payloads,
                dependencies=self.dependencies,
            )
            await consumer.run(stop, on_running=running)

        self.supervise(f"consumer {spec.durable}", run)

    def supervise(self, name: str, loop: Loop) -> None:
        """Run `loop(stop, running)` as a supervised loop; readiness waits until it calls `running()`."""
        self._runner.add_loop(name, loop)


class _StartupGate(grpc.aio.ServerInterceptor):
    """UNAVAILABLE, with a sentence, for the app's methods until it has started and once it stops."""

    def __init__(self, service: str, gated: tuple[str, ...]) -> None:
        self._gated = set(gated)
        self.refusal: str | None = (
            f"the {service} service is starting (connecting to NATS, starting its consumers); retry shortly"
        )

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        refusal = self.refusal
        if handler is None or refusal is None or details.method.split("/")[1] not in self._gated:
            return handler

        async def refuse(request, context):
            raise Unavailable(refusal)

        kinds = {
            "unary_unary": grpc.unary_unary_rpc_method_handler,
            "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler,
            "stream_stream": grpc.stream_stream_rpc_method_handler,
        }
        kind = next(k for k in kinds if getattr(handler, k))
        return kinds[kind](refuse, handler.request_deserializer, handler.response_serializer)


class ServiceRunner:
    def __init__(self, app: ServiceApp, settings: ServiceSettings) -> None:
        self.app, self.settings = app, settings
        self.health = health.aio.HealthServicer()
        self.stop_requested = asyncio.Event()
        self.stopping = asyncio.Event()
        self.dependencies = DependencyBoard(app.name, self._dependency_changed)
        self._gate = _StartupGate(app.name, app.service_names)
        self._loops: list[SupervisedLoop] = []
        self._started = self._nats_up = False
        self._ready: bool | None = None
        self._readiness_lock = asyncio.Lock()
        self._pending: set[asyncio.Task] = set()
        self._shutting_down = False

    async def run(self) -> None:
        metrics_server = self._start_metrics()
        server = grpc.aio.server(
            # The edge outside the gate: refused calls are counted and mapped like any other.
            interceptors=[EdgeInterceptor(self.app.name), self._gate],
            options=[
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", self.settings.max_message_bytes),
                # A taken port must fail to bind, not be shared with another process.
                ("grpc.so_reuseport", 0),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.app.register(server)
        names = (
            *self.app.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        await self.health.set(LIVENESS, _STATUS[True])
        await self._refresh_readiness()
        port = self._bind(server)
        await server.start()
        log.info(
            "listening",
            extra={
                "fields": {
                    "grpc": f"{split_host_port(self.settings.grpc_address)[0]}:{port}",
                    "metrics": metrics_server.server_port,
                }
            },
        )
        self._install_signal_handlers()
        connection = None
        try:
            if self.app.bus is not None:
                connection = await self._connect_bus()
                if connection is None:  # stopped while connecting
                    return
                self.app.bus.connection = connection
                self._nats_up = True
            await self.app.start(ServiceContext(self))
            for loop in self._loops:
                loop.start()
            self._started = True
            self._gate.refusal = None
            await self._refresh_readiness()
            log.info(
                "started",
                extra={"fields": {"nats": self.app.bus is not None, "loops": [loop.name for loop in self._loops]}},
            )
            await self.stop_requested.wait()
        finally:
            await self._shutdown(server, connection, metrics_server)

    def add_loop(self, name: str, loop: Loop) -> None:
        supervised = SupervisedLoop(self.app.name, name, loop, self.stopping, self._loops_changed)
        self._loops.append(supervised)
        if self._started:
            supervised.start()

    # -- health ---------------------------------------------------------------------------

    def _loops_changed(self) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh_readiness())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _why_not_ready(self) -> str:
        if self._shutting_down:
            return "shutting down"
        if not self._started:
            return "starting"
        if self.app.bus is not None and not self._nats_up:
            return "NATS disconnected"
        stopped = [loop for loop in self._loops if not loop.running]
        if stopped:
            return "; ".join(f"{loop.name} is not running ({loop.last_error or 'starting'})" for loop in stopped)
        return ""

    async def _refresh_readiness(self) -> None:
        async with self._readiness_lock:
            if self._shutting_down:
                return
            reason = self._why_not_ready()
            ready = not reason
            if ready == self._ready:
                return
            self._ready = ready
            for name in ("", *self.app.service_names):
                await self.health.set(name, _STATUS[ready])
            SERVING.labels(self.app.name).set(1 if ready else 0)
            if ready:
                log.info("serving")
            elif self._started:
                log.warning("not serving", extra={"fields": {"reason": reason}})

    async def _nats_changed(self, up: bool) -> None:
        self._nats_up = up
        await self._refresh_readiness()

    async def _dependency_changed(self, dependency: str, up: bool) -> None:
        if not self._shutting_down:
            await self.health.set(health_name(dependency), _STATUS[up])

    # -- start-up -------------------------------------------------------------------------

    def _start_metrics(self):
        host, port = split_host_port(self.settings.metrics_address)
        try:
            server, _thread = start_http_server(port, addr=host)
        except OSError as exc:
            raise StartupError(
                f"cannot serve metrics on {self.settings.metrics_address}: {exc.strerror or exc}", EXIT_PORT
            ) from exc
        return server

    def _bind(self, server: grpc.aio.Server) -> int:
        try:
            port = server.add_insecure_port(self.settings.grpc_address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(
                f"cannot listen for gRPC on {self.settings.grpc_address}: the port is taken or the address is invalid",
                EXIT_PORT,
            )
        return port

    async def _connect_bus(self) -> BusConnection | None:
        connecting = asyncio.create_task(
            bus.connect(
                self.settings.nats_url,
                f"limi-{self.app.name}",
                connect_timeout=self.settings.nats_connect_timeout_seconds,
                on_disconnect=lambda: self._nats_changed(False),
                on_reconnect=lambda: self._nats_changed(True),
            )
        )
        stopping = asyncio.create_task(self.stop_requested.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            return None
        try:
            nc = connecting.result()
        except nats.errors.NoServersError:
            raise StartupError(
                f"cannot reach NATS at {self.settings.nats_url} within {self.settings.nats_connect_timeout_seconds:g} s",
                EXIT_UNREACHABLE,
            ) from None
        js = nc.jetstream()
        await bus.ensure_streams(js, replicas=self.settings.nats_stream_replicas)
        payloads = PayloadStore(js)
        return BusConnection(nc, js, EventPublisher.for_connection(nc, js, payloads=payloads), payloads)

    # -- shutdown -------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._request_stop, signum)

    def _request_stop(self, signum: int) -> None:
        log.info("stop requested", extra={"fields": {"signal": signal.Signals(signum).name}})
        self.stop_requested.set()

    async def _shutdown(self, server: grpc.aio.Server, connection: BusConnection | None, metrics_server) -> None:
        grace = self.settings.shutdown_grace_seconds
        await self.health.enter_graceful_shutdown()
        self._shutting_down = True
        SERVING.labels(self.app.name).set(0)
        self._gate.refusal = (
            f"the {self.app.name} service is shutting down; retry on another instance or after its restart"
        )
        self.stopping.set()
        await asyncio.gather(*(loop.stop(grace) for loop in self._loops))
        await server.stop(grace)
        await self.app.stop(grace)
        if connection is not None and not connection.nc.is_closed:
            try:
                await connection.nc.drain()
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("NATS drain failed: %s", exc)
                await connection.nc.close()
        metrics_server.shutdown()
        log.info("stopped")


S = TypeVar("S", bound=ServiceSettings)


def run_main(app_factory: Callable[[S], ServiceApp], settings_class: type[S]) -> None:
    """Entry point of a service process: config, logging, run, and exit codes."""
    try:
        settings = load_config(settings_class, settings_class.PREFIX)
    except ConfigError as exc:
        print(f"limi: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    service = settings_class.PREFIX.removeprefix("LIMI_").rstrip("_").lower()
    configure_logging(service, settings.log_level, settings.log_format)

    async def serve() -> None:
        # Built inside the event loop: apps may create asyncio-bound clients (grpc.aio channels).
        await ServiceRunner(app_factory(settings), settings).run()

    try:
        asyncio.run(serve())
    except StartupError as exc:
        print(f"limi-{service}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
