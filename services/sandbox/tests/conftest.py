"""Fixtures of the sandbox tests: one real sandbox service process per test module, and host checks.

`sandbox_service_factory(**env)` starts `python -m limi_sandbox` against its own nats-server on
free ports (module scope, so a module's tests share one process and its warm pool) and returns a
`RunningSandbox` with a sync gRPC stub and helpers. `host_processes_marked(marker)` finds host
processes whose environment carries a marker, which is how tests prove that nothing a sandbox
started is still running on the host.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import urllib.request

import grpc
import pytest

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.health_check import check_health, wait_for_health
from limi_core.processes import NatsServer, free_port, supervised

SECRET = "limi-test-secret-4f1c9b"
MiB = 1 << 20


def host_processes_marked(marker: str) -> list[int]:
    """Host pids whose initial environment contains `marker` (root reads every /proc/*/environ)."""
    needle = marker.encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if needle in pathlib.Path(f"/proc/{name}/environ").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def host_uids(pid: int) -> set[int]:
    """Real, effective, saved and filesystem uids of a host process."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(value) for value in line.split()[1:]}
    return set()


def child_states(pid: int) -> dict[int, str]:
    """pid -> state letter ("S", "Z", ...) of each direct child of `pid`."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = pathlib.Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                children[int(name)] = fields[0]
    return children


def rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class ExecOutput:
    def __init__(self, events) -> None:
        self.stdout, self.stderr, self.result = b"", b"", None
        for event in events:
            kind = event.WhichOneof("event")
            if kind == "stdout":
                self.stdout += event.stdout
            elif kind == "stderr":
                self.stderr += event.stderr
            else:
                self.result = event.result

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class RunningSandbox:
    def __init__(
        self, process: subprocess.Popen, address: str, metrics_address: str, log_file: pathlib.Path, nats: NatsServer
    ) -> None:
        self.process, self.address, self.metrics_address, self.log_file, self.nats = (
            process,
            address,
            metrics_address,
            log_file,
            nats,
        )
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
        )
        self.stub = sandbox_pb2_grpc.SandboxServiceStub(self.channel)

    def create(self, timeout: float = 30, **fields) -> sandbox_pb2.Session:
        limits = fields.pop("limits", None)
        request = sandbox_pb2.CreateSessionRequest(**fields)
        if limits:
            request.limits.CopyFrom(sandbox_pb2.Limits(**limits))
        return self.stub.CreateSession(request, timeout=timeout)

    def exec(
        self, session_id: str, command: str, timeout: float | None = None, deadline: float = 60, **fields
    ) -> ExecOutput:
        request = sandbox_pb2.ExecRequest(session_id=session_id, command=command, **fields)
        if timeout is not None:
            request.timeout.FromNanoseconds(int(timeout * 1e9))
        return ExecOutput(self.stub.Exec(request, timeout=deadline))

    def run_python(self, session_id: str, code: str, timeout: float | None = None, deadline: float = 60) -> ExecOutput:
        request = sandbox_pb2.RunPythonRequest(session_id=session_id, code=code)
        if timeout is not None:
            request.timeout.FromNanoseconds(int(timeout * 1e9))
        return ExecOutput(self.stub.RunPython(request, timeout=deadline))

    def close(self, session_id: str) -> None:
        self.stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session_id), timeout=30)

    def assert_healthy(self) -> None:
        """The process lives, health says SERVING, and a fresh session runs a command."""
        assert self.process.poll() is None, self.log()
        assert check_health(self.address) == "SERVING"
        session = self.create()
        try:
            assert self.exec(session.id, "echo still-ok").text == "still-ok\n"
        finally:
            self.close(session.id)

    secret = SECRET
    marked_processes = staticmethod(host_processes_marked)
    host_uids = staticmethod(host_uids)

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def children(self) -> dict[int, str]:
        """The service's child processes (the outermost process of each sandbox) and their states."""
        return child_states(self.process.pid)

    def zombies(self) -> list[int]:
        return [pid for pid, state in self.children().items() if state == "Z"]

    child_states = staticmethod(child_states)
    collect = staticmethod(ExecOutput)

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=10).read().decode()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@pytest.fixture(scope="module")
def sandbox_service_factory(tmp_path_factory):
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: run scripts/setup")
    started: list[RunningSandbox] = []

    def start(**env: str) -> RunningSandbox:
        root = tmp_path_factory.mktemp("sandbox-service")
        nats = NatsServer(root / "nats").start()
        address, metrics_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        full_env = {
            **os.environ,
            "LIMI_NATS_URL": nats.url,
            "LIMI_DATA_DIR": str(root / "data"),
            "LIMI_LOG_FORMAT": "text",
            "LIMI_SHUTDOWN_GRACE_SECONDS": "5",
            "LIMI_SANDBOX_GRPC_ADDRESS": address,
            "LIMI_SANDBOX_METRICS_ADDRESS": metrics_address,
            "LIMI_SANDBOX_POOL_SIZE": "2",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "LIMI_SANDBOX_TEST_TOKEN": SECRET,
            **env,
        }
        log_file = root / "sandbox.log"
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                supervised([sys.executable, "-m", "limi_sandbox"]),
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = RunningSandbox(process, address, metrics_address, log_file, nats)
        started.append(service)
        wait_for_health(address, "SERVING", timeout=60, process=process)
        return service

    yield start
    for service in started:
        service.channel.close()
        if service.process.poll() is None:
            service.process.terminate()
            try:
                service.process.wait(20)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        service.nats.stop()


# Small limits, so abuse never endangers the host.
SMALL_LIMITS = dict(
    LIMI_SANDBOX_DEFAULT_MEMORY_BYTES=str(256 * MiB),
    LIMI_SANDBOX_DEFAULT_MAX_FILE_BYTES=str(64 * MiB),
    LIMI_SANDBOX_DEFAULT_WORKSPACE_BYTES=str(64 * MiB),
    LIMI_SANDBOX_TMP_BYTES=str(64 * MiB),
    LIMI_SANDBOX_DEFAULT_MAX_PROCESSES="64",
    LIMI_SANDBOX_DEFAULT_CPU_SECONDS="5",
    LIMI_SANDBOX_DEFAULT_WALL_TIMEOUT_SECONDS="10",
    LIMI_SANDBOX_DEFAULT_MAX_OUTPUT_BYTES=str(MiB),
    LIMI_SANDBOX_DEFAULT_MAX_OPEN_FILES="256",
    LIMI_SANDBOX_MAX_ARCHIVE_FILES="1000",
)


@pytest.fixture(scope="module")
def small_sandbox(sandbox_service_factory) -> RunningSandbox:
    """A service whose sessions have small limits, so abuse never endangers the host."""
    return sandbox_service_factory(**SMALL_LIMITS)


@pytest.fixture(scope="module")
def cold_sandbox(sandbox_service_factory) -> RunningSandbox:
    """Like small_sandbox, without warm pools: each new session is one new child process of the service."""
    return sandbox_service_factory(LIMI_SANDBOX_POOL_SIZE="0", LIMI_SANDBOX_GVISOR_POOL_SIZE="0", **SMALL_LIMITS)


@pytest.fixture(scope="module")
def rlimit_sandbox(sandbox_service_factory) -> RunningSandbox:
    """Like small_sandbox, without the cgroup memory controller: memory is limited by RLIMIT_AS per command."""
    return sandbox_service_factory(LIMI_SANDBOX_USE_CGROUPS="false", LIMI_SANDBOX_POOL_SIZE="1", **SMALL_LIMITS)
