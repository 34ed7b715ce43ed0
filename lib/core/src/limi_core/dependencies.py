"""Which services this one depends on are down right now, for health, metrics and logs.

A consumer whose handler raises `DependencyUnavailable` marks that dependency down here and
marks it up again when the held work goes through. Each change sets the gauge
`limi_dependency_up{service, dependency}`, counts `limi_dependency_outages_total`, logs the
reason once, and calls the scaffold's `on_change`, which sets the gRPC health entry
`limi.dependency.<name>` (NOT_SERVING while it is down). Readiness ("") is not changed by an
outage: the service still answers its API, its consumers only pause. It probes nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

DEPENDENCY_UP = Gauge(
    "limi_dependency_up", "0 while work waits for this dependency to answer, 1 otherwise", ["service", "dependency"]
)
OUTAGES = Counter("limi_dependency_outages_total", "Times a dependency was found down", ["service", "dependency"])
HEALTH_PREFIX = "limi.dependency."


def health_name(dependency: str) -> str:
    return HEALTH_PREFIX + dependency


class DependencyBoard:
    def __init__(self, service: str, on_change: Callable[[str, bool], Awaitable[None]] | None = None) -> None:
        self.service = service
        self.on_change = on_change
        self._down: dict[str, str] = {}

    @property
    def down(self) -> dict[str, str]:
        """The dependencies down now, with the reason each was last seen down."""
        return dict(self._down)

    async def mark_down(self, dependency: str, reason: str) -> None:
        first = dependency not in self._down
        self._down[dependency] = reason
        if not first:
            return
        OUTAGES.labels(self.service, dependency).inc()
        DEPENDENCY_UP.labels(self.service, dependency).set(0)
        log.warning("dependency down: holding its work", extra={"fields": {"dependency": dependency, "reason": reason}})
        if self.on_change:
            await self.on_change(dependency, False)

    async def mark_up(self, dependency: str) -> None:
        if self._down.pop(dependency, None) is None:
            return
        DEPENDENCY_UP.labels(self.service, dependency).set(1)
        log.info("dependency back: work resumes", extra={"fields": {"dependency": dependency}})
        if self.on_change:
            await self.on_change(dependency, True)
