"""Convert between `Trajectory` protos and the public LIMI JSON training sample.

The public LIMI sample is `{"tools": [...], "messages": [...]}` in OpenAI chat form,
with tool-call `arguments` as a JSON object and reasoning folded into assistant
`content`. `trajectory_to_limi` writes that, plus (unless `strict=True`) one extra
`"limi"` key holding everything the messages cannot carry: a compact skeleton of the
trajectory with the message-carried fields cleared, and small per-step extras (where
reasoning ends inside the content, tool-call arguments or tool parameters whose raw
text is not the canonical JSON form). With that key the conversion is exactly
lossless; without it (`strict=True`) timings, usage, token ids, tool-result flags,
feedback, outcome, lineage and raw argument text are dropped on purpose.

`limi_to_trajectory` reads both forms and raises `InvalidLimiSample` naming the bad
field. It does not tokenize, apply chat templates, drop over-long samples or check
argument types across samples: that is the dataset builder's job.
"""

import json
from typing import Any

from google.protobuf import json_format

from limi.trajectory.v1 import trajectory_pb2
from limi_core.errors import InvalidArgument

FORMAT_VERSION = 1

_ROLE_NAMES = {
    trajectory_pb2.ROLE_SYSTEM: "system",
    trajectory_pb2.ROLE_USER: "user",
    trajectory_pb2.ROLE_ASSISTANT: "assistant",
    trajectory_pb2.ROLE_TOOL: "tool",
}
_ROLES_BY_NAME = {name: role for role, name in _ROLE_NAMES.items()}


