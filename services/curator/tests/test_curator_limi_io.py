"""LIMI datasets in the exact public schema (import, export, errors naming sample and field) and the Gemini log converter."""

from __future__ import annotations

import copy
import json

import pytest

from limi.trajectory.v1 import trajectory_pb2
from limi_core.errors import InvalidArgument
from limi_curator.curator import Curator
from limi_curator.gemini_logs import convert_gemini_log, convert_gemini_log_text
from limi_curator.limi_dataset import check_sample, parse_limi_dataset

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Reads a file from the local filesystem.",
            "parameters": {
                "type": "object",
                "properties": {"absolute_path": {"type": "string", "description": "Absolute path."}},
                "required": ["absolute_path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_shell_command",
            "description": "Executes a shell command.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "directory": {"type": "string"}},
                "required": ["command"],
            },
        },
    },
]


def public_sample(task: str, steps: int) -> dict:
    messages = [
        {"role": "system", "content": "You are an interactive CLI agent specializing in software engineering tasks."},
        {"role": "user", "content": task},
    ]
    for n in range(steps):
        messages.append(
            {
                "role": "assistant",
                "content": f"I will inspect step {n} first.",
                "tool_calls": [
                    {
                        "id": f"run_shell_command-{n}",
                        "type": "function",
                        "function": {"name": "run_shell_command", "arguments": {"command": f"ls src/part{n}"}},
                    }
                ],
            }
        )
        messages.append(
            {"role": "tool", "content": f"main.cpp\nutil_{n}.hpp\n", "tool_call_id": f"run_shell_command-{n}"}
        )
    messages.append({"role": "assistant", "content": "The project builds and all five subtasks are implemented."})
    return {"tools": TOOLS, "messages": messages}


PUBLIC = [
    public_sample("Build a C++ console chat system with login, friends and chat history.", 3),
    public_sample("Create a Gomoku game in the browser with an AI opponent.", 5),
    public_sample("Discover datasets for traffic forecasting and summarise them.", 2),
]


@pytest.fixture
def curator(settings):
    curator = Curator(settings)
    yield curator
    curator.close()


def test_public_samples_import_and_export_byte_for_byte_in_the_public_schema(curator):
    content = json.dumps(PUBLIC, indent=2, ensure_ascii=False).encode()
    ids, duplicates, dataset, new = curator.import_limi(
        content=content, origin="limi.json", category="backend", publish_as="limi-public"
    )
    assert len(ids) == 3 and duplicates == 0 and new and dataset.stats.count == 3
    assert all(i.startswith("limi-") for i in ids) and dataset.trajectory_ids == ids
    stored = curator.trajectories.load(ids=ids)
    assert all(
        t.outcome.status == trajectory_pb2.OUTCOME_STATUS_COMPLETED and t.labels["category"] == "backend"
        for t in stored
    )
    array = b"".join(curator.export_limi(dataset.id, strict=True, json_array=True))
    assert json.loads(array) == PUBLIC
    jsonl = b"".join(curator.export_limi(dataset.id, strict=True, json_array=False)).decode().splitlines()
    assert [json.loads(line) for line in jsonl] == PUBLIC
    with_metadata = [
        json.loads(line)
        for line in b"".join(curator.export_limi(dataset.id, strict=False, json_array=False)).decode().splitlines()
    ]
    assert all(set(sample) == {"tools", "messages", "limi"} for sample in with_metadata)
    again = curator.import_limi(content=content, origin="limi.json", category="", publish_as="")
    assert again[1] == 3 and again[2] is None


