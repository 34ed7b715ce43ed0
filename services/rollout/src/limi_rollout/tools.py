"""The tools an episode may call, and the checks a model's tool call must pass before it runs.

`ToolBox` is what the agent loop needs from a sandbox session: the OpenAI function-tool schemas
and a way to call one. `check_tool_call` turns a raw call into parsed arguments or a
`ToolCallError` whose message goes back to the model as the tool's result (unknown tool,
invalid JSON, arguments that violate the schema); it never raises anything else. It does not
execute anything.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

import jsonschema

from limi_core.policy_client import RawToolCall


@dataclasses.dataclass(frozen=True)
class ToolOutcome:
    output: str
    exit_code: int = 0
    truncated: bool = False
    duration_seconds: float = 0.0
    is_error: bool = False
    error: str = ""


class ToolBox(Protocol):
    """One episode's tools, bound to its own sandbox session."""

    backend: str
    image: str
    session_id: str

    def tools(self) -> list[dict]: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome: ...

    async def close(self) -> None: ...


class ToolCallError(Exception):
    """A tool call the model got wrong; the message is written for the model."""


class ToolCallChecker:
    def __init__(self, tools: list[dict]) -> None:
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        for tool in tools:
            function = tool["function"]
            schema = function.get("parameters") or {"type": "object"}
            validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            self._validators[function["name"]] = validator_class(schema)

    def knows(self, name: str) -> bool:
        return name in self._validators

    def check(self, call: RawToolCall) -> dict[str, Any]:
        """Parsed arguments of a valid call.

        Raises:
            ToolCallError: unknown tool, arguments not a JSON object, or a schema violation.
        """
        validator = self._validators.get(call.name)
        if validator is None:
            known = ", ".join(sorted(self._validators)) or "none"
            raise ToolCallError(f"unknown tool {call.name!r}; the tools are: {known}")
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolCallError(
                f"the arguments of {call.name} are not valid JSON ({exc.msg} at position {exc.pos})"
            ) from None
        if not isinstance(arguments, dict):
            raise ToolCallError(f"the arguments of {call.name} must be a JSON object, not {type(arguments).__name__}")
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "arguments"
            raise ToolCallError(f"the arguments of {call.name} do not match its schema at {where}: {error.message}")
        return arguments
