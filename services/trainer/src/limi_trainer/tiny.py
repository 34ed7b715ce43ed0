"""A tiny, deterministic base model and tokenizer built locally: no downloads, same bytes every time.

`build_tokenizer(family)` trains a byte-level BPE tokenizer on a few KB of built-in text (code,
prose, tool-call JSON) and wraps it as a `PreTrainedTokenizerFast` carrying one of the chat
templates in chat_templates.py. `build_tiny_model(directory)` writes a randomly initialised
Qwen2-style causal LM (hidden 128, 2 layers, head_dim 32: sizes vLLM's CPU backend serves) with
that tokenizer in Hugging Face format, and reuses the directory when it already holds the same
spec. Tests, the demo and the evaluator use it as a small base model; it knows nothing until
trained. It does not download, and it is not a model of any real family's weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile

from limi_trainer.chat_templates import FAMILIES, TemplateFamily

MARKER = "limi-tiny.json"
# The base-model name that means "the tiny model", built on first use under `models_dir()`.
TINY_MODEL_NAME = "limi-tiny"

_PROSE = """\
The agent reads the repository, runs the tests, and fixes the failing function before it reports back.
A careful engineer writes a small test first, then changes the code, then runs every test again.
Please list the files in the project directory and show me the contents of the configuration file.
The build failed because a dependency was missing; install it and try the command once more.
Summarise what changed, why it changed, and how you verified that the change works as intended.
Open the file, find the bug in the loop, replace the off-by-one index and save the file.
The user asked for a command line tool that counts words in a text file and prints the total.
Search the code for the function name, read its callers, and explain the data flow step by step.
"""

_CODE = """\
def count_words(path):
    with open(path) as handle:
        return sum(len(line.split()) for line in handle)

class TaskManager:
    def __init__(self):
        self.tasks = []

    def add(self, title, priority=0):
        self.tasks.append({"title": title, "priority": priority})
        return len(self.tasks)

for index in range(10):
    if index % 2 == 0:
        print(index, "even")
    else:
        print(index, "odd")

import json, os, sys
result = json.loads(sys.stdin.read())
print(os.path.join("src", "main.py"), result["status"])
"""

_TOOL_NAMES = ("read_file", "write_file", "run_command", "list_directory", "search_code", "get_weather", "finish")
_ARGUMENT_VALUES = (
    "src/main.py",
    "README.md",
    "pytest -q",
    "ls -la",
    "tests/test_app.py",
    "Paris",
    "done",
    "count_words",
    "python3 app.py",
)


def training_corpus() -> list[str]:
    """The fixed text the BPE tokenizer is trained on."""
    lines = _PROSE.splitlines() + _CODE.splitlines()
    for i, name in enumerate(_TOOL_NAMES):
        for j, value in enumerate(_ARGUMENT_VALUES):
            key = ("path", "command", "query", "city", "text")[(i + j) % 5]
            lines.append(json.dumps({"name": name, "arguments": {key: value}}))
            lines.append(
                f"<tool_call>\n{json.dumps({'name': name, 'arguments': {key: value, 'line': i * 7 + j}})}\n</tool_call>"
            )
            lines.append(f"<tool_response>\nexit code {j % 3}: {value} ok, {i + j} lines\n</tool_response>")
    return lines * 3


def build_tokenizer(family: str = "chatml", vocab_size: int = 1024, extra_corpus: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer with the family's special tokens and chat template.

    Args:
        family: "chatml", "llama3" or "glm" (see chat_templates.FAMILIES).
        vocab_size: Target vocabulary size of the BPE merges (special tokens come on top).
        extra_corpus: More text to learn merges from (a domain's words, tool schemas).

    Returns:
        A `transformers.PreTrainedTokenizerFast`.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = _family(family)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus() + list(extra_corpus), trainer=trainer)
    tokenizer.add_tokens([AddedToken(token, normalized=False, special=False) for token in spec.extra_tokens])
    named = {spec.eos_token, spec.pad_token, spec.bos_token}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=spec.bos_token,
        eos_token=spec.eos_token,
        pad_token=spec.pad_token,
        additional_special_tokens=[token for token in spec.special_tokens if token not in named],
        chat_template=spec.template,
        model_max_length=1 << 20,
    )


@dataclasses.dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model; the defaults learn a tool-call format from SFT in seconds on CPU."""

    family: str = "chatml"
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32
    max_positions: int = 8192
    seed: int = 0
    # More tokenizer training text (the digest covers it, so a different corpus is another model).
    extra_corpus: tuple[str, ...] = ()

    def digest(self) -> str:
        fields = dataclasses.asdict(self)
        corpus = fields.pop("extra_corpus")
        if corpus:  # a model without one keeps the digest it always had
            fields["extra_corpus"] = hashlib.sha256("\n".join(corpus).encode()).hexdigest()
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def build_tiny_model(directory: os.PathLike | str, spec: TinySpec = TinySpec()) -> pathlib.Path:
    """Write (or reuse) a tiny Qwen2-style model with its tokenizer in Hugging Face format.

    The directory is built under a temporary name and renamed into place, so a concurrent or
    interrupted build never leaves a half-written model behind.

    Args:
        directory: Where the model lives; reused when it holds a model of the same `spec`.
        spec: The model's sizes, template family and initialisation seed.

    Returns:
        The model directory (config.json, model.safetensors, tokenizer files).
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    target = pathlib.Path(directory)
    if _matches(target, spec):
        return target
    tokenizer = build_tokenizer(spec.family, spec.vocab_size, spec.extra_corpus)
    family = _family(spec.family)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(family.bos_token) if family.bos_token else None,
        eos_token_id=tokenizer.convert_tokens_to_ids(family.eos_token),
        pad_token_id=tokenizer.convert_tokens_to_ids(family.pad_token),
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(spec.seed)
    try:
        model = Qwen2ForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(token) for token in family.stop_tokens],
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        described = {**dataclasses.asdict(spec), "extra_corpus": f"{len(spec.extra_corpus)} texts"}
        (staging / MARKER).write_text(json.dumps({"digest": spec.digest(), "spec": described}, indent=2))
        if target.exists() and not _matches(target, spec):
            shutil.rmtree(target)
        try:
            os.rename(staging, target)
        except OSError:
            if not _matches(target, spec):  # not a concurrent build of the same spec
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def models_dir() -> pathlib.Path:
    """Where named local models live: $LIMI_TRAINER_MODELS_DIR, else ~/.cache/limi/models."""
    return pathlib.Path(
        os.environ.get("LIMI_TRAINER_MODELS_DIR") or pathlib.Path.home() / ".cache" / "limi" / "models"
    ).expanduser()


def resolve_base_model(name: str) -> str:
    """A base model's path: `limi-tiny` becomes the tiny model (built if missing); others pass through."""
    if name == TINY_MODEL_NAME:
        return str(build_tiny_model(models_dir() / TINY_MODEL_NAME))
    return name


def is_built(directory: os.PathLike | str, spec: TinySpec = TinySpec()) -> bool:
    """Whether `directory` already holds the model of `spec` (build_tiny_model would reuse it)."""
    return _matches(pathlib.Path(directory), spec)


def _matches(directory: pathlib.Path, spec: TinySpec) -> bool:
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("digest") == spec.digest() and (directory / "model.safetensors").exists()


def _family(name: str) -> TemplateFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown template family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
