"""The evaluator's gRPC servicer: Evaluate, GetEvaluation, Leaderboard, ListBenchmarks.

`Evaluate` checks the request (the field table below, then benchmark and options) before bringing
up a policy: the request's `endpoint`, else a vLLM server (or Job) on `checkpoint_uri`, which must
lie under the checkpoint roots (LIMI_EVALUATOR_CHECKPOINT_ROOTS), else the configured endpoint in
endpoint mode; a suite file named by path must lie in LIMI_EVALUATOR_SUITES_DIR. It runs the
evaluation to the end (callers set a long deadline), publishes the `EvalResult` like a
checkpoint-triggered one, and returns it; asking again for a finished evaluation returns the
stored result at once. Errors are the typed domain errors, mapped to gRPC status at the edge (an
unknown benchmark or broken suite: INVALID_ARGUMENT; a path outside the roots: PERMISSION_DENIED;
a missing checkpoint: FAILED_PRECONDITION; an unreachable policy or sandbox: UNAVAILABLE).
"""

from __future__ import annotations

import contextlib

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi.evaluator.v1 import evaluator_pb2, evaluator_pb2_grpc
from limi_core import bus
from limi_core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from limi_core.request_checks import (
    COUNT,
    IDENTIFIER,
    MAX_ID_CHARS,
    Between,
    Each,
    Identifier,
    Url,
    check_fields,
    confined_path,
)
from limi_evaluator.evaluation import EvaluationSpec, Evaluator
from limi_evaluator.policy import PolicyProvider
from limi_evaluator.settings import EvaluatorSettings
from limi_evaluator.store import FAILED, RUNNING

EVALUATE = {
    "checkpoint_id": IDENTIFIER,
    "endpoint": Url(),
    "model": IDENTIFIER,
    "benchmark": IDENTIFIER,
    "max_rounds": Between(0, 10),
    "request_id": IDENTIFIER,
    "task_ids": Each(IDENTIFIER),
    "limit": COUNT,
    "samples": Between(0, 200),
    "k": Each(Between(1, 200), max_items=16),
    "dataset_size": COUNT,
    "step": COUNT,
}
# An evaluation id is "evaluation:<checkpoint id>:<benchmark>".
GET_EVALUATION = {"id": Identifier(3 * MAX_ID_CHARS, required=True)}
LEADERBOARD = {"benchmark": IDENTIFIER}


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServiceServicer):
    def __init__(
        self, settings: EvaluatorSettings, evaluator: Evaluator, policies: PolicyProvider, publisher_ref
    ) -> None:
        self.settings, self.evaluator, self.policies = settings, evaluator, policies
        self._publisher_ref = publisher_ref  # returns the EventPublisher once NATS is connected

    def _policy(self, request: evaluator_pb2.EvaluateRequest, checkpoint: str):
        if request.endpoint:
            return self.policies.endpoint(request.endpoint, request.model)
        if checkpoint or self.settings.policy_mode == "endpoint":
            return self.policies.serve(checkpoint)
        raise InvalidArgument(
            "checkpoint_uri", "set checkpoint_uri (a checkpoint directory to serve) or endpoint (a running policy)"
        )

    def _benchmark(self, name: str) -> str:
        """A benchmark name as given; a suite file named by path only inside the suites folder."""
        if "/" not in name and not name.startswith("~"):
            return name
        if self.settings.suites_dir is None:
            raise PermissionDenied(
                "benchmark", "suite files are read by path only from LIMI_EVALUATOR_SUITES_DIR, which is not set"
            )
        return str(confined_path("benchmark", name, (self.settings.suites_dir,), "LIMI_EVALUATOR_SUITES_DIR"))

    async def Evaluate(self, request: evaluator_pb2.EvaluateRequest, context) -> ev.EvalResult:
        check_fields(request, EVALUATE)
        checkpoint = ""
        if request.checkpoint_uri:
            roots = self.settings.allowed_checkpoint_roots
            checkpoint = str(
                confined_path("checkpoint_uri", request.checkpoint_uri, roots, "LIMI_EVALUATOR_CHECKPOINT_ROOTS")
            )
        spec = EvaluationSpec(
            checkpoint_id=request.checkpoint_id,
            benchmark=self._benchmark(request.benchmark or self.settings.benchmarks[0]),
            max_rounds=request.max_rounds,
            task_ids=tuple(request.task_ids),
            limit=request.limit,
            samples=request.samples,
            ks=tuple(request.k),
            dataset_size=request.dataset_size or None,
            step=request.step or None,
        )
        prepared = self.evaluator.prepare(spec)
        result = self.evaluator.store.get(prepared.evaluation_id)
        if result is None:
            async with (
                self._policy(request, checkpoint) if prepared.needs_policy else contextlib.nullcontext() as policy
            ):
                result = await self.evaluator.run(prepared, policy)
        publisher = self._publisher_ref()
        if publisher is not None:
            await publisher.publish(bus.EVALUATIONS_FINISHED, result, result.id)
        return result

    async def GetEvaluation(self, request: evaluator_pb2.GetEvaluationRequest, context) -> ev.EvalResult:
        check_fields(request, GET_EVALUATION)
        result = self.evaluator.store.get(request.id)
        if result is not None:
            return result
        described = self.evaluator.store.describe(request.id)
        if described is None:
            raise NotFound(f"no evaluation {request.id!r}")
        status, error = described
        if status == RUNNING:
            raise FailedPrecondition(f"evaluation {request.id} is still running")
        raise FailedPrecondition(f"evaluation {request.id} {FAILED}: {error}")

    async def Leaderboard(
        self, request: evaluator_pb2.LeaderboardRequest, context
    ) -> evaluator_pb2.LeaderboardResponse:
        check_fields(request, LEADERBOARD)
        response = evaluator_pb2.LeaderboardResponse()
        for row in self.evaluator.store.leaderboard(request.benchmark):
            entry = response.entries.add(
                checkpoint_id=row.checkpoint_id,
                benchmark=row.benchmark,
                aggregate=row.aggregate,
                evaluation_id=row.evaluation_id,
                dataset_size=row.dataset_size or 0,
                step=row.step or 0,
                report_uri=row.report_uri,
            )
            entry.finished_at.FromNanoseconds(int(row.finished_at * 1e9))
        return response

    async def ListBenchmarks(
        self, request: evaluator_pb2.ListBenchmarksRequest, context
    ) -> evaluator_pb2.ListBenchmarksResponse:
        found = self.evaluator.catalog.list()
        return evaluator_pb2.ListBenchmarksResponse(
            benchmarks=[b.name for b in found],
            infos=[evaluator_pb2.BenchmarkInfo(name=b.name, kind=b.kind, description=b.description) for b in found],
        )
