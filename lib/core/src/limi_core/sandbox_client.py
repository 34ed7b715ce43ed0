"""The one client of the sandbox service, for every service that runs code in it.

`SandboxClient(address)` holds one channel (made on first use, inside the event loop that uses
it) and offers the sandbox's calls as methods. Calls that change something carry a request id
and are retried with it (limi_core.retry: UNAVAILABLE, RESOURCE_EXHAUSTED), so a retried
command does not run twice; reads are retried as they are. `exec` and `run_python` gather the
streamed output into an `ExecOutput`. After the retries, or for an answer retrying cannot fix,
the error is typed:
- `SandboxUnavailable` (a `DependencyUnavailable`): the service cannot be reached, or it lost
  the session; consumers wait for it to return and charge the work nothing;
- `SandboxBusy` (`ResourceExhausted`): it stayed at its limits;
- `SandboxRefused` (`FailedPrecondition`): it refused this request (`code` says how: a bad
  path, a missing file, a command over its size limit); the caller decides who sees it.
It renders nothing for a model and knows no episode or rubric.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence

import grpc
from google.protobuf import duration_pb2

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.errors import DependencyUnavailable, FailedPrecondition, ResourceExhausted
from limi_core.retry import RetryPolicy, TryAgain, client_channel, grpc_verdict, retrying

log = logging.getLogger(__name__)

SANDBOX_RETRY = RetryPolicy(attempts=5, first_backoff_seconds=0.2, max_backoff_seconds=5.0)


class SandboxUnavailable(DependencyUnavailable):
    def __init__(self, message: str) -> None:
        super().__init__("sandbox", message)


class SandboxBusy(ResourceExhausted):
    """The sandbox stayed at its session or command limits for the whole retry budget."""


class SandboxRefused(FailedPrecondition):
    """The sandbox refused the request; `code` is its gRPC status, `details` its words."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"sandbox {method} refused: {code.name}: {details}")
        self.method, self.code, self.details = method, code, details


@dataclasses.dataclass(frozen=True)
class ExecOutput:
    stdout: bytes
    stderr: bytes
    # None when the stream ended without its final result.
    result: sandbox_pb2.ExecResult | None


async def collect_exec(events: AsyncIterable[sandbox_pb2.ExecEvent]) -> ExecOutput:
    stdout, stderr, result = bytearray(), bytearray(), None
    async for event in events:
        kind = event.WhichOneof("event")
        if kind == "stdout":
            stdout += event.stdout
        elif kind == "stderr":
            stderr += event.stderr
        elif kind == "result":
            result = event.result
    return ExecOutput(bytes(stdout), bytes(stderr), result)


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


