"""Tests of the Trajectory <-> LIMI sample converter on a realistic coding episode."""

import copy
import json

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from limi.trajectory.v1 import trajectory_pb2 as pb
from limi_core.limi_format import (
    InvalidLimiSample,
    dumps_sample,
    limi_to_trajectory,
    loads_sample,
    trajectory_to_limi,
)

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z

CONFIG_PY = "\n".join(f"# line {n}: settings for the service" for n in range(400))
INVALID_ARGUMENTS = '{"path": "src/config.py", "content": "def parse_config(raw):\n'
PYTEST_FAILURE = "FAILED tests/test_config.py::test_defaults - KeyError: 'port'\n1 failed, 11 passed"


def string_schema(*names: str) -> str:
    """Canonical JSON Schema text of an object whose named properties are strings."""
    properties = {name: {"type": "string"} for name in names}
    return json.dumps({"type": "object", "properties": properties}, separators=(",", ":"))


def at(seconds: float) -> Timestamp:
    return Timestamp(seconds=T0 + int(seconds), nanos=int(seconds % 1 * 1e9))


def took(seconds: float) -> Duration:
    return Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))


def tool_step(index: int, call_id: str, output: str, **result) -> pb.Step:
    return pb.Step(
        index=index,
        role=pb.ROLE_TOOL,
        tool_result=pb.ToolResult(tool_call_id=call_id, output=output, **result),
    )


def realistic_trajectory() -> pb.Trajectory:
    """A coding episode: two parallel calls, a failing call, a human correction, a fix."""
    tools = [
        pb.ToolSpec(
            name="read_file",
            description="Read a file from the workspace.",
            parameters_json=string_schema("path"),
        ),
        pb.ToolSpec(
            name="run_shell",
            description="Run a shell command in the sandbox.",
            # Pretty-printed, so not canonical: must survive byte for byte.
            parameters_json=json.dumps({"type": "object", "properties": {"command": {"type": "string"}}}, indent=2),
        ),
        pb.ToolSpec(
            name="edit_file",
            description="Replace one string in a file.",
            parameters_json=string_schema("path", "old", "new"),
        ),
    ]
    steps = [
        pb.Step(role=pb.ROLE_SYSTEM, content="You are a coding agent working in /workspace."),
        pb.Step(
            role=pb.ROLE_USER,
            content="The tests fail with KeyError: 'port'. Fix parse_config in src/config.py.",
        ),
        pb.Step(
            role=pb.ROLE_ASSISTANT,
            reasoning_content=("The KeyError suggests a missing default. Read the file and run the tests."),
            content="Let me look at the config module and the failing test.",
            tool_calls=[
                pb.ToolCall(id="call_1", name="read_file", arguments_json='{"path":"src/config.py"}'),
                pb.ToolCall(
                    id="call_2",
                    name="run_shell",
                    arguments_json='{"command": "pytest -q", "timeout": 120}',
                ),
            ],
            usage=pb.TokenUsage(prompt_tokens=1843, completion_tokens=96, reasoning_tokens=31),
            finish_reason="tool_calls",
            token_ids=[151644, 77091, 198],
            logprobs=[-0.012, -1.5e-05, float("-inf")],
            duration=took(2.25),
        ),
        tool_step(3, "call_1", CONFIG_PY, truncated=True, duration=took(0.004)),
        tool_step(4, "call_2", PYTEST_FAILURE, exit_code=1, duration=took(1.8)),
        pb.Step(
            role=pb.ROLE_ASSISTANT,
            reasoning_content="I will rewrite parse_config with a default port.",
            tool_calls=[pb.ToolCall(id="call_3", name="write_file", arguments_json=INVALID_ARGUMENTS)],
            finish_reason="tool_calls",
        ),
        tool_step(
            6,
            "call_3",
            "error: arguments are not valid JSON",
            is_error=True,
            error="unknown tool write_file; arguments: Unterminated string at char 40",
        ),
        pb.Step(
            role=pb.ROLE_USER,
            content="Don't rewrite the whole file; only change the default for port.",
            feedback=pb.Feedback(
                author="alice@example.com",
                kind=pb.FEEDBACK_KIND_HUMAN,
                text="Don't rewrite the whole file; only change the default for port.",
                after_step=6,
                at=at(30.5),
            ),
        ),
        pb.Step(
            role=pb.ROLE_ASSISTANT,
            content="Understood, I'll edit only the port default.",
            tool_calls=[
                pb.ToolCall(
                    id="call_4",
                    name="edit_file",
                    arguments_json=('{"path":"src/config.py","old":"port=None","new":"port=8080  # défaut"}'),
                )
            ],
        ),
        tool_step(9, "call_4", "edited src/config.py (1 replacement)"),
        pb.Step(
            role=pb.ROLE_ASSISTANT,
            tool_calls=[pb.ToolCall(id="call_5", name="run_shell", arguments_json='{"command":"pytest -q"}')],
        ),
        tool_step(11, "call_5", "12 passed in 0.84s", duration=took(0.9)),
        pb.Step(
            role=pb.ROLE_ASSISTANT,
            reasoning_content="All twelve tests pass now.",
            content="Fixed: parse_config now defaults port to 8080; all 12 tests pass.",
            usage=pb.TokenUsage(prompt_tokens=4120, completion_tokens=40),
            finish_reason="stop",
        ),
    ]
    for index, step in enumerate(steps):
        step.index = index
        step.started_at.CopyFrom(at(index * 2.5))
    return pb.Trajectory(
        id="traj-7f3a9c",
        steps=steps,
        tools=tools,
        policy=pb.PolicyInfo(
            model="GAIR/LIMI-Air",
            weights_version="limi-air-step-156",
            endpoint="http://policy:8000/v1",
            sampling=pb.SamplingParams(temperature=0.6, top_p=0.95, max_tokens=8192, seed=7),
        ),
        sandbox=pb.SandboxInfo(backend="bwrap", image="limi-sandbox:py3.11", session_id="sbx-41"),
        outcome=pb.Outcome(status=pb.OUTCOME_STATUS_COMPLETED, reason="tests pass", score=1.0),
        lineage=pb.Lineage(query_id="q-0042", attempt=2, query_set_id="limi-78", episode_id="ep-9c1d"),
        started_at=at(0),
        finished_at=at(41.75),
        labels={"split": "train", "curator": "alice"},
    )


