"""The embedded stack: a local nats-server with JetStream and every service as a child process.

`EmbeddedStack.start()` checks that nats-server exists and every port is free, starts NATS on
a data directory, starts the five services with their addresses in the environment, and waits
until each reports SERVING; `stop()` sends SIGTERM, waits for the grace period, then kills what
is left, so no process outlives the stack. Children run in sessions of their own (a terminal's
Ctrl-C reaches only the parent, which stops them in order) and get SIGKILL from the kernel if
the parent dies without cleaning up (a parent-death signal set by `setpriv`). `revive()` restarts
whatever died (the demo calls it while it waits, so a killed service comes back). Failures raise
`StackError` with one sentence and its exit code (limi_core.exit_codes). The state file `up.json` names the addresses and process ids.
Used by `limi up`, by the demo and by the tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

from limi_core.exit_codes import EXIT_FAILED, EXIT_PORT, EXIT_PRECONDITION, EXIT_USAGE
from limi_core.health_check import check_health
from limi_core.processes import SUPERVISED_CHILD, NatsServer, NatsServerMissing, nats_server_binary, supervised
from limi_core.settings import DEFAULT_PORTS, SERVICES

DEFAULT_NATS_PORT = 4233
STATE_FILE = "up.json"


class StackError(RuntimeError):
    """Something stopped the stack from starting; the message is one sentence for a person."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class ServiceEndpoint:
    name: str
    grpc_address: str
    metrics_address: str
    log_file: pathlib.Path


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        # As the servers do: connections of an earlier run waiting in TIME_WAIT do not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedStack:
    def __init__(
        self,
        data_dir: pathlib.Path,
        *,
        port_offset: int = 0,
        nats_port: int = DEFAULT_NATS_PORT,
        services: tuple[str, ...] = SERVICES,
        grace_seconds: float = 10.0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.port_offset = port_offset
        self.logs = self.data_dir / "logs"
        self.services = services
        self.grace_seconds = grace_seconds
        self.extra_env = extra_env or {}
        self.nats = NatsServer(self.data_dir / "nats", port=nats_port + port_offset, log_file=self.logs / "nats.log")
        self.endpoints = {
            name: ServiceEndpoint(
                name,
                f"127.0.0.1:{DEFAULT_PORTS[name].grpc + port_offset}",
                f"127.0.0.1:{DEFAULT_PORTS[name].metrics + port_offset}",
                self.logs / f"{name}.log",
            )
            for name in services
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def _preflight(self) -> None:
        try:
            nats_server_binary()
        except NatsServerMissing as exc:
            # A wrong LIMI_NATS_SERVER is bad configuration; no nats-server at all, a missing tool.
            raise StackError(
                str(exc), EXIT_USAGE if os.environ.get("LIMI_NATS_SERVER") else EXIT_PRECONDITION
            ) from None
        wanted = [("NATS", self.nats.port)]
        for endpoint in self.endpoints.values():
            wanted += [(f"{endpoint.name} gRPC", int(endpoint.grpc_address.rsplit(":", 1)[1]))]
            wanted += [(f"{endpoint.name} metrics", int(endpoint.metrics_address.rsplit(":", 1)[1]))]
        for what, port in wanted:
            if not _port_free(port):
                raise StackError(
                    f"port {port} ({what}) is already in use: stop what holds it or pass --port-offset", EXIT_PORT
                )

    def address_of(self, name: str) -> str:
        return f"127.0.0.1:{DEFAULT_PORTS[name].grpc + self.port_offset}"

    def service_env(self, name: str) -> dict[str, str]:
        endpoint = self.endpoints[name]
        prefix = f"LIMI_{name.upper()}_"
        return {
            **os.environ,
            "LIMI_NATS_URL": self.nats.url,
            "LIMI_DATA_DIR": str(self.data_dir / name),
            "LIMI_SHUTDOWN_GRACE_SECONDS": str(self.grace_seconds),
            "LIMI_NATS_CONNECT_TIMEOUT_SECONDS": "30",
            prefix + "GRPC_ADDRESS": endpoint.grpc_address,
            prefix + "METRICS_ADDRESS": endpoint.metrics_address,
            # Where the services find each other (they move together with --port-offset).
            "LIMI_ROLLOUT_SANDBOX_ADDRESS": self.address_of("sandbox"),
            "LIMI_EVALUATOR_SANDBOX_ADDRESS": self.address_of("sandbox"),
            "LIMI_EVALUATOR_ROLLOUT_ADDRESS": self.address_of("rollout"),
            **self.extra_env,
        }

    def start_service(self, name: str) -> subprocess.Popen:
        endpoint = self.endpoints[name]
        (self.data_dir / name).mkdir(parents=True, exist_ok=True)
        with open(endpoint.log_file, "ab") as log:
            process = subprocess.Popen(
                supervised([sys.executable, "-m", f"limi_{name}"]),
                env=self.service_env(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **SUPERVISED_CHILD,
            )
        self.processes[name] = process
        return process

    def start(self, timeout: float = 90.0) -> None:
        """Start NATS and every service; return once all report SERVING."""
        self._preflight()
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.nats.start()
        except (RuntimeError, TimeoutError) as exc:
            raise StackError(f"nats-server did not start: {exc} (log: {self.nats.log_file})") from None
        try:
            for name in self.services:
                self.start_service(name)
            self.wait_serving(timeout)
        except BaseException:
            self.stop()
            raise
        self._write_state()

    def wait_serving(self, timeout: float = 90.0, names: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names or self.services)
        while pending:
            for name in sorted(pending):
                code = self.processes[name].poll()
                if code is not None:
                    raise StackError(
                        f"the {name} service exited with code {code} while starting: {self.last_log_line(name)}"
                    )
                if check_health(self.endpoints[name].grpc_address, timeout=1.0) == "SERVING":
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise StackError(f"not SERVING after {timeout:g} s: {', '.join(sorted(pending))} (logs in {self.logs})")
            if pending:
                time.sleep(0.2)

    def last_log_line(self, name: str) -> str:
        try:
            lines = self.endpoints[name].log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    def dead_services(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def revive(self, timeout: float = 90.0) -> list[str]:
        """Restart NATS and every service that died (as a process supervisor would); name them.

        Waits until the restarted services are SERVING, restarting NATS or a service again if it
        dies meanwhile (a service cannot become SERVING while NATS is down).

        Raises:
            StackError: A restarted service did not come back to SERVING within `timeout`.
        """
        revived: list[str] = []
        pending: set[str] = set()
        deadline = time.monotonic() + timeout
        while True:
            if self.nats.process is not None and self.nats.process.poll() is not None:
                try:
                    self.nats.start()
                except (RuntimeError, TimeoutError) as exc:
                    raise StackError(f"nats-server did not restart: {exc} (log: {self.nats.log_file})") from None
                revived.append("nats")
            for name in list(self.dead_services()):
                self.start_service(name)
                revived.append(name)
                pending.add(name)
            pending = {
                name for name in pending if check_health(self.endpoints[name].grpc_address, timeout=1.0) != "SERVING"
            }
            if not pending:
                break
            if time.monotonic() > deadline:
                raise StackError(
                    f"not SERVING {timeout:g} s after a restart: {', '.join(sorted(pending))} (logs in {self.logs})"
                )
            time.sleep(0.2)
        if revived:
            self._write_state()
        return revived

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service, wait the grace period, SIGKILL stragglers, stop NATS."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds + 5
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.nats.stop()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        return codes

    def _write_state(self) -> None:
        state = {
            "nats_url": self.nats.url,
            "pid": os.getpid(),
            "nats_pid": self.nats.process.pid if self.nats.process else None,
            "services": {
                name: {
                    "grpc": e.grpc_address,
                    "metrics": e.metrics_address,
                    "log": str(e.log_file),
                    "pid": self.processes[name].pid if name in self.processes else None,
                }
                for name, e in self.endpoints.items()
            },
        }
        (self.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))


def read_state(data_dir: pathlib.Path) -> dict | None:
    try:
        return json.loads((pathlib.Path(data_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
