"""What a run shows to people and to the service: progress lines, a summary JSON, a loss-curve PNG.

`ProgressLog` appends one JSON object per event to `<run>/progress.jsonl` (started, step,
checkpoint, finished, failed) and flushes each line, so the service can follow a training
process it did not start in-process. `write_summary` and `write_loss_curve` produce the run's
visible results, each written to a temporary name and renamed. Only rank 0 writes. It does not
publish events (the service does that from the progress lines).
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable

PROGRESS_FILE = "progress.jsonl"
SUMMARY_FILE = "summary.json"
LOSS_CURVE_FILE = "loss_curve.png"

Listener = Callable[[dict], None]


class ProgressLog:
    """Appends progress events to a JSONL file and hands each to optional listeners (progress bars)."""

    def __init__(self, run_dir: pathlib.Path, listeners: list[Listener] | None = None) -> None:
        self.path = run_dir / PROGRESS_FILE
        self._listeners = list(listeners or [])

    def emit(self, event: str, **fields) -> dict:
        record = {"event": event, "time": time.time(), **fields}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        for listener in self._listeners:
            listener(record)
        return record


def read_progress(run_dir: pathlib.Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete progress lines from byte `offset` on, and the offset after the last complete one."""
    path = run_dir / PROGRESS_FILE
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return records, offset + end


def write_summary(run_dir: pathlib.Path, summary: dict) -> pathlib.Path:
    path = run_dir / SUMMARY_FILE
    _write_atomically(path, json.dumps(summary, indent=2).encode())
    return path


def write_loss_curve(run_dir: pathlib.Path, history: list[dict], title: str) -> pathlib.Path:
    """A PNG of the training loss (and learning rate) per optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    steps = [record["step"] for record in history]
    figure, loss_axis = pyplot.subplots(figsize=(7, 4), dpi=110)
    loss_axis.plot(steps, [record["loss"] for record in history], marker="o", color="tab:blue", label="loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("loss (mean per trained token)", color="tab:blue")
    loss_axis.grid(alpha=0.3)
    rate_axis = loss_axis.twinx()
    rate_axis.plot(
        steps,
        [record["learning_rate"] for record in history],
        color="tab:orange",
        linestyle="--",
        label="learning rate",
    )
    rate_axis.set_ylabel("learning rate", color="tab:orange")
    loss_axis.set_title(title, fontsize=9)
    figure.tight_layout()
    path = run_dir / LOSS_CURVE_FILE
    staging = path.with_suffix(".tmp.png")
    figure.savefig(staging, format="png")
    pyplot.close(figure)
    os.replace(staging, path)
    return path


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)
