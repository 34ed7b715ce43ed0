"""Pull-request records for synthesis: reading them from JSONL, and what the filters look at.

One JSON object per line with `repository` ("owner/name"), `stars`, `number`, `title`, `body`,
`diff` (unified), `changed_files` (paths), `base_sha`, `head_sha`, and optionally `url`. A bad
line raises `InvalidArgument` naming the file, the line and the field; a repeated
(repository, number) is an error too. It does not fetch anything from GitHub.
"""

from __future__ import annotations

import dataclasses
import json
import re

from limi_core.errors import InvalidArgument

REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
SHA = re.compile(r"^[0-9a-f]{7,64}$")
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")
MAX_DIFF_CHARS = 2_000_000


@dataclasses.dataclass(frozen=True)
class PullRequest:
    repository: str
    stars: int
    number: int
    title: str
    body: str
    diff: str
    changed_files: tuple[str, ...]
    base_sha: str
    head_sha: str
    url: str

    @property
    def key(self) -> str:
        """ "owner/name#number@head" — what the synthesis cache is keyed by, with the prompt hash."""
        return f"{self.repository}#{self.number}@{self.head_sha}"

    @property
    def label(self) -> str:
        return f"{self.repository}#{self.number}"

    def markdown_only(self) -> bool:
        return all(path.lower().endswith(MARKDOWN_SUFFIXES) for path in self.changed_files)

    def added_lines(self) -> list[str]:
        """Lines the diff adds, without the leading '+'."""
        return [line[1:] for line in self.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]


class PullRequestError(InvalidArgument):
    def __init__(self, origin: str, line: int, field: str, reason: str) -> None:
        super().__init__(f"{origin} line {line} field {field}", reason)


def _require(row: dict, key: str, kind: type, origin: str, line: int):
    if key not in row:
        raise PullRequestError(origin, line, key, "is missing")
    value = row[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise PullRequestError(origin, line, key, f"must be an integer, got {json.dumps(value)[:40]}")
    if kind is not int and not isinstance(value, kind):
        raise PullRequestError(origin, line, key, f"must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _record(row: dict, origin: str, line: int) -> PullRequest:
    repository = _require(row, "repository", str, origin, line)
    if not REPOSITORY.match(repository):
        raise PullRequestError(origin, line, "repository", f"must be owner/name, got {repository!r}")
    stars = _require(row, "stars", int, origin, line)
    if stars < 0:
        raise PullRequestError(origin, line, "stars", "must not be negative")
    number = _require(row, "number", int, origin, line)
    if number < 1:
        raise PullRequestError(origin, line, "number", "must be a pull request number (1 or more)")
    title = _require(row, "title", str, origin, line).strip()
    if not title:
        raise PullRequestError(origin, line, "title", "must not be empty")
    body = row.get("body") or ""
    if not isinstance(body, str):
        raise PullRequestError(origin, line, "body", "must be a string")
    diff = _require(row, "diff", str, origin, line)
    if not diff.strip():
        raise PullRequestError(origin, line, "diff", "must not be empty")
    if len(diff) > MAX_DIFF_CHARS:
        raise PullRequestError(origin, line, "diff", f"has {len(diff)} characters; at most {MAX_DIFF_CHARS} are read")
    files = _require(row, "changed_files", list, origin, line)
    if not files or not all(isinstance(path, str) and path.strip() for path in files):
        raise PullRequestError(origin, line, "changed_files", "must be a non-empty list of file paths")
    shas = {}
    for key in ("base_sha", "head_sha"):
        sha = _require(row, key, str, origin, line).lower()
        if not SHA.match(sha):
            raise PullRequestError(origin, line, key, f"must be a hexadecimal commit sha, got {sha[:20]!r}")
        shas[key] = sha
    url = row.get("url") or f"https://github.com/{repository}/pull/{number}"
    if not isinstance(url, str):
        raise PullRequestError(origin, line, "url", "must be a string")
    return PullRequest(
        repository, stars, number, title, body, diff, tuple(files), shas["base_sha"], shas["head_sha"], url
    )


def parse_pull_requests(content: bytes, origin: str) -> list[PullRequest]:
    """Every record of a JSONL file, in file order.

    Raises:
        InvalidArgument: a line is not JSON, a field is missing or malformed, or a PR repeats.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(origin, f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    records: list[PullRequest] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PullRequestError(
                origin, number, "(line)", f"is not valid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        if not isinstance(row, dict):
            raise PullRequestError(origin, number, "(line)", "must be a JSON object")
        record = _record(row, origin, number)
        if record.label in seen:
            raise PullRequestError(origin, number, "number", f"{record.label} repeats line {seen[record.label]}")
        seen[record.label] = number
        records.append(record)
    if not records:
        raise InvalidArgument(origin, "holds no pull-request records")
    return records
