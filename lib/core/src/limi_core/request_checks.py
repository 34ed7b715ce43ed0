"""Checks of request fields that every servicer declares the same way, and paths kept to roots.

A servicer declares, per request type, a table from field path to rule and calls
`check_fields(request, TABLE)` first thing in the method:

    EVALUATE = {"checkpoint_id": IDENTIFIER, "k": Each(Between(1, 1000), max_items=16), "step": Between(0, MAX_STEP)}

Rules: `Identifier` (ids and names: a length limit, no control characters), `Text` (free text:
a byte limit, no NUL), `Url` (an http(s) endpoint), `Between` (numbers in a declared range; NaN and infinities refused),
`Known` (enum values the contract defines), `Each` (repeated fields: an item limit and a rule
per item), `Entries` (maps), and `TimesInRange` (every Timestamp and Duration inside a message
within what protobuf's JSON form can hold). Every failure is `InvalidArgument` naming the field
(`limits.max_turns: must be between 0 and 10000, got -1`) and quotes at most a short prefix of
the value. `confined_path` resolves a path or file:// URI a request names and refuses it unless it
lies under one of the roots the service is configured with (PermissionDenied naming the field and
the variable that sets the roots). Domain rules (a dataset exists, a benchmark is known) stay in
the domain; these checks only say whether a value can be a valid value of its field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping

from google.protobuf.message import Message

from limi_core.errors import InvalidArgument, PermissionDenied

MAX_ID_CHARS = 512
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
MAX_ITEMS = 10_000
# A step, a token count, a size in bytes: far above any real value, far below where arithmetic breaks.
MAX_COUNT = 2**40

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}

Rule = Callable[[str, object], None]


def quote(value: object, limit: int = 40) -> str:
    """`value` as repr, cut to `limit` characters with its length when longer."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


@dataclasses.dataclass(frozen=True)
class Identifier:
    """An id or a name: at most `max_chars` characters, no control characters."""

    max_chars: int = MAX_ID_CHARS
    required: bool = False

    def __call__(self, field: str, value: str) -> None:
        if not value:
            if self.required:
                raise InvalidArgument(field, "is required")
            return
        if len(value) > self.max_chars:
            raise InvalidArgument(field, f"must be at most {self.max_chars} characters, got {len(value)}")
        if any(c in _CONTROL for c in value):
            raise InvalidArgument(field, f"must not contain control characters (NUL, newline ...), got {quote(value)}")


@dataclasses.dataclass(frozen=True)
class Text:
    """Free text (a query, a command, a JSON document): at most `max_bytes` of UTF-8, no NUL."""

    max_bytes: int
    required: bool = False

    def __call__(self, field: str, value: str | bytes) -> None:
        if not (value.strip() if isinstance(value, str) else value):
            if self.required:
                raise InvalidArgument(field, "must not be empty")
            return
        size = len(value.encode()) if isinstance(value, str) else len(value)
        if size > self.max_bytes:
            raise InvalidArgument(field, f"must be at most {self.max_bytes} bytes, got {size}")
        if isinstance(value, str) and "\x00" in value:
            raise InvalidArgument(field, "must not contain NUL characters")


@dataclasses.dataclass(frozen=True)
class Url:
    """An http(s) URL with a host (an OpenAI-compatible endpoint), at most `max_chars` characters."""

    max_chars: int = 2048

    def __call__(self, field: str, value: str) -> None:
        if not value:
            return
        Identifier(self.max_chars)(field, value)
        try:
            parsed = urllib.parse.urlparse(value)
            good = (
                parsed.scheme in ("http", "https")
                and bool(parsed.hostname)
                and (parsed.port is None or parsed.port > 0)
            )
        except ValueError:  # a broken IPv6 literal, a port that is no number or over 65535
            good = False
        if not good:
            raise InvalidArgument(field, f"must be an http(s) URL such as http://127.0.0.1:8000/v1, got {quote(value)}")


@dataclasses.dataclass(frozen=True)
class Between:
    """A number from `low` to `high`, both included."""

    low: float
    high: float

    def __call__(self, field: str, value: float) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(field, f"must be a number between {self.low:g} and {self.high:g}, got {value}")
        if not self.low <= value <= self.high:
            raise InvalidArgument(field, f"must be between {self.low:g} and {self.high:g}, got {value:g}")


@dataclasses.dataclass(frozen=True)
class Known:
    """A value the enum defines (`enum_type` is the generated wrapper, e.g. query_pb2.QuerySource)."""

    enum_type: object
    unspecified: bool = True

    def __call__(self, field: str, value: int) -> None:
        if value not in self.enum_type.values() or (value == 0 and not self.unspecified):
            allowed = [name for name, number in self.enum_type.items() if number or self.unspecified]
            raise InvalidArgument(field, f"must be one of {', '.join(allowed)}, got {value}")


@dataclasses.dataclass(frozen=True)
class Each:
    """A repeated field: at most `max_items`, each passing `rule` (named `field[i]`)."""

    rule: Rule | None = None
    max_items: int = MAX_ITEMS

    def __call__(self, field: str, values: Iterable) -> None:
        if len(values) > self.max_items:
            raise InvalidArgument(field, f"must hold at most {self.max_items} items, got {len(values)}")
        if self.rule is not None:
            for i, value in enumerate(values):
                self.rule(f"{field}[{i}]", value)


