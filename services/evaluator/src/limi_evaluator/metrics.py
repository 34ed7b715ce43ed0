"""Prometheus metrics of the evaluator service (names prefixed `limi_evaluator_`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SCORE = Gauge(
    "limi_evaluator_score",
    "Aggregate score of a checkpoint on a benchmark (percent, except Att and counts)",
    ["checkpoint", "benchmark", "metric"],
)
EVALUATIONS = Counter("limi_evaluator_evaluations_total", "Evaluations by outcome", ["benchmark", "outcome"])
EVALUATION_SECONDS = Histogram(
    "limi_evaluator_evaluation_seconds",
    "Wall time of one evaluation",
    ["benchmark"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 3600, 7200, 21600),
)
RUNNING = Gauge("limi_evaluator_running_evaluations", "Evaluations in progress")
TASKS = Counter(
    "limi_evaluator_tasks_total", "Finished tasks (subtasks or problems) by outcome", ["benchmark", "outcome"]
)
TASKS_RESUMED = Counter(
    "limi_evaluator_tasks_resumed_total",
    "Tasks skipped because a previous run of the evaluation finished them",
    ["benchmark"],
)
POLICY_STARTS = Counter(
    "limi_evaluator_policy_starts_total", "Policy servers brought up, by mode and outcome", ["mode", "outcome"]
)
POLICY_START_SECONDS = Histogram(
    "limi_evaluator_policy_start_seconds",
    "Time until a policy server answered",
    ["mode"],
    buckets=(5, 10, 20, 40, 60, 120, 300, 600),
)
