"""Converting a CLI event log in Gemini API form into one LIMI training sample.

Input: `{"events": [...]}`. Like LIMI's released converter (scripts/data_prepare/events2messages.py):
the conversation is the `data.full_request.messages` of the LAST event whose `type` is
`api_request_full` (each request carries the whole history); tools are the
`full_request.tools[].functionDeclarations` of all such events, first declaration of a name wins,
with Gemini's upper-case type names (`STRING`, `OBJECT` ...) turned into JSON-schema types; the
system prompt is the last `full_request.system_instruction` (text, or `{"parts": [{"text"}]}`),
followed, unless `plain_system_prompt`, by LIMI's list of the tools.
Messages: a `user` message gives one `user` message per `text` part and one `tool` message per
`functionResponse{id, response{output}}` part; a `model` message gives one `assistant` message
whose content is its `text` parts joined and whose `tool_calls` are its `functionCall{id, name,
args}` parts, with `args` kept as a JSON object. Anything malformed raises `InvalidArgument` naming
the log and the path of the field (`events[12].data.full_request.messages[3].parts[0].functionCall.args`).
"""

from __future__ import annotations

import json
from typing import Any

from limi_core.errors import InvalidArgument

GEMINI_TYPES = {
    "STRING": "string",
    "NUMBER": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "ARRAY": "array",
    "OBJECT": "object",
    "NULL": "null",
}


class GeminiLogError(InvalidArgument):
    def __init__(self, origin: str, field: str, reason: str) -> None:
        super().__init__(f"{origin} field {field}", reason)


