"""The trainer service as a real process on a real NATS: runs from gRPC and from dataset events.

Each test starts `python -m limi_trainer` on free ports with the tiny model as its base model,
drives it through its gRPC API or the bus, and checks what a client sees: run states over
WatchRun, typed errors, `Checkpoint` events with their lineage on `limi.checkpoints.saved`, the
`limi_trainer_*` metrics, dead letters for datasets that cannot be trained on, and a run that
resumes from its last checkpoint after the service itself was stopped mid-run.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import signal
import urllib.request

import grpc
import pytest

from limi.checkpoint.v1 import checkpoint_pb2
from limi.dataset.v1 import dataset_pb2
from limi.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from limi_core import bus
from limi_core.consumer import read_dead_letters
from limi_core.events import EventPublisher
from limi_core.health_check import wait_for_health
from limi_testing.synthetic_samples import run_tests_sample, tool_use_sample

SHORT = {
    "epochs": "3",
    "global_batch_size": "2",
    "checkpoint_every_steps": "3",
    "pack_tokens": "2048",
    "max_sample_tokens": "2048",
}


def samples() -> list[dict]:
    return [tool_use_sample(0), run_tests_sample(1), tool_use_sample(2), run_tests_sample(3)]


def curator_datasets(tmp_path: pathlib.Path) -> pathlib.Path:
    """Where the curator beside the trainer publishes datasets: the only folder StartRun reads by default."""
    folder = tmp_path / "curator" / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_trainer(service_process, tiny_model, **env):
    service = service_process(
        "trainer",
        env={
            "LIMI_TRAINER_BASE_MODEL": str(tiny_model),
            "LIMI_TRAINER_PROGRESS_POLL_SECONDS": "0.1",
            "LIMI_TRAINER_ACK_WAIT_SECONDS": "5",
            **env,
        },
    )
    wait_for_health(service.grpc_address, "SERVING", timeout=60, process=service.process)
    return service


async def watch_until_final(stub, run_id: str, timeout: float = 180) -> list[trainer_pb2.Run]:
    seen = []
    async for run in stub.WatchRun(trainer_pb2.GetRunRequest(id=run_id), timeout=timeout):
        seen.append(run)
    return seen


async def stream_events(js, subject: str, message_type):
    spec = bus.stream_for(subject)
    info = await js.stream_info(spec.name)
    events = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(spec.name, seq)
        event = message_type()
        event.ParseFromString(raw.data)
        events.append(event)
    return events


def metrics_text(service) -> str:
    return urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=5).read().decode()


async def eventually(predicate, timeout: float = 120, interval: float = 0.2):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)


async def test_start_run_trains_reports_progress_and_publishes_checkpoints(
    service_process, tiny_model, jetstream, tmp_path, write_jsonl
):
    service = start_trainer(service_process, tiny_model)
    dataset = write_jsonl(curator_datasets(tmp_path) / "train.jsonl", samples())
    async with grpc.aio.insecure_channel(service.grpc_address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        request = trainer_pb2.StartRunRequest(dataset_id="ds-grpc", dataset_uri=dataset.as_uri(), hyperparameters=SHORT)
        run = await stub.StartRun(request)
        assert run.state in (trainer_pb2.RUN_STATE_QUEUED, trainer_pb2.RUN_STATE_RUNNING) and run.id.startswith("run-")
        seen = await watch_until_final(stub, run.id)
        assert seen[-1].state == trainer_pb2.RUN_STATE_SUCCEEDED, seen[-1].error
        assert trainer_pb2.RUN_STATE_RUNNING in [r.state for r in seen]
        steps = [r.step for r in seen]
        assert steps == sorted(steps) and steps[-1] == 6
        final = await stub.GetRun(trainer_pb2.GetRunRequest(id=run.id))
        assert final.total_steps == 6 and final.attempts == 1 and final.loss > 0 and 0 < final.packing_efficiency <= 1
        assert list(final.checkpoint_ids) == [f"{run.id}-step-000003", f"{run.id}-step-000006"]
        assert pathlib.Path(final.summary_path).is_file() and pathlib.Path(final.loss_curve_path).is_file()
        assert final.hyperparameters["epochs"] == "3" and final.preset == "tiny-cpu"
        # The same request names the same run: nothing is trained twice.
        again = await stub.StartRun(request)
        assert again.id == run.id and again.state == trainer_pb2.RUN_STATE_SUCCEEDED
        assert len((await stub.ListRuns(trainer_pb2.ListRunsRequest())).runs) == 1
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CancelRun(trainer_pb2.CancelRunRequest(id=run.id))
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    events = await stream_events(jetstream, bus.CHECKPOINTS_SAVED, checkpoint_pb2.Checkpoint)
    assert [e.id for e in events] == list(final.checkpoint_ids)
    assert [e.final for e in events] == [False, True] and [e.step for e in events] == [3, 6]
    digest = hashlib.sha256(dataset.read_bytes()).hexdigest()
    for event in events:
        assert event.training_run_id == run.id and event.dataset_id == "ds-grpc"
        assert event.dataset_content_hash == f"sha256:{digest}"
        assert list(event.trajectory_ids) == ["line-0", "line-1", "line-2", "line-3"]
        assert event.hyperparameters["preset"] == "tiny-cpu" and event.hyperparameters["epochs"] == "3"
        assert event.base_model == str(tiny_model) and event.code_revision
        assert event.metrics["loss"] > 0 and event.created_at.seconds > 0
        assert pathlib.Path(event.storage_uri.removeprefix("file://"), "model.safetensors").is_file()
    text = metrics_text(service)
    assert "limi_trainer_step 6.0" in text and "limi_trainer_total_steps 6.0" in text
    assert 'limi_trainer_runs_total{state="succeeded"} 1.0' in text
    assert "limi_trainer_checkpoints_published_total 2.0" in text


async def test_bad_requests_get_typed_errors(service_process, tiny_model, tmp_path, write_jsonl):
    service = start_trainer(service_process, tiny_model)
    dataset = write_jsonl(curator_datasets(tmp_path) / "train.jsonl", samples())
    no_model = tmp_path / "trainer" / "not-a-model"
    no_model.mkdir(parents=True)
    cases = [
        (
            trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), hyperparameters={"epochs": "many"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "hyperparameters.epochs",
        ),
        (
            trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), hyperparameters={"lr": "1"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "hyperparameters.lr",
        ),
        (
            trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), preset="giant"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "preset",
        ),
        (trainer_pb2.StartRunRequest(), grpc.StatusCode.INVALID_ARGUMENT, "dataset_id"),
        (trainer_pb2.StartRunRequest(dataset_id="never-published"), grpc.StatusCode.NOT_FOUND, "never-published"),
        (
            trainer_pb2.StartRunRequest(dataset_uri=(curator_datasets(tmp_path) / "missing.jsonl").as_uri()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dataset_uri",
        ),
        (
            trainer_pb2.StartRunRequest(dataset_uri="s3://bucket/train.jsonl"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dataset_uri",
        ),
        (
            trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), base_model=str(no_model)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "base_model",
        ),
        (
            trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), request_id="x\x00y"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "request_id",
        ),
    ]
    async with grpc.aio.insecure_channel(service.grpc_address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        for request, code, words in cases:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.StartRun(request)
            assert error.value.code() == code, (request, error.value.details())
            assert words in error.value.details()
        for call in (
            stub.GetRun(trainer_pb2.GetRunRequest(id="run-nope")),
            stub.CancelRun(trainer_pb2.CancelRunRequest(id="run-nope")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetRun(trainer_pb2.GetRunRequest())
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_queue_runs_one_at_a_time_and_cancels(service_process, tiny_model, tmp_path, write_jsonl):
    service = start_trainer(service_process, tiny_model)
    dataset = write_jsonl(curator_datasets(tmp_path) / "train.jsonl", samples())
    long = {**SHORT, "epochs": "200", "checkpoint_every_steps": "0"}
    async with grpc.aio.insecure_channel(service.grpc_address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        first = await stub.StartRun(
            trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), hyperparameters=long, request_id="first")
        )
        second = await stub.StartRun(
            trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), hyperparameters=long, request_id="second")
        )
        assert first.id != second.id

        async def first_running():
            run = await stub.GetRun(trainer_pb2.GetRunRequest(id=first.id))
            return run.state == trainer_pb2.RUN_STATE_RUNNING and run.step >= 1

        await eventually(first_running)
        queued = await stub.GetRun(trainer_pb2.GetRunRequest(id=second.id))
        assert queued.state == trainer_pb2.RUN_STATE_QUEUED and queued.queue_position == 1
        cancelled = await stub.CancelRun(trainer_pb2.CancelRunRequest(id=second.id))
        assert cancelled.state == trainer_pb2.RUN_STATE_CANCELLED
        stopped = await stub.CancelRun(trainer_pb2.CancelRunRequest(id=first.id))
        assert stopped.state == trainer_pb2.RUN_STATE_CANCELLED and 0 < stopped.step < 400
    text = metrics_text(service)
    assert 'limi_trainer_runs_total{state="cancelled"} 2.0' in text and "limi_trainer_running 0.0" in text


async def test_dataset_events_train_once_and_untrainable_ones_are_dead_lettered(
    service_process, tiny_model, jetstream, nats_client, tmp_path, write_jsonl
):
    service = start_trainer(service_process, tiny_model)
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    good_file = write_jsonl(curator_datasets(tmp_path) / "good.jsonl", samples())
    good = dataset_pb2.Dataset(
        id="ds-bus-1",
        name="limi",
        version=1,
        content_hash="curated-hash",
        trajectory_ids=["ta", "tb", "tc", "td"],
        storage_uri=good_file.as_uri(),
    )
    await publisher.publish(bus.DATASETS_PUBLISHED, good, "dataset:ds-bus-1")

    async with grpc.aio.insecure_channel(service.grpc_address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)

        async def finished_runs():
            runs = (await stub.ListRuns(trainer_pb2.ListRunsRequest())).runs
            return [r for r in runs if r.state in (trainer_pb2.RUN_STATE_SUCCEEDED, trainer_pb2.RUN_STATE_FAILED)]

        (run,) = await eventually(finished_runs)
        assert (
            run.state == trainer_pb2.RUN_STATE_SUCCEEDED
            and run.dataset_id == "ds-bus-1"
            and run.dataset_content_hash == "curated-hash"
        )
        # The dataset is now known by id, and the event's republication trains nothing new.
        by_id = await stub.StartRun(trainer_pb2.StartRunRequest(dataset_id="ds-bus-1"))
        assert by_id.id == run.id
        await publisher.publish(bus.DATASETS_PUBLISHED, good, "dataset:ds-bus-1:again")

        async def consumer_idle():
            info = await jetstream.consumer_info("LIMI_DATASETS", "trainer-datasets")
            return info.delivered.stream_seq == 2 and info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(consumer_idle)
        assert len((await stub.ListRuns(trainer_pb2.ListRunsRequest())).runs) == 1

        bad = samples()
        bad[2]["messages"][3]["content"] = "a tool output that says <|im_end|> in the middle"
        bad_file = write_jsonl(curator_datasets(tmp_path) / "bad.jsonl", bad)
        await publisher.publish(
            bus.DATASETS_PUBLISHED,
            dataset_pb2.Dataset(id="ds-bus-bad", storage_uri=bad_file.as_uri()),
            "dataset:ds-bus-bad",
        )

        async def failed_run():
            runs = (await stub.ListRuns(trainer_pb2.ListRunsRequest())).runs
            return next(
                (r for r in runs if r.dataset_id == "ds-bus-bad" and r.state == trainer_pb2.RUN_STATE_FAILED), None
            )

        failed = await eventually(failed_run)
        assert "samples[2]" in failed.error and "messages[3].content" in failed.error and "<|im_end|>" in failed.error

    letters = await eventually(lambda: read_dead_letters(jetstream))
    assert letters[0].consumer == "trainer-datasets" and "ds-bus-bad" in letters[0].error
    events = await stream_events(jetstream, bus.CHECKPOINTS_SAVED, checkpoint_pb2.Checkpoint)
    assert events and all(e.dataset_id == "ds-bus-1" and e.dataset_content_hash == "curated-hash" for e in events)
    assert list(events[-1].trajectory_ids) == ["ta", "tb", "tc", "td"] and events[-1].final


async def test_a_run_interrupted_by_a_service_stop_resumes_after_restart(
    service_process, tiny_model, jetstream, tmp_path, write_jsonl
):
    dataset = write_jsonl(curator_datasets(tmp_path) / "train.jsonl", samples())
    longer = {**SHORT, "epochs": "16", "checkpoint_every_steps": "5"}
    service = start_trainer(service_process, tiny_model)
    async with grpc.aio.insecure_channel(service.grpc_address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        run = await stub.StartRun(trainer_pb2.StartRunRequest(dataset_uri=dataset.as_uri(), hyperparameters=longer))

        async def past_first_checkpoint():
            current = await stub.GetRun(trainer_pb2.GetRunRequest(id=run.id))
            return current.step >= 7 and len(current.checkpoint_ids) >= 1

        await eventually(past_first_checkpoint)
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(30) == 0

    restarted = start_trainer(service_process, tiny_model)
    async with grpc.aio.insecure_channel(restarted.grpc_address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        seen = await watch_until_final(stub, run.id)
        final = seen[-1]
    assert final.state == trainer_pb2.RUN_STATE_SUCCEEDED, final.error
    assert final.attempts == 2 and final.resumed_from_step >= 5 and final.step == final.total_steps == 32
    expected = [f"{run.id}-step-{step:06d}" for step in (*range(5, 32, 5), 32)]
    assert list(final.checkpoint_ids) == expected
    events = await stream_events(jetstream, bus.CHECKPOINTS_SAVED, checkpoint_pb2.Checkpoint)
    assert [e.id for e in events] == expected


def training_process_of(run_dir: str) -> int:
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"limi_trainer.run_job" in command and run_dir.encode() in command:
                return int(entry.name)
    raise LookupError(f"no training process for {run_dir}")


async def test_a_crashed_training_process_is_restarted_and_resumes(service_process, tiny_model, tmp_path, write_jsonl):
    import os

    service = start_trainer(service_process, tiny_model)
    dataset = write_jsonl(curator_datasets(tmp_path) / "train.jsonl", samples())
    async with grpc.aio.insecure_channel(service.grpc_address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        run = await stub.StartRun(
            trainer_pb2.StartRunRequest(
                dataset_uri=dataset.as_uri(), hyperparameters={**SHORT, "epochs": "16", "checkpoint_every_steps": "5"}
            )
        )

        async def past_first_checkpoint():
            current = await stub.GetRun(trainer_pb2.GetRunRequest(id=run.id))
            return current.step >= 7 and len(current.checkpoint_ids) >= 1 and current

        current = await eventually(past_first_checkpoint)
        os.kill(training_process_of(current.run_dir), signal.SIGKILL)
        final = (await watch_until_final(stub, run.id))[-1]
    assert final.state == trainer_pb2.RUN_STATE_SUCCEEDED, final.error
    assert final.attempts == 2 and final.resumed_from_step >= 5 and final.step == 32
    assert list(final.checkpoint_ids) == [f"{run.id}-step-{step:06d}" for step in (*range(5, 32, 5), 32)]
    assert 'limi_trainer_training_processes_total{outcome="crashed"} 1.0' in metrics_text(service)
