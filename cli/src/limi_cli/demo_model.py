"""The demo's base model: the tiny Qwen2-style model with a tokenizer that knows the demo's domain.

`build_demo_model(directory)` builds (or reuses, when the directory holds the same spec) the
tiny model of limi_trainer.tiny with its BPE tokenizer also trained on the demo's text: the
sandbox's tool schemas, the rollout's system prompt and the words of the workspace-basics
family. Without that, `kepler.txt` is nine tokens and a demo sample about 2,450; with it, three
tokens and about 1,250, half the tokens to fine-tune on. The weights are random: the model
knows nothing of the tasks, and (as the README says) it does not learn from 78 samples to copy
a new task's names into its tool calls.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from limi_evaluator import basics
from limi_rollout.settings import DEFAULT_SYSTEM_PROMPT
from limi_sandbox.tools import tools_json
from limi_trainer.tiny import TinySpec, build_tiny_model, is_built

DEMO_MODEL_NAME = "limi-tiny-demo"


def domain_corpus() -> tuple[str, ...]:
    """Tokenizer text: the tool schemas, the system prompt, and the family's words in many combinations."""
    texts = [DEFAULT_SYSTEM_PROMPT, *tools_json(), json.dumps([json.loads(t) for t in tools_json()])]
    words = [w for v in basics.VOCABULARIES.values() for w in v.words]
    folders = [f for v in basics.VOCABULARIES.values() for f in (*v.folders, v.source_folder)]
    for i, word in enumerate(words):
        other = words[(i * 7 + 3) % len(words)]
        folder = folders[i % len(folders)]
        texts += [
            f"{folder}/{word}.txt",
            f"{word}.py",
            f"{word}_add {word}_sub {word}_mul {word}_twice",
            f"The {word} report mentions {other} once.",
            f"from {word} import {other}_mul",
            f"{word} {i * 4}",
        ]
    return tuple(texts * 4)


def demo_spec() -> TinySpec:
    return dataclasses.replace(TinySpec(), vocab_size=2048, extra_corpus=domain_corpus())


def build_demo_model(directory: pathlib.Path) -> tuple[pathlib.Path, bool]:
    """The demo's base model in `directory`, and whether it had to be built (missing or of another spec)."""
    spec = demo_spec()
    if is_built(directory, spec):
        return directory, False
    return build_tiny_model(directory, spec), True