def lower_schema_types(schema: Any) -> Any:
    """A copy of a Gemini schema with every `type` value in JSON-schema spelling."""
    if isinstance(schema, dict):
        return {
            key: (
                GEMINI_TYPES.get(value, value.lower())
                if key == "type" and isinstance(value, str)
                else lower_schema_types(value)
            )
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [lower_schema_types(item) for item in schema]
    return schema


def _object(value: Any, origin: str, field: str) -> dict:
    if not isinstance(value, dict):
        raise GeminiLogError(origin, field, f"must be an object, got {type(value).__name__}")
    return value


def _string(value: Any, origin: str, field: str) -> str:
    if not isinstance(value, str):
        raise GeminiLogError(origin, field, f"must be a string, got {type(value).__name__}")
    return value


def _system_text(value: Any, origin: str, field: str) -> str:
    if isinstance(value, str):
        return value
    parts = _object(value, origin, field).get("parts", [])
    if not isinstance(parts, list):
        raise GeminiLogError(origin, f"{field}.parts", "must be a list")
    return "".join(
        _string(_object(p, origin, f"{field}.parts[{i}]").get("text", ""), origin, f"{field}.parts[{i}].text")
        for i, p in enumerate(parts)
    )


def _tools(requests: list[tuple[int, dict]], origin: str) -> list[dict]:
    tools, seen = [], set()
    for index, request in requests:
        groups = request.get("tools", [])
        base = f"events[{index}].data.full_request.tools"
        if not isinstance(groups, list):
            raise GeminiLogError(origin, base, "must be a list")
        for g, group in enumerate(groups):
            declarations = _object(group, origin, f"{base}[{g}]").get("functionDeclarations", [])
            if not isinstance(declarations, list):
                raise GeminiLogError(origin, f"{base}[{g}].functionDeclarations", "must be a list")
            for d, declaration in enumerate(declarations):
                field = f"{base}[{g}].functionDeclarations[{d}]"
                declaration = _object(declaration, origin, field)
                name = _string(declaration.get("name"), origin, f"{field}.name")
                if not name or name in seen:
                    continue
                seen.add(name)
                parameters = _object(declaration.get("parameters", {}), origin, f"{field}.parameters")
                tools.append(
                    {
                        "type": "function",
                        "function": {
                            "name": name,
                            "description": _string(declaration.get("description", ""), origin, f"{field}.description"),
                            "parameters": lower_schema_types(parameters),
                        },
                    }
                )
    return tools


def _messages(messages: list, origin: str, base: str) -> list[dict]:
    converted = []
    for m, message in enumerate(messages):
        field = f"{base}[{m}]"
        message = _object(message, origin, field)
        role = message.get("role")
        parts = message.get("parts")
        if not isinstance(parts, list):
            raise GeminiLogError(origin, f"{field}.parts", "must be a list")
        if role == "user":
            for p, part in enumerate(parts):
                part_field = f"{field}.parts[{p}]"
                part = _object(part, origin, part_field)
                if "text" in part:
                    converted.append({"role": "user", "content": _string(part["text"], origin, f"{part_field}.text")})
                elif "functionResponse" in part:
                    response = _object(part["functionResponse"], origin, f"{part_field}.functionResponse")
                    call_id = _string(response.get("id", ""), origin, f"{part_field}.functionResponse.id")
                    body = _object(response.get("response", {}), origin, f"{part_field}.functionResponse.response")
                    output = body.get("output", "")
                    if not isinstance(output, str):
                        output = json.dumps(output, ensure_ascii=False)
                    converted.append({"role": "tool", "content": output, "tool_call_id": call_id})
        elif role == "model":
            text, calls = "", []
            for p, part in enumerate(parts):
                part_field = f"{field}.parts[{p}]"
                part = _object(part, origin, part_field)
                if "text" in part:
                    text += _string(part["text"], origin, f"{part_field}.text")
                elif "functionCall" in part:
                    call = _object(part["functionCall"], origin, f"{part_field}.functionCall")
                    calls.append(
                        {
                            "id": _string(call.get("id", ""), origin, f"{part_field}.functionCall.id"),
                            "type": "function",
                            "function": {
                                "name": _string(call.get("name"), origin, f"{part_field}.functionCall.name"),
                                "arguments": _object(call.get("args", {}), origin, f"{part_field}.functionCall.args"),
                            },
                        }
                    )
            assistant: dict = {"role": "assistant", "content": text}
            if calls:
                assistant["tool_calls"] = calls
            converted.append(assistant)
        else:
            raise GeminiLogError(origin, f"{field}.role", f"must be 'user' or 'model', got {role!r}")
    return converted


def describe_tools(tools: list[dict]) -> str:
    """LIMI's appendix to the system prompt listing the tools."""
    text = "\n\nYou have access to the following tools:\n\n"
    for number, tool in enumerate(tools, start=1):
        function = tool["function"]
        text += f"{number}. **{function['name']}**: {function['description']}\n"
        parameters = function["parameters"]
        if parameters and isinstance(parameters.get("properties"), dict):
            text += "   Parameters:\n"
            for name, info in parameters["properties"].items():
                info = info if isinstance(info, dict) else {}
                required = " (required)" if name in parameters.get("required", []) else ""
                text += f"   - {name} ({info.get('type', 'unknown')}){required}: {info.get('description', '')}\n"
        text += "\n"
    return (
        text
        + "Use these tools by making function calls in your responses when appropriate. Each tool call should include the function name and required parameters."
    )


def convert_gemini_log(log: Any, origin: str = "log", *, plain_system_prompt: bool = False) -> dict:
    """The LIMI sample of one event log (a parsed JSON value)."""
    log = _object(log, origin, "(log)")
    events = log.get("events")
    if not isinstance(events, list):
        raise GeminiLogError(origin, "events", "must be a list")
    requests: list[tuple[int, dict]] = []
    system = ""
    for index, event in enumerate(events):
        event = _object(event, origin, f"events[{index}]")
        if event.get("type") != "api_request_full":
            continue
        data = _object(event.get("data"), origin, f"events[{index}].data")
        request = _object(data.get("full_request"), origin, f"events[{index}].data.full_request")
        if "system_instruction" in request:
            system = _system_text(
                request["system_instruction"], origin, f"events[{index}].data.full_request.system_instruction"
            )
        requests.append((index, request))
    if not requests:
        raise GeminiLogError(origin, "events", "holds no api_request_full event")
    last_index, last = requests[-1]
    base = f"events[{last_index}].data.full_request.messages"
    messages = last.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GeminiLogError(origin, base, "must be a non-empty list")
    tools = _tools(requests, origin)
    converted = _messages(messages, origin, base)
    if not plain_system_prompt and tools:
        system += describe_tools(tools)
    if system:
        converted.insert(0, {"role": "system", "content": system})
    return {"tools": tools, "messages": converted}


def convert_gemini_log_text(text: str | bytes, origin: str = "log", *, plain_system_prompt: bool = False) -> dict:
    try:
        log = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GeminiLogError(origin, "(log)", f"is not valid JSON: {exc}") from None
    return convert_gemini_log(log, origin, plain_system_prompt=plain_system_prompt)
