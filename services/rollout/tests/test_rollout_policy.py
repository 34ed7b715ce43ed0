"""The policy client against a real HTTP server speaking the OpenAI chat-completions API."""

from __future__ import annotations

import itertools

import pytest

from limi_rollout.policy import PolicyClient, PolicyRejected, PolicyUnavailable, RetryPolicy, Sampling
from limi_rollout.scripted_policy import Hang, Reply, ScriptedPolicyServer, Status
from limi_core.processes import free_port

FAST = RetryPolicy(attempts=3, first_backoff_seconds=0.01, max_backoff_seconds=0.05, request_timeout_seconds=2.0)
TOOLS = [{"type": "function", "function": {"name": "shell", "description": "run", "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]


async def test_request_carries_tools_auto_choice_and_limi_sampling_defaults():
    with ScriptedPolicyServer(lambda body: Reply(content="hi")) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST, return_token_ids=True, logprobs=True)
        turn = await client.complete([{"role": "user", "content": "hello there"}], TOOLS, Sampling())
        await client.close()
    body = server.requests[0]
    assert (body["temperature"], body["top_p"], body["tool_choice"], body["tools"]) == (0.6, 0.95, "auto", TOOLS)
    assert body["return_token_ids"] is True and body["logprobs"] is True
    assert turn.content == "hi" and turn.finish_reason == "stop" and turn.prompt_tokens > 0


async def test_tool_calls_and_reasoning_are_read_raw():
    reply = Reply(content="", reasoning="I should list files", tool_calls=(("shell", '{"command": "ls"'),))
    with ScriptedPolicyServer(lambda body: reply) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST)
        turn = await client.complete([{"role": "user", "content": "x"}], TOOLS, Sampling())
        await client.close()
    assert turn.reasoning_content == "I should list files"
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("shell", '{"command": "ls"')]
    assert turn.finish_reason == "tool_calls" and turn.tool_calls[0].id.startswith("call_")


async def test_429_then_success_is_retried():
    answers = iter([Status(429, retry_after=0), Status(503), Reply(content="done")])
    with ScriptedPolicyServer(lambda body: next(answers)) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST)
        turn = await client.complete([{"role": "user", "content": "x"}], [], Sampling())
        await client.close()
    assert turn.content == "done" and turn.attempts == 3 and len(server.requests) == 3


async def test_a_hanging_server_times_out_and_fails_clearly_after_the_budget():
    with ScriptedPolicyServer(lambda body: Hang(5)) as server:
        client = PolicyClient(server.endpoint, "m", retry=RetryPolicy(attempts=2, first_backoff_seconds=0.01, request_timeout_seconds=0.3))
        with pytest.raises(PolicyUnavailable, match="ReadTimeout talking to .*; gave up after 2 attempts"):
            await client.complete([{"role": "user", "content": "x"}], [], Sampling())
        await client.close()


async def test_connection_refused_fails_after_the_budget():
    client = PolicyClient(f"http://127.0.0.1:{free_port()}/v1", "m", retry=FAST)
    with pytest.raises(PolicyUnavailable, match="ConnectError .*gave up after 3 attempts"):
        await client.complete([{"role": "user", "content": "x"}], [], Sampling())
    await client.close()


async def test_a_client_error_is_not_retried():
    counter = itertools.count()
    with ScriptedPolicyServer(lambda body: (next(counter), Status(400, "model 'm' does not exist"))[1]) as server:
        client = PolicyClient(server.endpoint, "m", retry=FAST)
        with pytest.raises(PolicyRejected, match="answered 400"):
            await client.complete([{"role": "user", "content": "x"}], [], Sampling())
        await client.close()
    assert len(server.requests) == 1