def public_sample() -> dict:
    """A sample in the exact public LIMI schema, as the released dataset has them."""
    return {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "read_file",
                    "description": "Read a file.",
                    "parameters": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}},
                        "required": ["path"],
                    },
                },
            }
        ],
        "messages": [
            {"role": "system", "content": "You are Gemini CLI."},
            {"role": "user", "content": "Summarize README.md."},
            {
                "role": "assistant",
                "content": "I'll read it first.",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": {"path": "README.md"}},
                    }
                ],
            },
            {"role": "tool", "content": "# limi\nLess is more for agency.", "tool_call_id": "c1"},
            {"role": "assistant", "content": "The README says less is more for agency."},
        ],
    }


def test_trajectory_round_trips_exactly():
    trajectory = realistic_trajectory()

    assert limi_to_trajectory(trajectory_to_limi(trajectory)) == trajectory


def test_trajectory_round_trips_through_json_text():
    trajectory = realistic_trajectory()

    text = dumps_sample(trajectory_to_limi(trajectory))

    assert "\n" not in text and "défaut" in text
    assert limi_to_trajectory(loads_sample(text)) == trajectory


def test_metadata_does_not_repeat_message_text():
    sample = trajectory_to_limi(realistic_trajectory())

    metadata = json.dumps(sample["limi"])
    assert "settings for the service" not in metadata  # the long tool output
    assert "KeyError suggests" not in metadata  # reasoning
    assert "only change the default" not in metadata  # feedback text equal to content
    assert sample["limi"]["trajectory"]["steps"][7]["feedback"]["author"] == "alice@example.com"


def test_non_strict_messages_are_the_strict_ones_plus_metadata():
    trajectory = realistic_trajectory()

    loose = trajectory_to_limi(trajectory)
    strict = trajectory_to_limi(trajectory, strict=True)

    assert set(loose) == {"tools", "messages", "limi"}
    assert {"tools": loose["tools"], "messages": loose["messages"]} == strict


