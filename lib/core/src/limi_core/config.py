"""Configuration from environment variables into frozen dataclasses.

Each service declares a frozen dataclass of its settings with defaults for the embedded
one-machine run; `load_config` fills it from the environment (the Kubernetes way) and raises
`ConfigError` naming the variable when a value is missing or malformed. Fields marked with
`shared()` read `LIMI_<NAME>` (the same for every service, e.g. `LIMI_NATS_URL`); the others
read `<prefix><NAME>` (e.g. `LIMI_CURATOR_GRPC_ADDRESS`). It does not read files or flags.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration variable is missing or has a value of the wrong form."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"environment variable {variable} {reason}")
        self.variable = variable
        self.reason = reason


def shared(default: Any) -> Any:
    """A field read from `LIMI_<NAME>` whatever the service prefix."""
    return dataclasses.field(default=default, metadata={"shared": True})


def variable_name(field: dataclasses.Field, prefix: str) -> str:
    """The environment variable that sets `field`."""
    if field.metadata.get("shared"):
        return "LIMI_" + field.name.upper()
    return prefix + field.name.upper()


def _parse(variable: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return None if raw == "" else _parse(variable, raw, options[0])
    if origin is tuple:
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(_parse(variable, part.strip(), item) for part in raw.split(",") if part.strip())
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(variable, f"must be true or false, got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(variable, f"must be a{'n integer' if kind is int else ' number'}, got {raw!r}") from None
    if kind is pathlib.Path:
        return pathlib.Path(raw).expanduser()
    if kind is str:
        return raw
    raise TypeError(f"unsupported config field type {kind!r} for {variable}")


def load_config(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from the environment.

    Args:
        cls: a frozen dataclass whose fields have defaults unless they must be set.
        prefix: the service's prefix, e.g. "LIMI_CURATOR_".
        environ: the variables to read; `os.environ` when None.

    Raises:
        ConfigError: a variable is missing, malformed, or rejected by the dataclass's checks.
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        variable = variable_name(field, prefix)
        if variable in environ:
            values[field.name] = _parse(variable, environ[variable], hints[field.name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(variable, "must be set")
    return cls(**values)


def check(condition: bool, cls: type, field: str, prefix: str, reason: str) -> None:
    """Raise ConfigError for `field` of `cls` unless `condition`; for `__post_init__` checks."""
    if not condition:
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        raise ConfigError(variable_name(by_name[field], prefix), reason)
