"""The trainer's Prometheus metrics (`limi_trainer_*`), served on the service's metrics port.

Gauges describe the run in progress (one at a time): step, total steps, loss, tokens/s, ETA,
packing efficiency; counters count finished runs by state, training processes by outcome,
announced checkpoints and dropped samples. `observe_run` updates the gauges from a run record.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

STEP = Gauge("limi_trainer_step", "Optimizer steps done by the run in progress")
TOTAL_STEPS = Gauge("limi_trainer_total_steps", "Optimizer steps of the run in progress")
LOSS = Gauge("limi_trainer_loss", "Loss of the last optimizer step (mean per trained token)")
TOKENS_PER_SECOND = Gauge("limi_trainer_tokens_per_second", "Tokens per second of the last optimizer step, all ranks")
ETA_SECONDS = Gauge("limi_trainer_eta_seconds", "Estimated seconds until the run in progress finishes")
PACKING_EFFICIENCY = Gauge(
    "limi_trainer_packing_efficiency", "Real tokens over the packed token budget of the run in progress"
)
RUNNING = Gauge("limi_trainer_running", "1 while a training process runs")
QUEUE_DEPTH = Gauge("limi_trainer_queue_depth", "Runs waiting to start")
RUNS = Counter("limi_trainer_runs_total", "Runs that reached a final state", ["state"])
PROCESSES = Counter("limi_trainer_training_processes_total", "Training processes that ended, by outcome", ["outcome"])
CHECKPOINTS = Counter("limi_trainer_checkpoints_published_total", "Checkpoint events published")
DROPPED_SAMPLES = Counter(
    "limi_trainer_samples_dropped_total", "Samples left out of training (too long or ambiguous rendering)"
)


def observe_run(run) -> None:
    """Set the run-in-progress gauges from a `RunRecord`."""
    STEP.set(run.step)
    TOTAL_STEPS.set(run.total_steps)
    LOSS.set(run.loss)
    TOKENS_PER_SECOND.set(run.tokens_per_second)
    ETA_SECONDS.set(run.eta_seconds)
    PACKING_EFFICIENCY.set(run.packing_efficiency)
