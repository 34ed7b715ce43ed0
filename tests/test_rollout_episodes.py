"""Rollout episodes end to end: a real rollout process, a real sandbox process, a scripted policy over HTTP.

The scripted policy decides each reply from the conversation it is sent, so every test is
deterministic; the tools run for real in the sandbox. The same code talks to vLLM in
test_rollout_vllm.py.
"""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core import limi_format
from limi_core.health_check import wait_for_health
from limi_testing.scripted_policy import Hang, Reply, ScriptedPolicyServer, Status


def tool_results(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def last_user(body: dict) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


@pytest.fixture
def stack(service_process):
    """Start sandbox and rollout against a scripted policy: stack(script, **rollout_env) -> (stub, policy, sandbox)."""
    servers: list[ScriptedPolicyServer] = []

    def start(script, **env):
        policy = ScriptedPolicyServer(script).start()
        servers.append(policy)
        sandbox = service_process("sandbox")
        wait_for_health(sandbox.grpc_address, timeout=60, process=sandbox.process)
        rollout = service_process(
            "rollout",
            env={
                "LIMI_ROLLOUT_POLICY_ENDPOINT": policy.endpoint,
                "LIMI_ROLLOUT_SANDBOX_ADDRESS": sandbox.grpc_address,
                "LIMI_ROLLOUT_POLICY_ATTEMPTS": "3",
                "LIMI_ROLLOUT_POLICY_FIRST_BACKOFF_SECONDS": "0.05",
                "LIMI_ROLLOUT_CONSUME_QUERIES": "false",
                **{f"LIMI_ROLLOUT_{k.upper()}": str(v) for k, v in env.items()},
            },
        )
        wait_for_health(rollout.grpc_address, timeout=60, process=rollout.process)
        channel = grpc.insecure_channel(rollout.grpc_address)
        return rollout_pb2_grpc.RolloutServiceStub(channel), policy, sandbox, rollout

    yield start
    for server in servers:
        server.stop()


def query(text: str, query_id: str = "q1") -> query_pb2.Query:
    return query_pb2.Query(id=query_id, text=text)


def test_an_episode_runs_tools_in_the_sandbox_and_records_everything(stack):
    def script(body):
        results = tool_results(body)
        if not results:
            return Reply(
                reasoning="First write the file, then read it back.",
                tool_calls=(
                    ("write_file", json.dumps({"path": "notes/hello.txt", "content": "hello limi\n"})),
                    ("shell", json.dumps({"command": "cat notes/hello.txt; echo done >&2"})),
                ),
            )
        return Reply(content=f"The file says: {results[-1].splitlines()[0]}")

    stub, policy, _sandbox, _rollout = stack(script)
    trajectory = stub.RunEpisode(
        rollout_pb2.RunEpisodeRequest(query=query("Write hello limi to notes/hello.txt and show it.")), timeout=120
    )
    roles = [tp.Role.Name(s.role) for s in trajectory.steps]
    assert roles == ["ROLE_SYSTEM", "ROLE_USER", "ROLE_ASSISTANT", "ROLE_TOOL", "ROLE_TOOL", "ROLE_ASSISTANT"]
    assert trajectory.outcome.status == tp.OUTCOME_STATUS_COMPLETED
    assistant = trajectory.steps[2]
    assert assistant.reasoning_content == "First write the file, then read it back."
    assert [c.name for c in assistant.tool_calls] == ["write_file", "shell"]
    shell = trajectory.steps[4].tool_result
    assert shell.tool_call_id == assistant.tool_calls[1].id
    assert "hello limi" in shell.output and "done" in shell.output and shell.exit_code == 0
    assert trajectory.steps[5].content == "The file says: hello limi"
    assert trajectory.steps[2].usage.prompt_tokens > 0 and trajectory.steps[3].duration.ToNanoseconds() > 0
    assert trajectory.policy.sampling.temperature == pytest.approx(0.6) and trajectory.sandbox.backend
    assert {t.name for t in trajectory.tools} >= {"shell", "write_file", "read_file"}
    # The tools the model was offered are exactly the ones the trajectory records.
    assert {t["function"]["name"] for t in policy.requests[0]["tools"]} == {t.name for t in trajectory.tools}
    assert (
        limi_format.limi_to_trajectory(json.loads(limi_format.dumps_sample(limi_format.trajectory_to_limi(trajectory))))
        == trajectory
    )


def test_a_query_starts_in_a_workspace_holding_its_files(stack):
    def script(body):
        if not tool_results(body):
            return Reply(tool_calls=(("shell", json.dumps({"command": "cat data/in.txt"})),))
        return Reply(content="read it")

    stub, _policy, sandbox, _rollout = stack(script)
    seeded = query("Summarize data/in.txt.")
    seeded.workspace_files.add(path="data/in.txt", content=b"3 rows from the query's workspace\n")
    trajectory = stub.RunEpisode(rollout_pb2.RunEpisodeRequest(query=seeded), timeout=120)
    (shell,) = [s.tool_result for s in trajectory.steps if s.role == tp.ROLE_TOOL]
    assert shell.exit_code == 0 and shell.output.startswith("3 rows from the query's workspace\n")
    # A caller's session is used as it is: the caller owns that workspace, the query's files stay out.
    sandbox_stub = sandbox_pb2_grpc.SandboxServiceStub(grpc.insecure_channel(sandbox.grpc_address))
    session = sandbox_stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=60)
    attached = stub.RunEpisode(rollout_pb2.RunEpisodeRequest(query=seeded, sandbox_session_id=session.id), timeout=120)
    (missing,) = [s.tool_result for s in attached.steps if s.role == tp.ROLE_TOOL]
    assert missing.exit_code != 0 and "No such file" in missing.output


