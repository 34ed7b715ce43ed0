"""Tools backed by the sandbox service: one sandbox session per episode, through limi_core's client.

`SandboxToolBoxFactory.open(files)` creates a session whose workspace starts with the query's
files, `attach(id)` binds to an existing one as it is; the toolbox offers exactly the tools the
sandbox lists (ListTools) that this module knows how to call, and turns each call into the
matching request of `limi_core.sandbox_client.SandboxClient` (which retries the transient
answers). Results are rendered as text for the model: command output with its exit code and
flags. A request the sandbox refuses (a bad path, a missing file, its limits) is a tool error
the model sees; workspace files the sandbox refuses raise `InvalidArgument`; a sandbox that
cannot be reached, or that no longer holds the episode's session, raises `SandboxUnavailable`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import grpc

from limi.query.v1 import query_pb2
from limi.sandbox.v1 import sandbox_pb2
from limi_core.errors import InvalidArgument
from limi_core.sandbox_client import ExecOutput, SandboxBusy, SandboxClient, SandboxRefused, SandboxUnavailable
from limi_rollout.tools import ToolOutcome

log = logging.getLogger(__name__)


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
    def __init__(self, client: SandboxClient, session: sandbox_pb2.Session, tools: list[dict]) -> None:
        self._client = client
        self.backend, self.image, self.session_id = session.backend, session.image, session.id
        self._tools = tools

    def tools(self) -> list[dict]:
        return self._tools

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one tool call; a refusal is the model's to see, an unreachable sandbox raises.

        Raises:
            SandboxUnavailable: the sandbox did not answer, or no longer holds this session.
        """
        started = time.perf_counter()
        try:
            return await _CALLS[name](self, arguments)
        except (SandboxRefused, SandboxBusy) as exc:
            if (
                isinstance(exc, SandboxRefused)
                and exc.code == grpc.StatusCode.NOT_FOUND
                and not await self._client.session_exists(self.session_id)
            ):
                raise SandboxUnavailable(
                    f"the sandbox at {self._client.address} no longer holds session {self.session_id} "
                    "(it restarted or reaped it)"
                ) from exc
            details = exc.details if isinstance(exc, SandboxRefused) else str(exc)
            return ToolOutcome(
                output=f"error: {details}",
                exit_code=-1,
                is_error=True,
                error=details,
                duration_seconds=time.perf_counter() - started,
            )

    @staticmethod
    def _command(output: ExecOutput) -> ToolOutcome:
        result = output.result or sandbox_pb2.ExecResult()
        return ToolOutcome(
            output=render_exec(output.stdout, output.stderr, result),
            exit_code=result.exit_code,
            truncated=result.output_truncated,
            duration_seconds=result.duration.ToTimedelta().total_seconds(),
        )

    async def _shell(self, a: dict) -> ToolOutcome:
        return self._command(await self._client.exec(self.session_id, a["command"], int(a.get("timeout") or 0) or None))

    async def _python(self, a: dict) -> ToolOutcome:
        return self._command(
            await self._client.run_python(self.session_id, a["code"], int(a.get("timeout") or 0) or None)
        )

    async def _read_file(self, a: dict) -> ToolOutcome:
        reply = await self._client.read_file(
            self.session_id, a["path"], int(a.get("offset") or 0), int(a.get("limit") or 0)
        )
        text = reply.content.decode("utf-8", errors="replace")
        return ToolOutcome(output=text + ("\n[file truncated]" if reply.truncated else ""), truncated=reply.truncated)

    async def _write_file(self, a: dict) -> ToolOutcome:
        reply = await self._client.write_file(self.session_id, a["path"], a["content"].encode())
        return ToolOutcome(output=f"wrote {reply.bytes_written} bytes to {a['path']}")

    async def _edit_file(self, a: dict) -> ToolOutcome:
        reply = await self._client.edit_file(self.session_id, a["path"], a["old_text"], a["new_text"])
        return ToolOutcome(output=f"edited {a['path']} ({reply.replacements} replacement)")

    async def _list_dir(self, a: dict) -> ToolOutcome:
        reply = await self._client.list_dir(self.session_id, a.get("path") or ".")
        lines = [f"{e.name}/" if e.is_dir else f"{e.name}  ({e.size} bytes)" for e in reply.entries]
        return ToolOutcome(output="\n".join(lines) or "(empty)")

    async def _search(self, a: dict) -> ToolOutcome:
        reply = await self._client.search(
            self.session_id, a["pattern"], a.get("path") or ".", int(a.get("max_results") or 0)
        )
        lines = [f"{m.path}:{m.line}: {m.text}" for m in reply.matches]
        return ToolOutcome(output="\n".join(lines) or "(no matches)", truncated=reply.truncated)

    async def close(self) -> None:
        await self._client.close_session(self.session_id)


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
        self._client = SandboxClient(address, backend)
        self._tools: list[dict] | None = None
        self.address = address

    async def _known_tools(self) -> list[dict]:
        if self._tools is None:
            reply = await self._client.list_tools()
            listed = [json.loads(text) for text in reply.tools_json]
            unknown = sorted(t["function"]["name"] for t in listed if t["function"]["name"] not in _CALLS)
            if unknown:
                log.warning("sandbox tools this rollout cannot call are not offered: %s", ", ".join(unknown))
            self._tools = [t for t in listed if t["function"]["name"] in _CALLS]
        return self._tools

    async def open(self, files: Sequence[query_pb2.WorkspaceFile] = ()) -> SandboxToolBox:
        tools = await self._known_tools()
        try:
            session = await self._client.create_session([(f.path, f.content, f.mode) for f in files], timeout=60)
        except SandboxRefused as exc:
            if files and exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument("query.workspace_files", f"the sandbox refused them: {exc.details}") from exc
            raise
        return SandboxToolBox(self._client, session, tools)

    async def attach(self, session_id: str) -> SandboxToolBox:
        tools = await self._known_tools()
        return SandboxToolBox(self._client, sandbox_pb2.Session(id=session_id, backend=self._client.backend), tools)

    async def close(self) -> None:
        await self._client.close()
