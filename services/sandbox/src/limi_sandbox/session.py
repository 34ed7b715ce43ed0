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
from typing import Any

from limi_core.errors import InvalidArgument, ResourceExhausted
from limi_sandbox import metrics
from limi_sandbox.agent_client import EXEC_OVERHEAD_BYTES, SMALL_RESULT_BYTES
from limi_sandbox.backends import Sandbox
from limi_sandbox.limits import SessionLimits
from limi_sandbox.paths import workspace_path
from limi_sandbox.settings import SandboxSettings

FILE_CALL_SECONDS = 60.0
MAX_LIST_ENTRIES = 10_000
MAX_SEARCH_RESULTS = 1000
# A search stops after this long, or this much CPU (or the session's per-command CPU limit, if lower).
SEARCH_SECONDS, SEARCH_CPU_SECONDS = 20, 10
# The most a list or search answer's JSON holds (agent_files.MAX_ANSWER_BYTES).
MAX_JSON_ANSWER_BYTES = 4 << 20


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
            raise ResourceExhausted(
                f"{self.in_use} commands are running, the most this service runs at once; retry later"
            )
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1


class Session:
    def __init__(
        self,
        session_id: str,
        sandbox: Sandbox,
        limits: SessionLimits,
        settings: SandboxSettings,
        slots: ExecSlots,
        warm: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id, self.sandbox, self.limits, self.settings, self.slots = session_id, sandbox, limits, settings, slots
        self.backend, self.image, self.warm = sandbox.backend, sandbox.spec.image, warm
        self.clock = clock
        self._exec_seconds = metrics.EXEC_SECONDS.labels(self.backend)
        self.created = self.last_used = clock()
        self.calls = 0

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        if self.calls >= self.settings.max_calls_per_session:
            metrics.REJECTED.labels("calls_per_session").inc()
            raise ResourceExhausted(
                f"session {self.id} already has {self.calls} calls in flight, its most; retry later"
            )
        self.calls += 1
        self.last_used = self.clock()
        try:
            yield
        finally:
            self.calls -= 1
            self.last_used = self.clock()

    async def exec(
        self,
        *,
        command: str | None = None,
        argv: list[str] | None = None,
        stdin: bytes = b"",
        timeout: float | None = None,
    ) -> AsyncIterator[OutputChunk | ExecOutcome]:
        timeout = min(timeout or self.limits.wall_timeout_seconds, self.settings.max_wall_timeout_seconds)
        with self._call(), self.slots.take():
            started = time.perf_counter()
            before = self.sandbox.oom_kills()
            header = {
                "timeout": timeout,
                "max_output": self.limits.max_output_bytes,
                "limits": self.limits.rlimits(self.sandbox.use_address_space),
            }
            header.update({"argv": argv} if argv else {"command": command})
            result: dict = {}
            frames = self.sandbox.agent.stream(
                "exec", header, stdin, timeout=timeout + 15.0, budget=self.limits.max_output_bytes + EXEC_OVERHEAD_BYTES
            )
            try:
                async for reply, payload in frames:
                    if reply.get("type") in ("stdout", "stderr"):
                        yield OutputChunk(reply["type"], payload)
                    else:
                        result = reply
            finally:
                await frames.aclose()
            outcome = self._outcome(result, before)
            self._exec_seconds.observe(time.perf_counter() - started)
            metrics.EXEC_OUTCOMES.labels(
                self.backend,
                metrics.outcome_name(
                    timed_out=outcome.timed_out,
                    memory_exceeded=outcome.memory_exceeded,
                    cpu_limit_exceeded=outcome.cpu_limit_exceeded,
                    cancelled=outcome.cancelled,
                    truncated=outcome.output_truncated,
                    exit_code=outcome.exit_code,
                ),
            ).inc()
            yield outcome

    def _outcome(self, result: dict, oom_before: int | None) -> ExecOutcome:
        exit_code = result.get("exit_code", -1)
        oom_after = self.sandbox.oom_kills()
        killed_for_memory = oom_before is not None and oom_after is not None and oom_after > oom_before
        # Under RLIMIT_AS an allocation fails instead: the agent saw the program say so on stderr.
        refused_memory = self.sandbox.use_address_space and bool(result.get("memory_hint")) and exit_code != 0
        memory = killed_for_memory or refused_memory
        return ExecOutcome(  # the agent client checked every field's type and range
            exit_code=exit_code,
            signal=result.get("signal", 0),
            timed_out=result.get("timed_out", False),
            memory_exceeded=memory,
            output_truncated=result.get("output_truncated", False),
            cpu_limit_exceeded=result.get("cpu_limit_exceeded", False),
            cancelled=result.get("cancelled", False),
            duration_seconds=float(result.get("duration", 0.0)),
        )

    async def _file_call(self, op: str, header: dict, body: bytes = b"", answer_bytes: int = 0) -> tuple[dict, Any]:
        """One file tool; `answer_bytes` is the most its answer's body may hold."""
        with self._call():
            return await self.sandbox.agent.call(
                op, header, body, timeout=FILE_CALL_SECONDS, budget=answer_bytes + SMALL_RESULT_BYTES
            )

    async def read_file(self, path: str, offset: int, limit: int) -> tuple[bytes, int, bool]:
        if offset < 0 or limit < 0:
            raise InvalidArgument("offset" if offset < 0 else "limit", "must not be negative")
        limit = min(limit or self.settings.max_read_bytes, self.settings.max_read_bytes)
        reply, content = await self._file_call(
            "read",
            {"path": workspace_path(path, allow_root=False), "offset": offset, "limit": limit},
            answer_bytes=limit,
        )
        if len(content) > limit:
            raise self.sandbox.agent.broken(f"a read of {limit} bytes answered {len(content)}")
        return content, reply.get("size", len(content)), reply.get("truncated", False)

    async def write_file(self, path: str, content: bytes, mode: int = 0) -> int:
        if mode < 0 or mode > 0o7777:
            raise InvalidArgument("mode", "must be permission bits such as 0644")
        reply, _ = await self._file_call(
            "write", {"path": workspace_path(path, allow_root=False), "mode": mode & 0o777}, content
        )
        return reply.get("bytes_written", 0)

    async def edit_file(self, path: str, old_text: str, new_text: str) -> int:
        """Replace the one occurrence of `old_text`; the file, before and after, is at most max_read_bytes."""
        if not old_text:
            raise InvalidArgument("old_text", "must not be empty")
        largest = self.settings.max_read_bytes
        old, new = old_text.encode(), new_text.encode()
        for field, text in (("old_text", old), ("new_text", new)):
            if len(text) > largest:
                raise InvalidArgument(
                    field, f"is {len(text)} bytes; EditFile works on files of at most {largest} bytes"
                )
        header = {"path": workspace_path(path, allow_root=False), "old_bytes": len(old), "max_bytes": largest}
        reply, _ = await self._file_call("edit", header, old + new)
        return reply.get("replacements", 0)

    async def list_dir(self, path: str) -> tuple[list[DirEntry], bool]:
        reply, entries = await self._file_call(
            "list", {"path": workspace_path(path), "max_entries": MAX_LIST_ENTRIES}, answer_bytes=MAX_JSON_ANSWER_BYTES
        )
        return [DirEntry(e["name"], e["is_dir"], e["is_symlink"], e["size"]) for e in entries], reply.get(
            "truncated", False
        )

    async def search(self, pattern: str, path: str, max_results: int) -> tuple[list[SearchMatch], bool]:
        if not pattern:
            raise InvalidArgument("pattern", "must not be empty")
        if "\0" in pattern or len(pattern) > 10_000:
            raise InvalidArgument("pattern", "must be at most 10000 characters without NUL bytes")
        if max_results < 0:
            raise InvalidArgument("max_results", "must not be negative")
        wanted = min(max_results or 100, MAX_SEARCH_RESULTS)
        header = {
            "pattern": pattern,
            "path": workspace_path(path),
            "max_results": wanted,
            "timeout": SEARCH_SECONDS,
            "limits": {"cpu": min(SEARCH_CPU_SECONDS, self.limits.cpu_seconds), "as": self.limits.memory_bytes},
        }
        reply, matches = await self._file_call("search", header, answer_bytes=MAX_JSON_ANSWER_BYTES)
        if len(matches) > wanted:
            raise self.sandbox.agent.broken(f"a search for {wanted} matches answered {len(matches)}")
        # truncated: more matches than returned, or the search was cut short by its limits and may have missed some.
        return [SearchMatch(m["path"], m["line"], m["text"]) for m in matches], reply.get(
            "truncated", False
        ) or reply.get("cut_short", False)

    async def upload(self, archive: bytes, path: str) -> int:
        if len(archive) > self.settings.max_archive_bytes:
            raise ResourceExhausted(
                f"archive: {len(archive)} bytes, more than the limit of {self.settings.max_archive_bytes}"
            )
        header = {
            "path": workspace_path(path, "path"),
            "max_bytes": self.limits.workspace_bytes,
            "max_files": self.settings.max_archive_files,
        }
        reply, _ = await self._file_call("upload", header, archive)
        return reply.get("files", 0)

    async def download(self, path: str) -> bytes:
        largest = self.settings.max_archive_bytes
        _, archive = await self._file_call(
            "download", {"path": workspace_path(path), "max_bytes": largest}, answer_bytes=largest
        )
        return archive

    async def close(self) -> None:
        await self.sandbox.close()
