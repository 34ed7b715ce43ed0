"""LIMI datasets in the exact public schema: reading (JSON array or JSONL) and writing.

The public LIMI dataset is a JSON array of samples `{"tools": [...], "messages": [...]}` (see
../shared/guides/LIMI_FACTS.md); limi also writes JSONL, one sample per line, optionally with its
own `limi` metadata key. Reading is strict: top-level keys other than `tools`, `messages` and
`limi` are errors, every message needs a known role and only the keys of its role, tool-call
`arguments` must be JSON objects (not strings as on the OpenAI wire), and the rest is checked by
`limi_format.limi_to_trajectory`. Each error names the file, the sample (line for JSONL, position
for an array) and the field. Imported samples get the trajectory id kept in their `limi` key,
else `limi-<first 16 hex of the sha256 of the canonical sample>`. Writing (`export_samples`) can
drop the `limi` key (`strict`) so the file is byte-for-byte the public schema.
"""

from __future__ import annotations

import hashlib
import json

from limi.trajectory.v1 import trajectory_pb2
from limi_core import limi_format
from limi_core.errors import InvalidArgument

TOP_LEVEL_KEYS = {"tools", "messages", "limi"}
MESSAGE_KEYS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls"},
    "tool": {"role", "content", "tool_call_id"},
}


class SampleError(InvalidArgument):
    def __init__(self, where: str, field: str, reason: str) -> None:
        super().__init__(f"{where} field {field}", reason)


def parse_limi_dataset(content: bytes, origin: str) -> list[tuple[str, dict]]:
    """(where, sample) pairs, where names the sample in errors ("limi.json sample 3", "train.jsonl line 7")."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(origin, f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    stripped = text.lstrip()
    samples: list[tuple[str, dict]] = []
    if stripped.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                origin, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        for number, value in enumerate(values, start=1):
            samples.append((f"{origin} sample {number}", value))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                samples.append((f"{origin} line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise SampleError(
                    f"{origin} line {number}", "(line)", f"is not valid JSON: {exc.msg} at column {exc.colno}"
                ) from None
    if not samples:
        raise InvalidArgument(origin, "holds no samples")
    for where, sample in samples:
        check_sample(sample, where)
    return samples


def check_sample(sample: object, where: str) -> None:
    """Raise SampleError unless `sample` follows the public LIMI schema (plus the optional `limi` key)."""
    if not isinstance(sample, dict):
        raise SampleError(where, "(sample)", "must be a JSON object")
    unknown = sorted(set(sample) - TOP_LEVEL_KEYS)
    if unknown:
        raise SampleError(where, unknown[0], "is not a LIMI sample key (tools, messages)")
    messages = sample.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SampleError(where, "messages", "must be a non-empty list")
    for i, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") in MESSAGE_KEYS:
            extra = sorted(set(message) - MESSAGE_KEYS[message["role"]])
            if extra:
                raise SampleError(where, f"messages[{i}].{extra[0]}", f"is not a key of a {message['role']} message")
            for j, call in enumerate(message.get("tool_calls") or []):
                arguments = (
                    call.get("function", {}).get("arguments")
                    if isinstance(call, dict) and isinstance(call.get("function"), dict)
                    else None
                )
                if isinstance(arguments, str):
                    raise SampleError(
                        where,
                        f"messages[{i}].tool_calls[{j}].function.arguments",
                        "must be a JSON object, not a string",
                    )
    try:
        limi_format.limi_to_trajectory(sample)
    except limi_format.InvalidLimiSample as exc:
        raise SampleError(where, exc.field, exc.reason) from None


def sample_to_trajectory(sample: dict, *, category: str = "", origin: str = "") -> trajectory_pb2.Trajectory:
    trajectory = limi_format.limi_to_trajectory(sample)
    if not trajectory.id:
        public = {"tools": sample.get("tools") or [], "messages": sample["messages"]}
        trajectory.id = "limi-" + hashlib.sha256(limi_format.canonical_json(public).encode("utf-8")).hexdigest()[:16]
    if not trajectory.outcome.status:
        # The public LIMI samples are trajectories recorded "until the task succeeds".
        trajectory.outcome.status = trajectory_pb2.OUTCOME_STATUS_COMPLETED
    if category and "category" not in trajectory.labels:
        trajectory.labels["category"] = category
    if origin:
        trajectory.labels.setdefault("imported_from", origin)
    return trajectory


def export_samples(samples: list[dict], *, strict: bool, json_array: bool) -> list[bytes]:
    """The dataset as byte chunks (one per sample, plus the array brackets)."""
    lines = [
        limi_format.dumps_sample({k: v for k, v in s.items() if k != "limi"} if strict else s).encode("utf-8")
        for s in samples
    ]
    if not json_array:
        return [line + b"\n" for line in lines]
    chunks = [b"[\n"]
    for position, line in enumerate(lines):
        chunks.append(line + (b",\n" if position < len(lines) - 1 else b"\n"))
    chunks.append(b"]\n")
    return chunks