class InvalidLimiSample(InvalidArgument):
    """A LIMI sample (or its JSON text) that cannot be read.

    Attributes:
        field: Path of the bad field, e.g. `messages[3].tool_calls[0].function.arguments`.
        reason: What is wrong with it.
    """


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text LIMI stores for arguments and parameters."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse_json_object(text: str) -> dict | None:
    """Return `text` parsed when it holds a JSON object `canonical_json` can write, else None."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        if not isinstance(value, dict):
            return None
        canonical_json(value)  # Also rejects numbers too large for a double, such as 1e400.
    except ValueError:
        return None
    return value


# ---------------------------------------------------------------- Trajectory -> LIMI


def trajectory_to_limi(trajectory: trajectory_pb2.Trajectory, *, strict: bool = False) -> dict:
    """Convert a trajectory into a LIMI training sample.

    Args:
        trajectory: The recorded episode. Every step needs a role other than
            ROLE_UNSPECIFIED.
        strict: Write only the public `tools` and `messages` keys. This is lossy by
            design: everything outside the messages is dropped and raw argument text
            is replaced by its parsed object.

    Returns:
        The sample as a dict of plain JSON values (see `dumps_sample`).

    Raises:
        ValueError: A step has a role LIMI cannot express.
    """
    tools, tool_extras = [], {}
    for k, spec in enumerate(trajectory.tools):
        parameters = _parse_json_object(spec.parameters_json) or {}
        function = {"name": spec.name, "description": spec.description, "parameters": parameters}
        tools.append({"type": "function", "function": function})
        if canonical_json(parameters) != spec.parameters_json:
            tool_extras[str(k)] = {"parameters_json": spec.parameters_json}
    messages, step_extras = [], {}
    for i, step in enumerate(trajectory.steps):
        message, extras = _step_to_message(step, i)
        messages.append(message)
        if extras:
            step_extras[str(i)] = extras
    sample: dict[str, Any] = {"tools": tools, "messages": messages}
    if strict:
        return sample
    skeleton = json_format.MessageToDict(_skeleton(trajectory), preserving_proto_field_name=True)
    sample["limi"] = {"version": FORMAT_VERSION, "trajectory": skeleton}
    if step_extras:
        sample["limi"]["steps"] = step_extras
    if tool_extras:
        sample["limi"]["tools"] = tool_extras
    return sample


def _step_to_message(step: trajectory_pb2.Step, position: int) -> tuple[dict, dict]:
    """Return the LIMI message for one step and the extras needed to undo it."""
    role = _ROLE_NAMES.get(step.role)
    if role is None:
        raise ValueError(f"steps[{position}] has role {step.role}, which LIMI cannot express")
    if step.role == trajectory_pb2.ROLE_TOOL:
        result = step.tool_result
        return {"role": "tool", "content": result.output, "tool_call_id": result.tool_call_id}, {}
    message: dict[str, Any] = {"role": role, "content": step.content}
    extras: dict[str, Any] = {}
    if _feedback_repeats_content(step):
        extras["feedback_text_is_content"] = True
    if step.role != trajectory_pb2.ROLE_ASSISTANT:
        return message, extras
    if step.reasoning_content:
        message["content"] = step.reasoning_content + "\n\n" + step.content
        extras["reasoning_chars"] = len(step.reasoning_content)
    calls, raw_arguments = [], {}
    for j, call in enumerate(step.tool_calls):
        arguments = _parse_json_object(call.arguments_json) or {}
        function = {"name": call.name, "arguments": arguments}
        calls.append({"id": call.id, "type": "function", "function": function})
        if canonical_json(arguments) != call.arguments_json:
            raw_arguments[str(j)] = call.arguments_json
    if calls:
        message["tool_calls"] = calls
    if raw_arguments:
        extras["arguments_json"] = raw_arguments
    return message, extras


def _feedback_repeats_content(step: trajectory_pb2.Step) -> bool:
    return (
        step.role == trajectory_pb2.ROLE_USER
        and step.HasField("feedback")
        and step.feedback.text != ""
        and step.feedback.text == step.content
    )


def _skeleton(trajectory: trajectory_pb2.Trajectory) -> trajectory_pb2.Trajectory:
    """Copy the trajectory and clear every field its LIMI messages and tools carry."""
    skeleton = trajectory_pb2.Trajectory()
    skeleton.CopyFrom(trajectory)
    skeleton.ClearField("tools")
    for original, step in zip(trajectory.steps, skeleton.steps, strict=False):
        step.ClearField("role")
        if original.role == trajectory_pb2.ROLE_TOOL:
            if step.HasField("tool_result"):
                step.tool_result.ClearField("output")
                step.tool_result.ClearField("tool_call_id")
            continue
        step.ClearField("content")
        if _feedback_repeats_content(original):
            step.feedback.ClearField("text")
        if original.role == trajectory_pb2.ROLE_ASSISTANT:
            step.ClearField("reasoning_content")
            step.ClearField("tool_calls")
    return skeleton


# ---------------------------------------------------------------- LIMI -> Trajectory


def limi_to_trajectory(sample: dict) -> trajectory_pb2.Trajectory:
    """Convert a LIMI training sample into a trajectory.

    A public sample (no `limi` key) gives steps indexed by position, tool specs,
    tool calls with canonical arguments and tool results with output and
    tool_call_id; reasoning stays inside assistant content. A sample written by
    `trajectory_to_limi` gives back the original trajectory exactly.

    Args:
        sample: The parsed sample (see `loads_sample`). `content: null` reads as "".

    Returns:
        The trajectory.

    Raises:
        InvalidLimiSample: The sample does not follow the schema; `field` names where.
    """
    if not isinstance(sample, dict):
        raise InvalidLimiSample("sample", "must be a JSON object")
    if "messages" not in sample:
        raise InvalidLimiSample("messages", "missing")
    messages = sample["messages"]
    if not isinstance(messages, list):
        raise InvalidLimiSample("messages", "must be a list")
    tools = sample.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise InvalidLimiSample("tools", "must be a list")
    specs = [_read_tool(tool, f"tools[{k}]") for k, tool in enumerate(tools)]
    steps = [_read_message(message, i) for i, message in enumerate(messages)]
    if "limi" not in sample:
        return trajectory_pb2.Trajectory(steps=steps, tools=specs)
    return _restore(sample["limi"], steps, specs)


def _read_tool(tool: Any, field: str) -> trajectory_pb2.ToolSpec:
    if not isinstance(tool, dict):
        raise InvalidLimiSample(field, "must be an object")
    if tool.get("type", "function") != "function":
        raise InvalidLimiSample(f"{field}.type", "must be 'function'")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise InvalidLimiSample(f"{field}.function", "must be an object")
    name = function.get("name")
    if not isinstance(name, str):
        raise InvalidLimiSample(f"{field}.function.name", "missing or not a string")
    description = function.get("description") or ""
    if not isinstance(description, str):
        raise InvalidLimiSample(f"{field}.function.description", "must be a string")
    parameters = _read_json_object(function.get("parameters", {}), f"{field}.function.parameters")
    return trajectory_pb2.ToolSpec(name=name, description=description, parameters_json=parameters)


def _read_message(message: Any, position: int) -> trajectory_pb2.Step:
    field = f"messages[{position}]"
    if not isinstance(message, dict):
        raise InvalidLimiSample(field, "must be an object")
    role_name = message.get("role")
    if not isinstance(role_name, str) or role_name not in _ROLES_BY_NAME:
        raise InvalidLimiSample(f"{field}.role", f"unknown role {role_name!r}")
    role = _ROLES_BY_NAME[role_name]
    content = message.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise InvalidLimiSample(f"{field}.content", "must be a string or null")
    tool_calls = message.get("tool_calls")
    if tool_calls and role != trajectory_pb2.ROLE_ASSISTANT:
        raise InvalidLimiSample(f"{field}.tool_calls", "only assistant messages carry tool calls")
    if role != trajectory_pb2.ROLE_TOOL and message.get("tool_call_id") is not None:
        raise InvalidLimiSample(f"{field}.tool_call_id", "only tool messages carry a tool_call_id")
    step = trajectory_pb2.Step(index=position, role=role)
    if role == trajectory_pb2.ROLE_TOOL:
        tool_call_id = message.get("tool_call_id")
        if not isinstance(tool_call_id, str):
            raise InvalidLimiSample(f"{field}.tool_call_id", "missing or not a string")
        result = trajectory_pb2.ToolResult(tool_call_id=tool_call_id, output=content)
        step.tool_result.CopyFrom(result)
        return step
    step.content = content
    if tool_calls is None:
        return step
    if not isinstance(tool_calls, list):
        raise InvalidLimiSample(f"{field}.tool_calls", "must be a list")
    for j, call in enumerate(tool_calls):
        step.tool_calls.append(_read_tool_call(call, f"{field}.tool_calls[{j}]"))
    return step


def _read_tool_call(call: Any, field: str) -> trajectory_pb2.ToolCall:
    if not isinstance(call, dict):
        raise InvalidLimiSample(field, "must be an object")
    call_id = call.get("id", "")
    if not isinstance(call_id, str):
        raise InvalidLimiSample(f"{field}.id", "must be a string")
    if call.get("type", "function") != "function":
        raise InvalidLimiSample(f"{field}.type", "must be 'function'")
    function = call.get("function")
    if not isinstance(function, dict):
        raise InvalidLimiSample(f"{field}.function", "must be an object")
    name = function.get("name")
    if not isinstance(name, str):
        raise InvalidLimiSample(f"{field}.function.name", "missing or not a string")
    arguments = _read_json_object(function.get("arguments"), f"{field}.function.arguments")
    return trajectory_pb2.ToolCall(id=call_id, name=name, arguments_json=arguments)


def _read_json_object(value: Any, field: str) -> str:
    """Return the canonical JSON text of an object given as a dict or as JSON text."""
    if isinstance(value, str):
        parsed = _parse_json_object(value)
        if parsed is None:
            raise InvalidLimiSample(field, "string does not hold a JSON object")
        value = parsed
    if not isinstance(value, dict):
        raise InvalidLimiSample(field, "must be a JSON object or a string holding one")
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as error:
        raise InvalidLimiSample(field, f"not representable as JSON: {error}") from error


def _restore(
    meta: Any, steps: list[trajectory_pb2.Step], specs: list[trajectory_pb2.ToolSpec]
) -> trajectory_pb2.Trajectory:
    """Rebuild the exact trajectory from the `limi` metadata and the carried fields."""
    if not isinstance(meta, dict):
        raise InvalidLimiSample("limi", "must be an object")
    if meta.get("version") != FORMAT_VERSION:
        raise InvalidLimiSample("limi.version", f"unsupported version {meta.get('version')!r}")
    if not isinstance(meta.get("trajectory"), dict):
        raise InvalidLimiSample("limi.trajectory", "must be an object")
    try:
        trajectory = json_format.ParseDict(meta["trajectory"], trajectory_pb2.Trajectory())
    except json_format.ParseError as error:
        raise InvalidLimiSample("limi.trajectory", str(error)) from error
    if len(trajectory.steps) != len(steps):
        reason = f"has {len(trajectory.steps)} steps for {len(steps)} messages"
        raise InvalidLimiSample("limi.trajectory.steps", reason)
    step_extras = _by_position(meta.get("steps", {}), len(steps), "limi.steps")
    for i, (target, carried) in enumerate(zip(trajectory.steps, steps, strict=False)):
        _restore_step(target, carried, step_extras.get(i, {}), f"limi.steps.{i}")
    tool_extras = _by_position(meta.get("tools", {}), len(specs), "limi.tools")
    for k, spec in enumerate(specs):
        raw = _extras_object(tool_extras.get(k, {}), f"limi.tools.{k}").get("parameters_json")
        if raw is not None and not isinstance(raw, str):
            raise InvalidLimiSample(f"limi.tools.{k}.parameters_json", "must be a string")
        if raw is not None:
            spec.parameters_json = raw
    trajectory.ClearField("tools")
    trajectory.tools.extend(specs)
    return trajectory


def _restore_step(target: trajectory_pb2.Step, carried: trajectory_pb2.Step, extras: Any, field: str) -> None:
    extras = _extras_object(extras, field)
    target.role = carried.role
    if carried.role == trajectory_pb2.ROLE_TOOL:
        if target.HasField("tool_result") or carried.tool_result.ByteSize():
            target.tool_result.output = carried.tool_result.output
            target.tool_result.tool_call_id = carried.tool_result.tool_call_id
        return
    target.content = carried.content
    if extras.get("feedback_text_is_content") is True:
        target.feedback.text = carried.content
    if carried.role != trajectory_pb2.ROLE_ASSISTANT:
        return
    chars = extras.get("reasoning_chars")
    if chars is not None:
        splits = isinstance(chars, int) and not isinstance(chars, bool) and chars > 0
        if not splits or carried.content[chars : chars + 2] != "\n\n":
            raise InvalidLimiSample(f"{field}.reasoning_chars", "does not end at a blank line")
        target.reasoning_content = carried.content[:chars]
        target.content = carried.content[chars + 2 :]
    target.ClearField("tool_calls")
    target.tool_calls.extend(carried.tool_calls)
    raw_arguments = _by_position(extras.get("arguments_json", {}), len(target.tool_calls), f"{field}.arguments_json")
    for j, raw in raw_arguments.items():
        if not isinstance(raw, str):
            raise InvalidLimiSample(f"{field}.arguments_json.{j}", "must be a string")
        target.tool_calls[j].arguments_json = raw


def _extras_object(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidLimiSample(field, "must be an object")
    return value


def _by_position(value: Any, count: int, field: str) -> dict[int, Any]:
    """Read an object keyed by positions ("0", "1", ...) below `count`."""
    result = {}
    for key, entry in _extras_object(value, field).items():
        if not (isinstance(key, str) and key.isdecimal() and int(key) < count):
            raise InvalidLimiSample(f"{field}.{key}", f"is not a position below {count}")
        result[int(key)] = entry
    return result


# ---------------------------------------------------------------- JSON text


def dumps_sample(sample: dict) -> str:
    """Return the sample as one line of JSON text (UTF-8 characters kept as is)."""
    return json.dumps(sample, ensure_ascii=False, allow_nan=False)


def loads_sample(text: str, *, origin: str = "sample") -> dict:
    """Parse one sample from JSON text.

    Args:
        text: The JSON text, e.g. one line of a JSONL file.
        origin: The name reported as `field` on error, e.g. "train.jsonl:12".

    Returns:
        The parsed sample, to pass to `limi_to_trajectory`.

    Raises:
        InvalidLimiSample: The text is not JSON or not a JSON object.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise InvalidLimiSample(origin, "must be JSON text")
    try:
        sample = json.loads(text)
    except ValueError as error:
        raise InvalidLimiSample(origin, f"invalid JSON: {error}") from error
    if not isinstance(sample, dict):
        raise InvalidLimiSample(origin, "must be a JSON object")
    return sample