def test_malformed_tool_calls_go_back_to_the_model_and_are_recorded(stack):
    def script(body):
        results = tool_results(body)
        if len(results) < 3:
            return Reply(tool_calls=(("teleport", "{}"), ("shell", '{"command": "ls"'), ("shell", '{"command": 42}')))
        return Reply(content="I will stop guessing.")

    stub, policy, _sandbox, _rollout = stack(script)
    trajectory = stub.RunEpisode(rollout_pb2.RunEpisodeRequest(query=query("do something")), timeout=120)
    errors = [s.tool_result for s in trajectory.steps if s.role == tp.ROLE_TOOL]
    assert all(e.is_error for e in errors) and len(errors) == 3
    assert "unknown tool 'teleport'" in errors[0].error
    assert "not valid JSON" in errors[1].error
    assert "do not match its schema" in errors[2].error and "42" in errors[2].error
    assert trajectory.outcome.status == tp.OUTCOME_STATUS_COMPLETED
    assert "unknown tool 'teleport'" in tool_results(policy.requests[1])[0]


def test_rate_limit_then_success_inside_an_episode(stack):
    answers = iter([Status(429, retry_after=0), Reply(content="ok")])
    stub, policy, _sandbox, _rollout = stack(lambda body: next(answers))
    trajectory = stub.RunEpisode(rollout_pb2.RunEpisodeRequest(query=query("hi")), timeout=60)
    assert trajectory.outcome.status == tp.OUTCOME_STATUS_COMPLETED and len(policy.requests) == 2


def test_a_hanging_policy_fails_the_episode_with_a_reason(stack):
    stub, _policy, _sandbox, _rollout = stack(lambda body: Hang(3), policy_timeout_seconds=0.5, policy_attempts=2)
    trajectory = stub.RunEpisode(rollout_pb2.RunEpisodeRequest(query=query("hi")), timeout=60)
    assert trajectory.outcome.status == tp.OUTCOME_STATUS_FAILED
    assert "policy unavailable" in trajectory.outcome.reason and "gave up after 2 attempts" in trajectory.outcome.reason


def test_turn_limit_and_tool_output_truncation(stack):
    def script(body):
        return Reply(tool_calls=(("shell", json.dumps({"command": "head -c 5000 /dev/zero | tr '\\\\0' x"})),))

    stub, _policy, _sandbox, _rollout = stack(script, max_turns=2, max_tool_output_bytes=1000)
    trajectory = stub.RunEpisode(rollout_pb2.RunEpisodeRequest(query=query("loop")), timeout=60)
    assert trajectory.outcome.status == tp.OUTCOME_STATUS_ABORTED and "turn limit of 2" in trajectory.outcome.reason
    results = [s.tool_result for s in trajectory.steps if s.role == tp.ROLE_TOOL]
    assert len(results) == 2 and all(r.truncated and "[limi: output truncated" in r.output for r in results)


