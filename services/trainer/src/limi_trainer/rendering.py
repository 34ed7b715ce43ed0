"""Render a LIMI sample through the model's own chat template into token ids and an exact loss mask.

The mask trains every token an assistant turn generates, including the token that ends the turn,
and nothing else: system, user and tool messages, tool schemas and the template's scaffolding
(role headers, the generation prompt) stay untrained. It is found by rendering the conversation
prefix by prefix, the way a policy meets it at inference time:

- `prompt_i`: the messages before assistant turn i plus the generation prompt. It must be a
  prefix of the whole conversation's text, and its token ids a prefix of the whole
  conversation's ids; otherwise the model would be trained on a context it never sees.
- `through_i`: the messages up to and including turn i. What follows `prompt_i` up to the first
  stop token (`<|im_end|>`, `<|eot_id|>`) is the turn. Templates with no end-of-turn token
  (GLM) end the turn with the next role token (`<|observation|>`, `<|user|>`), which is then
  trained; after the last turn the tokenizer's eos token is appended and trained.

Any rendering that breaks these properties raises `AmbiguousRendering` naming the message and
the reason: a template that rewrites earlier turns once later ones follow (e.g. drops past
reasoning), a token that crosses the turn boundary, message text that contains a special token,
a turn with no end-of-turn token. Nothing is silently mis-masked. This module does not truncate,
pack or drop samples (see dataset.py and packing.py).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from limi.trajectory.v1 import trajectory_pb2
from limi_core import limi_format
from limi_core.errors import InvalidArgument


class AmbiguousRendering(InvalidArgument):
    """The chat template's rendering of a sample gives no exact assistant mask; `field` says where."""


@dataclasses.dataclass(frozen=True)
class RenderedSample:
    """One conversation as token ids with its loss mask.

    Attributes:
        input_ids: The token ids of the whole rendered conversation.
        loss_mask: 1 where the token is trained (assistant output), else 0; same length.
        assistant_spans: [start, end) token ranges of the trained turns, in order.
    """

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]
    assistant_spans: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(self.loss_mask)


def default_stop_tokens(tokenizer, generation_config=None) -> tuple[str, ...]:
    """The tokens that end a generation: the generation config's eos ids, else the tokenizer's eos."""
    ids = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if ids is None:
        ids = []
    elif isinstance(ids, int):
        ids = [ids]
    tokens = [tokenizer.convert_ids_to_tokens(i) for i in ids]
    if tokenizer.eos_token and tokenizer.eos_token not in tokens:
        tokens.append(tokenizer.eos_token)
    if not tokens:
        raise ValueError("the tokenizer has no eos token and no stop tokens were given")
    return tuple(tokens)


def render_trajectory(
    tokenizer, trajectory: trajectory_pb2.Trajectory, stop_tokens: tuple[str, ...] | None = None
) -> RenderedSample:
    """Render a `Trajectory` proto (through its LIMI form) into ids and a loss mask."""
    return render_sample(tokenizer, limi_format.trajectory_to_limi(trajectory, strict=True), stop_tokens)


def render_sample(tokenizer, sample: dict, stop_tokens: tuple[str, ...] | None = None) -> RenderedSample:
    """Render a LIMI sample (`{"tools": [...], "messages": [...]}`) into ids and a loss mask.

    Args:
        tokenizer: A fast Hugging Face tokenizer with a chat template.
        sample: The LIMI sample; extra keys (such as `limi`) are ignored.
        stop_tokens: Tokens that end an assistant turn; `default_stop_tokens(tokenizer)` if None.

    Raises:
        AmbiguousRendering: The template's rendering allows no exact mask (`field`, `reason`).
        InvalidLimiSample: The sample does not follow the LIMI schema.
    """
    stop_tokens = stop_tokens or default_stop_tokens(tokenizer)
    messages, tools = _chat_messages(sample)
    _reject_special_text(tokenizer, messages, tools)
    render = _Renderer(tokenizer, tools)
    full = render(messages, generation_prompt=False)
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoding["input_ids"]), list(encoding["offset_mapping"])
    mask = [0] * len(ids)
    spans: list[tuple[int, int]] = []
    turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if not turns:
        raise AmbiguousRendering("messages", "no assistant message: nothing to train on")
    for i in turns:
        prompt, end_char, append_eos = _turn_chars(render, messages, i, full, stop_tokens)
        prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        start = len(prompt_ids)
        if ids[:start] != prompt_ids:
            raise AmbiguousRendering(
                f"messages[{i}]",
                "the generation prompt's token ids are not a prefix of the conversation's ids (a token crosses the start of the assistant turn)",
            )
        end = _token_end(offsets, end_char, i)
        if append_eos:
            ids.append(tokenizer.convert_tokens_to_ids(tokenizer.eos_token))
            mask.append(0)
            end = len(ids)
        for t in range(start, end):
            mask[t] = 1
        spans.append((start, end))
    return RenderedSample(tuple(ids), tuple(mask), tuple(spans))


class _Renderer:
    def __init__(self, tokenizer, tools: list | None) -> None:
        self._tokenizer, self._tools = tokenizer, tools

    def __call__(self, messages: list[dict], *, generation_prompt: bool) -> str:
        if not messages and not generation_prompt:
            return ""
        text = self._tokenizer.apply_chat_template(
            messages, tools=self._tools, tokenize=False, add_generation_prompt=generation_prompt
        )
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected text")
        return text


