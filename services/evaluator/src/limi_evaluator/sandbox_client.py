"""Workspaces backed by the sandbox service: workspace.py's protocols on limi_core's sandbox client.

`SandboxWorkspaces(address).create(files)` opens a session with the initial files;
`SandboxWorkspace.exec` / `run_python` return an `ExecOutcome`; `snapshot` downloads the
workspace as tar.gz and `restore` empties the workspace and uploads one back. Retries (with
request ids, so a retried command does not run twice) and the typed errors are those of
`limi_core.sandbox_client.SandboxClient`: an unreachable sandbox is `SandboxUnavailable` (the
checkpoint consumer then waits for it without charging the event), a busy one `SandboxBusy`.
A command the sandbox rejects (INVALID_ARGUMENT, such as one over its size limit) becomes a
failed outcome with the reason, which a rubric item then reports.
"""

from __future__ import annotations

import logging

import grpc

from limi.sandbox.v1 import sandbox_pb2
from limi_core.errors import FailedPrecondition
from limi_core.retry import RetryPolicy
from limi_core.sandbox_client import ExecOutput, SandboxClient, SandboxRefused
from limi_evaluator.workspace import ExecOutcome

log = logging.getLogger(__name__)


class SandboxWorkspace:
    def __init__(self, client: SandboxClient, session: sandbox_pb2.Session) -> None:
        self._client, self.session_id = client, session.id

    async def exec(self, command: str, timeout_seconds: float) -> ExecOutcome:
        return await self._command(self._client.exec(self.session_id, command, timeout_seconds))

    async def run_python(self, code: str, timeout_seconds: float) -> ExecOutcome:
        return await self._command(self._client.run_python(self.session_id, code, timeout_seconds))

    @staticmethod
    async def _command(call) -> ExecOutcome:
        try:
            output: ExecOutput = await call
        except SandboxRefused as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                return ExecOutcome(exit_code=-1, stderr=f"the sandbox refused the command: {exc.details}")
            raise
        result = output.result
        return ExecOutcome(
            exit_code=result.exit_code,
            stdout=output.stdout.decode("utf-8", errors="replace"),
            stderr=output.stderr.decode("utf-8", errors="replace"),
            timed_out=result.timed_out,
            memory_exceeded=result.memory_exceeded,
            output_truncated=result.output_truncated,
            duration_seconds=result.duration.ToTimedelta().total_seconds(),
        )

    async def write_file(self, path: str, content: bytes) -> None:
        await self._client.write_file(self.session_id, path, content)

    async def snapshot(self) -> bytes:
        return await self._client.download(self.session_id, ".")

    async def restore(self, archive: bytes) -> None:
        cleared = await self.exec("find . -mindepth 1 -delete", 120)
        if cleared.exit_code != 0:
            raise FailedPrecondition(
                f"could not empty the workspace of session {self.session_id}: {cleared.stderr[-300:]}"
            )
        await self._client.upload(self.session_id, archive)

    async def close(self) -> None:
        await self._client.close_session(self.session_id)


class SandboxWorkspaces:
    """Factory of workspaces on one sandbox service; one client (one channel) shared by all of them."""

    def __init__(
        self, address: str, backend: str = "", *, attempts: int = 5, first_backoff_seconds: float = 0.2
    ) -> None:
        self.address, self.backend = address, backend
        self.client = SandboxClient(
            address, backend, retry=RetryPolicy(attempts, first_backoff_seconds, max_backoff_seconds=5.0)
        )

    async def create(self, files: tuple[tuple[str, bytes], ...] = (), *, label: str = "") -> SandboxWorkspace:
        session = await self.client.create_session([(path, content, 0) for path, content in files])
        log.debug("sandbox session opened", extra={"fields": {"session": session.id, "label": label}})
        return SandboxWorkspace(self.client, session)

    async def close(self) -> None:
        await self.client.close()
