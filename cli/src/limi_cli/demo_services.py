"""The demo's gRPC side: stubs of the embedded stack's services, with calls that outlive a crash.

`StackClient(stack, say)` opens one channel per service. `call(service, method, request)` makes
a unary call; when the service cannot be reached (UNAVAILABLE, or the call was cut off by the
process dying) it asks the stack to restart whatever died (`EmbeddedStack.revive`), says so,
and calls again, up to `patience` seconds. Every request the demo sends is idempotent (content
ids, request ids, deterministic evaluation ids), so calling again never doubles the work. Other
errors propagate as `grpc.RpcError`. It knows the services' stubs, not the demo's stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from limi.curator.v1 import curator_pb2_grpc
from limi.evaluator.v1 import evaluator_pb2_grpc
from limi.rollout.v1 import rollout_pb2_grpc
from limi.trainer.v1 import trainer_pb2_grpc
from limi_cli.stack import EmbeddedStack

STUBS = {
    "curator": curator_pb2_grpc.CuratorServiceStub,
    "rollout": rollout_pb2_grpc.RolloutServiceStub,
    "trainer": trainer_pb2_grpc.TrainerServiceStub,
    "evaluator": evaluator_pb2_grpc.EvaluatorServiceStub,
}
# What a call sees when its server went away: a refused connection, or a stream cut mid-call.
RETRIABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


class DemoError(RuntimeError):
    """A stage of the demo failed; the message is one sentence for a person."""


class StackClient:
    def __init__(self, stack: EmbeddedStack, say: Callable[[str], None], patience: float = 300.0) -> None:
        self.stack, self.say, self.patience = stack, say, patience
        self._channels = {name: grpc.insecure_channel(stack.address_of(name)) for name in STUBS}
        self._stubs = {name: STUBS[name](channel) for name, channel in self._channels.items()}

    def heal(self) -> None:
        """Restart whatever died, and say so."""
        revived = self.stack.revive()
        if revived:
            self.say(f"restarted {', '.join(revived)} (it had exited); carrying on")

    def call(self, service: str, method: str, request, timeout: float = 60.0):
        deadline = time.monotonic() + self.patience
        while True:
            try:
                return getattr(self._stubs[service], method)(request, timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() not in RETRIABLE or time.monotonic() > deadline:
                    raise
            self.heal()
            time.sleep(1.0)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
