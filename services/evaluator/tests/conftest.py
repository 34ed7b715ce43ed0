"""Fixtures of the evaluator tests: real sandbox and rollout processes, workspaces, and a plan runner.

`sandbox` starts `python -m limi_sandbox` for the test (through the shared `service_process`
factory) and returns its address; `workspaces` is a `SandboxWorkspaces` factory on it; `stack`
adds a rollout process (`python -m limi_rollout`) wired to that sandbox (its default policy is unused: the evaluator names
the policy per episode). `apply_plan` carries out an expert plan directly with workspace calls,
to check rubrics without a model.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from limi_core.health_check import wait_for_health
from limi_evaluator.basics import ToolStep
from limi_evaluator.sandbox_client import SandboxWorkspaces


@dataclasses.dataclass
class Stack:
    sandbox: object
    rollout: object | None = None

    @property
    def sandbox_address(self) -> str:
        return self.sandbox.grpc_address

    @property
    def rollout_address(self) -> str:
        return self.rollout.grpc_address


def start_sandbox(service_process):
    sandbox = service_process("sandbox", env={"LIMI_SANDBOX_POOL_SIZE": "2"})
    wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
    return sandbox


@pytest.fixture
def rollout_factory(service_process):
    """rollout_factory(sandbox_address) starts a rollout process against the test's NATS and that sandbox."""

    def start(sandbox_address: str):
        rollout = service_process(
            "rollout",
            env={
                # Unused: the evaluator names the policy per episode.
                "LIMI_ROLLOUT_POLICY_ENDPOINT": "http://127.0.0.1:9/v1",
                "LIMI_ROLLOUT_SANDBOX_ADDRESS": sandbox_address,
                "LIMI_ROLLOUT_POLICY_ATTEMPTS": "2",
                "LIMI_ROLLOUT_POLICY_FIRST_BACKOFF_SECONDS": "0.05",
                "LIMI_ROLLOUT_CONSUME_QUERIES": "false",
            },
        )
        wait_for_health(rollout.grpc_address, timeout=60, process=rollout.process)
        return rollout

    return start


@pytest.fixture
def sandbox(service_process):
    return start_sandbox(service_process)


@pytest.fixture
async def workspaces(sandbox):
    factory = SandboxWorkspaces(sandbox.grpc_address)
    yield factory
    await factory.close()


@pytest.fixture
def stack(service_process, rollout_factory) -> Stack:
    sandbox = start_sandbox(service_process)
    return Stack(sandbox, rollout_factory(sandbox.grpc_address))


@pytest.fixture
def apply_plan():
    """apply_plan(workspace, plan): do what the expert's tool calls would do, straight through the workspace."""
    return _apply_plan


async def _apply_plan(workspace, plan: list[ToolStep]) -> None:
    """Do what the expert's tool calls would do, straight through the workspace."""
    for step in plan:
        a = step.arguments
        if step.name == "write_file":
            await workspace.write_file(a["path"], a["content"].encode())
        elif step.name == "edit_file":
            code = (
                f"import pathlib\np = pathlib.Path({a['path']!r})\ntext = p.read_text()\nassert text.count({a['old_text']!r}) == 1\n"
                f"p.write_text(text.replace({a['old_text']!r}, {a['new_text']!r}))\n"
            )
            outcome = await workspace.run_python(code, 30)
            assert outcome.exit_code == 0, outcome.stderr
        elif step.name == "shell":
            outcome = await workspace.exec(a["command"], 30)
            assert outcome.exit_code == 0, outcome.stderr
        else:
            raise AssertionError(f"no plan step {step.name}: {json.dumps(a)}")
