"""`limi demo` end to end on the services' events, once without faults and once with kill -9 of
rollout, trainer, evaluator and nats-server.

A demo-sized run (the tiny random base model, 16 training samples, 4 epochs, the first 4 held-out
tasks, no baseline) runs twice as a real `limi demo` process with its own embedded stack. In the
second, this test kills the rollout service as collection starts, nats-server a moment later,
the trainer once its run has saved a checkpoint, and the evaluator while it evaluates the
fine-tune; the demo restarts each and carries on. At the end every query has exactly one stored
trajectory, the dataset has the same queries as the clean run's with no duplicate, the training
run resumed, and the scores match the clean run's within the run-to-run noise (greedy decoding:
we measured none; see TOLERANCE). It takes a few minutes: vLLM starts once per run on CPU.

Both runs also show that the fine-tune was trained and evaluated because of events, not calls:
the demo's code sends no StartRun and no Evaluate for a fine-tune, the trainer's log records its
Dataset consumer starting the run, and the evaluator's log its Checkpoint consumer evaluating
the run's final checkpoint.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from limi_cli.stack import _port_free
from limi_core.settings import DEFAULT_PORTS

pytestmark = pytest.mark.timeout(1500)

DEMO_ARGS = [
    "--base-model",
    "limi-tiny",
    "--samples",
    "16",
    "--epochs",
    "4",
    "--checkpoint-every",
    "2",
    "--eval-limit",
    "4",
    "--no-baseline",
]
# Points of Avg between two runs of the same demo: decoding is greedy and training deterministic,
# so repeated clean runs gave identical scores; a resumed run may differ in the last float bits.
TOLERANCE = 5.0


def free_offset() -> int:
    for offset in range(7000, 15000, 137):
        ports = [4233 + offset] + [p + offset for ports in DEFAULT_PORTS.values() for p in (ports.grpc, ports.metrics)]
        if all(_port_free(port) for port in ports):
            return offset
    raise RuntimeError("no free block of ports for the demo")


def stack_state(data_dir: pathlib.Path) -> dict:
    return json.loads((data_dir / "stack" / "up.json").read_text())


def kill(data_dir: pathlib.Path, name: str, killed: list[str]) -> None:
    state = stack_state(data_dir)
    pid = state["nats_pid"] if name == "nats" else state["services"][name]["pid"]
    os.kill(pid, signal.SIGKILL)
    killed.append(name)


def run_demo(data_dir: pathlib.Path, cache: pathlib.Path, faults: bool) -> tuple[int, str, list[str]]:
    env = {**os.environ, "LIMI_CACHE_DIR": str(cache)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "limi_cli",
            "demo",
            "--data-dir",
            str(data_dir),
            "--port-offset",
            str(free_offset()),
            *DEMO_ARGS,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    killed: list[str] = []
    lines: list[str] = []

    def kill_trainer_after_a_checkpoint() -> None:
        runs = data_dir / "stack" / "trainer" / "runs"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            if any(runs.glob("*/checkpoints/step-000002/config.json")):
                kill(data_dir, "trainer", killed)
                return
            time.sleep(0.2)

    def kill_evaluator_later() -> None:
        time.sleep(30)
        if process.poll() is None:
            kill(data_dir, "evaluator", killed)

    for line in process.stdout:
        lines.append(line)
        if not faults:
            continue
        if "[4/8 collect]" in line:
            kill(data_dir, "rollout", killed)
            threading.Timer(1.5, kill, (data_dir, "nats", killed)).start()
        elif "[7/8 train]" in line:
            threading.Thread(target=kill_trainer_after_a_checkpoint, daemon=True).start()
        elif "[8/8 evaluate]" in line:
            threading.Thread(target=kill_evaluator_later, daemon=True).start()
    return process.wait(), "".join(lines), killed


def trajectories_per_query(data_dir: pathlib.Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{data_dir / 'stack' / 'curator' / 'curator.sqlite'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT query_id, COUNT(*) FROM trajectories GROUP BY query_id").fetchall())


def dataset_query_ids(results: dict) -> list[str]:
    path = pathlib.Path(results["datasets"]["curated 16"].removeprefix("file://"))
    return [
        json.loads(line)["limi"]["trajectory"]["lineage"]["query_id"]
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def log_records(data_dir: pathlib.Path, service: str, message: str) -> list[dict]:
    records = []
    for line in (data_dir / "stack" / "logs" / f"{service}.log").read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") == message:
            records.append(record)
    return records


def assert_trained_and_evaluated_by_events(data_dir: pathlib.Path, results: dict) -> None:
    (model,) = results["models"]
    dataset_id = pathlib.Path(results["datasets"]["curated 16"]).stem
    trained = log_records(data_dir, "trainer", "training on dataset")
    assert any(r.get("dataset") == dataset_id for r in trained), (dataset_id, trained)
    evaluated = log_records(data_dir, "evaluator", "evaluating checkpoint")
    assert any(r.get("checkpoint") == model["checkpoint_id"] for r in evaluated), (model["checkpoint_id"], evaluated)


def test_the_demo_sends_no_training_or_evaluation_request_for_a_fine_tune():
    import limi_cli.demo as demo

    source = pathlib.Path(demo.__file__).read_text()
    assert '"StartRun"' not in source and "StartRunRequest" not in source
    # One Evaluate request: the base model's baseline.
    assert source.count('"Evaluate"') == 1 and "def evaluate_base" in source


def test_the_demo_survives_kill_9_of_rollout_trainer_evaluator_and_nats(tmp_path):
    cache = tmp_path / "cache"
    code, output, _ = run_demo(tmp_path / "clean", cache, faults=False)
    assert code == 0, output[-3000:]
    code, faulted_output, killed = run_demo(tmp_path / "faulted", cache, faults=True)
    assert code == 0, faulted_output[-3000:]
    assert sorted(killed) == ["evaluator", "nats", "rollout", "trainer"], faulted_output[-3000:]
    for name in ("rollout", "trainer", "evaluator", "nats"):
        assert f"restarted {name}" in faulted_output or f", {name}" in faulted_output, (name, faulted_output[-3000:])

    clean = json.loads((tmp_path / "clean" / "report" / "results.json").read_text())
    faulted = json.loads((tmp_path / "faulted" / "report" / "results.json").read_text())
    assert_trained_and_evaluated_by_events(tmp_path / "clean", clean)
    assert_trained_and_evaluated_by_events(tmp_path / "faulted", faulted)
    # Every query of the pool has exactly one trajectory.
    counts = trajectories_per_query(tmp_path / "faulted")
    assert len(counts) == 78 and set(counts.values()) == {1}, counts
    # The dataset: 16 samples, no duplicate, the same queries as without faults.
    ids = dataset_query_ids(faulted)
    assert len(ids) == 16 and len(set(ids)) == 16
    assert sorted(ids) == sorted(dataset_query_ids(clean))
    # The run was cut off and resumed from its checkpoint.
    assert "resumed from step" in faulted_output, faulted_output[-3000:]
    # The same scores, within the noise.
    (clean_model,), (faulted_model,) = clean["models"], faulted["models"]
    for metric in ("Avg", "FTFC", "SR@3", "S_avg"):
        assert abs(clean_model["aggregate"][metric] - faulted_model["aggregate"][metric]) <= TOLERANCE, (
            metric,
            clean_model,
            faulted_model,
        )
    assert clean_model["subtasks"] == faulted_model["subtasks"] == 4
