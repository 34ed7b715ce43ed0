"""Workspaces backed by the sandbox service: the gRPC side of workspace.py's protocols.

`SandboxWorkspaces(address).create(files)` opens a session with the initial files;
`SandboxWorkspace.exec` / `run_python` stream the command's output and return an
`ExecOutcome`; `snapshot` downloads the workspace as tar.gz and `restore` empties the workspace
and uploads one back. Calls carry a request id and are retried with it when the service is
briefly unreachable or busy (RESOURCE_EXHAUSTED), so a retried command is not run twice; after
the retries the error is `Unavailable` / `ResourceExhausted` naming the address. A request the
sandbox rejects (INVALID_ARGUMENT, such as a command over its size limit) becomes a failed
outcome with the reason, which a rubric item then reports.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import grpc
from google.protobuf import duration_pb2

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.errors import FailedPrecondition, ResourceExhausted, Unavailable
from limi_core.sandbox_exec import collect_exec
from limi_evaluator.workspace import ExecOutcome

log = logging.getLogger(__name__)

RETRY_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


class SandboxWorkspace:
    def __init__(self, owner: SandboxWorkspaces, session: sandbox_pb2.Session) -> None:
        self._owner, self.session_id = owner, session.id

    async def exec(self, command: str, timeout_seconds: float) -> ExecOutcome:
        request = sandbox_pb2.ExecRequest(session_id=self.session_id, command=command, timeout=_duration(timeout_seconds),
                                          request_id=uuid.uuid4().hex)
        return await self._owner.stream(lambda: self._owner.stub.Exec(request, timeout=timeout_seconds + 60))

    async def run_python(self, code: str, timeout_seconds: float) -> ExecOutcome:
        request = sandbox_pb2.RunPythonRequest(session_id=self.session_id, code=code, timeout=_duration(timeout_seconds),
                                               request_id=uuid.uuid4().hex)
        return await self._owner.stream(lambda: self._owner.stub.RunPython(request, timeout=timeout_seconds + 60))

    async def write_file(self, path: str, content: bytes) -> None:
        request = sandbox_pb2.WriteFileRequest(session_id=self.session_id, path=path, content=content, request_id=uuid.uuid4().hex)
        await self._owner.call("WriteFile", lambda: self._owner.stub.WriteFile(request, timeout=60))

    async def snapshot(self) -> bytes:
        reply = await self._owner.call("Download", lambda: self._owner.stub.Download(
            sandbox_pb2.DownloadRequest(session_id=self.session_id, path="."), timeout=120))
        return reply.archive

    async def restore(self, archive: bytes) -> None:
        cleared = await self.exec("find . -mindepth 1 -delete", 120)
        if cleared.exit_code != 0:
            raise FailedPrecondition(f"could not empty the workspace of session {self.session_id}: {cleared.stderr[-300:]}")
        request = sandbox_pb2.UploadRequest(session_id=self.session_id, archive=archive, request_id=uuid.uuid4().hex)
        await self._owner.call("Upload", lambda: self._owner.stub.Upload(request, timeout=120))

    async def close(self) -> None:
        try:
            await self._owner.stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=self.session_id), timeout=30)
        except grpc.aio.AioRpcError as exc:
            log.warning("closing sandbox session %s failed: %s", self.session_id, exc.details())


class SandboxWorkspaces:
    """Factory of workspaces on one sandbox service; one channel shared by all of them."""

    def __init__(self, address: str, backend: str = "", *, attempts: int = 5, first_backoff_seconds: float = 0.2) -> None:
        self.address, self.backend = address, backend
        self.attempts, self.first_backoff_seconds = attempts, first_backoff_seconds
        self._channel: grpc.aio.Channel | None = None
        self._stub: sandbox_pb2_grpc.SandboxServiceStub | None = None

    @property
    def stub(self) -> sandbox_pb2_grpc.SandboxServiceStub:
        # Made on first use, inside the event loop that uses it (an aio channel belongs to one loop).
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
            self._stub = sandbox_pb2_grpc.SandboxServiceStub(self._channel)
        return self._stub

    async def create(self, files: tuple[tuple[str, bytes], ...] = (), *, label: str = "") -> SandboxWorkspace:
        request = sandbox_pb2.CreateSessionRequest(backend=self.backend, request_id=uuid.uuid4().hex,
                                                   files=[sandbox_pb2.File(path=path, content=content) for path, content in files])
        session = await self.call("CreateSession", lambda: self.stub.CreateSession(request, timeout=120))
        log.debug("sandbox session opened", extra={"fields": {"session": session.id, "label": label}})
        return SandboxWorkspace(self, session)

    async def call(self, method: str, make_call):
        delay = self.first_backoff_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() in RETRY_CODES and attempt < self.attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                raise self._error(method, exc) from None
        raise AssertionError("unreachable")

    async def stream(self, make_call) -> ExecOutcome:
        delay = self.first_backoff_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                output = await collect_exec(make_call())
            except grpc.aio.AioRpcError as exc:
                if exc.code() in RETRY_CODES and attempt < self.attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    return ExecOutcome(exit_code=-1, stderr=f"the sandbox refused the command: {exc.details()}")
                raise self._error("Exec", exc) from None
            result = output.result
            if result is None:
                raise Unavailable(f"the sandbox at {self.address} ended a command without its result")
            return ExecOutcome(
                exit_code=result.exit_code, stdout=output.stdout.decode("utf-8", errors="replace"),
                stderr=output.stderr.decode("utf-8", errors="replace"),
                timed_out=result.timed_out, memory_exceeded=result.memory_exceeded, output_truncated=result.output_truncated,
                duration_seconds=result.duration.ToTimedelta().total_seconds(),
            )
        raise AssertionError("unreachable")

    def _error(self, method: str, exc: grpc.aio.AioRpcError) -> Exception:
        message = f"sandbox {method} at {self.address} failed: {exc.code().name}: {exc.details()}"
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(message)
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(message)
        return FailedPrecondition(message)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