def test_strict_sample_has_only_the_public_schema():
    sample = trajectory_to_limi(realistic_trajectory(), strict=True)

    assert set(sample) == {"tools", "messages"}
    messages = sample["messages"]
    assert [m["role"] for m in messages[:5]] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[2]["content"] == (
        "The KeyError suggests a missing default. Read the file and run the tests.\n\n"
        "Let me look at the config module and the failing test."
    )
    assert messages[2]["tool_calls"][1] == {
        "id": "call_2",
        "type": "function",
        "function": {"name": "run_shell", "arguments": {"command": "pytest -q", "timeout": 120}},
    }
    assert messages[5]["tool_calls"][0]["function"]["arguments"] == {}  # invalid JSON
    assert messages[4] == {"role": "tool", "content": PYTEST_FAILURE, "tool_call_id": "call_2"}
    assert "tool_calls" not in messages[1] and "tool_calls" not in messages[12]
    for message in messages:
        assert set(message) <= {"role", "content", "tool_calls", "tool_call_id"}
        for call in message.get("tool_calls", []):
            assert isinstance(call["function"]["arguments"], dict)
    assert sample["tools"][1]["function"]["parameters"] == {
        "type": "object",
        "properties": {"command": {"type": "string"}},
    }


def test_public_sample_round_trips_through_a_trajectory():
    sample = public_sample()

    trajectory = limi_to_trajectory(sample)

    assert [step.index for step in trajectory.steps] == [0, 1, 2, 3, 4]
    assert trajectory.steps[2].tool_calls[0].arguments_json == '{"path":"README.md"}'
    assert trajectory.steps[2].reasoning_content == ""
    assert trajectory.steps[3].tool_result.tool_call_id == "c1"
    assert trajectory.steps[3].tool_result.output.startswith("# limi")
    assert trajectory.tools[0].parameters_json.startswith('{"type":"object"')
    assert trajectory_to_limi(trajectory, strict=True) == sample
    assert json.loads(dumps_sample(trajectory_to_limi(trajectory, strict=True))) == sample


