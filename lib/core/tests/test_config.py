"""Config from the environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import ClassVar

import pytest

from limi_core.config import ConfigError, load_config
from limi_core.settings import ServiceSettings


@dataclasses.dataclass(frozen=True)
class ExampleSettings(ServiceSettings):
    PREFIX: ClassVar[str] = "LIMI_EXAMPLE_"

    episodes: int = 4
    temperature: float = 0.6
    dry_run: bool = False
    models: tuple[str, ...] = ("a",)
    endpoint: str | None = None


def test_defaults_need_no_environment():
    settings = load_config(ExampleSettings, ExampleSettings.PREFIX, {})
    assert settings.episodes == 4 and settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.endpoint is None


def test_values_are_parsed_by_type_and_shared_fields_use_the_limi_prefix():
    settings = load_config(
        ExampleSettings,
        ExampleSettings.PREFIX,
        {
            "LIMI_EXAMPLE_EPISODES": "8",
            "LIMI_EXAMPLE_TEMPERATURE": "0.2",
            "LIMI_EXAMPLE_DRY_RUN": "yes",
            "LIMI_EXAMPLE_MODELS": "x, y,",
            "LIMI_EXAMPLE_ENDPOINT": "http://127.0.0.1:8000/v1",
            "LIMI_NATS_URL": "nats://10.0.0.1:4222",
            "LIMI_DATA_DIR": "~/limi-data",
            "LIMI_EXAMPLE_NATS_URL": "ignored: nats_url is shared",
        },
    )
    assert (settings.episodes, settings.temperature, settings.dry_run, settings.models) == (8, 0.2, True, ("x", "y"))
    assert settings.endpoint == "http://127.0.0.1:8000/v1"
    assert settings.nats_url == "nats://10.0.0.1:4222"
    assert settings.data_dir == pathlib.Path.home() / "limi-data"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.episodes = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("LIMI_EXAMPLE_EPISODES", "many", "environment variable LIMI_EXAMPLE_EPISODES must be an integer, got 'many'"),
        (
            "LIMI_EXAMPLE_TEMPERATURE",
            "hot",
            "environment variable LIMI_EXAMPLE_TEMPERATURE must be a number, got 'hot'",
        ),
        (
            "LIMI_EXAMPLE_DRY_RUN",
            "maybe",
            "environment variable LIMI_EXAMPLE_DRY_RUN must be true or false, got 'maybe'",
        ),
        (
            "LIMI_EXAMPLE_GRPC_ADDRESS",
            "50051",
            "environment variable LIMI_EXAMPLE_GRPC_ADDRESS must be HOST:PORT, got '50051'",
        ),
        (
            "LIMI_NATS_URL",
            "http://x",
            "environment variable LIMI_NATS_URL must start with nats:// or tls://, got 'http://x'",
        ),
        ("LIMI_SHUTDOWN_GRACE_SECONDS", "-1", "environment variable LIMI_SHUTDOWN_GRACE_SECONDS must not be negative"),
    ],
)
def test_a_bad_value_names_its_variable(variable, value, message):
    with pytest.raises(ConfigError) as caught:
        load_config(ExampleSettings, ExampleSettings.PREFIX, {variable: value})
    assert str(caught.value) == message
    assert caught.value.variable == variable


def test_a_field_without_default_must_be_set():
    @dataclasses.dataclass(frozen=True)
    class NeedsModel:
        model: str

    with pytest.raises(ConfigError, match="environment variable LIMI_X_MODEL must be set"):
        load_config(NeedsModel, "LIMI_X_", {})
    assert load_config(NeedsModel, "LIMI_X_", {"LIMI_X_MODEL": "qwen"}).model == "qwen"
