"""The trainer's gRPC servicer: request validation, then calls into the run supervisor.

StartRun names a dataset by the id of a `Dataset` event the trainer has seen, or by a `file://`
URI of LIMI JSONL; it queues a run (or returns the existing run with the same id). GetRun,
ListRuns, CancelRun and WatchRun report runs as `Run` messages; WatchRun streams a message on
every change until the run is final. Domain errors are typed (limi_core.errors) and mapped to
status codes at the edge. It does not train.
"""

from __future__ import annotations

import pathlib

from google.protobuf import timestamp_pb2

from limi.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from limi_core.errors import InvalidArgument, NotFound
from limi_trainer.dataset import DatasetInput, local_path
from limi_trainer.run_store import RunRecord, RunState, RunStore
from limi_trainer.supervisor import RunRequest, RunSupervisor
from limi_trainer.tiny import TINY_MODEL_NAME

STATES = {
    RunState.QUEUED: trainer_pb2.RUN_STATE_QUEUED,
    RunState.RUNNING: trainer_pb2.RUN_STATE_RUNNING,
    RunState.SUCCEEDED: trainer_pb2.RUN_STATE_SUCCEEDED,
    RunState.FAILED: trainer_pb2.RUN_STATE_FAILED,
    RunState.CANCELLED: trainer_pb2.RUN_STATE_CANCELLED,
}
MAX_ID_CHARS = 512


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, supervisor: RunSupervisor, store: RunStore, *, default_base_model: str, default_preset: str) -> None:
        self._supervisor, self._store = supervisor, store
        self._default_base_model, self._default_preset = default_base_model, default_preset

    async def StartRun(self, request: trainer_pb2.StartRunRequest, context) -> trainer_pb2.Run:
        dataset = self._dataset(request)
        base_model = request.base_model or self._default_base_model
        _check_base_model(base_model)
        run_request = RunRequest(dataset, base_model, request.preset or self._default_preset, dict(request.hyperparameters), _text("request_id", request.request_id))
        return self._message(await self._supervisor.submit(run_request))

    async def GetRun(self, request: trainer_pb2.GetRunRequest, context) -> trainer_pb2.Run:
        return self._message(self._supervisor.get(_required("id", request.id)))

    async def ListRuns(self, request: trainer_pb2.ListRunsRequest, context) -> trainer_pb2.ListRunsResponse:
        return trainer_pb2.ListRunsResponse(runs=[self._message(run) for run in self._supervisor.list()])

    async def CancelRun(self, request: trainer_pb2.CancelRunRequest, context) -> trainer_pb2.Run:
        return self._message(await self._supervisor.cancel(_required("id", request.id)))

    async def WatchRun(self, request: trainer_pb2.GetRunRequest, context):
        async for run in self._supervisor.watch(_required("id", request.id)):
            yield self._message(run)

    def _dataset(self, request: trainer_pb2.StartRunRequest) -> DatasetInput:
        dataset_id = _text("dataset_id", request.dataset_id)
        if request.dataset_uri:
            uri = _text("dataset_uri", request.dataset_uri)
            path = local_path(uri)
            if not path.is_file():
                raise InvalidArgument("dataset_uri", f"{uri} is not a readable file")
            return DatasetInput(uri=path.resolve().as_uri(), dataset_id=dataset_id or path.resolve().as_uri())
        if not dataset_id:
            raise InvalidArgument("dataset_id", "is required (or give dataset_uri)")
        known = self._store.dataset(dataset_id)
        if known is None:
            raise NotFound(f"dataset {dataset_id!r} has not been published on the bus; give dataset_uri to train on a file")
        return DatasetInput(uri=known.storage_uri, dataset_id=known.id, content_hash=known.content_hash, trajectory_ids=tuple(known.trajectory_ids))

    def _message(self, run: RunRecord) -> trainer_pb2.Run:
        return trainer_pb2.Run(
            id=run.id, state=STATES[run.state], dataset_id=run.dataset_id, base_model=run.base_model, step=run.step, total_steps=run.total_steps,
            loss=run.loss, tokens_per_second=run.tokens_per_second, eta_seconds=int(run.eta_seconds), checkpoint_ids=run.checkpoint_ids,
            error=run.error, started_at=_timestamp(run.started_at), preset=run.preset, hyperparameters=run.hyperparameters, run_dir=run.run_dir,
            summary_path=run.summary_path, loss_curve_path=run.loss_curve_path, packing_efficiency=run.packing_efficiency,
            created_at=_timestamp(run.created_at), finished_at=_timestamp(run.finished_at), resumed_from_step=run.resumed_from_step,
            attempts=run.attempts, queue_position=self._supervisor.queue_position(run.id), dataset_content_hash=run.dataset_content_hash,
        )


def _check_base_model(name: str) -> None:
    _text("base_model", name)
    looks_local = name.startswith(("/", ".", "~")) or pathlib.Path(name).expanduser().exists()
    if name != TINY_MODEL_NAME and looks_local and not (pathlib.Path(name).expanduser() / "config.json").is_file():
        raise InvalidArgument("base_model", f"{name} is not a Hugging Face model directory (no config.json)")


def _text(field: str, value: str) -> str:
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(field, f"must be at most {MAX_ID_CHARS} characters")
    return value


def _required(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    return _text(field, value)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp | None:
    if not seconds:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
