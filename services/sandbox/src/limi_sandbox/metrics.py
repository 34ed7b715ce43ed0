"""Prometheus metrics of the sandbox service (served by the scaffold's metrics endpoint).

Sessions open, pre-started sandboxes ready in each warm pool, how long commands take, how they
end (one outcome per command: timeout, oom, cpu_limit, cancelled, truncated, nonzero, ok, in
that order of precedence), sandbox start-up time, and calls refused by a quota. gRPC call
counts and latencies come from limi_core's edge interceptor and are not repeated here.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_SESSIONS = Gauge("limi_sandbox_active_sessions", "Sessions open now", ["backend"])
POOL_SIZE = Gauge("limi_sandbox_pool_size", "Pre-started sandboxes ready in the warm pool", ["backend"])
EXEC_SECONDS = Histogram(
    "limi_sandbox_exec_duration_seconds",
    "Wall time of one command, from request to result",
    ["backend"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
EXEC_OUTCOMES = Counter("limi_sandbox_exec_outcomes_total", "Commands by how they ended", ["backend", "outcome"])
SANDBOX_START_SECONDS = Histogram(
    "limi_sandbox_start_duration_seconds",
    "Time to start a sandbox until its agent is ready",
    ["backend"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
SESSIONS_CREATED = Counter(
    "limi_sandbox_sessions_created_total", "Sessions created, from the warm pool or started cold", ["backend", "source"]
)
SESSIONS_CLOSED = Counter("limi_sandbox_sessions_closed_total", "Sessions closed, by reason", ["reason"])
REJECTED = Counter("limi_sandbox_rejected_total", "Calls refused by a quota", ["quota"])


def outcome_name(
    *,
    timed_out: bool,
    memory_exceeded: bool,
    cpu_limit_exceeded: bool,
    cancelled: bool,
    truncated: bool,
    exit_code: int,
) -> str:
    if timed_out:
        return "timeout"
    if memory_exceeded:
        return "oom"
    if cpu_limit_exceeded:
        return "cpu_limit"
    if cancelled:
        return "cancelled"
    if truncated:
        return "truncated"
    return "ok" if exit_code == 0 else "nonzero"