BAD_ARGUMENTS = copy.deepcopy(PUBLIC[0])
BAD_ARGUMENTS["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"command": "ls"}'
NO_CALL_ID = copy.deepcopy(PUBLIC[0])
del NO_CALL_ID["messages"][3]["tool_call_id"]
EXTRA_KEY = dict(copy.deepcopy(PUBLIC[0]), source="gemini")
BAD_ROLE = copy.deepcopy(PUBLIC[0])
BAD_ROLE["messages"][1]["role"] = "human"
CALL_ON_USER = copy.deepcopy(PUBLIC[0])
CALL_ON_USER["messages"][1]["tool_calls"] = []
BAD_TOOL = copy.deepcopy(PUBLIC[0])
BAD_TOOL["tools"][1]["function"]["parameters"] = ["not", "an", "object"]


@pytest.mark.parametrize(
    "samples, message",
    [
        (
            [PUBLIC[0], BAD_ARGUMENTS],
            "limi.json sample 2 field messages[2].tool_calls[0].function.arguments: must be a JSON object, not a string",
        ),
        ([NO_CALL_ID], "limi.json sample 1 field messages[3].tool_call_id: missing or not a string"),
        ([PUBLIC[1], PUBLIC[2], EXTRA_KEY], "limi.json sample 3 field source: is not a LIMI sample key"),
        ([BAD_ROLE], "limi.json sample 1 field messages[1].role: unknown role 'human'"),
        ([CALL_ON_USER], "limi.json sample 1 field messages[1].tool_calls: is not a key of a user message"),
        ([BAD_TOOL], "limi.json sample 1 field tools[1].function.parameters: must be a JSON object"),
        ([{"tools": [], "messages": []}], "limi.json sample 1 field messages: must be a non-empty list"),
        (["just text"], "limi.json sample 1 field (sample): must be a JSON object"),
    ],
)
def test_invalid_samples_are_named_by_sample_and_field(samples, message):
    with pytest.raises(InvalidArgument) as caught:
        parse_limi_dataset(json.dumps(samples).encode(), "limi.json")
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_bad_jsonl_line_and_a_truncated_array_are_named():
    lines = json.dumps(PUBLIC[0]) + "\n" + json.dumps(PUBLIC[1])[:-5] + "\n"
    with pytest.raises(InvalidArgument, match=r"^train.jsonl line 2 field \(line\): is not valid JSON"):
        parse_limi_dataset(lines.encode(), "train.jsonl")
    with pytest.raises(InvalidArgument, match=r"^limi.json: is not valid JSON: .* at line \d+ column \d+"):
        parse_limi_dataset(json.dumps(PUBLIC)[:-10].encode(), "limi.json")


def gemini_log() -> dict:
    """A CLI session in Gemini API form: three requests, each carrying the whole history so far."""
    declarations = [
        {
            "functionDeclarations": [
                {
                    "name": "read_file",
                    "description": "Reads a file.",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "absolute_path": {"type": "STRING", "description": "Absolute path."},
                            "limit": {"type": "INTEGER"},
                        },
                        "required": ["absolute_path"],
                    },
                },
                {
                    "name": "run_shell_command",
                    "description": "Executes a shell command.",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "command": {"type": "STRING"},
                            "env": {"type": "ARRAY", "items": {"type": "STRING"}},
                        },
                        "required": ["command"],
                    },
                },
            ]
        }
    ]
    history = [{"role": "user", "parts": [{"text": "Fix the failing test in tests/test_parser.py"}]}]
    events = [{"type": "session_start", "timestamp": "2025-07-01T10:00:00Z", "data": {"cwd": "/workspace"}}]

    def request(messages):
        return {
            "type": "api_request_full",
            "timestamp": "2025-07-01T10:00:01Z",
            "data": {
                "model": "glm-4.5",
                "full_request": {
                    "system_instruction": {"parts": [{"text": "You are an interactive CLI agent."}]},
                    "tools": declarations,
                    "messages": copy.deepcopy(messages),
                },
            },
        }

    events.append(request(history))
    history.append(
        {
            "role": "model",
            "parts": [
                {"text": "Let me read the test first."},
                {
                    "functionCall": {
                        "id": "read_file-1",
                        "name": "read_file",
                        "args": {"absolute_path": "/workspace/tests/test_parser.py"},
                    }
                },
            ],
        }
    )
    events.append({"type": "api_response", "data": {"status": 200}})
    history.append(
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "read_file-1",
                        "name": "read_file",
                        "response": {"output": "def test_empty():\n    assert parse('') == []\n"},
                    }
                }
            ],
        }
    )
    events.append(request(history))
    history.append(
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {
                        "id": "run-2",
                        "name": "run_shell_command",
                        "args": {"command": "pytest -q", "env": ["CI=1"]},
                    }
                }
            ],
        }
    )
    history.append(
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "run-2", "name": "run_shell_command", "response": {"output": "1 passed"}}},
                {"text": "Also add a changelog entry."},
            ],
        }
    )
    history.append(
        {
            "role": "model",
            "parts": [{"text": "Done: the parser returns [] for empty input and the changelog mentions it."}],
        }
    )
    events.append(request(history))
    events.append({"type": "session_end", "data": {}})
    return {"id": "session-7", "model": "glm-4.5", "events": events}


