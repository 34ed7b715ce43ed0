"""The tools a model may call in a sandbox session, as OpenAI function-tool JSON schemas.

This is the one definition: ListTools returns exactly these, and each tool maps onto one RPC
whose request fields carry its parameters (`TOOL_METHODS`; a test checks every parameter against
the request message). The rollout service reads them through ListTools, so a model is offered
exactly what the sandbox implements. Nothing here runs a tool.
"""

from __future__ import annotations

import json
from typing import Any

PATH = {"type": "string", "description": "Path relative to the workspace (/workspace), e.g. src/main.py."}
TIMEOUT = {
    "type": "integer",
    "minimum": 1,
    "maximum": 3600,
    "description": "Seconds before the command is killed (default: the session's limit).",
}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


TOOLS: list[dict[str, Any]] = [
    _tool(
        "shell",
        "Run a bash command in the workspace and return its output and exit code. No network. "
        "Background processes are killed when the command ends.",
        {"command": {"type": "string", "description": "The bash command line."}, "timeout": TIMEOUT},
        ["command"],
    ),
    _tool(
        "python",
        "Run a Python 3 program in the workspace and return what it prints.",
        {"code": {"type": "string", "description": "The program's source code."}, "timeout": TIMEOUT},
        ["code"],
    ),
    _tool(
        "read_file",
        "Read a file of the workspace (UTF-8 text shown; large files are cut).",
        {
            "path": PATH,
            "offset": {"type": "integer", "minimum": 0, "description": "First byte to read (default 0)."},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "description": "Most bytes to read (default: the service's maximum).",
            },
        },
        ["path"],
    ),
    _tool(
        "write_file",
        "Create or overwrite a file of the workspace with the given content; folders are created as needed.",
        {"path": PATH, "content": {"type": "string", "description": "The whole new content of the file."}},
        ["path", "content"],
    ),
    _tool(
        "edit_file",
        "Replace one exact occurrence of old_text with new_text in a file. Fails if old_text occurs "
        "zero or several times: include enough surrounding text to make it unique.",
        {
            "path": PATH,
            "old_text": {"type": "string", "minLength": 1, "description": "The exact text to replace."},
            "new_text": {"type": "string", "description": "The text to put in its place."},
        },
        ["path", "old_text", "new_text"],
    ),
    _tool(
        "list_dir",
        "List a folder of the workspace: names, sizes, and which entries are folders.",
        {"path": {**PATH, "description": "Folder relative to the workspace (default: the workspace)."}},
        [],
    ),
    _tool(
        "search",
        "Search file contents below a folder for an extended regular expression (grep -E); "
        "returns path, line number and line for each match.",
        {
            "pattern": {
                "type": "string",
                "minLength": 1,
                "description": "Extended regular expression, as for grep -E.",
            },
            "path": {**PATH, "description": "Folder or file to search (default: the workspace)."},
            "max_results": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "Most matches to return (default 100).",
            },
        },
        ["pattern"],
    ),
]

# Tool name -> (RPC, request message name); each parameter is a field of that request.
TOOL_METHODS = {
    "shell": ("Exec", "ExecRequest"),
    "python": ("RunPython", "RunPythonRequest"),
    "read_file": ("ReadFile", "ReadFileRequest"),
    "write_file": ("WriteFile", "WriteFileRequest"),
    "edit_file": ("EditFile", "EditFileRequest"),
    "list_dir": ("ListDir", "ListDirRequest"),
    "search": ("Search", "SearchRequest"),
}


def tools_json() -> list[str]:
    """The schemas as ListToolsResponse.tools_json carries them: one JSON text per tool."""
    return [json.dumps(tool, sort_keys=True) for tool in TOOLS]
