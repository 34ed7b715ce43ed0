"""The scripted expert for the workspace-basics family: the conversation in, the next reply out.

`expert_reply(request_body)` reads an OpenAI chat-completions request (the shape the rollout
service sends), takes the task from the first user message, plans its tool calls with
`basics.plan_for`, and answers with the next call not yet made since the latest user message
(one call per turn), then with a short final answer. After rubric feedback it simply carries
out the plan again. Serve it with `ScriptedPolicyServer(expert_reply)` to get a teacher that
solves every instance by construction (the demo's trajectories) or an upper bound for the
evaluator. A query outside the family gets a plain refusal, never a guess. It is not a model.
"""

from __future__ import annotations

from limi_evaluator.basics import plan_for
from limi_testing.scripted_policy import Reply

DONE = "Done. The task is complete."
UNKNOWN = "I cannot solve this task: it is not one of the workspace-basics tasks."


def _text(content: object) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def expert_reply(request_body: dict) -> Reply:
    """The expert's next assistant message for this conversation."""
    messages = request_body.get("messages") or []
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return Reply(content=UNKNOWN)
    plan = plan_for(_text(messages[users[0]].get("content")))
    if plan is None:
        return Reply(content=UNKNOWN)
    made = sum(1 for m in messages[users[-1] + 1 :] if m.get("role") == "tool")
    if made < len(plan):
        step = plan[made]
        return Reply(tool_calls=((step.name, step.arguments_json()),))
    return Reply(content=DONE)
