"""The demo's base model: the tiny Qwen2-style model with a tokenizer that knows the demo's domain.

`build_demo_model(directory)` builds (or reuses, when the directory holds the same spec) the
tiny model of limi_trainer.tiny with its BPE tokenizer also trained on the demo's text: the
sandbox's tool schemas, the rollout's system prompt and the words of the workspace-basics
family. Without that, a file name such as `kepler.txt` is five tokens and the tool schemas are
two thousand; with it, they are one and a few hundred, which makes fine-tuning on CPU about
twice as fast and copying names from the task into a tool call learnable at all. Then, when
`pretrain_steps` is set, it pretrains the model on a generic copying corpus (random word
sequences repeated after a separator; no task text, no tool calls) so that the base model can
copy before it is fine-tuned, as any pretrained model can. It knows nothing of the demo's tasks
beyond the words; the fine-tune teaches those.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable

from limi_evaluator import basics
from limi_rollout.settings import DEFAULT_SYSTEM_PROMPT
from limi_sandbox.tools import tools_json
from limi_trainer.tiny import TinySpec, build_tiny_model, is_built

DEMO_MODEL_NAME = "limi-tiny-demo"


def domain_corpus() -> tuple[str, ...]:
    """Tokenizer text: the tool schemas, the system prompt, and the family's words in many combinations."""
    texts = [DEFAULT_SYSTEM_PROMPT, *tools_json(), json.dumps([json.loads(t) for t in tools_json()])]
    words, folders = basics.WORDS, basics.FOLDERS
    for i, word in enumerate(words):
        other = words[(i * 7 + 3) % len(words)]
        folder = folders[i % len(folders)]
        texts += [f"{folder}/{word}.txt", f"{word}.py", f"{word}_add {word}_sub {word}_mul {word}_twice",
                  f"The {word} report mentions {other} once.", f"from {word} import {other}_mul", f"{word} {i * 4}"]
    return tuple(texts * 4)


def demo_spec() -> TinySpec:
    return dataclasses.replace(TinySpec(), vocab_size=2048, extra_corpus=domain_corpus())


def build_demo_model(directory: pathlib.Path, say: Callable[[str], None] = lambda _: None) -> tuple[pathlib.Path, bool]:
    """The demo's base model in `directory`, and whether it had to be built (missing or of another spec)."""
    spec = demo_spec()
    if is_built(directory, spec):
        return directory, False
    return build_tiny_model(directory, spec), True
