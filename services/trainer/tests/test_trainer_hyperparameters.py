"""Presets, overrides with named errors, the learning-rate schedule and the DeepSpeed configs."""

from __future__ import annotations

import pytest
import torch

from limi_core.errors import InvalidArgument
from limi_trainer import hyperparameters
from limi_trainer.engine import deepspeed_config, learning_rate_factor, parameter_groups, training_dtype


def test_the_limi_preset_is_the_papers_recipe():
    hp = hyperparameters.PRESETS["limi"]
    assert (hp.learning_rate, hp.min_learning_rate, hp.epochs, hp.global_batch_size) == (1e-5, 1e-6, 4, 64)
    assert (hp.weight_decay, hp.adam_beta1, hp.adam_beta2) == (0.1, 0.9, 0.98)
    assert hp.zero_stage == 3 and hp.offload_optimizer and hp.gradient_checkpointing and hp.precision == "auto"
    assert hp.warmup_ratio > 0 and hp.max_sample_tokens == 125_000 and hp.pack_tokens == 131_072


def test_overrides_are_typed_and_bad_ones_name_their_key():
    hp = hyperparameters.resolve(
        "limi", {"learning_rate": "2e-5", "epochs": "2", "offload_optimizer": "false", "precision": "bf16"}
    )
    assert (hp.learning_rate, hp.epochs, hp.offload_optimizer, hp.precision) == (2e-5, 2, False, "bf16")
    cases = {
        ("limi", "learning_rat", "1"): "hyperparameters.learning_rat",
        ("limi", "epochs", "two"): "hyperparameters.epochs",
        ("limi", "zero_stage", "4"): "hyperparameters.zero_stage",
        ("limi", "min_learning_rate", "1"): "hyperparameters.min_learning_rate",
        ("limi", "max_sample_tokens", "200000"): "hyperparameters.max_sample_tokens",
        ("limi", "offload_optimizer", "maybe"): "hyperparameters.offload_optimizer",
    }
    for (preset, key, value), field in cases.items():
        with pytest.raises(InvalidArgument) as error:
            hyperparameters.resolve(preset, {key: value})
        assert error.value.field == field
    with pytest.raises(InvalidArgument) as error:
        hyperparameters.resolve("huge", {})
    assert error.value.field == "preset"
    with pytest.raises(InvalidArgument) as error:
        hyperparameters.resolve("limi", {"zero_stage": "0"})  # the limi preset offloads the optimizer: needs ZeRO
    assert error.value.field == "hyperparameters.offload_optimizer"
    assert hyperparameters.resolve("tiny-cpu", {"zero_stage": "0"}).zero_stage == 0


def test_round_trip_through_strings():
    hp = hyperparameters.resolve("tiny-cpu", {"seed": "9", "warmup_ratio": "0.25"})
    assert hyperparameters.from_strings(hp.as_strings()) == hp


def test_learning_rate_warms_up_then_decays_to_the_minimum():
    hp = hyperparameters.resolve("limi", {"warmup_ratio": "0.2"})
    factors = [learning_rate_factor(step, 10, hp) for step in range(10)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))
    assert factors[-1] == pytest.approx(hp.min_learning_rate / hp.learning_rate)


def test_deepspeed_configs_for_cpu_and_gpu():
    limi = hyperparameters.PRESETS["limi"]
    gpu = deepspeed_config(limi, world_size=64, dtype=training_dtype(limi, on_gpu=True))
    assert gpu["bf16"] == {"enabled": True} and gpu["communication_data_type"] == "fp32"
    assert gpu["zero_optimization"]["stage"] == 3 and gpu["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert gpu["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert gpu["train_batch_size"] == 64 and gpu["gradient_clipping"] == 1.0
    cpu_hp = hyperparameters.resolve("tiny-cpu", {"zero_stage": "2"})
    cpu = deepspeed_config(cpu_hp, world_size=1, dtype=training_dtype(cpu_hp, on_gpu=False))
    assert (
        "bf16" not in cpu
        and cpu["zero_optimization"]["stage"] == 2
        and "offload_optimizer" not in cpu["zero_optimization"]
    )
    assert training_dtype(limi, on_gpu=False) == torch.float32


def test_weight_decay_skips_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decayed, plain = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and [p.shape for p in decayed["params"]] == [torch.Size([4, 4])]
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 3


def test_service_settings_name_the_bad_variable():
    from limi_core.config import ConfigError, load_config
    from limi_trainer.settings import TrainerSettings

    settings = load_config(
        TrainerSettings,
        TrainerSettings.PREFIX,
        {"LIMI_TRAINER_PRESET": "limi", "LIMI_TRAINER_GPUS_PER_RUN": "8", "LIMI_DATA_DIR": "/srv/limi"},
    )
    assert settings.preset == "limi" and settings.gpus_per_run == 8 and str(settings.runs_dir) == "/srv/limi/runs"
    for variable, value in (
        ("LIMI_TRAINER_PRESET", "huge"),
        ("LIMI_TRAINER_GPUS_PER_RUN", "0"),
        ("LIMI_TRAINER_BASE_MODEL", " "),
        ("LIMI_TRAINER_AUTO_TRAIN", "perhaps"),
    ):
        with pytest.raises(ConfigError) as error:
            load_config(TrainerSettings, TrainerSettings.PREFIX, {variable: value})
        assert error.value.variable == variable
