"""Typed errors raised by domain code, and their one mapping to gRPC status codes.

Domain modules raise these and never import grpc; the server's interceptor (grpc_edge.py) turns
them into a status with the message. Unexpected exceptions are not mapped here: they become
INTERNAL at the edge and are logged with their traceback.
"""

from __future__ import annotations

import grpc


class LimiError(Exception):
    """Base of the errors a caller can act on."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(LimiError, ValueError):
    """A request field is missing or malformed; `field` names it."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class PermissionDenied(LimiError):
    """A request field names something this service may not touch (a path outside its roots); `field` names it."""

    code = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(LimiError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(LimiError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(LimiError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(LimiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(LimiError):
    code = grpc.StatusCode.UNAVAILABLE


class DependencyUnavailable(Unavailable):
    """A service this one needs (`dependency`: "sandbox", "policy", "rollout") did not answer.

    Not the fault of the work in hand: a consumer that sees it keeps the message, pauses and
    tries again when the dependency answers, without charging the message an attempt.
    """

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency


class DeadlineExceeded(LimiError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def status_code_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC status for an exception: its own code for domain errors, INTERNAL otherwise."""
    if isinstance(error, LimiError):
        return error.code
    return grpc.StatusCode.INTERNAL
