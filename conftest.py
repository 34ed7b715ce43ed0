"""Fixtures shared by every test folder: a real nats-server per test and service processes."""

from __future__ import annotations

import os

# Before anything imports grpc: its fork handlers can deadlock the test's own subprocess starts.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import pathlib
import subprocess
import sys

import pytest

from limi_core.processes import SUPERVISED_CHILD, NatsServer, free_port, stop_process, supervised

ROOT = pathlib.Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared"


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    yield server
    server.stop()


@pytest.fixture
async def nats_client(nats_server):
    from limi_core import bus

    nc = await bus.connect(nats_server.url, "test", connect_timeout=10)
    yield nc
    if not nc.is_closed:
        await nc.close()


@pytest.fixture
async def jetstream(nats_client):
    from limi_core import bus

    js = nats_client.jetstream()
    await bus.ensure_streams(js)
    return js


class ServiceProcess:
    """One service as a real child process on free ports."""

    def __init__(self, name: str, nats_url: str, data_dir: pathlib.Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.grpc_address = f"127.0.0.1:{free_port()}"
        self.metrics_address = f"127.0.0.1:{free_port()}"
        self.log_file = data_dir / f"{name}.log"
        prefix = f"LIMI_{name.upper()}_"
        self.env = {
            **os.environ,
            "LIMI_NATS_URL": nats_url,
            "LIMI_DATA_DIR": str(data_dir / name),
            "LIMI_SHUTDOWN_GRACE_SECONDS": "5",
            "LIMI_NATS_CONNECT_TIMEOUT_SECONDS": "20",
            prefix + "GRPC_ADDRESS": self.grpc_address,
            prefix + "METRICS_ADDRESS": self.metrics_address,
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                supervised([sys.executable, "-m", f"limi_{self.name}"]),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                **SUPERVISED_CHILD,
            )
        return self

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        stop_process(self.process, 15)


@pytest.fixture
def service_process(tmp_path, nats_server):
    """Factory: service_process("curator") starts it against the test's NATS."""
    started: list[ServiceProcess] = []

    def start(name: str, env: dict[str, str] | None = None, nats_url: str | None = None) -> ServiceProcess:
        service = ServiceProcess(name, nats_url or nats_server.url, tmp_path, env).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
