"""Reading the sandbox's Exec and RunPython streams: output chunks gathered, then the final result.

Shared by every client of the sandbox service (the rollout's tools, the evaluator's rubric
checks). It does not retry, render or interpret anything: `result` is None when the stream
ended without its final result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable

from limi.sandbox.v1 import sandbox_pb2


@dataclasses.dataclass(frozen=True)
class ExecOutput:
    stdout: bytes
    stderr: bytes
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
