"""The tiny local base model: deterministic bytes, reuse of a built directory, hermes-style tool calls."""

from __future__ import annotations

import json
import re

from limi_trainer.tiny import TINY_MODEL_NAME, TinySpec, build_tiny_model, build_tokenizer, resolve_base_model


def test_building_twice_gives_the_same_bytes(tmp_path, tiny_model):
    again = build_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "generation_config.json"):
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes(), name
    stamp = (again / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tmp_path / "again") == again and (again / "model.safetensors").stat().st_mtime_ns == stamp
    other = build_tiny_model(tmp_path / "again", TinySpec(seed=1))
    assert (other / "model.safetensors").read_bytes() != (tiny_model / "model.safetensors").read_bytes()


def test_config_fits_vllm_cpu_and_stops_at_the_end_of_turn(tiny_model):
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["head_dim"] == 32 and config["hidden_size"] == 128 and config["num_hidden_layers"] == 2
    generation = json.loads((tiny_model / "generation_config.json").read_text())
    tokenizer = build_tokenizer("chatml")
    assert generation["eos_token_id"] == [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]


def test_tool_calls_render_in_the_hermes_format():
    tokenizer = build_tokenizer("chatml")
    call = {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": {"path": "src/main.py"}}}
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Read it"}, {"role": "assistant", "content": "", "tool_calls": [call]}],
        tokenize=False,
    )
    found = re.findall(r"<tool_call>(.*?)</tool_call>", text, re.S)
    assert [json.loads(body) for body in found] == [{"name": "read_file", "arguments": {"path": "src/main.py"}}]
    assert tokenizer.convert_ids_to_tokens(tokenizer("<tool_call>", add_special_tokens=False)["input_ids"]) == [
        "<tool_call>"
    ]


def test_the_limi_tiny_name_builds_under_the_models_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("LIMI_TRAINER_MODELS_DIR", str(tmp_path / "models"))
    path = resolve_base_model(TINY_MODEL_NAME)
    assert (
        path == str(tmp_path / "models" / TINY_MODEL_NAME)
        and (tmp_path / "models" / TINY_MODEL_NAME / "model.safetensors").is_file()
    )
    assert resolve_base_model("/some/other/model") == "/some/other/model"
