"""The one policy client (limi_core.policy_client) against a real HTTP server speaking the OpenAI API."""

from __future__ import annotations

import itertools

import pytest

from limi_core.errors import DependencyUnavailable
from limi_core.policy_client import PolicyClient, PolicyRejected, PolicyUnavailable, Sampling
from limi_core.processes import free_port
from limi_core.retry import RetryPolicy
from limi_testing.scripted_policy import Hang, Reply, ScriptedPolicyServer, Status

FAST = RetryPolicy(attempts=3, first_backoff_seconds=0.01, max_backoff_seconds=0.05)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "shell",
            "description": "run",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    }
]


async def test_request_carries_tools_auto_choice_and_limi_sampling_defaults():
    with ScriptedPolicyServer(lambda body: Reply(content="hi")) as server:
        client = PolicyClient(
            server.endpoint, "m", retry=FAST, timeout_seconds=2.0, return_token_ids=True, logprobs=True
        )
        turn = await client.complete([{"role": "user", "content": "hello there"}], TOOLS, Sampling())
        await client.close()
    body = server.requests[0]
    assert (body["temperature"], body["top_p"], body["tool_choice"], body["tools"]) == (0.6, 0.95, "auto", TOOLS)
    assert body["return_token_ids"] is True and body["logprobs"] is True
    assert turn.content == "hi" and turn.finish_reason == "stop" and turn.prompt_tokens > 0


async def test_tool_calls_and_reasoning_are_read_raw():
    reply = Reply(content="", reasoning="I should list files", tool_calls=(("shell", '{"command": "ls"'),))
    with ScriptedPolicyServer(lambda body: reply) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST, timeout_seconds=2.0)
        turn = await client.complete([{"role": "user", "content": "x"}], TOOLS, Sampling())
        await client.close()
    assert turn.reasoning_content == "I should list files"
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("shell", '{"command": "ls"')]
    assert turn.finish_reason == "tool_calls" and turn.tool_calls[0].id.startswith("call_")


async def test_429_then_success_is_retried():
    answers = iter([Status(429, retry_after=0), Status(503), Reply(content="done")])
    with ScriptedPolicyServer(lambda body: next(answers)) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST, timeout_seconds=2.0)
        turn = await client.complete([{"role": "user", "content": "x"}], [], Sampling())
        await client.close()
    assert turn.content == "done" and turn.attempts == 3 and len(server.requests) == 3


async def test_a_hanging_server_times_out_and_fails_clearly_after_the_budget():
    with ScriptedPolicyServer(lambda body: Hang(5)) as server:
        client = PolicyClient(
            server.endpoint, "m", retry=RetryPolicy(attempts=2, first_backoff_seconds=0.01), timeout_seconds=0.3
        )
        with pytest.raises(PolicyUnavailable, match="ReadTimeout talking to .*; gave up after 2 attempts"):
            await client.complete([{"role": "user", "content": "x"}], [], Sampling())
        await client.close()


async def test_connection_refused_fails_after_the_budget_as_a_dependency_outage():
    client = PolicyClient(f"http://127.0.0.1:{free_port()}/v1", "m", retry=FAST)
    with pytest.raises(PolicyUnavailable, match="ConnectError .*gave up after 3 attempts") as caught:
        await client.complete([{"role": "user", "content": "x"}], [], Sampling())
    await client.close()
    assert isinstance(caught.value, DependencyUnavailable) and caught.value.dependency == "policy"


async def test_a_stopped_server_is_a_real_outage_and_the_same_port_brings_it_back():
    with ScriptedPolicyServer(lambda body: Reply(content="up")) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST)
        assert (await client.complete([{"role": "user", "content": "x"}], [], Sampling())).content == "up"
    # The client's keep-alive connection is closed too: the next call is refused, not answered.
    with pytest.raises(PolicyUnavailable):
        await client.complete([{"role": "user", "content": "x"}], [], Sampling())
    with ScriptedPolicyServer(lambda body: Reply(content="back"), port=server.port):
        assert (await client.complete([{"role": "user", "content": "x"}], [], Sampling())).content == "back"
    await client.close()


async def test_models_lists_the_served_model_and_a_missing_api_is_rejected_at_once():
    with ScriptedPolicyServer(lambda body: Reply(content="unused"), model="served") as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST)
        assert await client.models() == ["served"]
        with pytest.raises(PolicyRejected, match="answered 404"):  # the scripted server has no /completions
            await client.complete_text("def f():", n=2, sampling=Sampling())
        await client.close()


async def test_a_client_error_is_not_retried():
    counter = itertools.count()
    with ScriptedPolicyServer(lambda body: (next(counter), Status(400, "model 'm' does not exist"))[1]) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST, timeout_seconds=2.0)
        with pytest.raises(PolicyRejected, match="answered 400"):
            await client.complete([{"role": "user", "content": "x"}], [], Sampling())
        await client.close()
    assert len(server.requests) == 1
