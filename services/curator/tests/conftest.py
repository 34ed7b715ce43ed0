"""Fixtures of the curator tests: a scripted OpenAI-compatible server, a tiny tokenizer, realistic trajectories.

`scripted_llm` is a real HTTP server on a free port speaking `/v1/chat/completions`. Its answer
depends only on the prompt: it reads the PR out of the synthesis prompt and, by a hash of
"repository#number", answers with a good task (most PRs), a task that quotes a line of the patch,
a task unrelated to the change, text that is not JSON, or an unknown category; some PRs get a 503
before the answer (the client must retry). `mode` switches it to refusing (400) or failing (500)
every request. No network beyond loopback.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import pathlib
import re
import threading
from collections import Counter

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2
from limi_core.processes import free_port
from limi_curator.settings import CuratorSettings

CATEGORY_RULES = (
    (r"calibration|ECE", "research"),
    (r"Binary search|O\(log|logarithmic", "algorithm"),
    (r"[Rr]efactor|Extract|Deduplicate", "refactoring"),
    (r"readiness|helm|deploy", "deployment"),
    (r"CSV|import|spreadsheet", "data_processing"),
    (r"[Tt]est", "testing"),
    (r"[Cc]ache|perf|[Ss]peed up", "optimization"),
    (r"[Pp]aginate|endpoint|limit parameter", "backend"),
    (r"disabled|[Bb]adge|ui:", "frontend"),
    (r"crash|NotFound|[Hh]andle missing", "debugging"),
)


def behaviour_of(label: str) -> str:
    bucket = int(hashlib.sha256(label.encode()).hexdigest(), 16) % 100
    if bucket < 6:
        return "leak"
    if bucket < 10:
        return "unrelated"
    if bucket < 13:
        return "not_json"
    if bucket < 15:
        return "unknown_category"
    if bucket < 18:
        return "flaky"
    return "good"


def answer_for(prompt: str) -> str:
    pr = json.loads(re.search(r"```json\n(.*?)\n```", prompt, re.S).group(1))
    diff = re.search(r"```diff\n(.*?)\n```", prompt, re.S).group(1)
    label = f"{pr['repository']}#{pr['number']}"
    behaviour = behaviour_of(label)
    files = pr["changed_files"]
    category = next((name for pattern, name in CATEGORY_RULES if re.search(pattern, pr["title"])), "other")
    excerpt = " ".join(pr["body"].split())[:600]
    text = (
        f"{excerpt} I work on {pr['repository']} and need this done: {pr['title'].rstrip('.')}. The change belongs in "
        f"{', '.join(files)}; keep the public interface as it is, cover the new behaviour with a check, and explain what you changed."
    )
    if behaviour == "leak":
        added = max(
            (line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")), key=len
        )
        text += f" For reference, the fix is this line: {added.strip()}"
    elif behaviour == "unrelated":
        text = (
            "Please redesign the landing page of our marketing website with a darker colour scheme, larger hero images "
            "and a newsletter sign-up form, and make sure it looks good on phones."
        )
    elif behaviour == "not_json":
        return f"Sure! Here is a task for {label}: {pr['title']}."
    elif behaviour == "unknown_category":
        category = "devops-wizardry"
    answer = {
        "test_query": text,
        "task_category": category,
        "modified_files": files,
        "related_files": [],
        "reasoning": f"The PR '{pr['title']}' is mainly {category} work.",
    }
    return "```json\n" + json.dumps(answer) + "\n```"


class ScriptedLlm:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.mode = "normal"
        self.requests = Counter()
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self):
        scripted = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = request["messages"][-1]["content"]
                digest = hashlib.sha256(prompt.encode()).hexdigest()
                with scripted._lock:
                    scripted.requests[digest] += 1
                    attempt = scripted.requests[digest]
                if scripted.mode == "refuse":
                    return self._send(400, {"error": {"message": "prompt is longer than the maximum context length"}})
                if scripted.mode == "fail":
                    return self._send(500, {"error": {"message": "engine crashed"}})
                pr = json.loads(re.search(r"```json\n(.*?)\n```", prompt, re.S).group(1))
                if behaviour_of(f"{pr['repository']}#{pr['number']}") == "flaky" and attempt == 1:
                    return self._send(503, {"error": {"message": "server is warming up"}})
                content = answer_for(prompt)
                self._send(
                    200,
                    {
                        "id": "cmpl-" + digest[:12],
                        "object": "chat.completion",
                        "model": request["model"],
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                        ],
                    },
                )

        return Handler

    behaviour = staticmethod(behaviour_of)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def start(self) -> ScriptedLlm:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted_llm():
    server = ScriptedLlm().start()
    yield server
    server.stop()


TOKENIZER_TEXT = [
    "def load_invoice_owner(self, invoice_id): return self._store.get(invoice_id)",
    "The agent reads the file, runs the tests, and fixes the failing assertion in the parser.",
    '<|im_start|>assistant\nI will run pytest now.<|im_end|> <tool_call> {"name": "shell", "arguments": {"command": "pytest -q"}} </tool_call>',
    "func (s *Service) LoadOwner(ctx context.Context, id string) (string, error) { return s.store.Get(ctx, id) }",
] * 20


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> pathlib.Path:
    """A byte-level BPE tokenizer.json trained in-process on a few KB of text (no download)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(
        TOKENIZER_TEXT,
        trainers.BpeTrainer(
            vocab_size=400,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=["<|im_start|>", "<|im_end|>"],
        ),
    )
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.fixture
def settings(tmp_path) -> CuratorSettings:
    return CuratorSettings(data_dir=tmp_path / "curator-data")


