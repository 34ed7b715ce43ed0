"""Asking a service for its gRPC health status (for `limi up`, `limi status` and tests)."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

UNREACHABLE = "UNREACHABLE"


def check_health(address: str, timeout: float = 2.0, service: str = "") -> str:
    """The status name ("SERVING", "NOT_SERVING", ...) or UNREACHABLE."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return UNREACHABLE
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_for_health(address: str, status: str = "SERVING", timeout: float = 30.0, process=None) -> None:
    """Poll until `address` reports `status`.

    Raises:
        TimeoutError: it did not within `timeout`, or `process` (a Popen) exited first.
    """
    deadline = time.monotonic() + timeout
    last = UNREACHABLE
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TimeoutError(f"the process exited with code {process.returncode} before {address} was {status}")
        last = check_health(address, timeout=1.0)
        if last == status:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{address} reported {last}, not {status}, after {timeout:g} s")
