"""One sandbox session: commands and file tools against its own long-lived sandbox.

`Session.exec()` sends the command to the sandbox's agent (no sandbox start-up per call) and
yields `OutputChunk`s, then one `ExecOutcome`; leaving the iteration early (a cancelled call)
kills the command's process group and whatever it left behind. Memory exhaustion is read from
the sandbox's cgroup OOM counter where there is one, else from the agent's evidence. The file
tools check paths lexically (paths.py) and let the agent resolve them inside the sandbox. Each
call counts toward the session's concurrent-call quota and keeps it from idling out; commands
also take a slot of the service-wide `ExecSlots`. No gRPC here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator

from limi_core.errors import InvalidArgument, ResourceExhausted
from limi_sandbox import metrics
from limi_sandbox.backends import Sandbox
from limi_sandbox.limits import SessionLimits
from limi_sandbox.paths import workspace_path
from limi_sandbox.settings import SandboxSettings

FILE_CALL_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class OutputChunk:
    stream: str  # "stdout" or "stderr"
    data: bytes


@dataclasses.dataclass(frozen=True)
class ExecOutcome:
    exit_code: int
    signal: int = 0
    timed_out: bool = False
    memory_exceeded: bool = False
    output_truncated: bool = False
    cpu_limit_exceeded: bool = False
    cancelled: bool = False
    duration_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class DirEntry:
    name: str
    is_dir: bool
    is_symlink: bool
    size: int


@dataclasses.dataclass(frozen=True)
class SearchMatch:
    path: str
    line: int
    text: str


class ExecSlots:
    """The service-wide cap on commands running at once."""

    def __init__(self, limit: int) -> None:
        self.limit, self.in_use = limit, 0

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            metrics.REJECTED.labels("concurrent_execs").inc()
            raise ResourceExhausted(f"{self.in_use} commands are running, the most this service runs at once; retry later")
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1


class Session:
    def __init__(self, session_id: str, sandbox: Sandbox, limits: SessionLimits, settings: SandboxSettings, slots: ExecSlots,
                 warm: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.id, self.sandbox, self.limits, self.settings, self.slots = session_id, sandbox, limits, settings, slots
        self.backend, self.image, self.warm = sandbox.backend, sandbox.spec.image, warm
        self.clock = clock
        self.created = self.last_used = clock()
        self.calls = 0

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        if self.calls >= self.settings.max_calls_per_session:
            metrics.REJECTED.labels("calls_per_session").inc()
            raise ResourceExhausted(f"session {self.id} already has {self.calls} calls in flight, its most; retry later")
        self.calls += 1
        self.last_used = self.clock()
        try:
            yield
        finally:
            self.calls -= 1
            self.last_used = self.clock()

    async def exec(self, *, command: str | None = None, argv: list[str] | None = None, stdin: bytes = b"",
                   timeout: float | None = None) -> AsyncIterator[OutputChunk | ExecOutcome]:
        timeout = min(timeout or self.limits.wall_timeout_seconds, self.settings.max_wall_timeout_seconds)
        with self._call(), self.slots.take():
            started = time.perf_counter()
            before = self.sandbox.oom_kills()
            header = {"timeout": timeout, "max_output": self.limits.max_output_bytes,
                      "limits": self.limits.rlimits(self.sandbox.use_address_space)}
            header.update({"argv": argv} if argv else {"command": command})
            result: dict = {}
            frames = self.sandbox.agent.stream("exec", header, stdin, timeout=timeout + 15.0, budget=self.limits.max_output_bytes + (1 << 20))
            try:
                async for reply, payload in frames:
                    if reply.get("type") in ("stdout", "stderr"):
                        yield OutputChunk(reply["type"], payload)
                    else:
                        result = reply
            finally:
                await frames.aclose()
            outcome = self._outcome(result, before)
            metrics.EXEC_SECONDS.labels(self.backend).observe(time.perf_counter() - started)
            metrics.EXEC_OUTCOMES.labels(self.backend, metrics.outcome_name(
                timed_out=outcome.timed_out, memory_exceeded=outcome.memory_exceeded, cpu_limit_exceeded=outcome.cpu_limit_exceeded,
                cancelled=outcome.cancelled, truncated=outcome.output_truncated, exit_code=outcome.exit_code)).inc()
            yield outcome

    def _outcome(self, result: dict, oom_before: int | None) -> ExecOutcome:
        exit_code = int(result.get("exit_code", -1))
        oom_after = self.sandbox.oom_kills()
        killed_for_memory = oom_before is not None and oom_after is not None and oom_after > oom_before
        # Under RLIMIT_AS an allocation fails instead: the agent saw the program say so on stderr.
        refused_memory = self.sandbox.use_address_space and bool(result.get("memory_hint")) and exit_code != 0
        memory = killed_for_memory or refused_memory
        return ExecOutcome(
            exit_code=exit_code, signal=int(result.get("signal", 0)), timed_out=bool(result.get("timed_out")),
            memory_exceeded=memory, output_truncated=bool(result.get("output_truncated")),
            cpu_limit_exceeded=bool(result.get("cpu_limit_exceeded")), cancelled=bool(result.get("cancelled")),
            duration_seconds=float(result.get("duration", 0.0)),
        )

    async def _file_call(self, op: str, header: dict, body: bytes = b"") -> tuple[dict, bytes]:
        with self._call():
            return await self.sandbox.agent.call(op, header, body, timeout=FILE_CALL_SECONDS)

    async def read_file(self, path: str, offset: int, limit: int) -> tuple[bytes, int, bool]:
        if offset < 0 or limit < 0:
            raise InvalidArgument("offset" if offset < 0 else "limit", "must not be negative")
        limit = min(limit or self.settings.max_read_bytes, self.settings.max_read_bytes)
        reply, content = await self._file_call("read", {"path": workspace_path(path, allow_root=False), "offset": offset, "limit": limit})
        return content, int(reply["size"]), bool(reply["truncated"])

    async def write_file(self, path: str, content: bytes, mode: int = 0) -> int:
        if mode < 0 or mode > 0o7777:
            raise InvalidArgument("mode", "must be permission bits such as 0644")
        reply, _ = await self._file_call("write", {"path": workspace_path(path, allow_root=False), "mode": mode & 0o777}, content)
        return int(reply["bytes_written"])

    async def edit_file(self, path: str, old_text: str, new_text: str) -> int:
        if not old_text:
            raise InvalidArgument("old_text", "must not be empty")
        header = {"path": workspace_path(path, allow_root=False), "old_text": old_text, "new_text": new_text,
                  "max_bytes": self.settings.max_read_bytes}
        reply, _ = await self._file_call("edit", header)
        return int(reply["replacements"])

    async def list_dir(self, path: str) -> tuple[list[DirEntry], bool]:
        reply, _ = await self._file_call("list", {"path": workspace_path(path), "max_entries": 10_000})
        entries = [DirEntry(str(e["name"]), bool(e["is_dir"]), bool(e["is_symlink"]), int(e["size"])) for e in reply["entries"]]
        return entries, bool(reply["truncated"])

    async def search(self, pattern: str, path: str, max_results: int) -> tuple[list[SearchMatch], bool]:
        if not pattern:
            raise InvalidArgument("pattern", "must not be empty")
        if "\0" in pattern or len(pattern) > 10_000:
            raise InvalidArgument("pattern", "must be at most 10000 characters without NUL bytes")
        if max_results < 0:
            raise InvalidArgument("max_results", "must not be negative")
        header = {"pattern": pattern, "path": workspace_path(path), "max_results": min(max_results or 100, 1000), "timeout": 20,
                  "limits": {"cpu": 10, "as": self.limits.memory_bytes}}
        reply, _ = await self._file_call("search", header)
        return [SearchMatch(str(m["path"]), int(m["line"]), str(m["text"])) for m in reply["matches"]], bool(reply["truncated"])

    async def upload(self, archive: bytes, path: str) -> int:
        if len(archive) > self.settings.max_archive_bytes:
            raise ResourceExhausted(f"archive: {len(archive)} bytes, more than the limit of {self.settings.max_archive_bytes}")
        header = {"path": workspace_path(path, "path"), "max_bytes": self.limits.workspace_bytes, "max_files": self.settings.max_archive_files}
        reply, _ = await self._file_call("upload", header, archive)
        return int(reply["files"])

    async def download(self, path: str) -> bytes:
        _, archive = await self._file_call("download", {"path": workspace_path(path), "max_bytes": self.settings.max_archive_bytes})
        return archive

    async def close(self) -> None:
        await self.sandbox.close()