# ------------------------------------------------------------ realistic trajectories

TOOLS = (
    trajectory_pb2.ToolSpec(
        name="read_file",
        description="Read a file of the workspace.",
        parameters_json='{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}',
    ),
    trajectory_pb2.ToolSpec(
        name="write_file",
        description="Write a file of the workspace.",
        parameters_json='{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"]}',
    ),
    trajectory_pb2.ToolSpec(
        name="shell",
        description="Run a shell command in the sandbox.",
        parameters_json='{"type":"object","properties":{"command":{"type":"string"},"timeout":{"type":"integer"}},"required":["command"]}',
    ),
)


def make_trajectory(
    trajectory_id: str,
    query: query_pb2.Query | None = None,
    *,
    turns: int = 4,
    status: int = trajectory_pb2.OUTCOME_STATUS_COMPLETED,
    failed_calls: int = 0,
    loop: int = 0,
    empty_turns: int = 0,
    timeout_value: object = 60,
    padding: int = 0,
    score: float | None = None,
    labels: dict | None = None,
) -> trajectory_pb2.Trajectory:
    """A multi-turn coding episode: read, edit, run tests, answer; knobs create the defects curation must catch."""
    trajectory = trajectory_pb2.Trajectory(id=trajectory_id, tools=TOOLS)
    if query is not None:
        trajectory.lineage.query_id = query.id
    trajectory.lineage.attempt = 1
    trajectory.labels.update(labels or {})
    steps = trajectory.steps
    text = query.text if query is not None else "Fix the failing parser test in src/parser.py."
    steps.add(
        role=trajectory_pb2.ROLE_SYSTEM,
        content="You are a careful software engineer working in a sandboxed repository.",
    )
    steps.add(role=trajectory_pb2.ROLE_USER, content=text)
    call_number = 0

    def call(name: str, arguments: dict, output: str, *, error: bool = False, content: str = "") -> None:
        nonlocal call_number
        call_number += 1
        call_id = f"call_{trajectory_id}_{call_number}"
        assistant = steps.add(role=trajectory_pb2.ROLE_ASSISTANT, content=content)
        assistant.tool_calls.add(id=call_id, name=name, arguments_json=json.dumps(arguments, separators=(",", ":")))
        tool = steps.add(role=trajectory_pb2.ROLE_TOOL)
        tool.tool_result.tool_call_id = call_id
        tool.tool_result.output = output
        tool.tool_result.is_error = error
        if error:
            tool.tool_result.error = "unknown tool" if name == "browse" else "arguments do not match the schema"

    for turn in range(turns):
        path = f"src/module_{turn}.py"
        call(
            "read_file",
            {"path": path},
            f"def handler_{turn}(request):\n    return parse(request.body)\n" + "# context line\n" * padding,
            content=f"Let me look at {path} to understand how requests are parsed.",
        )
        call(
            "write_file",
            {
                "path": path,
                "content": f"def handler_{turn}(request):\n    body = request.body or b''\n    return parse(body)\n",
            },
            "written",
            content="The handler crashes on an empty body; I will guard it.",
        )
        call("shell", {"command": "pytest -q tests", "timeout": timeout_value}, f"{turn + 3} passed in 0.{turn}1s")
    for _ in range(failed_calls):
        call(
            "browse",
            {"url": f"https://docs.example.invalid/page{call_number}"},
            "",
            error=True,
            content="Let me check the docs online.",
        )
    for _ in range(loop):
        call("shell", {"command": "pytest -q tests/test_parser.py", "timeout": 60}, "1 failed")
    for _ in range(empty_turns):
        steps.add(role=trajectory_pb2.ROLE_ASSISTANT, content="")
    steps.add(
        role=trajectory_pb2.ROLE_ASSISTANT,
        content="All tests pass. I guarded the empty body in every handler and added checks.",
    )
    for index, step in enumerate(steps):
        step.index = index
    trajectory.outcome.status = status
    if score is not None:
        trajectory.outcome.score = score
    return trajectory


@pytest.fixture
def trajectory_factory():
    return make_trajectory