def test_null_content_and_string_arguments_are_accepted():
    sample = public_sample()
    sample["messages"][2]["content"] = None
    sample["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"path": "README.md"}'

    step = limi_to_trajectory(sample).steps[2]

    assert step.content == ""
    assert step.tool_calls[0].arguments_json == '{"path":"README.md"}'


@pytest.mark.parametrize("score", [None, 0.0, 0.75])
def test_outcome_score_presence_survives(score):
    trajectory = realistic_trajectory()
    trajectory.outcome.ClearField("score")
    if score is not None:
        trajectory.outcome.score = score

    restored = limi_to_trajectory(loads_sample(dumps_sample(trajectory_to_limi(trajectory))))

    assert restored.outcome.HasField("score") == (score is not None)
    assert restored == trajectory


def test_non_canonical_arguments_survive_byte_for_byte():
    trajectory = realistic_trajectory()
    trajectory.steps[8].tool_calls[0].arguments_json = '{"b": 1, "a": 2}'

    sample = loads_sample(dumps_sample(trajectory_to_limi(trajectory)))
    restored = limi_to_trajectory(sample)

    assert sample["messages"][8]["tool_calls"][0]["function"]["arguments"] == {"b": 1, "a": 2}
    assert restored.steps[8].tool_calls[0].arguments_json == '{"b": 1, "a": 2}'
    assert restored.steps[5].tool_calls[0].arguments_json == INVALID_ARGUMENTS
    assert restored == trajectory


@pytest.mark.parametrize("raw", ["", "[1, 2]", '"text"', '{"x": NaN}', '{"x": 1e400}'])
def test_arguments_that_are_not_a_json_object_become_empty_and_survive(raw):
    trajectory = realistic_trajectory()
    trajectory.steps[10].tool_calls[0].arguments_json = raw

    sample = trajectory_to_limi(trajectory)

    assert sample["messages"][10]["tool_calls"][0]["function"]["arguments"] == {}
    assert limi_to_trajectory(loads_sample(dumps_sample(sample))) == trajectory


def test_step_without_a_role_is_refused():
    trajectory = realistic_trajectory()
    trajectory.steps[1].role = pb.ROLE_UNSPECIFIED

    with pytest.raises(ValueError, match=r"steps\[1\]"):
        trajectory_to_limi(trajectory)


def _set(path, value):
    """Return a mutation that sets sample[path...] = value (deleting when value is _DELETE)."""

    def mutate(sample):
        target = sample
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return sample

    return mutate


_DELETE = object()
_CALL = ("messages", 2, "tool_calls", 0)
_ARGUMENTS = (*_CALL, "function", "arguments")
_ARGUMENTS_FIELD = "messages[2].tool_calls[0].function.arguments"

PUBLIC_CASES = [
    (lambda sample: [sample], "sample"),
    (_set(("messages",), _DELETE), "messages"),
    (_set(("messages",), {"role": "user"}), "messages"),
    (_set(("messages", 1), "hello"), "messages[1]"),
    (_set(("messages", 1, "role"), "model"), "messages[1].role"),
    (_set(("messages", 1, "role"), ["user"]), "messages[1].role"),
    (_set(("messages", 1, "content"), 42), "messages[1].content"),
    (_set(("messages", 1, "tool_calls"), [{"id": "x"}]), "messages[1].tool_calls"),
    (_set(("messages", 3, "tool_call_id"), _DELETE), "messages[3].tool_call_id"),
    (_set(("messages", 2, "tool_calls"), {"id": "c1"}), "messages[2].tool_calls"),
    (_set(_CALL, "c1"), "messages[2].tool_calls[0]"),
    (_set((*_CALL, "function"), None), "messages[2].tool_calls[0].function"),
    (_set((*_CALL, "function", "name"), _DELETE), "messages[2].tool_calls[0].function.name"),
    (_set(_ARGUMENTS, _DELETE), _ARGUMENTS_FIELD),
    (_set(_ARGUMENTS, [1]), _ARGUMENTS_FIELD),
    (_set(_ARGUMENTS, "[1]"), _ARGUMENTS_FIELD),
    (_set(_ARGUMENTS, "{oops"), _ARGUMENTS_FIELD),
    (_set(_ARGUMENTS, {"x": {1, 2}}), _ARGUMENTS_FIELD),
    (_set(("tools",), {"name": "read_file"}), "tools"),
    (_set(("tools", 0), "read_file"), "tools[0]"),
    (_set(("tools", 0, "function"), _DELETE), "tools[0].function"),
    (_set(("tools", 0, "function", "parameters"), "object"), "tools[0].function.parameters"),
]


@pytest.mark.parametrize(("mutate", "field"), PUBLIC_CASES)
def test_invalid_public_sample_names_the_field(mutate, field):
    sample = mutate(public_sample())

    with pytest.raises(InvalidLimiSample) as caught:
        limi_to_trajectory(sample)

    assert caught.value.field == field
    assert str(caught.value) == f"{field}: {caught.value.reason}"


METADATA_CASES = [
    (_set(("limi",), "v1"), "limi"),
    (_set(("limi", "version"), 2), "limi.version"),
    (_set(("limi", "trajectory"), []), "limi.trajectory"),
    (_set(("limi", "trajectory", "colour"), "red"), "limi.trajectory"),
    (_set(("limi", "trajectory", "steps"), [{}]), "limi.trajectory.steps"),
    (_set(("limi", "steps"), []), "limi.steps"),
    (_set(("limi", "steps", "99"), {}), "limi.steps.99"),
    (_set(("limi", "steps", "2", "reasoning_chars"), 5), "limi.steps.2.reasoning_chars"),
    (_set(("limi", "steps", "2", "reasoning_chars"), "73"), "limi.steps.2.reasoning_chars"),
    (_set(("limi", "steps", "2", "arguments_json"), {"5": "{}"}), "limi.steps.2.arguments_json.5"),
    (_set(("limi", "steps", "2", "arguments_json", "1"), 7), "limi.steps.2.arguments_json.1"),
    (_set(("limi", "tools", "1", "parameters_json"), {}), "limi.tools.1.parameters_json"),
]


@pytest.mark.parametrize(("mutate", "field"), METADATA_CASES)
def test_invalid_metadata_names_the_field(mutate, field):
    sample = mutate(copy.deepcopy(trajectory_to_limi(realistic_trajectory())))

    with pytest.raises(InvalidLimiSample) as caught:
        limi_to_trajectory(sample)

    assert caught.value.field == field


@pytest.mark.parametrize("text", ['{"messages": [', "[1, 2]", b"\xff\xfe", 12])
def test_loads_sample_rejects_text_that_is_not_a_json_object(text):
    with pytest.raises(InvalidLimiSample) as caught:
        loads_sample(text, origin="train.jsonl:12")

    assert caught.value.field == "train.jsonl:12"
    assert isinstance(caught.value, ValueError)
