"""The evaluator service as a real process: checkpoint events in, EvalResults out, resume, bad input.

A scripted policy (the workspace-basics expert, or a variant of it) stands in for the checkpoint's
model through the endpoint policy mode; sandbox and rollout are real processes. The vLLM mode is
exercised in test_evaluator_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sqlite3
import threading
import time
import urllib.request

import grpc
import pytest

from limi.checkpoint.v1 import checkpoint_pb2
from limi.evaluation.v1 import evaluation_pb2 as ev
from limi.evaluator.v1 import evaluator_pb2, evaluator_pb2_grpc
from limi_core import bus
from limi_core.consumer import read_dead_letters
from limi_core.events import EventPublisher, event_id
from limi_core.health_check import wait_for_health
from limi_core.processes import free_port
from limi_testing.expert import expert_reply
from limi_testing.scripted_policy import ScriptedPolicyServer, Status

SMALL_SUITE = """
name = "small"
description = "Four held-out workspace-basics tasks"
max_rounds = 2
pass_score = 10
[generate]
family = "workspace-basics"
seed = 7
split = "test"
count = {count}
"""


def start_evaluator(service_process, stack, suites: pathlib.Path, **env):
    evaluator = service_process(
        "evaluator",
        env={
            "LIMI_EVALUATOR_SANDBOX_ADDRESS": stack.sandbox_address,
            "LIMI_EVALUATOR_ROLLOUT_ADDRESS": stack.rollout_address,
            "LIMI_EVALUATOR_SUITES_DIR": str(suites),
            "LIMI_EVALUATOR_BENCHMARKS": "small",
            "LIMI_EVALUATOR_ACK_WAIT_SECONDS": "3",
            "LIMI_EVALUATOR_REDELIVERY_BACKOFF_SECONDS": "0.5",
            "LIMI_EVALUATOR_TASK_CONCURRENCY": "1",
            **env,
        },
    )
    wait_for_health(evaluator.grpc_address, timeout=60, process=evaluator.process)
    return evaluator


async def publish_checkpoint(nats_client, jetstream, checkpoint: checkpoint_pb2.Checkpoint, msg_id: str = "") -> None:
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    await publisher.publish(bus.CHECKPOINTS_SAVED, checkpoint, msg_id or event_id("checkpoint", checkpoint.id))


async def evaluations(js) -> list[ev.EvalResult]:
    info = await js.stream_info("LIMI_EVALUATIONS")
    if info.state.messages == 0:
        return []
    return [
        ev.EvalResult.FromString((await js.get_msg("LIMI_EVALUATIONS", seq)).data)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def wait_for_evaluations(js, count: int, timeout: float = 90) -> list[ev.EvalResult]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await evaluations(js)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {len(await evaluations(js))} of {count} evaluations after {timeout} s")


def metrics_text(service) -> str:
    with urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=5) as response:
        return response.read().decode()


async def test_checkpoint_events_are_evaluated_published_once_and_ranked(
    service_process, stack, nats_client, jetstream, tmp_path
):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "small.toml").write_text(SMALL_SUITE.format(count=3))
    with ScriptedPolicyServer(expert_reply, model="expert") as policy:
        evaluator = start_evaluator(
            service_process,
            stack,
            suites,
            LIMI_EVALUATOR_POLICY_MODE="endpoint",
            LIMI_EVALUATOR_POLICY_ENDPOINT=policy.endpoint,
        )
        await publish_checkpoint(
            nats_client,
            jetstream,
            checkpoint_pb2.Checkpoint(
                id="ck-a", storage_uri="file:///unused", step=10, trajectory_ids=[f"t{i}" for i in range(10)]
            ),
        )
        await publish_checkpoint(
            nats_client,
            jetstream,
            checkpoint_pb2.Checkpoint(id="ck-b", step=20, hyperparameters={"dataset_size": "30"}),
        )
        first, second = await wait_for_evaluations(jetstream, 2)
        requests = len(policy.requests)
        # The same checkpoint announced again (another message id): the stored result is republished, nothing runs.
        await publish_checkpoint(
            nats_client, jetstream, checkpoint_pb2.Checkpoint(id="ck-a"), msg_id="checkpoint:ck-a:again"
        )
        await asyncio.sleep(2.0)
        assert len(await evaluations(jetstream)) == 2 and len(policy.requests) == requests
    assert (first.id, second.id) == ("evaluation:ck-a:small", "evaluation:ck-b:small")
    assert first.aggregate["Avg"] == 100.0 and len(first.tasks) == 3 and first.policy_endpoint == policy.endpoint

    stub = evaluator_pb2_grpc.EvaluatorServiceStub(grpc.insecure_channel(evaluator.grpc_address))
    board = stub.Leaderboard(evaluator_pb2.LeaderboardRequest(benchmark="small"), timeout=10)
    assert [(e.checkpoint_id, e.dataset_size, e.step) for e in board.entries] == [("ck-a", 10, 10), ("ck-b", 30, 20)]
    assert stub.GetEvaluation(evaluator_pb2.GetEvaluationRequest(id="evaluation:ck-b:small"), timeout=10) == second
    report = pathlib.Path(second.report_uri.removeprefix("file://")).parent
    assert (report / "score_vs_samples.png").stat().st_size > 1000 and (report / "score_per_checkpoint.png").is_file()
    text = metrics_text(evaluator)
    assert 'limi_evaluator_score{benchmark="small",checkpoint="ck-b",metric="Avg"} 100.0' in text
    assert 'limi_evaluator_evaluations_total{benchmark="small",outcome="finished"} 2.0' in text


async def test_a_killed_evaluation_resumes_without_rerunning_finished_tasks(
    service_process, stack, nats_client, jetstream, tmp_path
):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "small.toml").write_text(SMALL_SUITE.format(count=4))
    release = threading.Event()
    queries: list[str] = []

    def script(body):
        query = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if not any(m["role"] == "tool" for m in body["messages"]):
            queries.append(query)
            if len(set(queries)) == 3:  # hold the third task until the evaluator has been killed
                release.wait(60)
        return expert_reply(body)

    with ScriptedPolicyServer(script, model="expert") as policy:
        env = {"LIMI_EVALUATOR_POLICY_MODE": "endpoint", "LIMI_EVALUATOR_POLICY_ENDPOINT": policy.endpoint}
        first = start_evaluator(service_process, stack, suites, **env)
        await publish_checkpoint(nats_client, jetstream, checkpoint_pb2.Checkpoint(id="ck-crash"))
        database = tmp_path / "evaluator" / "evaluations.sqlite"
        deadline = time.monotonic() + 60
        while not (
            database.exists()
            and sqlite3.connect(database).execute("SELECT count(*) FROM task_results").fetchone()[0] >= 2
        ):
            assert time.monotonic() < deadline, "two tasks did not finish"
            await asyncio.sleep(0.1)
        first.process.kill()
        first.process.wait()
        before = list(queries)
        release.set()
        second = start_evaluator(service_process, stack, suites, **env)
        (result,) = await wait_for_evaluations(jetstream, 1)
    after = queries[len(before) :]
    assert len(result.tasks) == 4 and result.aggregate["SR@2"] == 100.0
    finished_first = before[:2]
    assert not set(finished_first) & set(after), "a task finished before the crash ran again"
    assert 'limi_evaluator_tasks_resumed_total{benchmark="small"} 2.0' in metrics_text(second)


async def test_bad_input_gets_clear_errors(service_process, stack, nats_client, jetstream, tmp_path):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "small.toml").write_text(SMALL_SUITE.format(count=1))
    broken = suites / "broken.toml"
    broken.write_text(
        'name = "broken"\n[[tasks]]\nid = "t"\n[[tasks.subtasks]]\nid = "1"\nquery = "q"\n[[tasks.subtasks.checks]]\nname = "c"\n'
    )
    (suites / "syntax.toml").write_text('name = "syntax"\n[[tasks]\n')
    evaluator = start_evaluator(
        service_process, stack, suites
    )  # vllm mode: checkpoints are served from their directory
    stub = evaluator_pb2_grpc.EvaluatorServiceStub(grpc.insecure_channel(evaluator.grpc_address))

    def error_of(**fields) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Evaluate(evaluator_pb2.EvaluateRequest(**{"checkpoint_id": "ck", **fields}), timeout=60)
        return caught.value.code(), caught.value.details()

    code, details = error_of(benchmark="agencybench-v9", endpoint="http://127.0.0.1:1/v1")
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and details.startswith("benchmark: unknown benchmark 'agencybench-v9'; known:")
        and "limi-basics" in details
    )
    code, details = error_of(benchmark="broken")
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and details == f"{broken}: tasks[0].subtasks[0].checks[0]: needs exactly one of command or python"
    )
    code, details = error_of(benchmark="syntax")
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and details.startswith(f"{suites / 'syntax.toml'}: is not valid TOML")
        and "line 2" in details
    )
    missing = tmp_path / "trainer" / "runs" / "no-such-checkpoint"  # under the trainer's folder: the checkpoint roots
    code, details = error_of(benchmark="small", checkpoint_uri=str(missing))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details == f"checkpoint path {missing} does not exist"
    code, details = error_of(benchmark="small", checkpoint_uri=str(tmp_path / "elsewhere"))
    assert (
        code == grpc.StatusCode.PERMISSION_DENIED
        and details.startswith("checkpoint_uri: ")
        and "LIMI_EVALUATOR_CHECKPOINT_ROOTS" in details
    )
    code, details = error_of(benchmark="small", endpoint=f"http://127.0.0.1:{free_port()}/v1")
    assert code == grpc.StatusCode.UNAVAILABLE and "is unreachable: GET /models failed" in details
    code, details = error_of(benchmark="small", checkpoint_id="")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("checkpoint_id:")
    code, details = error_of(benchmark="small")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("checkpoint_uri: set checkpoint_uri")
    with ScriptedPolicyServer(lambda body: Status(503)) as failing:  # /models answers, the chat does not
        code, details = error_of(benchmark="small", endpoint=failing.endpoint, checkpoint_id="ck-503")
    assert code == grpc.StatusCode.UNAVAILABLE and "the policy failed during the episode" in details
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetEvaluation(evaluator_pb2.GetEvaluationRequest(id="evaluation:ck-503:small"), timeout=10)
    assert (
        caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        and "failed: PolicyUnreachable" in caught.value.details()
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetEvaluation(evaluator_pb2.GetEvaluationRequest(id="evaluation:nope:small"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    listed = stub.ListBenchmarks(evaluator_pb2.ListBenchmarksRequest(), timeout=10)
    assert {"humaneval", "humaneval-tools", "limi-basics", "agencybench-v2", "small"} <= set(listed.benchmarks)
    assert any(i.name == "syntax" and i.description.startswith("(broken:") for i in listed.infos)

    # A checkpoint event whose directory is missing is dead-lettered at once, with the reason.
    await publish_checkpoint(
        nats_client, jetstream, checkpoint_pb2.Checkpoint(id="ck-missing", storage_uri="file:///nonexistent/step-1")
    )
    deadline = time.monotonic() + 30
    while (
        await jetstream.stream_info("LIMI_DEADLETTERS")
    ).state.messages == 0:  # read_dead_letters fails on an empty stream
        assert time.monotonic() < deadline, "no dead letter for the missing checkpoint"
        await asyncio.sleep(0.2)
    letters = [d for d in await read_dead_letters(jetstream) if d.msg_id == "checkpoint:ck-missing"]
    assert letters[0].deliveries == 1 and "checkpoint path /nonexistent/step-1 does not exist" in letters[0].error
    assert json.loads(json.dumps(letters[0].consumer)) == "evaluator"
