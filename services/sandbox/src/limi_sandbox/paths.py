"""Lexical checks of the paths that file tools receive, before anything reaches a sandbox.

A path is relative to the workspace, or absolute under `/workspace`; `workspace_path()` returns
it normalized and relative ("" for the workspace itself), and raises InvalidArgument naming the
field for a NUL byte, an over-long path, an absolute path elsewhere, or `..` that climbs out.
Symbolic links are not resolved here (they live in the sandbox): the agent resolves them inside
the sandbox and refuses links that leave the workspace.
"""

from __future__ import annotations

from limi_core.errors import InvalidArgument

WORKSPACE = "/workspace"
MAX_PATH_BYTES = 4096


def workspace_path(path: str, field: str = "path", *, allow_root: bool = True) -> str:
    if "\0" in path:
        raise InvalidArgument(field, "contains a NUL byte")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidArgument(field, f"is longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/"):
        if path != WORKSPACE and not path.startswith(WORKSPACE + "/"):
            raise InvalidArgument(field, f"{path!r} is outside the workspace; use a path relative to {WORKSPACE}")
        path = path[len(WORKSPACE) :]
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidArgument(field, f"{path!r} leaves the workspace")
            parts.pop()
        else:
            parts.append(part)
    if not parts and not allow_root:
        raise InvalidArgument(field, "must name a file in the workspace")
    return "/".join(parts)