def _turn_chars(
    render: _Renderer, messages: list[dict], i: int, full: str, stop_tokens: tuple[str, ...]
) -> tuple[str, int, bool]:
    """Assistant turn i in `full`: its prompt (a prefix of `full`), the character where the turn
    ends, and whether eos must be appended after it."""
    field = f"messages[{i}]"
    prompt = render(messages[:i], generation_prompt=True)
    if not full.startswith(prompt):
        raise AmbiguousRendering(
            field,
            "the conversation before this assistant turn renders differently once later messages follow (the template rewrites or drops earlier text), so no prefix of the whole rendering is this turn's prompt",
        )
    through = render(messages[: i + 1], generation_prompt=False)
    if not through.startswith(prompt):
        raise AmbiguousRendering(field, "the rendered turn does not continue the template's generation prompt")
    turn = through[len(prompt) :]
    if not turn:
        raise AmbiguousRendering(field, "the template renders nothing for this assistant message")
    _check_turn_shows_message(turn, messages[i], field)
    stop_at = [(turn.find(token), token) for token in stop_tokens if token in turn]
    if stop_at:
        position, token = min(stop_at)
        end = len(prompt) + position + len(token)
        if full[len(prompt) : end] != turn[: position + len(token)]:
            raise AmbiguousRendering(field, "this assistant turn renders differently once later messages follow")
        return prompt, end, False
    # No end-of-turn token inside the turn (GLM style): the next role token ends it.
    if not full.startswith(turn, len(prompt)):
        raise AmbiguousRendering(field, "this assistant turn renders differently once later messages follow")
    after = len(prompt) + len(turn)
    rest = full[after:]
    gap = len(rest) - len(rest.lstrip())
    if not rest.strip():
        return prompt, len(full), True
    following = [token for token in stop_tokens if rest.startswith(token, gap)]
    if not following:
        raise AmbiguousRendering(field, f"no end-of-turn token ({', '.join(stop_tokens)}) ends this assistant turn")
    return prompt, after + gap + len(following[0]), False


def _token_end(offsets: list, end_char: int, i: int) -> int:
    """The index after the token that ends at `end_char`."""
    for t, (_start, stop) in enumerate(offsets):
        if stop == end_char:
            if t + 1 < len(offsets) and offsets[t + 1][0] < end_char:
                break
            return t + 1
        if stop > end_char:
            break
    raise AmbiguousRendering(f"messages[{i}]", "a token crosses the end of the assistant turn")


def _check_turn_shows_message(turn: str, message: dict, field: str) -> None:
    content = (message.get("content") or "").strip()
    if content and content not in turn:
        raise AmbiguousRendering(
            f"{field}.content",
            "the template does not render this message's content verbatim (it rewrites or drops part of it)",
        )
    for j, call in enumerate(message.get("tool_calls") or []):
        name = call["function"]["name"]
        if name not in turn:
            raise AmbiguousRendering(f"{field}.tool_calls[{j}]", f"the template does not render the call to {name!r}")


def _chat_messages(sample: dict) -> tuple[list[dict], list | None]:
    """The sample's messages in the form chat templates expect, after schema validation."""
    trajectory = limi_format.limi_to_trajectory({key: sample[key] for key in ("tools", "messages") if key in sample})
    messages: list[dict[str, Any]] = []
    for step in trajectory.steps:
        if step.role == trajectory_pb2.ROLE_TOOL:
            messages.append(
                {"role": "tool", "content": step.tool_result.output, "tool_call_id": step.tool_result.tool_call_id}
            )
            continue
        role = {
            trajectory_pb2.ROLE_SYSTEM: "system",
            trajectory_pb2.ROLE_USER: "user",
            trajectory_pb2.ROLE_ASSISTANT: "assistant",
        }[step.role]
        message: dict[str, Any] = {"role": role, "content": step.content}
        if step.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments(call.arguments_json)},
                }
                for call in step.tool_calls
            ]
        messages.append(message)
    tools = [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": json.loads(spec.parameters_json or "{}"),
            },
        }
        for spec in trajectory.tools
    ]
    return messages, tools or None


def _arguments(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


def _reject_special_text(tokenizer, messages: list[dict], tools: list | None) -> None:
    """Message text that contains a special token would tokenize as template structure."""
    specials = [token for token in tokenizer.all_special_tokens if token]
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials += [
        token.content for token in added.values() if getattr(token, "special", False) and token.content not in specials
    ]
    for i, message in enumerate(messages):
        texts = {"content": message.get("content") or ""}
        for j, call in enumerate(message.get("tool_calls") or []):
            texts[f"tool_calls[{j}]"] = call["function"]["name"] + json.dumps(
                call["function"]["arguments"], ensure_ascii=False
            )
        for name, text in texts.items():
            for token in specials:
                if token in text:
                    raise AmbiguousRendering(
                        f"messages[{i}].{name}",
                        f"contains the special token {token!r}, which would tokenize as template structure",
                    )
    if tools:
        text = json.dumps(tools, ensure_ascii=False)
        for token in specials:
            if token in text:
                raise AmbiguousRendering("tools", f"contain the special token {token!r}")