def test_a_correction_mid_episode_reaches_the_model_and_the_trajectory(stack):
    release = threading.Event()

    def script(body):
        if "use python instead" in json.dumps(body["messages"]):
            return Reply(content="Switched to python as asked.")
        if not tool_results(body):
            return Reply(tool_calls=(("shell", json.dumps({"command": "echo step one"})),))
        release.wait(30)  # hold the second turn until the correction is in
        return Reply(tool_calls=(("shell", json.dumps({"command": "echo step two"})),))

    stub, policy, _sandbox, rollout = stack(script)
    request = rollout_pb2.RunEpisodeRequest(query=query("count"), episode_id="ep-correct-1")
    future = stub.RunEpisode.future(request, timeout=120)
    watched: list[tp.Step] = []
    watch_stub = rollout_pb2_grpc.RolloutServiceStub(grpc.insecure_channel(rollout.grpc_address))
    for _ in range(100):
        try:
            stream = watch_stub.WatchEpisode(rollout_pb2.WatchEpisodeRequest(episode_id="ep-correct-1"), timeout=120)
            first = next(stream)
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            time.sleep(0.05)
    watched.append(first)
    while len(watched) < 4:  # system, user, assistant, tool
        watched.append(next(stream))
    reply = stub.Correct(
        rollout_pb2.CorrectRequest(episode_id="ep-correct-1", text="use python instead", author="alice"), timeout=10
    )
    release.set()
    trajectory = future.result()
    watched.extend(stream)
    feedback = [s for s in trajectory.steps if s.HasField("feedback")]
    assert len(feedback) == 1 and feedback[0].content == "use python instead"
    assert feedback[0].feedback.author == "alice" and feedback[0].feedback.kind == tp.FEEDBACK_KIND_HUMAN
    assert feedback[0].feedback.after_step >= reply.after_step
    assert trajectory.steps[-1].content == "Switched to python as asked."
    assert [s.index for s in watched] == list(range(len(trajectory.steps)))
    with pytest.raises(grpc.RpcError) as late:
        stub.Correct(rollout_pb2.CorrectRequest(episode_id="ep-correct-1", text="too late"), timeout=10)
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_feedback_rounds_continue_in_the_same_workspace(stack):
    def script(body):
        text = json.dumps(body["messages"])
        if "Focus on fixing" in text:
            if len(tool_results(body)) == 1:
                return Reply(
                    tool_calls=(("shell", json.dumps({"command": "cat round1.txt && echo fixed > round2.txt"})),)
                )
            return Reply(content="fixed")
        if not tool_results(body):
            return Reply(tool_calls=(("write_file", json.dumps({"path": "round1.txt", "content": "from round one"})),))
        return Reply(content="done")

    stub, _policy, sandbox, _rollout = stack(script)
    sandbox_stub = sandbox_pb2_grpc.SandboxServiceStub(grpc.insecure_channel(sandbox.grpc_address))
    session = sandbox_stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=60)
    first = stub.RunEpisode(
        rollout_pb2.RunEpisodeRequest(query=query("round one"), sandbox_session_id=session.id), timeout=60
    )
    second = stub.RunEpisode(
        rollout_pb2.RunEpisodeRequest(
            continue_from=first, feedback="Focus on fixing these rubric gaps: round2.txt missing"
        ),
        timeout=60,
    )
    assert second.steps[: len(first.steps)] == first.steps[: len(first.steps)]
    feedback = second.steps[len(first.steps)]
    assert feedback.feedback.kind == tp.FEEDBACK_KIND_RUBRIC and feedback.content.startswith("Focus on fixing")
    assert "from round one" in [s.tool_result.output for s in second.steps if s.role == tp.ROLE_TOOL][-1]
    content = sandbox_stub.ReadFile(
        sandbox_pb2.ReadFileRequest(session_id=session.id, path="round2.txt"), timeout=10
    ).content
    assert content == b"fixed\n"


@pytest.mark.parametrize(
    "request_, field",
    [
        (rollout_pb2.RunEpisodeRequest(), "query.text"),
        (rollout_pb2.RunEpisodeRequest(query=query("x"), endpoint="ftp://x"), "endpoint"),
        (
            rollout_pb2.RunEpisodeRequest(query=query("x"), sampling=tp.SamplingParams(temperature=7)),
            "sampling.temperature",
        ),
        (rollout_pb2.RunEpisodeRequest(continue_from=tp.Trajectory(id="t")), "feedback"),
        (
            rollout_pb2.RunEpisodeRequest(
                query=query_pb2.Query(text="x", workspace_files=[query_pb2.WorkspaceFile(path="../out.txt")])
            ),
            "query.workspace_files[0].path",
        ),
    ],
)
def test_bad_episode_requests_name_the_field(stack, request_, field):
    stub, _policy, _sandbox, _rollout = stack(lambda body: Reply(content="never"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.RunEpisode(request_, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field + ":")
