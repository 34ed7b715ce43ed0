"""Reading real queries from JSONL or CSV into `Query` protos, with errors that name line and field.

A row needs `text` (also read as `query` or `test_query`, LIMI's name); optional fields are
`id`, `category` (also `task_category`), `source`, `author`, `url` (also `repo_url`),
`repository`, `pull_request` (also `pr_id`), `base_sha`, `head_sha`, `labels` (JSONL: an object of
strings), `files` (also `workspace_files`; JSONL only: an object of relative path -> text, the
workspace the episode starts from) and LIMI's `modified_files`, `related_files`, `reasoning`,
`repo_id`, which become labels. LIMI's `patch` is read and discarded: it is the solution and must
never travel with the query. CSV files need a header with a `text` column; any other column
becomes a label. Every problem raises `InvalidArgument` naming the file, the line and the field;
nothing is stored here (see query_pool.py). The content hash covers the normalized text and, when
there are any, the workspace files; ids default to `q-` plus its first 16 hex digits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Sequence

from limi.query.v1 import query_pb2
from limi_core.errors import InvalidArgument
from limi_curator.categories import UnknownName, category_from_name, source_from_name

MAX_TEXT_CHARS = 100_000
MAX_WORKSPACE_BYTES = 1 << 20
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
TEXT_KEYS = ("text", "query", "test_query")
FILES_KEYS = ("files", "workspace_files")
LIST_LABEL_KEYS = ("modified_files", "related_files")
KNOWN_KEYS = {
    *TEXT_KEYS,
    "id",
    "category",
    "task_category",
    "source",
    "author",
    "url",
    "repo_url",
    "repository",
    "pull_request",
    "pr_id",
    "base_sha",
    "head_sha",
    "labels",
    "reasoning",
    "repo_id",
    "patch",
    *LIST_LABEL_KEYS,
    *FILES_KEYS,
}


def normalized_text(text: str) -> str:
    return " ".join(text.split())


def content_hash(text: str, files: Sequence[query_pb2.WorkspaceFile] = ()) -> str:
    """sha256 of the normalized text; files, in path order, extend it (without files it is the text's hash alone)."""
    digest = hashlib.sha256(normalized_text(text).encode("utf-8"))
    for file in sorted(files, key=lambda f: f.path):
        digest.update(f"\0{file.path}\0{file.mode:o}\0{hashlib.sha256(file.content).hexdigest()}".encode())
    return digest.hexdigest()


def default_query_id(text: str, files: Sequence[query_pb2.WorkspaceFile] = ()) -> str:
    return "q-" + content_hash(text, files)[:16]


class RowError(InvalidArgument):
    def __init__(self, origin: str, line: int, field: str, reason: str) -> None:
        super().__init__(f"{origin} line {line} field {field}", reason)


def _decode(content: bytes, origin: str) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(origin, f"is not UTF-8 text (bad byte at offset {exc.start})") from None


def parse_jsonl(content: bytes, origin: str, default_source: int) -> list[query_pb2.Query]:
    """One query per non-blank line of JSON objects."""
    queries = []
    for number, line in enumerate(_decode(content, origin).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RowError(origin, number, "(line)", f"is not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(row, dict):
            raise RowError(origin, number, "(line)", "must be a JSON object")
        unknown = sorted(set(row) - KNOWN_KEYS)
        if unknown:
            raise RowError(origin, number, unknown[0], f"is not a known field (known: {', '.join(sorted(KNOWN_KEYS))})")
        queries.append(_query_from_row(row, origin, number, default_source, extra_labels={}))
    if not queries:
        raise InvalidArgument(origin, "holds no queries")
    return queries


def parse_csv(content: bytes, origin: str, default_source: int) -> list[query_pb2.Query]:
    """One query per row of a CSV file with a header; unknown columns become labels."""
    reader = csv.DictReader(io.StringIO(_decode(content, origin), newline=""))
    header = reader.fieldnames or []
    if not any(key in header for key in TEXT_KEYS):
        raise RowError(origin, 1, "text", f"the header has no text column (columns: {', '.join(header) or 'none'})")
    queries = []
    try:
        for row in reader:
            number = reader.line_num
            if None in row:
                raise RowError(
                    origin, number, "(row)", f"has {len(header) + len(row[None])} cells for {len(header)} columns"
                )
            missing = [key for key, value in row.items() if value is None]
            if missing:
                raise RowError(
                    origin, number, missing[0], f"is missing: the row has fewer cells than the {len(header)} columns"
                )
            known = {k: v for k, v in row.items() if k in KNOWN_KEYS and (v != "" or k in TEXT_KEYS)}
            if "labels" in known:
                raise RowError(origin, number, "labels", "is not a CSV column; put each label in a column of its own")
            for key in FILES_KEYS:
                if key in known:
                    raise RowError(origin, number, key, "is not a CSV column; give workspace files in a JSONL import")
            for key in LIST_LABEL_KEYS:
                if key in known:
                    known[key] = [part.strip() for part in known[key].split(";") if part.strip()]
            extra = {k: v for k, v in row.items() if k not in KNOWN_KEYS and v != ""}
            queries.append(_query_from_row(known, origin, number, default_source, extra_labels=extra))
    except csv.Error as exc:
        raise RowError(origin, reader.line_num, "(row)", f"is not valid CSV: {exc}") from None
    if not queries:
        raise InvalidArgument(origin, "holds no queries")
    return queries


def _text(row: dict, origin: str, line: int) -> str:
    present = [key for key in TEXT_KEYS if key in row]
    if not present:
        raise RowError(origin, line, "text", "is missing")
    key = present[0]
    text = row[key]
    if not isinstance(text, str):
        raise RowError(origin, line, key, "must be a string")
    text = text.strip()
    if not text:
        raise RowError(origin, line, key, "must not be empty")
    if "\x00" in text:
        raise RowError(origin, line, key, "must not contain NUL characters")
    if len(text) > MAX_TEXT_CHARS:
        raise RowError(origin, line, key, f"has {len(text)} characters; at most {MAX_TEXT_CHARS} are allowed")
    return text


def _workspace_files(row: dict, origin: str, line: int) -> list[query_pb2.WorkspaceFile]:
    present = [key for key in FILES_KEYS if key in row]
    if len(present) > 1:
        raise RowError(origin, line, present[1], f"repeats {present[0]}; give the workspace files once")
    if not present or row[present[0]] is None:
        return []
    key = present[0]
    files = row[key]
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise RowError(origin, line, key, "must be an object of relative path -> text content")
    total = 0
    for path, text in files.items():
        parts = path.split("/")
        if not path or "\0" in path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise RowError(
                origin, line, key, f"path {path!r} must be relative to the workspace, without empty, '.' or '..' parts"
            )
        parents = ["/".join(parts[:n]) for n in range(1, len(parts))]
        clash = next((parent for parent in parents if parent in files), None)
        if clash is not None:
            raise RowError(origin, line, key, f"path {clash!r} is a file but {path!r} needs it to be a directory")
        total += len(text.encode("utf-8"))
    if total > MAX_WORKSPACE_BYTES:
        raise RowError(
            origin, line, key, f"holds {total} bytes of content; at most {MAX_WORKSPACE_BYTES} are allowed per query"
        )
    return [query_pb2.WorkspaceFile(path=path, content=text.encode("utf-8")) for path, text in sorted(files.items())]


def _string(row: dict, key: str, origin: str, line: int) -> str:
    value = row.get(key, "")
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise RowError(origin, line, key, "must be a string")
    return value.strip()


def _query_from_row(
    row: dict, origin: str, line: int, default_source: int, extra_labels: dict[str, str]
) -> query_pb2.Query:
    text = _text(row, origin, line)
    files = _workspace_files(row, origin, line)
    query = query_pb2.Query(text=text, content_hash=content_hash(text, files), workspace_files=files)
    query.id = _string(row, "id", origin, line) or default_query_id(text, files)
    if not ID_PATTERN.match(query.id):
        raise RowError(
            origin, line, "id", f"{query.id!r} must be 1-128 letters, digits or ._:@/- starting with a letter or digit"
        )
    for key in ("category", "task_category"):
        name = _string(row, key, origin, line)
        if name:
            try:
                query.category = category_from_name(name)
            except UnknownName as exc:
                raise RowError(origin, line, key, str(exc)) from None
    source = _string(row, "source", origin, line)
    try:
        query.source = source_from_name(source) if source else (default_source or query_pb2.QUERY_SOURCE_REAL)
    except UnknownName as exc:
        raise RowError(origin, line, "source", str(exc)) from None
    provenance = query.provenance
    provenance.author = _string(row, "author", origin, line)
    provenance.url = _string(row, "url", origin, line) or _string(row, "repo_url", origin, line)
    provenance.repository = _string(row, "repository", origin, line)
    provenance.base_sha = _string(row, "base_sha", origin, line)
    provenance.head_sha = _string(row, "head_sha", origin, line)
    provenance.origin_file, provenance.origin_line = origin, line
    for key in ("pull_request", "pr_id"):
        raw = _string(row, key, origin, line).lstrip("#")
        if raw:
            if not raw.isdigit():
                raise RowError(origin, line, key, f"must be a pull request number, got {raw!r}")
            provenance.pull_request = int(raw)
    labels = row.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise RowError(origin, line, "labels", "must be an object of string values")
    query.labels.update(labels)
    query.labels.update(extra_labels)
    for key in LIST_LABEL_KEYS:
        files = row.get(key)
        if files is None:
            continue
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise RowError(origin, line, key, "must be a list of file paths")
        query.labels[key] = ",".join(files)
    for key, label in (("reasoning", "rationale"), ("repo_id", "repo_id")):
        value = _string(row, key, origin, line)
        if value:
            query.labels[label] = value
    return query
