"""Tools backed by the sandbox service: one sandbox session per episode, reached over gRPC.

`SandboxToolBoxFactory.open(files)` creates a session whose workspace starts with the query's
files, `attach(id)` binds to an existing one as it is; the toolbox offers exactly the tools the
sandbox lists (ListTools) that this module knows how to call, and turns each call into the
matching RPC. Results are rendered as text for the model: command output with its exit code
and flags. A sandbox error (a bad path, a missing file) is a tool error the model sees;
workspace files the sandbox refuses raise `InvalidArgument`; a sandbox that cannot be reached
raises `Unavailable`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import duration_pb2

from limi.query.v1 import query_pb2
from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.errors import InvalidArgument, Unavailable
from limi_core.sandbox_exec import collect_exec
from limi_rollout.tools import ToolOutcome

log = logging.getLogger(__name__)

# gRPC codes that mean "the call was wrong", which the model should see and can fix.
MODEL_FIXABLE = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def render_exec(stdout: bytes, stderr: bytes, result: sandbox_pb2.ExecResult) -> str:
    text = stdout.decode("utf-8", errors="replace")
    if stderr:
        text += ("\n" if text and not text.endswith("\n") else "") + stderr.decode("utf-8", errors="replace")
    notes = [f"exit code {result.exit_code}"]
    if result.timed_out:
        notes.append("timed out")
    if result.memory_exceeded:
        notes.append("memory limit exceeded")
    if result.output_truncated:
        notes.append("output truncated")
    return f"{text.rstrip()}\n[{', '.join(notes)}]".lstrip("\n")


class SandboxToolBox:
    def __init__(self, stub: sandbox_pb2_grpc.SandboxServiceStub, session: sandbox_pb2.Session, tools: list[dict]) -> None:
        self._stub, self._session = stub, session
        self.backend, self.image, self.session_id = session.backend, session.image, session.id
        self._tools = tools

    def tools(self) -> list[dict]:
        return self._tools

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        started = time.perf_counter()
        try:
            outcome = await _CALLS[name](self, arguments)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in MODEL_FIXABLE:
                return ToolOutcome(output=f"error: {exc.details()}", exit_code=-1, is_error=True, error=exc.details() or "",
                                   duration_seconds=time.perf_counter() - started)
            raise Unavailable(f"sandbox call {name} failed: {exc.code().name}: {exc.details()}") from exc
        return outcome

    async def _stream(self, events) -> ToolOutcome:
        output = await collect_exec(events)
        result = output.result or sandbox_pb2.ExecResult()
        return ToolOutcome(
            output=render_exec(output.stdout, output.stderr, result), exit_code=result.exit_code,
            truncated=result.output_truncated, duration_seconds=result.duration.ToTimedelta().total_seconds(),
        )

    async def _shell(self, a: dict) -> ToolOutcome:
        request = sandbox_pb2.ExecRequest(session_id=self.session_id, command=a["command"])
        if a.get("timeout"):
            request.timeout.CopyFrom(duration_pb2.Duration(seconds=int(a["timeout"])))
        return await self._stream(self._stub.Exec(request))

    async def _python(self, a: dict) -> ToolOutcome:
        request = sandbox_pb2.RunPythonRequest(session_id=self.session_id, code=a["code"])
        if a.get("timeout"):
            request.timeout.CopyFrom(duration_pb2.Duration(seconds=int(a["timeout"])))
        return await self._stream(self._stub.RunPython(request))

    async def _read_file(self, a: dict) -> ToolOutcome:
        reply = await self._stub.ReadFile(sandbox_pb2.ReadFileRequest(
            session_id=self.session_id, path=a["path"], offset=int(a.get("offset") or 0), limit=int(a.get("limit") or 0)))
        text = reply.content.decode("utf-8", errors="replace")
        return ToolOutcome(output=text + ("\n[file truncated]" if reply.truncated else ""), truncated=reply.truncated)

    async def _write_file(self, a: dict) -> ToolOutcome:
        reply = await self._stub.WriteFile(sandbox_pb2.WriteFileRequest(session_id=self.session_id, path=a["path"], content=a["content"].encode()))
        return ToolOutcome(output=f"wrote {reply.bytes_written} bytes to {a['path']}")

    async def _edit_file(self, a: dict) -> ToolOutcome:
        reply = await self._stub.EditFile(sandbox_pb2.EditFileRequest(
            session_id=self.session_id, path=a["path"], old_text=a["old_text"], new_text=a["new_text"]))
        return ToolOutcome(output=f"edited {a['path']} ({reply.replacements} replacement)")

    async def _list_dir(self, a: dict) -> ToolOutcome:
        reply = await self._stub.ListDir(sandbox_pb2.ListDirRequest(session_id=self.session_id, path=a.get("path") or "."))
        lines = [f"{e.name}/" if e.is_dir else f"{e.name}  ({e.size} bytes)" for e in reply.entries]
        return ToolOutcome(output="\n".join(lines) or "(empty)")

    async def _search(self, a: dict) -> ToolOutcome:
        reply = await self._stub.Search(sandbox_pb2.SearchRequest(
            session_id=self.session_id, pattern=a["pattern"], path=a.get("path") or ".", max_results=int(a.get("max_results") or 0)))
        lines = [f"{m.path}:{m.line}: {m.text}" for m in reply.matches]
        return ToolOutcome(output="\n".join(lines) or "(no matches)", truncated=reply.truncated)

    async def close(self) -> None:
        try:
            await self._stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=self.session_id), timeout=30)
        except grpc.aio.AioRpcError as exc:
            log.warning("closing sandbox session %s failed: %s", self.session_id, exc.details())


_CALLS = {
    "shell": SandboxToolBox._shell,
    "python": SandboxToolBox._python,
    "read_file": SandboxToolBox._read_file,
    "write_file": SandboxToolBox._write_file,
    "edit_file": SandboxToolBox._edit_file,
    "list_dir": SandboxToolBox._list_dir,
    "search": SandboxToolBox._search,
}


class SandboxToolBoxFactory:
    def __init__(self, address: str, backend: str = "bwrap") -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = sandbox_pb2_grpc.SandboxServiceStub(self._channel)
        self._backend = backend
        self._tools: list[dict] | None = None
        self.address = address

    async def _known_tools(self) -> list[dict]:
        if self._tools is None:
            try:
                reply = await self._stub.ListTools(sandbox_pb2.ListToolsRequest(), timeout=30)
            except grpc.aio.AioRpcError as exc:
                raise Unavailable(f"the sandbox service at {self.address} did not list its tools: {exc.code().name}") from exc
            listed = [json.loads(text) for text in reply.tools_json]
            unknown = sorted(t["function"]["name"] for t in listed if t["function"]["name"] not in _CALLS)
            if unknown:
                log.warning("sandbox tools this rollout cannot call are not offered: %s", ", ".join(unknown))
            self._tools = [t for t in listed if t["function"]["name"] in _CALLS]
        return self._tools

    async def open(self, files: Sequence[query_pb2.WorkspaceFile] = ()) -> SandboxToolBox:
        tools = await self._known_tools()
        request = sandbox_pb2.CreateSessionRequest(
            backend=self._backend, files=[sandbox_pb2.File(path=f.path, content=f.content, mode=f.mode) for f in files])
        try:
            session = await self._stub.CreateSession(request, timeout=60)
        except grpc.aio.AioRpcError as exc:
            if files and exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument("query.workspace_files", f"the sandbox refused them: {exc.details()}") from exc
            raise Unavailable(f"the sandbox service at {self.address} could not create a session: {exc.code().name}: {exc.details()}") from exc
        return SandboxToolBox(self._stub, session, tools)

    async def attach(self, session_id: str) -> SandboxToolBox:
        tools = await self._known_tools()
        return SandboxToolBox(self._stub, sandbox_pb2.Session(id=session_id, backend=self._backend), tools)

    async def close(self) -> None:
        await self._channel.close()