def test_a_gemini_event_log_becomes_a_limi_sample():
    sample = convert_gemini_log(gemini_log(), "session-7.json")
    check_sample(sample, "converted")
    roles = [m["role"] for m in sample["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "user", "assistant"]
    system = sample["messages"][0]["content"]
    assert system.startswith("You are an interactive CLI agent.\n\nYou have access to the following tools:")
    assert "   - absolute_path (string) (required): Absolute path.\n" in system
    assert sample["messages"][2] == {
        "role": "assistant",
        "content": "Let me read the test first.",
        "tool_calls": [
            {
                "id": "read_file-1",
                "type": "function",
                "function": {"name": "read_file", "arguments": {"absolute_path": "/workspace/tests/test_parser.py"}},
            }
        ],
    }
    assert sample["messages"][5] == {"role": "tool", "content": "1 passed", "tool_call_id": "run-2"}
    assert sample["messages"][4]["content"] == "" and sample["messages"][4]["tool_calls"][0]["function"]["arguments"][
        "env"
    ] == ["CI=1"]
    shell = sample["tools"][1]["function"]["parameters"]
    assert shell == {
        "type": "object",
        "properties": {"command": {"type": "string"}, "env": {"type": "array", "items": {"type": "string"}}},
        "required": ["command"],
    }
    plain = convert_gemini_log(gemini_log(), "session-7.json", plain_system_prompt=True)
    assert plain["messages"][0]["content"] == "You are an interactive CLI agent."


def _broken(change) -> str:
    log = gemini_log()
    change(log)
    return json.dumps(log)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "session.json field (log): is not valid JSON"),
        ('{"id": "x"}', "session.json field events: must be a list"),
        (
            '{"events": [{"type": "session_start", "data": {}}]}',
            "session.json field events: holds no api_request_full event",
        ),
        (
            _broken(lambda log: log["events"][4]["data"]["full_request"]["messages"][1].update(role="assistant")),
            "session.json field events[4].data.full_request.messages[1].role: must be 'user' or 'model', got 'assistant'",
        ),
        (
            _broken(
                lambda log: log["events"][4]["data"]["full_request"]["messages"][3]["parts"][0]["functionCall"].update(
                    args="pytest -q"
                )
            ),
            "session.json field events[4].data.full_request.messages[3].parts[0].functionCall.args: must be an object, got str",
        ),
        (
            _broken(lambda log: log["events"][4]["data"]["full_request"]["messages"][2].update(parts={"text": "x"})),
            "session.json field events[4].data.full_request.messages[2].parts: must be a list",
        ),
        (
            _broken(
                lambda log: log["events"][1]["data"]["full_request"]["tools"][0]["functionDeclarations"][0].pop("name")
            ),
            "session.json field events[1].data.full_request.tools[0].functionDeclarations[0].name: must be a string, got NoneType",
        ),
        (
            _broken(lambda log: log["events"][4]["data"].pop("full_request")),
            "session.json field events[4].data.full_request: must be an object",
        ),
    ],
)
def test_malformed_gemini_logs_are_named_by_field(text, message):
    with pytest.raises(InvalidArgument) as caught:
        convert_gemini_log_text(text, "session.json")
    assert str(caught.value).startswith(message), str(caught.value)
