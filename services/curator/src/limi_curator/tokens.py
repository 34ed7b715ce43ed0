"""Token counts for diffs and training samples, with a real tokenizer or a documented fallback.

With a path to a `tokenizer.json` (the file every Hugging Face fast tokenizer ships) the count is
exact for that tokenizer, through the `tokenizers` library (no torch, no transformers). Without
one, `WordPunctFallback` counts runs of word characters and single punctuation marks
(`\\w+|[^\\w\\s]`): close to a BPE count on English prose, a slight undercount on code with long
identifiers. The counter's `name` ("tokenizer.json:<path>" or "fallback:word-punct") is what a
dataset's `tokenizer` field records.

`render_for_counting` approximates a chat template (ChatML with tools in the system turn and
`<tool_call>` blocks, the Qwen/Hermes form) so that a sample's count includes role markers and
tool-call JSON, as LIMI's 125k limit "after the chat template" does. It does not apply a model's
own Jinja template.
"""

from __future__ import annotations

import json
import pathlib
import re
import threading
from typing import Protocol

from tokenizers import Tokenizer

from limi_core.errors import InvalidArgument

FALLBACK_NAME = "fallback:word-punct"
_WORD_PUNCT = re.compile(r"\w+|[^\w\s]")


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class WordPunctFallback:
    """Counts word runs and punctuation marks; used only when no tokenizer.json is given."""

    name = FALLBACK_NAME

    def count(self, text: str) -> int:
        return sum(1 for _ in _WORD_PUNCT.finditer(text))


class TokenizerFile:
    """Exact counts with a tokenizer.json."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.name = f"tokenizer.json:{path}"
        self._tokenizer = Tokenizer.from_file(str(path))

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


_loaded: dict[pathlib.Path, TokenizerFile] = {}
_loading = threading.Lock()


def load_token_counter(path: str | pathlib.Path | None, field: str = "tokenizer") -> TokenCounter:
    """The counter for `path` (a tokenizer.json, or a directory holding one), else the fallback.

    Raises:
        InvalidArgument: `path` is given but holds no readable tokenizer.json; names `field`.
    """
    if path is None or str(path) == "":
        return WordPunctFallback()
    resolved = pathlib.Path(path).expanduser()
    if resolved.is_dir():
        resolved = resolved / "tokenizer.json"
    if not resolved.is_file():
        raise InvalidArgument(field, f"{str(path)!r} is not a tokenizer.json file or a directory holding one")
    resolved = resolved.resolve()
    with _loading:
        if resolved not in _loaded:
            try:
                _loaded[resolved] = TokenizerFile(resolved)
            except Exception as exc:  # the tokenizers library raises plain Exception on a bad file
                raise InvalidArgument(field, f"{str(path)!r} is not a valid tokenizer.json: {exc}") from None
        return _loaded[resolved]


def render_for_counting(sample: dict) -> str:
    """A LIMI sample as ChatML text: tools in the system turn, tool calls as <tool_call> JSON."""
    parts = []
    tools = sample.get("tools") or []
    messages = sample.get("messages") or []
    system_done = False
    for message in messages:
        role = message.get("role", "")
        content = message.get("content") or ""
        if role == "system" and not system_done and tools:
            content = (
                content
                + "\n\n# Tools\n<tools>\n"
                + "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
                + "\n</tools>"
            )
            system_done = True
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            content += (
                "\n<tool_call>\n"
                + json.dumps({"name": function.get("name"), "arguments": function.get("arguments")}, ensure_ascii=False)
                + "\n</tool_call>"
            )
        if role == "tool":
            content = "<tool_response>\n" + content + "\n</tool_response>"
        parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
    if tools and not system_done:
        parts.insert(
            0,
            "<|im_start|>system\n# Tools\n<tools>\n"
            + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
            + "\n</tools><|im_end|>\n",
        )
    return "".join(parts)
