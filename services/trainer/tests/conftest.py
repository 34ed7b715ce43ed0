"""Fixtures of the trainer tests: the tiny base model (built once per session) and a JSONL writer."""

from __future__ import annotations

import pathlib

import pytest

from limi_core.limi_format import dumps_sample
from limi_trainer.tiny import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> pathlib.Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "limi-tiny")


@pytest.fixture
def write_jsonl():
    """write_jsonl(path, samples) writes LIMI samples one per line and returns the path."""

    def write(path: pathlib.Path, samples: list[dict]) -> pathlib.Path:
        path.write_text("".join(dumps_sample(sample) + "\n" for sample in samples), encoding="utf-8")
        return path

    return write
