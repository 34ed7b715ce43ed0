"""The one small interface every sandbox backend implements, and what a started sandbox offers.

A `Backend` starts a `Sandbox` for a `SandboxSpec` (limits and image): a running isolated
environment with the agent (limi_sandbox/inside/agent.py) already connected and ready. The
session layer only ever talks to `sandbox.agent`, so bwrap, gVisor and Kubernetes differ only
in how they start, limit, watch and end the sandbox. Backends: `bwrap` and `gvisor` (local
processes, backends/local.py) and `kubernetes` (one pod per session).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses

from limi_core.errors import InvalidArgument
from limi_sandbox.agent_client import AgentClient
from limi_sandbox.limits import SessionLimits


@dataclasses.dataclass(frozen=True)
class SandboxSpec:
    limits: SessionLimits
    image: str = ""


class Sandbox(abc.ABC):
    """One started sandbox; `agent` runs its commands and file tools."""

    backend: str
    name: str
    agent: AgentClient
    spec: SandboxSpec
    # Whether each command gets RLIMIT_AS (no memory cgroup, or a backend that needs it inside).
    use_address_space: bool

    def fits(self, spec: SandboxSpec) -> bool:
        """Whether this (pre-started) sandbox can serve `spec`: what cannot change after start matches."""
        return spec.image == self.spec.image and spec.limits.workspace_bytes == self.spec.limits.workspace_bytes

    def apply_limits(self, limits: SessionLimits) -> None:  # noqa: B027 (an optional hook; the default does nothing)
        """Adjust the limits that can change after start (a cgroup's memory and pids)."""

    def oom_kills(self) -> int | None:
        """Processes the kernel killed for memory so far, where the backend can tell; else None."""
        return None

    def agent_gone(self, reason: str) -> None:
        """The agent exited or broke the protocol: end the sandbox now (processes killed and reaped),
        not when the session is closed. Its calls already fail with SandboxGone."""
        self._teardown = asyncio.get_running_loop().create_task(self.close(), name=f"close-{self.name}")

    @abc.abstractmethod
    async def close(self) -> None:
        """End everything in the sandbox and free what it held. Safe to call twice."""


class Backend(abc.ABC):
    name: str

    def unavailable_reason(self) -> str | None:
        """None when the backend can start sandboxes here, else why not (for FAILED_PRECONDITION)."""
        return None

    def image_for(self, requested: str) -> str:
        """The image a session gets for `requested` ("" for the default); InvalidArgument if not allowed.

        Local backends run the host's /usr and take no image."""
        if requested:
            raise InvalidArgument("image", f"the {self.name} backend runs the host's /usr; only kubernetes runs images")
        return ""

    @abc.abstractmethod
    async def start(self, spec: SandboxSpec, name: str) -> Sandbox:
        """Start a sandbox and wait until its agent is ready; raise Unavailable when it cannot."""

    async def stop(self) -> None:  # noqa: B027 (an optional hook; the default does nothing)
        """Free what the backend holds beyond its sandboxes (called after they are closed)."""
