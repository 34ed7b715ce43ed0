"""The sandbox's gRPC servicer: request checks, proto conversion, and request-id dedupe.

Each method checks its fields against the tables below (ids, path lengths, numeric ranges; see
limi_core.request_checks) and its own rules (sizes, NUL bytes, durations), raising limi_core's
typed errors, which the edge interceptor maps to status codes; where a path leads inside the
workspace is the session's to decide (it refuses escapes). It then calls the session layer and
converts the answer. Calls that change state (CreateSession, Exec, RunPython, WriteFile, EditFile,
Upload) go through the `RequestLog` when they carry a request_id, keyed by method and id and
fingerprinted by the request's bytes. A cancelled Exec (client gone, deadline passed) ends the
session's iteration, which kills the command. No sandbox logic lives here.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import aclosing

from google.protobuf import duration_pb2

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.errors import InvalidArgument, Unavailable
from limi_core.request_checks import (
    COUNT,
    IDENTIFIER,
    MAX_PATH_CHARS,
    Between,
    Each,
    Identifier,
    TimesInRange,
    check_fields,
)
from limi_sandbox import tools
from limi_sandbox.limits import SessionLimits, resolve_limits
from limi_sandbox.paths import workspace_path
from limi_sandbox.request_log import RequestLog
from limi_sandbox.session import ExecOutcome, OutputChunk, Session
from limi_sandbox.sessions import SessionManager
from limi_sandbox.settings import SandboxSettings

PATH = Identifier(MAX_PATH_CHARS)
MODE = Between(0, 0o7777)


def _file(field: str, file: sandbox_pb2.File) -> None:
    workspace_path(file.path, f"{field}.path", allow_root=False)
    MODE(f"{field}.mode", file.mode)


SESSION = {"session_id": IDENTIFIER}
AT_PATH = {**SESSION, "path": PATH}
CHANGE_AT_PATH = {**AT_PATH, "request_id": IDENTIFIER}
CREATE_SESSION = {
    "backend": Identifier(64),
    "limits.wall_timeout": TimesInRange(),
    "files": Each(_file),
    "request_id": IDENTIFIER,
    "image": IDENTIFIER,
}
EXEC = {**SESSION, "timeout": TimesInRange(), "request_id": IDENTIFIER}
READ_FILE = {**AT_PATH, "offset": COUNT, "limit": COUNT}
WRITE_FILE = {**CHANGE_AT_PATH, "mode": MODE}
SEARCH = {**AT_PATH, "max_results": Between(0, 100_000)}


def fingerprint(request) -> bytes:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).digest()


def seconds(duration: duration_pb2.Duration, field: str) -> float:
    value = duration.seconds + duration.nanos / 1e9
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return value


def to_duration(value: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(value), nanos=int((value - int(value)) * 1e9))


def limits_proto(limits: SessionLimits) -> sandbox_pb2.Limits:
    return sandbox_pb2.Limits(
        cpu_seconds=limits.cpu_seconds,
        memory_bytes=limits.memory_bytes,
        max_processes=limits.max_processes,
        max_file_bytes=limits.max_file_bytes,
        max_open_files=limits.max_open_files,
        wall_timeout=to_duration(limits.wall_timeout_seconds),
        max_output_bytes=limits.max_output_bytes,
        workspace_bytes=limits.workspace_bytes,
    )


def exec_event(item: OutputChunk | ExecOutcome) -> sandbox_pb2.ExecEvent:
    if isinstance(item, OutputChunk):
        return sandbox_pb2.ExecEvent(**{item.stream: item.data})
    return sandbox_pb2.ExecEvent(
        result=sandbox_pb2.ExecResult(
            exit_code=item.exit_code,
            timed_out=item.timed_out,
            memory_exceeded=item.memory_exceeded,
            output_truncated=item.output_truncated,
            duration=to_duration(item.duration_seconds),
            cpu_limit_exceeded=item.cpu_limit_exceeded,
            signal=item.signal,
            cancelled=item.cancelled,
        )
    )


def cancelled_event() -> sandbox_pb2.ExecEvent:
    return sandbox_pb2.ExecEvent(result=sandbox_pb2.ExecResult(exit_code=-9, signal=9, cancelled=True))


class SandboxServicer(sandbox_pb2_grpc.SandboxServiceServicer):
    def __init__(self, settings: SandboxSettings, manager: SessionManager | None = None) -> None:
        self.settings = settings
        self.manager = manager
        self.log = RequestLog(settings.request_log_seconds, settings.request_log_bytes)

    def _sessions(self) -> SessionManager:
        if self.manager is None:
            raise Unavailable("the sandbox service is starting")
        return self.manager

    def _session(self, session_id: str) -> Session:
        return self._sessions().get(session_id)

    async def CreateSession(self, request: sandbox_pb2.CreateSessionRequest, context) -> sandbox_pb2.Session:
        check_fields(request, CREATE_SESSION)
        return await self.log.unary(
            f"CreateSession:{request.request_id}" if request.request_id else "",
            fingerprint(request),
            lambda: self._create(request),
        )

    async def _create(self, request: sandbox_pb2.CreateSessionRequest) -> sandbox_pb2.Session:
        requested = request.limits
        try:
            limits = resolve_limits(
                {
                    "cpu_seconds": requested.cpu_seconds,
                    "memory_bytes": requested.memory_bytes,
                    "max_processes": requested.max_processes,
                    "max_file_bytes": requested.max_file_bytes,
                    "max_open_files": requested.max_open_files,
                    "wall_timeout_seconds": seconds(requested.wall_timeout, "limits.wall_timeout"),
                    "max_output_bytes": requested.max_output_bytes,
                    "workspace_bytes": requested.workspace_bytes,
                },
                self.settings,
            )
        except InvalidArgument as exc:  # SessionLimits says wall_timeout_seconds where the request says wall_timeout
            raise InvalidArgument(exc.field.replace("wall_timeout_seconds", "wall_timeout"), exc.reason) from None
        files = [(f.path, f.content, f.mode) for f in request.files]
        if len(request.workspace_archive) > self.settings.max_archive_bytes:
            raise InvalidArgument(
                "workspace_archive",
                f"is {len(request.workspace_archive)} bytes, more than {self.settings.max_archive_bytes}",
            )
        try:
            session = await self._sessions().create(
                backend=request.backend,
                limits=limits,
                image=request.image,
                files=files,
                archive=request.workspace_archive,
            )
        except InvalidArgument as exc:  # the session names them as WriteFile and Upload do
            renamed = {"path": "files", "archive": "workspace_archive"}.get(exc.field)
            if renamed is None:
                raise
            raise InvalidArgument(renamed, exc.reason) from None
        return sandbox_pb2.Session(
            id=session.id,
            backend=session.backend,
            limits=limits_proto(session.limits),
            image=session.image,
            warm=session.warm,
            idle_timeout=to_duration(self.settings.idle_timeout_seconds),
        )

    async def Exec(self, request: sandbox_pb2.ExecRequest, context) -> AsyncIterator[sandbox_pb2.ExecEvent]:
        check_fields(request, EXEC)
        if not request.command.strip():
            raise InvalidArgument("command", "must not be empty")
        if "\0" in request.command:
            raise InvalidArgument("command", "contains a NUL byte")
        if len(request.command.encode()) > self.settings.max_command_bytes:
            raise InvalidArgument(
                "command", f"is longer than {self.settings.max_command_bytes} bytes; write a script file and run it"
            )
        if len(request.stdin) > self.settings.max_code_bytes:
            raise InvalidArgument("stdin", f"is longer than {self.settings.max_code_bytes} bytes")
        timeout = seconds(request.timeout, "timeout")
        session = self._session(request.session_id)
        events = self.log.stream(
            f"Exec:{request.request_id}" if request.request_id else "",
            fingerprint(request),
            lambda: self._events(session.exec(command=request.command, stdin=request.stdin, timeout=timeout)),
            size=lambda e: e.ByteSize() + 64,
            on_abort=cancelled_event,
        )
        async with aclosing(events):
            async for event in events:
                yield event

    async def RunPython(self, request: sandbox_pb2.RunPythonRequest, context) -> AsyncIterator[sandbox_pb2.ExecEvent]:
        check_fields(request, EXEC)
        if not request.code.strip():
            raise InvalidArgument("code", "must not be empty")
        code = request.code.encode()
        if len(code) > self.settings.max_code_bytes:
            raise InvalidArgument("code", f"is longer than {self.settings.max_code_bytes} bytes")
        timeout = seconds(request.timeout, "timeout")
        session = self._session(request.session_id)
        events = self.log.stream(
            f"RunPython:{request.request_id}" if request.request_id else "",
            fingerprint(request),
            lambda: self._events(session.exec(argv=["python3", "-u", "-"], stdin=code, timeout=timeout)),
            size=lambda e: e.ByteSize() + 64,
            on_abort=cancelled_event,
        )
        async with aclosing(events):
            async for event in events:
                yield event

    @staticmethod
    async def _events(items: AsyncIterator[OutputChunk | ExecOutcome]) -> AsyncIterator[sandbox_pb2.ExecEvent]:
        try:
            async for item in items:
                yield exec_event(item)
        finally:
            await items.aclose()

    async def ReadFile(self, request: sandbox_pb2.ReadFileRequest, context) -> sandbox_pb2.ReadFileResponse:
        check_fields(request, READ_FILE)
        content, size, truncated = await self._session(request.session_id).read_file(
            request.path, request.offset, request.limit
        )
        return sandbox_pb2.ReadFileResponse(content=content, size=size, truncated=truncated)

    async def WriteFile(self, request: sandbox_pb2.WriteFileRequest, context) -> sandbox_pb2.WriteFileResponse:
        check_fields(request, WRITE_FILE)
        session = self._session(request.session_id)

        async def write() -> sandbox_pb2.WriteFileResponse:
            return sandbox_pb2.WriteFileResponse(
                bytes_written=await session.write_file(request.path, request.content, request.mode)
            )

        return await self.log.unary(
            f"WriteFile:{request.request_id}" if request.request_id else "", fingerprint(request), write
        )

    async def EditFile(self, request: sandbox_pb2.EditFileRequest, context) -> sandbox_pb2.EditFileResponse:
        check_fields(request, CHANGE_AT_PATH)
        session = self._session(request.session_id)

        async def edit() -> sandbox_pb2.EditFileResponse:
            return sandbox_pb2.EditFileResponse(
                replacements=await session.edit_file(request.path, request.old_text, request.new_text)
            )

        return await self.log.unary(
            f"EditFile:{request.request_id}" if request.request_id else "", fingerprint(request), edit
        )

    async def ListDir(self, request: sandbox_pb2.ListDirRequest, context) -> sandbox_pb2.ListDirResponse:
        check_fields(request, AT_PATH)
        entries, truncated = await self._session(request.session_id).list_dir(request.path)
        return sandbox_pb2.ListDirResponse(
            entries=[
                sandbox_pb2.DirEntry(name=e.name, is_dir=e.is_dir, size=e.size, is_symlink=e.is_symlink)
                for e in entries
            ],
            truncated=truncated,
        )

    async def Search(self, request: sandbox_pb2.SearchRequest, context) -> sandbox_pb2.SearchResponse:
        check_fields(request, SEARCH)
        matches, truncated = await self._session(request.session_id).search(
            request.pattern, request.path, request.max_results
        )
        return sandbox_pb2.SearchResponse(
            matches=[sandbox_pb2.SearchMatch(path=m.path, line=m.line, text=m.text) for m in matches],
            truncated=truncated,
        )

    async def Upload(self, request: sandbox_pb2.UploadRequest, context) -> sandbox_pb2.UploadResponse:
        check_fields(request, CHANGE_AT_PATH)
        session = self._session(request.session_id)
        if not request.archive:
            raise InvalidArgument("archive", "must not be empty")

        async def upload() -> sandbox_pb2.UploadResponse:
            return sandbox_pb2.UploadResponse(files=await session.upload(request.archive, request.path))

        return await self.log.unary(
            f"Upload:{request.request_id}" if request.request_id else "", fingerprint(request), upload
        )

    async def Download(self, request: sandbox_pb2.DownloadRequest, context) -> sandbox_pb2.DownloadResponse:
        check_fields(request, AT_PATH)
        return sandbox_pb2.DownloadResponse(archive=await self._session(request.session_id).download(request.path))

    async def CloseSession(self, request: sandbox_pb2.CloseSessionRequest, context) -> sandbox_pb2.CloseSessionResponse:
        check_fields(request, SESSION)
        await self._sessions().close(request.session_id)
        return sandbox_pb2.CloseSessionResponse()

    async def ListTools(self, request: sandbox_pb2.ListToolsRequest, context) -> sandbox_pb2.ListToolsResponse:
        return sandbox_pb2.ListToolsResponse(tools_json=tools.tools_json())
