"""Real training processes on the tiny model: learning, results, ZeRO-3, and resume after kill -9.

One reference run trains the tiny model on four conversations (two prompts, each answered by a
tool call) in a real `python -m limi_trainer.run_job` process. Its loss must fall, its final
checkpoint must be a loadable Hugging Face model that answers both prompts with the trained tool
call under greedy decoding, and its summary and loss curve must exist. A second process with the
same configuration is killed with SIGKILL after its first checkpoint, started again, and must
end with exactly the reference's per-step sample order (nothing skipped, nothing repeated).
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from limi_testing.synthetic_samples import (
    SYSTEM_PROMPT,
    TOOLS,
    read_file_request,
    run_tests_request,
    run_tests_sample,
    tool_use_sample,
)
from limi_trainer import hyperparameters, reporting
from limi_trainer.dataset import DatasetInput
from limi_trainer.engine import learning_rate_factor
from limi_trainer.run_config import RunConfig, run_id_for
from limi_trainer.run_job import PARENT_PID_VARIABLE

TRAINED_PATH = "src/main.py"
OVERRIDES = {
    "epochs": "60",
    "global_batch_size": "2",
    "pack_tokens": "2048",
    "max_sample_tokens": "2048",
    "checkpoint_every_steps": "20",
    "learning_rate": "0.01",
    "min_learning_rate": "0.001",
}
EXPECTED_CALLS = {
    read_file_request(
        TRAINED_PATH
    ): '<tool_call>\n{"name": "read_file", "arguments": {"path": "src/main.py"}}\n</tool_call><|im_end|>',
    run_tests_request(): '<tool_call>\n{"name": "run_command", "arguments": {"command": "pytest -q"}}\n</tool_call><|im_end|>',
}


def training_samples() -> list[dict]:
    return [
        tool_use_sample(0, (TRAINED_PATH,)),
        run_tests_sample(1),
        tool_use_sample(2, (TRAINED_PATH,)),
        run_tests_sample(3),
    ]


def prepare_run(
    run_dir: pathlib.Path, dataset: pathlib.Path, base_model: pathlib.Path, overrides: dict[str, str]
) -> RunConfig:
    hp = hyperparameters.resolve("tiny-cpu", overrides)
    source = DatasetInput(uri=dataset.as_uri(), dataset_id="ds-test", trajectory_ids=("t0", "t1", "t2", "t3"))
    config = RunConfig(
        run_id_for(source, str(base_model), "tiny-cpu", hp), source, str(base_model), "tiny-cpu", hp, "test-revision"
    )
    config.save(run_dir)
    return config


def start_training(run_dir: pathlib.Path) -> subprocess.Popen:
    """A real training process; it dies with this test process (no preexec_fn: see supervisor.py)."""
    with open(run_dir / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "limi_trainer.run_job", str(run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, PARENT_PID_VARIABLE: str(os.getpid())},
        )


def finish(process: subprocess.Popen, run_dir: pathlib.Path, timeout: float = 240) -> dict:
    assert process.wait(timeout) == 0, (run_dir / "worker.log").read_text()[-3000:]
    return json.loads((run_dir / reporting.SUMMARY_FILE).read_text())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    from limi_core.limi_format import dumps_sample

    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(dumps_sample(sample) + "\n" for sample in training_samples()))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dataset, tiny_model) -> tuple[pathlib.Path, dict]:
    run_dir = tmp_path_factory.mktemp("reference")
    prepare_run(run_dir, dataset, tiny_model, OVERRIDES)
    return run_dir, finish(start_training(run_dir), run_dir)


def test_loss_goes_down_and_results_are_written(reference):
    run_dir, summary = reference
    losses = [step["loss"] for step in summary["steps"]]
    assert len(losses) == summary["plan"]["total_steps"] == 120
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:5]) / 5
    assert summary["final_loss"] < 0.5 < summary["first_loss"]
    assert summary["dataset"]["samples_trained"] == 4 and summary["trajectory_ids"] == {
        "0": "t0",
        "1": "t1",
        "2": "t2",
        "3": "t3",
    }
    assert summary["hyperparameters"]["epochs"] == "60" and summary["code_revision"] == "test-revision"
    assert summary["tokens_per_second"] > 0 and 0 < summary["plan"]["packing_efficiency"] <= 1
    assert pathlib.Path(summary["loss_curve"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hp = hyperparameters.resolve("tiny-cpu", OVERRIDES)
    assert [step["learning_rate"] for step in summary["steps"]] == pytest.approx(
        [hp.learning_rate * learning_rate_factor(i, 120, hp) for i in range(120)]
    )
    events = [record["event"] for record in reporting.read_progress(run_dir)[0]]
    assert (
        events[0] == "started"
        and events[-1] == "finished"
        and events.count("step") == 120
        and events.count("checkpoint") == 6
    )


def test_checkpoints_are_complete_hugging_face_models(reference):
    run_dir, summary = reference
    names = [pathlib.Path(path).name for path in summary["checkpoints"]]
    assert names == [f"step-{step:06d}" for step in range(20, 121, 20)]
    final = run_dir / "checkpoints" / "step-000120"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "trainer_state.json"):
        assert (final / name).is_file(), name
    state = json.loads((final / "trainer_state.json").read_text())
    assert state["final"] is True and state["step"] == 120 and len(state["history"]) == 120
    # Only the newest DeepSpeed state is kept for resume; every Hugging Face export stays.
    assert sorted(p.parent.name for p in (run_dir / "checkpoints").glob("*/resume")) == ["step-000120"]
    assert not list((run_dir / "checkpoints").glob(".staging-*"))


def test_the_fine_tuned_model_reproduces_the_trained_tool_calls(reference, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, _summary = reference

    def answer(model_dir: pathlib.Path, request: str) -> str:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": request}]
        inputs = tokenizer.apply_chat_template(
            messages, tools=TOOLS, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=48, do_sample=False)
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)

    for request, expected in EXPECTED_CALLS.items():
        assert answer(run_dir / "checkpoints" / "step-000120", request) == expected
        assert answer(tiny_model, request) != expected


def test_resume_after_kill_9_keeps_the_data_order(reference, dataset, tiny_model, tmp_path):
    _reference_dir, expected = reference
    run_dir = tmp_path / "killed"
    prepare_run(run_dir, dataset, tiny_model, OVERRIDES)
    process = start_training(run_dir)
    deadline = time.monotonic() + 180
    offset, last_step = 0, 0
    while last_step < 30:
        assert process.poll() is None, (run_dir / "worker.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the training process made no progress"
        records, offset = reporting.read_progress(run_dir, offset)
        last_step = max([last_step] + [r["step"] for r in records if r["event"] == "step"])
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    records, _ = reporting.read_progress(run_dir)
    assert process.returncode == -signal.SIGKILL and not any(r["event"] == "finished" for r in records)
    assert [r["step"] for r in records if r["event"] == "checkpoint"] == [20]
    killed_at = max(r["step"] for r in records if r["event"] == "step")
    assert 30 <= killed_at < 40
    # A checkpoint half written when the process died is never mistaken for a complete one.
    torn = run_dir / "checkpoints" / ".staging-step-000040"
    (torn / "resume").mkdir(parents=True)
    (torn / "model.safetensors").write_bytes(b"torn")

    summary = finish(start_training(run_dir), run_dir)

    assert summary["resumed_from_step"] == 20
    assert [step["samples"] for step in summary["steps"]] == [step["samples"] for step in expected["steps"]]
    counts = collections.Counter(index for step in summary["steps"] for index in step["samples"])
    assert counts == {0: 60, 1: 60, 2: 60, 3: 60}
    for ours, theirs in zip(summary["steps"], expected["steps"], strict=False):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-3, abs=1e-4)
    assert not torn.exists()
    steps_seen = [r["step"] for r in reporting.read_progress(run_dir)[0] if r["event"] == "step"]
    assert steps_seen == list(range(1, killed_at + 1)) + list(range(21, 121))


ZERO3 = {**OVERRIDES, "zero_stage": "3", "gradient_checkpointing": "true", "checkpoint_every_steps": "0", "epochs": "2"}


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory, dataset, tiny_model) -> tuple[pathlib.Path, dict]:
    run_dir = tmp_path_factory.mktemp("zero3")
    prepare_run(run_dir, dataset, tiny_model, ZERO3)
    return run_dir, finish(start_training(run_dir), run_dir)


def test_zero_3_with_activation_recompute_computes_the_same_first_step(reference, zero3_run, tiny_model):
    _reference_dir, expected = reference
    run_dir, summary = zero3_run
    assert [step["samples"] for step in summary["steps"]] == [step["samples"] for step in expected["steps"][:4]]
    hp = hyperparameters.resolve("tiny-cpu", ZERO3)
    assert [step["learning_rate"] for step in summary["steps"]] == pytest.approx(
        [hp.learning_rate * learning_rate_factor(i, 4, hp) for i in range(4)]
    )
    # The first loss is computed before any update: same model, same data, same number.
    assert summary["steps"][0]["loss"] == pytest.approx(expected["steps"][0]["loss"], rel=1e-5)
    import torch
    from transformers import AutoModelForCausalLM

    exported, info = AutoModelForCausalLM.from_pretrained(
        run_dir / "checkpoints" / "step-000004", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [
        name
        for (name, p), q in zip(exported.named_parameters(), base.parameters(), strict=False)
        if not torch.equal(p, q)
    ]
    assert len(changed) == len(list(base.parameters()))


def test_two_ranks_under_torchrun_train_like_one(zero3_run, dataset, tiny_model, tmp_path):
    """Data split over ranks, gradients averaged by DeepSpeed: the per-token loss of every step matches."""
    _single_dir, single = zero3_run
    run_dir = tmp_path / "two-ranks"
    prepare_run(run_dir, dataset, tiny_model, ZERO3)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "limi_trainer.run_job",
        str(run_dir),
    ]
    with open(run_dir / "worker.log", "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    summary = finish(process, run_dir)
    assert summary["plan"]["world_size"] == 2
    assert [step["samples"] for step in summary["steps"]] == [step["samples"] for step in single["steps"]]
    assert [step["loss"] for step in summary["steps"]] == pytest.approx(
        [step["loss"] for step in single["steps"]], rel=1e-4
    )
