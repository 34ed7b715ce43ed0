"""Per-session resource limits: defaults and caps from settings, checked values from a request.

`SessionLimits` is what a sandbox enforces: CPU seconds, memory, processes, file size and open
files per command (rlimits, and the cgroup where there is one), the wall-clock timeout of a
command, the output kept per command, and the size of the workspace. `resolve_limits` fills a
request's zeros with the defaults and refuses values beyond the caps with InvalidArgument naming
the field. Nothing here enforces anything; the backends and the agent do.
"""

from __future__ import annotations

import dataclasses

from limi_core.errors import InvalidArgument
from limi_sandbox.settings import MiB, SandboxSettings


@dataclasses.dataclass(frozen=True)
class SessionLimits:
    cpu_seconds: int
    memory_bytes: int
    max_processes: int
    max_file_bytes: int
    max_open_files: int
    wall_timeout_seconds: float
    max_output_bytes: int
    workspace_bytes: int

    def rlimits(self, use_address_space: bool) -> dict[str, int]:
        """The agent's per-command rlimits; address space only where no memory cgroup is set."""
        limits = {
            "cpu": self.cpu_seconds,
            "nproc": self.max_processes,
            "fsize": self.max_file_bytes,
            "nofile": self.max_open_files,
        }
        if use_address_space:
            limits["as"] = self.memory_bytes
        return limits


# (smallest allowed, cap attribute of settings or a fixed number)
_BOUNDS = {
    "cpu_seconds": (1, "max_cpu_seconds"),
    "memory_bytes": (16 * MiB, "max_memory_bytes"),
    "max_processes": (8, "max_processes"),
    "max_file_bytes": (1024, "max_workspace_bytes"),
    "max_open_files": (16, 1 << 20),
    "wall_timeout_seconds": (0.1, "max_wall_timeout_seconds"),
    "max_output_bytes": (1024, "max_output_bytes"),
    "workspace_bytes": (1 * MiB, "max_workspace_bytes"),
}


def default_limits(settings: SandboxSettings) -> SessionLimits:
    return SessionLimits(
        cpu_seconds=settings.default_cpu_seconds,
        memory_bytes=settings.default_memory_bytes,
        max_processes=settings.default_max_processes,
        max_file_bytes=settings.default_max_file_bytes,
        max_open_files=settings.default_max_open_files,
        wall_timeout_seconds=settings.default_wall_timeout_seconds,
        max_output_bytes=settings.default_max_output_bytes,
        workspace_bytes=settings.default_workspace_bytes,
    )


def resolve_limits(requested: dict[str, float], settings: SandboxSettings) -> SessionLimits:
    """The limits for a session: `requested` values (0 meaning the default) checked against the caps."""
    defaults = default_limits(settings)
    values = {}
    for field in dataclasses.fields(SessionLimits):
        value = requested.get(field.name, 0) or 0
        if value < 0:
            raise InvalidArgument(f"limits.{field.name}", "must not be negative")
        if value == 0:
            values[field.name] = getattr(defaults, field.name)
            continue
        smallest, cap = _BOUNDS[field.name]
        largest = getattr(settings, cap) if isinstance(cap, str) else cap
        if value < smallest or value > largest:
            raise InvalidArgument(
                f"limits.{field.name}", f"must be between {smallest:g} and {largest:g}, got {value:g}"
            )
        values[field.name] = value
    return SessionLimits(**values)