class SandboxClient:
    def __init__(self, address: str, backend: str = "", *, retry: RetryPolicy = SANDBOX_RETRY) -> None:
        self.address, self.backend, self.retry = address, backend, retry
        self._channel: grpc.aio.Channel | None = None
        self._stub: sandbox_pb2_grpc.SandboxServiceStub | None = None

    @property
    def stub(self) -> sandbox_pb2_grpc.SandboxServiceStub:
        if self._stub is None:
            self._channel = client_channel(self.address)
            self._stub = sandbox_pb2_grpc.SandboxServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self, files: Sequence[tuple[str, bytes, int]] = (), *, backend: str = "", timeout: float = 120
    ) -> sandbox_pb2.Session:
        """A new session whose workspace starts with `files` ((path, content, mode) triples)."""
        request = sandbox_pb2.CreateSessionRequest(
            backend=backend or self.backend,
            request_id=uuid.uuid4().hex,
            files=[sandbox_pb2.File(path=path, content=content, mode=mode) for path, content, mode in files],
        )
        return await self.call("CreateSession", lambda: self.stub.CreateSession(request, timeout=timeout))

    async def close_session(self, session_id: str) -> None:
        """Close a session; a failure is logged, never raised (the sandbox reaps idle sessions)."""
        try:
            await self.stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session_id), timeout=30)
        except grpc.aio.AioRpcError as exc:
            log.warning("closing sandbox session %s failed: %s", session_id, exc.details())

    async def list_tools(self) -> sandbox_pb2.ListToolsResponse:
        return await self.call("ListTools", lambda: self.stub.ListTools(sandbox_pb2.ListToolsRequest(), timeout=30))

    # -- commands ---------------------------------------------------------------------------

    async def exec(self, session_id: str, command: str, timeout_seconds: float | None = None) -> ExecOutput:
        request = sandbox_pb2.ExecRequest(session_id=session_id, command=command, request_id=uuid.uuid4().hex)
        if timeout_seconds:
            request.timeout.CopyFrom(duration(timeout_seconds))
        return await self.stream("Exec", lambda: self.stub.Exec(request, timeout=self._deadline(timeout_seconds)))

    async def run_python(self, session_id: str, code: str, timeout_seconds: float | None = None) -> ExecOutput:
        request = sandbox_pb2.RunPythonRequest(session_id=session_id, code=code, request_id=uuid.uuid4().hex)
        if timeout_seconds:
            request.timeout.CopyFrom(duration(timeout_seconds))
        return await self.stream(
            "RunPython", lambda: self.stub.RunPython(request, timeout=self._deadline(timeout_seconds))
        )

    @staticmethod
    def _deadline(timeout_seconds: float | None) -> float | None:
        # The sandbox enforces the command's own limit; the call's deadline only guards a hung service.
        return timeout_seconds + 60 if timeout_seconds else None

    # -- files ------------------------------------------------------------------------------

    async def read_file(
        self, session_id: str, path: str, offset: int = 0, limit: int = 0
    ) -> sandbox_pb2.ReadFileResponse:
        request = sandbox_pb2.ReadFileRequest(session_id=session_id, path=path, offset=offset, limit=limit)
        return await self.call("ReadFile", lambda: self.stub.ReadFile(request, timeout=60))

    async def write_file(self, session_id: str, path: str, content: bytes) -> sandbox_pb2.WriteFileResponse:
        request = sandbox_pb2.WriteFileRequest(
            session_id=session_id, path=path, content=content, request_id=uuid.uuid4().hex
        )
        return await self.call("WriteFile", lambda: self.stub.WriteFile(request, timeout=60))

    async def edit_file(self, session_id: str, path: str, old_text: str, new_text: str) -> sandbox_pb2.EditFileResponse:
        request = sandbox_pb2.EditFileRequest(
            session_id=session_id, path=path, old_text=old_text, new_text=new_text, request_id=uuid.uuid4().hex
        )
        return await self.call("EditFile", lambda: self.stub.EditFile(request, timeout=60))

    async def list_dir(self, session_id: str, path: str = ".") -> sandbox_pb2.ListDirResponse:
        request = sandbox_pb2.ListDirRequest(session_id=session_id, path=path)
        return await self.call("ListDir", lambda: self.stub.ListDir(request, timeout=60))

    async def search(
        self, session_id: str, pattern: str, path: str = ".", max_results: int = 0
    ) -> sandbox_pb2.SearchResponse:
        request = sandbox_pb2.SearchRequest(session_id=session_id, pattern=pattern, path=path, max_results=max_results)
        return await self.call("Search", lambda: self.stub.Search(request, timeout=60))

    async def download(self, session_id: str, path: str = ".") -> bytes:
        request = sandbox_pb2.DownloadRequest(session_id=session_id, path=path)
        return (await self.call("Download", lambda: self.stub.Download(request, timeout=120))).archive

    async def upload(self, session_id: str, archive: bytes) -> sandbox_pb2.UploadResponse:
        request = sandbox_pb2.UploadRequest(session_id=session_id, archive=archive, request_id=uuid.uuid4().hex)
        return await self.call("Upload", lambda: self.stub.Upload(request, timeout=120))

    async def session_exists(self, session_id: str) -> bool:
        """Whether the sandbox still holds `session_id` (a NOT_FOUND may mean a file, or the session)."""
        try:
            await self.list_dir(session_id, ".")
        except SandboxRefused as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    # -- the retry and the typed errors, once -----------------------------------------------

    async def call(self, method: str, make_call: Callable[[], Awaitable]):
        """A unary call made by `make_call()`, retried on the retryable codes, errors typed."""

        async def once(_attempt: int):
            try:
                return await make_call()
            except grpc.aio.AioRpcError as exc:
                raise grpc_verdict(exc, f"sandbox {method} at {self.address}") or self._error(method, exc) from None

        return await retrying(once, self.retry, what=f"sandbox {method}", give_up=_give_up)

    async def stream(self, method: str, make_call: Callable[[], AsyncIterable[sandbox_pb2.ExecEvent]]) -> ExecOutput:
        """A streamed command made by `make_call()`, gathered, retried like `call`."""

        async def once(_attempt: int) -> ExecOutput:
            try:
                output = await collect_exec(make_call())
            except grpc.aio.AioRpcError as exc:
                raise grpc_verdict(exc, f"sandbox {method} at {self.address}") or self._error(method, exc) from None
            if output.result is None:
                raise TryAgain(f"sandbox {method} at {self.address} ended without its result")
            return output

        return await retrying(once, self.retry, what=f"sandbox {method}", give_up=_give_up)

    def _error(self, method: str, exc: grpc.aio.AioRpcError) -> Exception:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return SandboxUnavailable(f"sandbox {method} at {self.address} did not answer in time: {exc.details()}")
        return SandboxRefused(method, exc.code(), exc.details() or "")


def _give_up(last: TryAgain, attempts: int) -> Exception:
    if last.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return SandboxBusy(f"{last.problem} (after {attempts} attempts)")
    return SandboxUnavailable(f"{last.problem} (after {attempts} attempts)")