@dataclasses.dataclass(frozen=True)
class Entries:
    """A map field: at most `max_items` entries, keys and values passing their rules."""

    key: Rule | None = None
    value: Rule | None = None
    max_items: int = 1_000

    def __call__(self, field: str, entries: Mapping) -> None:
        if len(entries) > self.max_items:
            raise InvalidArgument(field, f"must hold at most {self.max_items} entries, got {len(entries)}")
        for key, value in entries.items():
            if self.key is not None:
                self.key(f"{field}[{quote(key, 20)}]", key)
            if self.value is not None:
                self.value(
                    f"{field}.{key}" if isinstance(key, str) and len(key) <= 64 else f"{field}[{quote(key, 20)}]", value
                )


# What protobuf's JSON form (and Python's datetime) can hold: years 1 to 9999, +-10,000 years.
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
_DURATION_SECONDS = 315_576_000_000


def _time_fault(message: Message) -> str | None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        low, high = _TIMESTAMP_SECONDS
        if not low <= message.seconds <= high or not 0 <= message.nanos <= 999_999_999:
            return "must be a time between the years 1 and 9999 with nanos from 0 to 999999999"
    elif name == "google.protobuf.Duration":
        if (
            abs(message.seconds) > _DURATION_SECONDS
            or abs(message.nanos) > 999_999_999
            or message.seconds * message.nanos < 0
        ):
            return f"must be within +-{_DURATION_SECONDS} seconds, with nanos of the same sign below 1e9"
    return None


def times_fault(message: Message, prefix: str) -> tuple[str, str] | None:
    """The first Timestamp or Duration inside `message` that is out of range, as (field path, reason)."""
    own = _time_fault(message)
    if own is not None:
        return prefix, own
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        items = enumerate(value) if field.is_repeated else [(None, value)]
        for i, item in items:
            found = times_fault(item, f"{prefix}.{field.name}" + (f"[{i}]" if i is not None else ""))
            if found is not None:
                return found
    return None


@dataclasses.dataclass(frozen=True)
class TimesInRange:
    """Every Timestamp and Duration inside a message field can be written as JSON."""

    def __call__(self, field: str, message: Message) -> None:
        found = times_fault(message, field)
        if found is not None:
            raise InvalidArgument(*found)


IDENTIFIER = Identifier()
REQUIRED_IDENTIFIER = Identifier(required=True)
COUNT = Between(0, MAX_COUNT)


def check_fields(message: Message, rules: Mapping[str, Rule]) -> None:
    """Apply `rules` (field path -> rule) to `message`, in the table's order.

    A path goes through submessages with dots ("sampling.max_tokens"); a rule under a submessage
    that is not set, or on an `optional` field that is not set, does not run.
    """
    for path, rule in rules.items():
        target, *parents = path.split(".")[::-1]
        holder = message
        for name in reversed(parents):
            if not holder.HasField(name):
                break
            holder = getattr(holder, name)
        else:
            field = holder.DESCRIPTOR.fields_by_name[target]
            if field.has_presence and not field.is_repeated and not holder.HasField(target):
                continue
            rule(path, getattr(holder, target))


def local_path(field: str, value: str) -> pathlib.Path:
    """The absolute local path a request names, as `/x/y` or `file:///x/y`.

    Raises:
        InvalidArgument: NUL characters, over 4096 characters, a relative path, another scheme.
    """
    if len(value) > MAX_PATH_CHARS:
        raise InvalidArgument(field, f"must be at most {MAX_PATH_CHARS} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(field, f"must be a local file:// URI, got host {quote(parsed.netloc)}")
        text = urllib.parse.unquote(parsed.path)
        if "\x00" in text:
            raise InvalidArgument(field, "must not contain NUL characters")
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise InvalidArgument(field, f"must be a local path or a file:// URI, got scheme {quote(parsed.scheme)}")
    else:
        text = value
    path = pathlib.PurePosixPath(text)
    if not path.is_absolute():
        raise InvalidArgument(field, f"must be an absolute path or a file:// URI, got {quote(value)}")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in path.parts):
        raise InvalidArgument(field, f"has a file name longer than {MAX_NAME_BYTES} bytes")
    return pathlib.Path(text)


def confined_path(field: str, value: str, roots: Iterable[pathlib.Path], setting: str) -> pathlib.Path:
    """`value` resolved (symlinks and `..` followed), if it lies under one of `roots`.

    Args:
        field: the request field, named in errors.
        value: an absolute path or a file:// URI.
        roots: the folders this service may read for this field.
        setting: the environment variable that sets `roots`, named when the path is outside.

    Raises:
        InvalidArgument: `value` is no absolute local path (see `local_path`).
        PermissionDenied: the resolved path is outside every root.
    """
    resolved = pathlib.Path(os.path.realpath(local_path(field, value)))
    allowed = [pathlib.Path(os.path.realpath(root)) for root in roots]
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        raise PermissionDenied(
            field,
            f"{quote(value, 80)} is outside the folders this service reads ({setting}: "
            f"{', '.join(str(root) for root in allowed) or 'none'})",
        )
    return resolved
