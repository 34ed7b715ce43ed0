"""The settings every limi service shares, and the defaults of the embedded one-machine run.

A service subclasses `ServiceSettings` with its own fields and a `PREFIX`; `load_config`
(see config.py) fills it from the environment. Ports default to fixed numbers so that
`limi up` and a person's client agree without discovery; tests pass free ports.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import ClassVar, NamedTuple

from limi_core.config import check, shared


class Ports(NamedTuple):
    grpc: int
    metrics: int


SERVICES = ("curator", "sandbox", "rollout", "trainer", "evaluator")
DEFAULT_PORTS = {name: Ports(50051 + i, 9101 + i) for i, name in enumerate(SERVICES)}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def default_data_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".local" / "share" / "limi"


def model_cache_dir() -> pathlib.Path:
    """Where limi keeps the models it builds for a person (the demo's base model): $LIMI_CACHE_DIR/models."""
    return (
        pathlib.Path(os.environ.get("LIMI_CACHE_DIR") or pathlib.Path.home() / ".cache" / "limi").expanduser()
        / "models"
    )


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Settings of one service process; subclass per service."""

    PREFIX: ClassVar[str] = "LIMI_SERVICE_"

    grpc_address: str = "127.0.0.1:0"
    metrics_address: str = "127.0.0.1:0"
    nats_url: str = shared("nats://127.0.0.1:4222")
    data_dir: pathlib.Path = shared(default_data_dir())
    log_level: str = shared("INFO")
    log_format: str = shared("json")
    shutdown_grace_seconds: float = shared(10.0)
    nats_connect_timeout_seconds: float = shared(60.0)
    max_message_bytes: int = shared(16 * 1024 * 1024)
    # 3 on a NATS cluster of 3 servers, so that a stream survives the loss of one.
    nats_stream_replicas: int = shared(1)

    def __post_init__(self) -> None:
        cls, prefix = type(self), self.PREFIX
        check(
            _is_host_port(self.grpc_address),
            cls,
            "grpc_address",
            prefix,
            f"must be HOST:PORT, got {self.grpc_address!r}",
        )
        check(
            _is_host_port(self.metrics_address),
            cls,
            "metrics_address",
            prefix,
            f"must be HOST:PORT, got {self.metrics_address!r}",
        )
        check(
            self.nats_url.startswith(("nats://", "tls://")),
            cls,
            "nats_url",
            prefix,
            f"must start with nats:// or tls://, got {self.nats_url!r}",
        )
        check(
            self.log_level.upper() in LOG_LEVELS,
            cls,
            "log_level",
            prefix,
            f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}",
        )
        check(
            self.log_format in ("json", "text"),
            cls,
            "log_format",
            prefix,
            f"must be json or text, got {self.log_format!r}",
        )
        check(self.shutdown_grace_seconds >= 0, cls, "shutdown_grace_seconds", prefix, "must not be negative")
        check(self.max_message_bytes >= 1024, cls, "max_message_bytes", prefix, "must be at least 1024")
        check(self.nats_stream_replicas in (1, 3, 5), cls, "nats_stream_replicas", prefix, "must be 1, 3 or 5")

    @property
    def service_name(self) -> str:
        return self.PREFIX.removeprefix("LIMI_").rstrip("_").lower()

    def data_dir_of(self, service: str) -> pathlib.Path:
        """Another service's data dir on the same volume, for the roots a request may read.

        `limi up`, the chart and the tests give each service `<root>/<service>`; a data dir named
        after this service therefore has its siblings beside it. Otherwise every service shares
        this one folder.
        """
        if self.data_dir.name == self.service_name:
            return self.data_dir.parent / service
        return self.data_dir


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _is_host_port(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 <= int(port) < 65536)
