"""Wiring of the sandbox service: backends, session manager and servicer on the shared scaffold.

`build_app(settings)` returns a `SandboxApp` (limi_core.service.ServiceApp): it registers the
servicer at once, and in `start()` prepares the runtime folder and the backends, checks that the
default backend starts a sandbox, and fills the warm pools; readiness turns SERVING only then.
`stop()` refuses new sessions and closes every sandbox. The service neither publishes nor
consumes events, so its `bus` is None: it never connects to NATS and a NATS outage does not
touch its health. `build_backends()` is also used by tests and the benchmark.
"""

from __future__ import annotations

import grpc

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.errors import Unavailable
from limi_core.exit_codes import EXIT_PRECONDITION
from limi_core.service import ServiceContext, StartupError, run_main
from limi_sandbox.backends import Backend
from limi_sandbox.backends.bwrap import BwrapBackend
from limi_sandbox.backends.gvisor import GvisorBackend
from limi_sandbox.backends.local import LocalRuntime
from limi_sandbox.servicer import SandboxServicer
from limi_sandbox.sessions import SessionManager
from limi_sandbox.settings import SandboxSettings


def build_backends(settings: SandboxSettings, runtime: LocalRuntime) -> dict[str, Backend]:
    backends: dict[str, Backend] = {}
    if "bwrap" in settings.backends:
        backends["bwrap"] = BwrapBackend(
            runtime,
            settings.bwrap_path,
            settings.python_path,
            settings.tmp_bytes,
            settings.sandbox_start_timeout_seconds,
        )
    if "gvisor" in settings.backends:
        backends["gvisor"] = GvisorBackend(
            runtime,
            settings.runsc_path,
            settings.python_path,
            settings.tmp_bytes,
            settings.sandbox_start_timeout_seconds,
        )
    if "kubernetes" in settings.backends:
        from kubernetes.stream import stream

        from limi_sandbox.backends.kubernetes import KubernetesBackend, client_from_config

        backends["kubernetes"] = KubernetesBackend(
            client_from_config(settings.kubernetes_config),
            stream,
            namespace=settings.kubernetes_namespace,
            image=settings.kubernetes_image,
            images=settings.kubernetes_images,
            runtime_class=settings.kubernetes_runtime_class,
            tmp_bytes=settings.tmp_bytes,
            lifetime_seconds=int(settings.max_session_seconds),
            start_timeout=settings.kubernetes_start_timeout_seconds,
        )
    return backends


class SandboxApp:
    name = "sandbox"
    service_names = (sandbox_pb2.DESCRIPTOR.services_by_name["SandboxService"].full_name,)
    bus = None  # no events in or out: SERVING does not wait for NATS

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.servicer = SandboxServicer(settings)
        self.runtime: LocalRuntime | None = None

    def register(self, server: grpc.aio.Server) -> None:
        sandbox_pb2_grpc.add_SandboxServiceServicer_to_server(self.servicer, server)

    async def start(self, context: ServiceContext) -> None:
        s = self.settings
        self.runtime = LocalRuntime(s.runtime_dir, s.use_cgroups, s.sandbox_uid_base, s.sandbox_uid_count)
        try:
            manager = SessionManager(s, build_backends(s, self.runtime))
        except Unavailable as exc:
            raise StartupError(str(exc), EXIT_PRECONDITION) from None
        try:
            await manager.start()
        except Unavailable as exc:
            await manager.stop()
            raise StartupError(str(exc), EXIT_PRECONDITION) from None
        self.servicer.manager = manager

    async def stop(self, grace_seconds: float) -> None:
        if self.servicer.manager is not None:
            await self.servicer.manager.stop(grace_seconds * 0.8)
        if self.runtime is not None:
            self.runtime.close()


def build_app(settings: SandboxSettings) -> SandboxApp:
    return SandboxApp(settings)


def main() -> None:
    run_main(build_app, SandboxSettings)
