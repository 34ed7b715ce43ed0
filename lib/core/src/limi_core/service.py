"""The scaffold every limi service runs on: gRPC, health, reflection, metrics, NATS, signals.

A service supplies a `ServiceApp` (its servicers, plus what it starts once NATS is connected)
and calls `run_main(app_factory, SettingsClass)` from its entry point. The order is fixed:
metrics and the gRPC server start with every health status NOT_SERVING; NATS is connected and
the streams ensured; the app starts its consumers; health turns SERVING. A NATS disconnect
turns health NOT_SERVING until the reconnect. On SIGTERM or SIGINT: health NOT_SERVING, the app
stops taking work and finishes what is in flight, the gRPC server stops with a grace period,
NATS is drained. Start-up failures exit with one sentence on stderr and a non-zero code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
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
from limi_core.events import EventPublisher, PayloadStore
from limi_core.grpc_edge import EdgeInterceptor
from limi_core.logs import configure_logging
from limi_core.settings import ServiceSettings, split_host_port

log = logging.getLogger(__name__)

SERVING = Gauge("limi_service_serving", "1 while the service's health is SERVING", ["service"])
EXIT_CONFIG, EXIT_PORT, EXIT_NATS = 2, 3, 4


@dataclasses.dataclass(frozen=True)
class BusConnection:
    nc: Client
    js: JetStreamContext
    publisher: EventPublisher
    payloads: PayloadStore


class ServiceApp(Protocol):
    """What one service plugs into the scaffold."""

    name: str
    # Fully qualified gRPC service names, for health and reflection.
    service_names: tuple[str, ...]

    def register(self, server: grpc.aio.Server) -> None: ...

    async def start(self, connection: BusConnection) -> None: ...

    async def stop(self, grace_seconds: float) -> None: ...


class StartupError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServiceRunner:
    def __init__(self, app: ServiceApp, settings: ServiceSettings) -> None:
        self.app, self.settings = app, settings
        self.health = health.aio.HealthServicer()
        self.stop_requested = asyncio.Event()
        self._serving = False
        self._shutting_down = False

    async def run(self) -> None:
        metrics_server = self._start_metrics()
        server = grpc.aio.server(
            interceptors=[EdgeInterceptor(self.app.name)],
            options=[
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", self.settings.max_message_bytes),
                # A taken port must fail to bind, not be shared with another process.
                ("grpc.so_reuseport", 0),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.app.register(server)
        names = (*self.app.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        await self._set_health(False)
        port = self._bind(server)
        await server.start()
        log.info("listening", extra={"fields": {"grpc": f"{split_host_port(self.settings.grpc_address)[0]}:{port}", "metrics": metrics_server.server_port}})
        self._install_signal_handlers()
        connection = None
        try:
            connection = await self._connect_bus()
            if connection is not None:
                await self.app.start(connection)
                await self._set_health(True)
                log.info("serving")
                await self.stop_requested.wait()
        finally:
            await self._shutdown(server, connection, metrics_server)

    def _start_metrics(self):
        host, port = split_host_port(self.settings.metrics_address)
        try:
            server, _thread = start_http_server(port, addr=host)
        except OSError as exc:
            raise StartupError(f"cannot serve metrics on {self.settings.metrics_address}: {exc.strerror or exc}", EXIT_PORT) from exc
        return server

    def _bind(self, server: grpc.aio.Server) -> int:
        try:
            port = server.add_insecure_port(self.settings.grpc_address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(f"cannot listen for gRPC on {self.settings.grpc_address}: the port is taken or the address is invalid", EXIT_PORT)
        return port

    async def _connect_bus(self) -> BusConnection | None:
        connecting = asyncio.create_task(
            bus.connect(
                self.settings.nats_url,
                f"limi-{self.app.name}",
                connect_timeout=self.settings.nats_connect_timeout_seconds,
                on_disconnect=lambda: self._set_health(False),
                on_reconnect=lambda: self._set_health(True),
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
                f"cannot reach NATS at {self.settings.nats_url} within {self.settings.nats_connect_timeout_seconds:g} s", EXIT_NATS
            ) from None
        js = nc.jetstream()
        await bus.ensure_streams(js, replicas=self.settings.nats_stream_replicas)
        payloads = PayloadStore(js)
        return BusConnection(nc, js, EventPublisher.for_connection(nc, js, payloads=payloads), payloads)

    async def _set_health(self, serving: bool) -> None:
        if self._shutting_down:
            return
        self._serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.app.service_names):
            await self.health.set(name, status)
        SERVING.labels(self.app.name).set(1 if serving else 0)

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
        await self.app.stop(grace)
        await server.stop(grace)
        if connection is not None and not connection.nc.is_closed:
            try:
                await connection.nc.drain()
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
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
        sys.exit(EXIT_CONFIG)
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


class BackgroundWork:
    """One long-running loop of a service (a consumer), started on connect and stopped in order.

    The loop watches `stop_requested`; `stop(grace)` sets it, waits up to the grace period for
    the loop to finish what it holds, then cancels it (a consumer then hands its unacked
    messages back to the broker for redelivery).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.stop_requested = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self, loop: Awaitable[None]) -> None:
        self._task = asyncio.create_task(loop, name=self.name)

    async def stop(self, grace_seconds: float) -> None:
        self.stop_requested.set()
        if self._task is None:
            return
        done, _pending = await asyncio.wait({self._task}, timeout=grace_seconds)
        if not done:
            log.warning("%s still busy after the %g s grace period; its unacked messages will be redelivered", self.name, grace_seconds)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class ServicersApp:
    """A service made only of gRPC servicers, with no background work on the bus yet."""

    def __init__(self, name: str, servicers: list[tuple[Callable, object, object]]) -> None:
        """Args:
        name: the service's short name ("trainer").
        servicers: (add_XServicer_to_server, servicer, service descriptor) triples.
        """
        self.name = name
        self._servicers = servicers
        self.service_names = tuple(descriptor.full_name for _add, _servicer, descriptor in servicers)
        self.connection: BusConnection | None = None

    def register(self, server: grpc.aio.Server) -> None:
        for add, servicer, _descriptor in self._servicers:
            add(servicer, server)

    async def start(self, connection: BusConnection) -> None:
        self.connection = connection

    async def stop(self, grace_seconds: float) -> None:
        return None
