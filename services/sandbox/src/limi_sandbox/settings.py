"""Settings of the sandbox service, from LIMI_SANDBOX_* (and the shared LIMI_*) environment variables.

Defaults suit one machine with bubblewrap: a warm pool of four sandboxes, generous per-session
limits that a CreateSession request may lower or raise up to the `max_*` caps, and quotas that
answer RESOURCE_EXHAUSTED rather than let the host run out of memory. The Kubernetes backend is
off until `LIMI_SANDBOX_BACKENDS` names it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from limi_core.config import check
from limi_core.settings import DEFAULT_PORTS, ServiceSettings

GiB, MiB = 1 << 30, 1 << 20
KNOWN_BACKENDS = ("bwrap", "gvisor", "kubernetes")


@dataclasses.dataclass(frozen=True)
class SandboxSettings(ServiceSettings):
    PREFIX: ClassVar[str] = "LIMI_SANDBOX_"

    grpc_address: str = f"127.0.0.1:{DEFAULT_PORTS['sandbox'].grpc}"
    metrics_address: str = f"127.0.0.1:{DEFAULT_PORTS['sandbox'].metrics}"

    # Backends this process offers, and the one an empty CreateSession.backend gets.
    backends: tuple[str, ...] = ("bwrap", "gvisor")
    default_backend: str = "bwrap"
    # Pre-started sandboxes kept ready per backend.
    pool_size: int = 4
    gvisor_pool_size: int = 0
    kubernetes_pool_size: int = 0

    # Quotas: beyond them calls get RESOURCE_EXHAUSTED.
    max_sessions: int = 128
    max_concurrent_execs: int = 128
    max_calls_per_session: int = 16
    idle_timeout_seconds: float = 900.0
    max_session_seconds: float = 6 * 3600.0

    # Per-session limits when a request leaves them at 0, and the most a request may ask for.
    default_cpu_seconds: int = 120
    default_memory_bytes: int = 2 * GiB
    default_max_processes: int = 256
    default_max_file_bytes: int = 1 * GiB
    default_max_open_files: int = 1024
    default_wall_timeout_seconds: float = 120.0
    default_max_output_bytes: int = 1 * MiB
    default_workspace_bytes: int = 1 * GiB
    max_cpu_seconds: int = 3600
    max_memory_bytes: int = 16 * GiB
    max_processes: int = 4096
    max_wall_timeout_seconds: float = 3600.0
    max_output_bytes: int = 16 * MiB
    max_workspace_bytes: int = 8 * GiB
    tmp_bytes: int = 256 * MiB

    # Sizes of single requests and answers. max_read_bytes is also the largest file EditFile edits,
    # before and after, and the most its old_text and new_text may each hold (InvalidArgument beyond).
    max_command_bytes: int = 100_000
    max_code_bytes: int = 4 * MiB
    max_read_bytes: int = 8 * MiB
    max_archive_bytes: int = 12 * MiB
    max_archive_files: int = 20_000

    # Retried calls with the same request_id get the recorded answer for this long.
    request_log_seconds: float = 900.0
    request_log_bytes: int = 64 * MiB

    # Local backends.
    bwrap_path: str = "bwrap"
    runsc_path: str = "runsc"
    python_path: str = "/usr/bin/python3"
    # When the service runs as root, each sandbox runs as its own host uid from this range.
    sandbox_uid_base: int = 640_000
    sandbox_uid_count: int = 4096
    # cgroup v1 memory and pids limits where the machine has them; false: rlimits only.
    use_cgroups: bool = True
    sandbox_start_timeout_seconds: float = 20.0
    # Where the agent and the sandbox skeletons live; empty: a fresh folder under /tmp.
    runtime_dir: str = ""

    # Kubernetes backend: one pod per session.
    kubernetes_namespace: str = "limi-sandbox"
    kubernetes_image: str = "python:3.11-slim"
    kubernetes_images: tuple[str, ...] = ()
    kubernetes_runtime_class: str = ""
    # Path of a kubeconfig; empty: the in-cluster service account.
    kubernetes_config: str = ""
    kubernetes_start_timeout_seconds: float = 120.0

    def __post_init__(self) -> None:
        super().__post_init__()
        cls, prefix = type(self), self.PREFIX
        unknown = [b for b in self.backends if b not in KNOWN_BACKENDS]
        check(
            not unknown,
            cls,
            "backends",
            prefix,
            f"must name only {', '.join(KNOWN_BACKENDS)}, got {', '.join(unknown)}",
        )
        check(
            self.default_backend in self.backends,
            cls,
            "default_backend",
            prefix,
            f"must be one of LIMI_SANDBOX_BACKENDS, got {self.default_backend!r}",
        )
        for name in ("pool_size", "gvisor_pool_size", "kubernetes_pool_size"):
            check(0 <= getattr(self, name) <= 256, cls, name, prefix, "must be between 0 and 256")
        for name in ("max_sessions", "max_concurrent_execs", "max_calls_per_session", "sandbox_uid_count"):
            check(getattr(self, name) >= 1, cls, name, prefix, "must be at least 1")
        check(self.idle_timeout_seconds > 0, cls, "idle_timeout_seconds", prefix, "must be positive")
        check(self.default_memory_bytes >= 16 * MiB, cls, "default_memory_bytes", prefix, "must be at least 16 MiB")
        pairs = (
            ("default_cpu_seconds", "max_cpu_seconds"),
            ("default_memory_bytes", "max_memory_bytes"),
            ("default_max_processes", "max_processes"),
            ("default_wall_timeout_seconds", "max_wall_timeout_seconds"),
            ("default_max_output_bytes", "max_output_bytes"),
            ("default_workspace_bytes", "max_workspace_bytes"),
        )
        for default, maximum in pairs:
            check(
                0 < getattr(self, default) <= getattr(self, maximum),
                cls,
                default,
                prefix,
                f"must be positive and at most {maximum.upper()}",
            )
        check(
            self.max_read_bytes + 64 * 1024 <= self.max_message_bytes,
            cls,
            "max_read_bytes",
            prefix,
            "must fit in LIMI_MAX_MESSAGE_BYTES",
        )
        check(
            self.max_archive_bytes + 64 * 1024 <= self.max_message_bytes,
            cls,
            "max_archive_bytes",
            prefix,
            "must fit in LIMI_MAX_MESSAGE_BYTES",
        )
