"""The demo's offline teacher: the scripted workspace-basics expert, served over the OpenAI chat API.

No model that runs on two CPU cores can solve agent tasks, so the offline demo collects its
trajectories from `limi_testing.expert` (it plans the tool calls of a workspace-basics query by
construction) behind `ScriptedPolicyServer`, the same HTTP API a vLLM server speaks; the demo
says so when it starts. Two things make it behave like a teacher a person supervises:

- a correction asking to show the result ("... list the workspace ...") is followed: the expert
  finishes its plan, lists the workspace with `list_dir`, then answers;
- `hold(query_text)` makes the first reply to that query wait (up to `hold_seconds`) until
  `release(query_text)`, so the demo's reviewer can send `Correct` while the episode is surely
  live; the correction then lands at the next turn boundary, the same way in every run (a hold
  is released once per query: an episode run again after a crash is not held, and its
  correction lands only if the reviewer catches it live).

A request for the model `demo_noisy_teacher.NOISY_MODEL` is answered by the noisier teacher
instead (the uncurated pool of `limi demo --uncurated`). It is not a model and learns nothing;
point the demo at a real endpoint with --teacher-endpoint.
"""

from __future__ import annotations

import threading

from limi_cli.demo_noisy_teacher import NOISY_MODEL, noisy_reply
from limi_evaluator.basics import plan_for
from limi_testing.expert import expert_reply
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer

CORRECTION = "Before you finish, list the workspace so that I can see the result."
CHECKED = "Done. The workspace now holds the result."
TEACHER_MODEL = "scripted-expert"


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def corrected_reply(messages: list[dict]) -> Reply | None:
    """The reply after a show-the-result correction, or None when there is no such correction."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if len(users) < 2 or "list the workspace" not in _text(messages[users[-1]]):
        return None
    plan = plan_for(_text(messages[users[0]])) or []

    def calls(start: int) -> list[str]:
        return [
            call.get("function", {}).get("name", "")
            for m in messages[start:]
            if m.get("role") == "assistant"
            for call in m.get("tool_calls") or ()
        ]

    done = sum(1 for name in calls(users[0] + 1) if name != "list_dir")
    listed = "list_dir" in calls(users[-1] + 1)
    if done < len(plan):
        step = plan[done]
        return Reply(tool_calls=((step.name, step.arguments_json()),))
    if not listed:
        return Reply(tool_calls=(("list_dir", '{"path": "."}'),))
    return Reply(content=CHECKED)


class Teacher:
    def __init__(self, hold_seconds: float = 20.0) -> None:
        self.hold_seconds = hold_seconds
        self._holds: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.server = ScriptedPolicyServer(self.reply, model=TEACHER_MODEL)

    def hold(self, query_text: str) -> None:
        with self._lock:
            self._holds.setdefault(query_text.strip(), threading.Event())

    def release(self, query_text: str) -> None:
        with self._lock:
            event = self._holds.get(query_text.strip())
        if event is not None:
            event.set()

    def reply(self, body: dict) -> Reply:
        if body.get("model") == NOISY_MODEL:
            return noisy_reply(body)
        messages = body.get("messages") or []
        first_user = next((m for m in messages if m.get("role") == "user"), None)
        if first_user is not None and not any(m.get("role") == "assistant" for m in messages):
            with self._lock:
                event = self._holds.get(_text(first_user).strip())
            if event is not None:
                event.wait(self.hold_seconds)
        return corrected_reply(messages) or expert_reply(body)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def start(self) -> Teacher:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
