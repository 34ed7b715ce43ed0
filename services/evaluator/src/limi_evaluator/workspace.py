"""What the evaluator needs from a sandbox: workspaces that run commands, and their factory.

`Workspace` is one sandbox session seen from the evaluator: run a shell command or Python code
in the workspace with a timeout, take a snapshot of the workspace (tar.gz) and put one back, and
close. `WorkspaceFactory` creates one with initial files. sandbox_client.py implements both
over the sandbox service's gRPC API; the domain modules (rubric.py, harness.py, humaneval.py)
depend only on these protocols, so nothing here knows about gRPC, and nothing here executes
code on the host.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ExecOutcome:
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    memory_exceeded: bool = False
    output_truncated: bool = False
    duration_seconds: float = 0.0


class Workspace(Protocol):
    session_id: str

    async def exec(self, command: str, timeout_seconds: float) -> ExecOutcome: ...

    async def run_python(self, code: str, timeout_seconds: float) -> ExecOutcome: ...

    async def write_file(self, path: str, content: bytes) -> None: ...

    async def snapshot(self) -> bytes: ...

    async def restore(self, archive: bytes) -> None: ...

    async def close(self) -> None: ...


class WorkspaceFactory(Protocol):
    async def create(self, files: tuple[tuple[str, bytes], ...] = (), *, label: str = "") -> Workspace: ...
