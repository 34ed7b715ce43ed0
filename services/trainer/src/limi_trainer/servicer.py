"""The trainer's gRPC servicer: request validation, then calls into the run supervisor.

StartRun names a dataset by the id of a `Dataset` event the trainer has seen, or by a `file://`
URI of LIMI JSONL under the dataset roots (LIMI_TRAINER_DATASET_ROOTS, by default the curator's
datasets folder); a local base model must lie under the model roots. It queues a run (or returns
the existing run with the same id). Every field is checked against the tables below. GetRun,
ListRuns, CancelRun and WatchRun report runs as `Run` messages; WatchRun streams a message on
every change until the run is final. Domain errors are typed (limi_core.errors) and mapped to
status codes at the edge. It does not train.
"""

from __future__ import annotations

import pathlib
import re

from google.protobuf import timestamp_pb2

from limi.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from limi_core.errors import InvalidArgument, NotFound
from limi_core.request_checks import (
    IDENTIFIER,
    MAX_PATH_CHARS,
    REQUIRED_IDENTIFIER,
    Entries,
    Identifier,
    check_fields,
    confined_path,
)
from limi_trainer.dataset import DatasetInput
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
START_RUN = {
    "dataset_id": IDENTIFIER,
    "base_model": Identifier(MAX_PATH_CHARS),
    "preset": IDENTIFIER,
    "hyperparameters": Entries(key=Identifier(64), value=Identifier(256), max_items=100),
    "request_id": IDENTIFIER,
}
BY_ID = {"id": REQUIRED_IDENTIFIER}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(
        self,
        supervisor: RunSupervisor,
        store: RunStore,
        *,
        default_base_model: str,
        default_preset: str,
        dataset_roots: tuple[pathlib.Path, ...] = (),
        model_roots: tuple[pathlib.Path, ...] = (),
    ) -> None:
        self._supervisor, self._store = supervisor, store
        self._default_base_model, self._default_preset = default_base_model, default_preset
        self._dataset_roots, self._model_roots = dataset_roots, model_roots

    async def StartRun(self, request: trainer_pb2.StartRunRequest, context) -> trainer_pb2.Run:
        check_fields(request, START_RUN)
        dataset = self._dataset(request)
        base_model = self._base_model(request.base_model) if request.base_model else self._default_base_model
        run_request = RunRequest(
            dataset,
            base_model,
            request.preset or self._default_preset,
            dict(request.hyperparameters),
            request.request_id,
        )
        return self._message(await self._supervisor.submit(run_request))

    async def GetRun(self, request: trainer_pb2.GetRunRequest, context) -> trainer_pb2.Run:
        check_fields(request, BY_ID)
        return self._message(self._supervisor.get(request.id))

    async def ListRuns(self, request: trainer_pb2.ListRunsRequest, context) -> trainer_pb2.ListRunsResponse:
        return trainer_pb2.ListRunsResponse(runs=[self._message(run) for run in self._supervisor.list()])

    async def CancelRun(self, request: trainer_pb2.CancelRunRequest, context) -> trainer_pb2.Run:
        check_fields(request, BY_ID)
        return self._message(await self._supervisor.cancel(request.id))

    async def WatchRun(self, request: trainer_pb2.GetRunRequest, context):
        check_fields(request, BY_ID)
        async for run in self._supervisor.watch(request.id):
            yield self._message(run)

    def _base_model(self, name: str) -> str:
        """A hub id as given; a local directory only under the model roots, holding config.json."""
        if name == TINY_MODEL_NAME:
            return name
        if not name.startswith(("/", "file:")):
            if not HUB_ID.fullmatch(name) or pathlib.Path(name).exists():
                raise InvalidArgument(
                    "base_model",
                    "must be a Hugging Face model id (owner/name) or an absolute path of a local model directory",
                )
            return name
        path = confined_path("base_model", name, self._model_roots, "LIMI_TRAINER_MODEL_ROOTS")
        if not (path / "config.json").is_file():
            raise InvalidArgument("base_model", f"{path} is not a Hugging Face model directory (no config.json)")
        return str(path)

    def _dataset(self, request: trainer_pb2.StartRunRequest) -> DatasetInput:
        dataset_id = request.dataset_id
        if request.dataset_uri:
            path = confined_path("dataset_uri", request.dataset_uri, self._dataset_roots, "LIMI_TRAINER_DATASET_ROOTS")
            if not path.is_file():
                raise InvalidArgument("dataset_uri", f"{path} is not a readable file")
            return DatasetInput(uri=path.as_uri(), dataset_id=dataset_id or path.as_uri())
        if not dataset_id:
            raise InvalidArgument("dataset_id", "is required (or give dataset_uri)")
        known = self._store.dataset(dataset_id)
        if known is None:
            raise NotFound(
                f"dataset {dataset_id!r} has not been published on the bus; give dataset_uri to train on a file"
            )
        return DatasetInput(
            uri=known.storage_uri,
            dataset_id=known.id,
            content_hash=known.content_hash,
            trajectory_ids=tuple(known.trajectory_ids),
        )

    def _message(self, run: RunRecord) -> trainer_pb2.Run:
        return trainer_pb2.Run(
            id=run.id,
            state=STATES[run.state],
            dataset_id=run.dataset_id,
            base_model=run.base_model,
            step=run.step,
            total_steps=run.total_steps,
            loss=run.loss,
            tokens_per_second=run.tokens_per_second,
            eta_seconds=int(run.eta_seconds),
            checkpoint_ids=run.checkpoint_ids,
            error=run.error,
            started_at=_timestamp(run.started_at),
            preset=run.preset,
            hyperparameters=run.hyperparameters,
            run_dir=run.run_dir,
            summary_path=run.summary_path,
            loss_curve_path=run.loss_curve_path,
            packing_efficiency=run.packing_efficiency,
            created_at=_timestamp(run.created_at),
            finished_at=_timestamp(run.finished_at),
            resumed_from_step=run.resumed_from_step,
            attempts=run.attempts,
            queue_position=self._supervisor.queue_position(run.id),
            dataset_content_hash=run.dataset_content_hash,
        )


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp | None:
    if not seconds:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
