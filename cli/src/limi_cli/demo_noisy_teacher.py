"""The demo's noisier teacher: the workspace-basics expert with the defects raw agent logs have.

`noisy_reply(request_body)` answers like `limi_testing.expert.expert_reply`, except that each query
(by a hash of its text, so the same query always gets the same behaviour) falls into one of these
groups, fixed before any result was measured:

| share | behaviour | what a log of it teaches |
| ---: | --- | --- |
| 40 % | clean: the expert's plan, then "Done." | the right call |
| 20 % | wrong arguments: one slot of the call (a word, a number, a folder) is replaced by another value of the training vocabulary, then "Done." | to write the wrong names |
| 10 % | malformed: the first call's arguments are not valid JSON; after the tool's error, the right call | to emit broken calls |
| 15 % | abandoned: the answer is prose with a code block and no tool call | to talk instead of act |
| 15 % | failed: it reads the file it should write, gets an error, and gives up | to give up |

No reviewer corrects these episodes. The demo collects the uncurated pool with it (the rollout asks
for the model `NOISY_MODEL`), to compare LIMI's curation with training on more, uncurated data.
It is a scripted stand-in for a weaker policy, not a model.
"""

from __future__ import annotations

import hashlib
import json

from limi_evaluator import basics
from limi_testing.expert import expert_reply
from limi_testing.scripted_policy import Reply

NOISY_MODEL = "scripted-noisy"
GROUPS = (("clean", 40), ("wrong-arguments", 20), ("malformed", 10), ("abandoned", 15), ("failed", 15))
DONE = "Done. The task is complete."
GAVE_UP = "I could not find the file, so I cannot finish this task."


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def group_of(query: str) -> str:
    bucket = int(hashlib.sha256(("noisy:" + query.strip()).encode()).hexdigest()[:8], 16) % 100
    for name, share in GROUPS:
        if bucket < share:
            return name
        bucket -= share
    return GROUPS[0][0]


def _wrong(step: basics.ToolStep, query: str) -> basics.ToolStep:
    """The same call with one slot value swapped for another value of the training vocabulary."""
    vocabulary = basics.VOCABULARIES["train"]
    salt = int(hashlib.sha256(("wrong:" + query).encode()).hexdigest()[:8], 16)
    text = json.dumps(step.arguments)
    words = [w for w in vocabulary.words if w in text]
    if words:
        victim = words[salt % len(words)]
        replacement = [w for w in vocabulary.words if w not in text][salt % (len(vocabulary.words) - len(words))]
        return basics.ToolStep(step.name, json.loads(text.replace(victim, replacement)))
    digits = [d for d in "0123456789" if d in text]
    if digits:
        return basics.ToolStep(step.name, json.loads(text.replace(digits[0], str((int(digits[0]) + 1) % 10))))
    return step


def noisy_reply(body: dict) -> Reply:
    messages = body.get("messages") or []
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    query = _text(messages[users[0]]) if users else ""
    plan = basics.plan_for(query)
    group = group_of(query)
    if plan is None or group == "clean":
        return expert_reply(body)
    made = [m for m in messages[users[-1] + 1 :] if m.get("role") == "tool"]
    if group == "abandoned":
        code = "\n".join(json.dumps(step.arguments, indent=2) for step in plan)
        return Reply(content=f"Here is how you can do it:\n```\n{code}\n```\nRun this in your workspace.")
    if group == "failed":
        if not made:
            path = plan[0].arguments.get("path") or "."
            return Reply(tool_calls=(("read_file", json.dumps({"path": path})),))
        return Reply(content=GAVE_UP)
    if group == "malformed":
        if not made:
            step = plan[0]
            return Reply(tool_calls=((step.name, step.arguments_json().replace('"', "'").rstrip("}")),))
        made = made[1:]  # the broken call does not count
    else:  # wrong arguments
        plan = [_wrong(plan[0], query), *plan[1:]]
    if len(made) < len(plan):
        step = plan[len(made)]
        return Reply(tool_calls=((step.name, step.arguments_json()),))
    return Reply(content=DONE)
