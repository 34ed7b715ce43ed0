"""Child processes and ports: what `limi up` and the evaluator's vLLM child need, and tests reuse.

`supervised(argv)` makes a child die with its parent; `stop_process` stops one in order;
`NatsServer` starts the real `nats-server` binary with JetStream on a free port and a data
directory of the caller's choosing (with a fixed storage limit, see below), and stops it; `free_port` and `wait_for_port` do what they
say. Nothing here fakes a server.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import time


class NatsServerMissing(RuntimeError):
    pass


def supervised(argv: list[str]) -> list[str]:
    """`argv` run so that the kernel kills it when its parent dies (util-linux `setpriv --pdeathsig`).

    Not a preexec_fn: that forces fork(), which gRPC's fork handlers in a parent with busy
    gRPC threads can break (the child aborts).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


# For children that a parent stops in order (with `supervised(argv)`): a session of their own
# keeps a terminal's Ctrl-C (sent to the whole foreground group) from reaching them before the
# parent's ordered stop.
SUPERVISED_CHILD = {"start_new_session": True}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_is_open(port, host):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s")
        time.sleep(0.02)


def nats_server_binary() -> str:
    """The nats-server to run: $LIMI_NATS_SERVER, else the one on PATH or in /usr/sbin."""
    chosen = os.environ.get("LIMI_NATS_SERVER")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise NatsServerMissing(f"LIMI_NATS_SERVER={chosen} is not an executable file")
        return chosen
    path = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None
    )
    if path is None:
        raise NatsServerMissing("nats-server is not installed: run scripts/setup (it installs Debian's nats-server)")
    return path


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM a child still running, wait up to `timeout`, then SIGKILL it."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# JetStream reserves each stream's max_bytes against the server's file-store limit when the
# stream is created (limi's streams and payload bucket reserve about 29 GiB, see bus.py). Left
# unset, that limit is 75% of the disk space free at start, so the same code failed to create its
# streams ("insufficient storage resources available") on a machine with under ~39 GiB free.
# A fixed limit makes the reservation independent of the disk; the bytes actually written stay
# small, and a disk that really fills up fails the write, as it would with any limit.
LOCAL_MAX_FILE_STORE_BYTES = 64 * 1024**3
LOCAL_MAX_MEMORY_STORE_BYTES = 256 * 1024**2


class NatsServer:
    """A real nats-server with JetStream; `start()` blocks until it accepts connections."""

    def __init__(
        self,
        store_dir: pathlib.Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: pathlib.Path | None = None,
    ) -> None:
        self.store_dir, self.host = pathlib.Path(store_dir), host
        self.port = port or free_port(host)
        self.log_file = log_file
        self.config_file = self.store_dir / "nats-server.conf"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def config(self) -> str:
        return (
            f"listen: {json.dumps(f'{self.host}:{self.port}')}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store_dir))}\n"
            f"  max_file_store: {LOCAL_MAX_FILE_STORE_BYTES}\n"
            f"  max_memory_store: {LOCAL_MAX_MEMORY_STORE_BYTES}\n"
            "}\n"
        )

    def command(self) -> list[str]:
        return [nats_server_binary(), "-c", str(self.config_file)]

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            supervised(self.command()), stdout=output, stderr=subprocess.STDOUT, **SUPERVISED_CHILD
        )
        deadline = time.monotonic() + timeout
        while not port_is_open(self.port, self.host):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with code {self.process.returncode} on start (port {self.port})"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server did not listen on port {self.port} within {timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    def restart(self) -> None:
        self.stop()
        self.start()
