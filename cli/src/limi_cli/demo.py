"""`limi demo`: the whole LIMI loop on this machine, offline, on CPU: curate, collect, train, evaluate.

Stages, each printed as it starts and ends with its time:
1. base model: the tiny demo model and tokenizer, built locally or reused from the cache;
2. stack: the embedded stack (nats-server and the five services) and the teacher policy: a real
   OpenAI-compatible endpoint with --teacher-endpoint, else the scripted workspace-basics expert
   (demo_teacher.py), and the output says which;
3. queries: the curator imports the bundled pool (60 real, 18 synthetic; demo_pool.py),
   publishes it as a query set and emits it to the rollout service;
4. collect: the rollout service runs one episode per query in the sandbox and publishes each
   trajectory once; a reviewer (this process) sends `Correct` to every `--correct-every`-th
   query's live episode, and the curator stores what arrives;
5. curate: one dataset per `--samples` size (coverage-aware selection of the best trajectories);
6. train: one DeepSpeed fine-tune of the base model per dataset, through the trainer service;
7. evaluate: the evaluator serves the base model and each fine-tune with vLLM and scores them
   on the held-out `limi-basics` suite in the sandbox (rounds with rubric feedback).
Then it prints the before/after table and writes `<data-dir>/report/index.html`.

Every request is idempotent (content-addressed sets and datasets, request ids, deterministic
evaluation ids), so running the same command again resumes: finished stages are found done.
While it waits, a service or nats-server that died is restarted (demo_services.StackClient).
Exit codes: 0 done, 1 a stage failed (the sentence says which and where the logs are), 2 bad
usage, 130 interrupted (run it again to resume).
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
from limi.evaluator.v1 import evaluator_pb2
from limi.query.v1 import query_pb2
from limi.rollout.v1 import rollout_pb2
from limi.trainer.v1 import trainer_pb2
from limi_cli import demo_pool
from limi_cli.demo_model import DEMO_MODEL_NAME, build_demo_model
from limi_cli.demo_report import Scored, table, tool_choice, write_report
from limi_cli.demo_services import StackClient
from limi_cli.demo_teacher import CORRECTION, Teacher
from limi_cli.stack import DEFAULT_NATS_PORT, EmbeddedStack, StackError

STAGES = ("base model", "stack", "queries", "collect", "curate", "train", "evaluate")
DONE_STATUSES = {query_pb2.QUERY_STATUS_COMPLETED, query_pb2.QUERY_STATUS_FAILED}
FINAL_RUN_STATES = {trainer_pb2.RUN_STATE_SUCCEEDED, trainer_pb2.RUN_STATE_FAILED, trainer_pb2.RUN_STATE_CANCELLED}
BENCHMARK = "limi-basics"
# The tiny model's fine-tune: enough epochs for it to learn the tool-call format and the tool choice from 78 samples.
DEMO_HYPERPARAMETERS = {"epochs": "20", "global_batch_size": "8", "learning_rate": "0.005", "min_learning_rate": "0.0005",
                        "checkpoint_every_steps": "25"}


class DemoError(RuntimeError):
    """A stage failed; the message is one sentence for a person."""


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    data_dir: pathlib.Path
    samples: tuple[int, ...] = (demo_pool.POOL_SIZE,)
    teacher_endpoint: str = ""
    teacher_model: str = ""
    base_model: str = ""
    correct_every: int = 8
    epochs: int = 0  # 0: the demo's default
    checkpoint_every: int = 0  # 0: the demo's default
    eval_limit: int = 0
    baseline: bool = True
    port_offset: int = 0
    nats_port: int = DEFAULT_NATS_PORT
    stage_timeout: float = 1800.0


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


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LIMI_CACHE_DIR") or pathlib.Path.home() / ".cache" / "limi").expanduser()


def stage_base_model(options: DemoOptions, progress: Progress) -> pathlib.Path:
    if options.base_model:
        path = pathlib.Path(options.base_model).expanduser()
        if not (path / "config.json").is_file():
            raise DemoError(f"--base-model {path} is not a Hugging Face model directory (no config.json)")
        progress.say(f"using the base model in {path}")
        return path
    target = cache_dir() / "models" / DEMO_MODEL_NAME
    started = time.monotonic()
    path, built = build_demo_model(target)
    progress.say(f"base model {path} ({f'built in {time.monotonic() - started:.0f} s' if built else 'reused from the cache'})")
    return path


def service_env(teacher_endpoint: str, teacher_model: str) -> dict[str, str]:
    return {
        "LIMI_ROLLOUT_POLICY_ENDPOINT": teacher_endpoint,
        "LIMI_ROLLOUT_POLICY_MODEL": teacher_model,
        "LIMI_ROLLOUT_CONCURRENCY": "2",
        "LIMI_ROLLOUT_MAX_TURNS": "12",
        # A killed rollout's query comes back quickly (its heartbeats stop).
        "LIMI_ROLLOUT_ACK_WAIT_SECONDS": "10",
        "LIMI_ROLLOUT_REDELIVERY_BACKOFF_SECONDS": "1,5,15",
        "LIMI_TRAINER_AUTO_TRAIN": "false",
        "LIMI_TRAINER_ACK_WAIT_SECONDS": "10",
        "LIMI_EVALUATOR_CONSUME_CHECKPOINTS": "false",
        "LIMI_EVALUATOR_TEMPERATURE": "0",
        "LIMI_EVALUATOR_MAX_TOKENS": "256",
        "LIMI_EVALUATOR_MAX_TURNS": "6",
        "LIMI_EVALUATOR_TASK_CONCURRENCY": "2",
        "LIMI_EVALUATOR_VLLM_START_TIMEOUT_SECONDS": "300",
    }


def stage_queries(client: StackClient, progress: Progress) -> tuple[query_pb2.QuerySet, dict[str, str]]:
    content = demo_pool.BUNDLED.read_bytes()
    records = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
    imported = client.call("curator", "ImportQueries", curator_pb2.ImportQueriesRequest(
        format=curator_pb2.IMPORT_FORMAT_JSONL, content=content, origin=demo_pool.BUNDLED.name))
    real = sum(1 for r in records if r["source"] == "real")
    progress.say(f"imported {imported.imported} queries ({imported.duplicates} already in the pool) from the bundled "
                 f"{demo_pool.BUNDLED.name}: {real} real, {len(records) - real} synthetic")
    query_set = client.call("curator", "PublishQuerySet", curator_pb2.PublishQuerySetRequest(
        name="demo", query_ids=[r["id"] for r in records]))
    emitted = client.call("curator", "EmitQuerySet", curator_pb2.EmitQuerySetRequest(query_set_id=query_set.id, episodes_per_query=1))
    progress.say(f"query set {query_set.id}: emitted {emitted.emitted} to the rollout service ({emitted.already_emitted} emitted before)")
    return query_set, {r["id"]: r["text"] for r in records}


class Reviewer:
    """Sends one correction to the live episode of every n-th query, and lets the teacher go on."""

    def __init__(self, client: StackClient, texts: dict[str, str], every: int, teacher: Teacher | None) -> None:
        self.client, self.teacher, self.texts = client, teacher, texts
        ordered = list(texts)
        self.targets = {query_id for i, query_id in enumerate(ordered) if every and i % every == every - 1}
        self.corrected: set[str] = set()
        if teacher is not None:
            for query_id in self.targets:
                teacher.hold(texts[query_id])

    def review(self) -> None:
        if not self.targets:
            return
        episodes = self.client.call("rollout", "ListEpisodes", rollout_pb2.ListEpisodesRequest(), timeout=10)
        for episode in episodes.episodes:
            if episode.running and episode.query_id in self.targets and episode.episode_id not in self.corrected:
                try:
                    self.client.call("rollout", "Correct", rollout_pb2.CorrectRequest(
                        episode_id=episode.episode_id, text=CORRECTION, author="demo-reviewer"), timeout=10)
                    self.corrected.add(episode.episode_id)
                except grpc.RpcError:
                    pass  # it finished in between: nothing to correct
                if self.teacher is not None:
                    self.teacher.release(self.texts[episode.query_id])


def stage_collect(client: StackClient, query_set: query_pb2.QuerySet, reviewer: Reviewer, options: DemoOptions,
                  progress: Progress) -> None:
    deadline = time.monotonic() + options.stage_timeout
    last_said, last_count = 0.0, -1
    while True:
        listing = client.call("curator", "ListQueries", curator_pb2.ListQueriesRequest(query_set_id=query_set.id, page_size=1000))
        statuses = [listing.status_by_id.get(q) for q in query_set.query_ids]
        done = sum(1 for s in statuses if s in DONE_STATUSES)
        failed = sum(1 for s in statuses if s == query_pb2.QUERY_STATUS_FAILED)
        if done != last_count and (time.monotonic() - last_said > 5 or done == len(statuses)):
            progress.say(f"trajectories stored: {done}/{len(statuses)} ({failed} failed); corrections sent: {len(reviewer.corrected)}")
            last_said, last_count = time.monotonic(), done
        if done == len(statuses):
            return
        if time.monotonic() > deadline:
            raise DemoError(f"only {done} of {len(statuses)} queries have a trajectory after {options.stage_timeout:g} s "
                            f"(logs in {client.stack.logs})")
        reviewer.review()
        client.heal()
        time.sleep(0.3)


def stage_curate(client: StackClient, query_set: query_pb2.QuerySet, base_model: pathlib.Path, options: DemoOptions,
                 progress: Progress) -> dict[int, object]:
    datasets = {}
    tokenizer = base_model / "tokenizer.json"
    for size in sorted(set(options.samples)):
        dataset = client.call("curator", "CurateDataset", curator_pb2.CurateDatasetRequest(
            name=f"demo-{size}", size=size, query_set_ids=[query_set.id], tokenizer=str(tokenizer) if tokenizer.exists() else ""))
        stats = dataset.stats
        progress.say(f"dataset {dataset.id}: {stats.count} samples (asked for {size}), tokens min {stats.tokens_min} / "
                     f"mean {stats.tokens_mean:.0f} / max {stats.tokens_max}, categories {dict(stats.categories)}")
        if stats.count == 0:
            raise DemoError(f"the curator selected no trajectory for demo-{size}; see {client.stack.logs / 'curator.log'}")
        datasets[size] = dataset
    return datasets


def preset(options: DemoOptions) -> str:
    """The tiny model trains with the CPU preset; a real base model with LIMI's recipe."""
    return "limi" if options.base_model else "tiny-cpu"


def hyperparameters(options: DemoOptions) -> dict[str, str]:
    chosen = {} if options.base_model else dict(DEMO_HYPERPARAMETERS)
    if options.epochs:
        chosen["epochs"] = str(options.epochs)
    if options.checkpoint_every:
        chosen["checkpoint_every_steps"] = str(options.checkpoint_every)
    return chosen


def final_checkpoint(run: trainer_pb2.Run) -> pathlib.Path:
    steps = sorted(pathlib.Path(run.run_dir, "checkpoints").glob("step-*"))
    complete = [step for step in steps if (step / "config.json").is_file()]
    if not complete:
        raise DemoError(f"run {run.id} succeeded but has no checkpoint in {run.run_dir}/checkpoints")
    return complete[-1]


def stage_train(client: StackClient, datasets: dict, base_model: pathlib.Path, options: DemoOptions,
                progress: Progress) -> dict[int, trainer_pb2.Run]:
    runs = {}
    chosen = hyperparameters(options)
    for size, dataset in datasets.items():
        digest = hashlib.sha256(json.dumps([dataset.id, str(base_model), preset(options), chosen], sort_keys=True).encode()).hexdigest()[:12]
        run = client.call("trainer", "StartRun", trainer_pb2.StartRunRequest(
            dataset_id=dataset.id, dataset_uri=dataset.storage_uri, base_model=str(base_model), preset=preset(options),
            hyperparameters=chosen, request_id=f"demo-{digest}"))
        progress.say(f"training run {run.id} on {dataset.id} (preset {preset(options)}"
                     + "".join(f", {k}={v}" for k, v in chosen.items()) + ")")
        deadline = time.monotonic() + options.stage_timeout
        last_said = 0.0
        while run.state not in FINAL_RUN_STATES:
            if time.monotonic() > deadline:
                raise DemoError(f"run {run.id} is not finished after {options.stage_timeout:g} s (log: {client.stack.logs / 'trainer.log'})")
            if time.monotonic() - last_said > 10 and run.total_steps:
                progress.say(f"  step {run.step}/{run.total_steps}, loss {run.loss:.3f}, {run.tokens_per_second:,.0f} tokens/s"
                             + (f", attempt {run.attempts}" if run.attempts > 1 else ""))
                last_said = time.monotonic()
            time.sleep(1.0)
            client.heal()
            run = client.call("trainer", "GetRun", trainer_pb2.GetRunRequest(id=run.id))
        if run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
            raise DemoError(f"run {run.id} ended {trainer_pb2.RunState.Name(run.state)}: {run.error} (log: {client.stack.logs / 'trainer.log'})")
        progress.say(f"  done: {run.total_steps} steps, loss {run.loss:.3f}, checkpoint {final_checkpoint(run)}"
                     + (f" (resumed from step {run.resumed_from_step} after a crash)" if run.resumed_from_step else ""))
        runs[size] = run
    return runs


def evaluate(client: StackClient, label: str, checkpoint_id: str, uri: str, samples: int, step: int, options: DemoOptions,
             progress: Progress) -> Scored:
    started = time.monotonic()
    progress.say(f"evaluating {label} on {BENCHMARK} (vLLM serves {uri})")
    result = client.call("evaluator", "Evaluate", evaluator_pb2.EvaluateRequest(
        checkpoint_id=checkpoint_id, checkpoint_uri=uri, benchmark=BENCHMARK, request_id=f"demo-{checkpoint_id}",
        limit=options.eval_limit, dataset_size=samples, step=step), timeout=options.stage_timeout)
    scored = Scored(label, samples, checkpoint_id, result, tool_choice(result))
    passed, total = scored.subtasks_passed
    progress.say(f"  {label}: Avg {scored.metric('Avg'):.1f}, SR@3 {scored.metric('SR@3'):.1f}, {passed}/{total} subtasks "
                 f"passed, right first tool {scored.tools.right}/{scored.tools.total} ({time.monotonic() - started:.0f} s)")
    return scored


def stage_evaluate(client: StackClient, base_model: pathlib.Path, runs: dict, options: DemoOptions, progress: Progress) -> list[Scored]:
    scored = []
    if options.baseline:
        digest = hashlib.sha256(str(base_model.resolve()).encode()).hexdigest()[:8]
        scored.append(evaluate(client, "base model", f"demo-base-{digest}", str(base_model), 0, 0, options, progress))
    for size, run in runs.items():
        checkpoint = final_checkpoint(run)
        scored.append(evaluate(client, f"fine-tuned on {size}", f"{run.id}-{checkpoint.name}", str(checkpoint),
                               size, run.total_steps, options, progress))
    return scored


def run_demo(options: DemoOptions, progress: Progress) -> list[Scored]:
    progress.stage("base model")
    base_model = stage_base_model(options, progress)
    progress.stage("stack")
    teacher = None
    if options.teacher_endpoint:
        endpoint, model = options.teacher_endpoint, options.teacher_model or "policy"
        teacher_text = f"the OpenAI-compatible endpoint {endpoint} (model {model})"
    else:
        teacher = Teacher().start()
        endpoint, model = teacher.endpoint, teacher.server.model
        teacher_text = (f"the SCRIPTED workspace-basics expert at {endpoint}, not a model: offline on CPU no model can solve "
                        "agent tasks, so it stands in for one over the same OpenAI chat API (--teacher-endpoint URL uses a real one)")
    progress.say(f"teacher: {teacher_text}")
    stack = EmbeddedStack(options.data_dir / "stack", port_offset=options.port_offset, nats_port=options.nats_port,
                          extra_env=service_env(endpoint, model))
    try:
        stack.start()
    except StackError as exc:
        if teacher:
            teacher.stop()
        raise DemoError(str(exc)) from None
    client = StackClient(stack, progress.say)
    progress.say(f"nats-server and {len(stack.services)} services SERVING (logs in {stack.logs})")
    try:
        progress.stage("queries")
        query_set, texts = stage_queries(client, progress)
        progress.stage("collect")
        reviewer = Reviewer(client, texts, options.correct_every, teacher)
        stage_collect(client, query_set, reviewer, options, progress)
        progress.stage("curate")
        datasets = stage_curate(client, query_set, base_model, options, progress)
        progress.stage("train")
        runs = stage_train(client, datasets, base_model, options, progress)
        progress.stage("evaluate")
        scored = stage_evaluate(client, base_model, runs, options, progress)
    finally:
        client.close()
        stack.stop()
        if teacher:
            teacher.stop()
    timings = progress.end()
    notes = [f"{len(reviewer.corrected)} corrections sent through Correct in this run (to every {options.correct_every}th query's episode)",
             f"fine-tune: the {preset(options)} preset with {hyperparameters(options) or 'no overrides'}"]
    report = write_report(options.data_dir / "report", scored, teacher=teacher_text, timings=timings,
                          datasets={size: d.storage_uri for size, d in datasets.items()}, notes=notes)
    print("\n" + table(scored), flush=True)
    print(f"\nreport: {report}\ntime: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()), flush=True)
    return scored


def _samples(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be sizes separated by commas, such as 8,16,32,78; got {text!r}") from None
    if not sizes or any(not 1 <= size <= demo_pool.POOL_SIZE for size in sizes):
        raise argparse.ArgumentTypeError(f"every size must be between 1 and {demo_pool.POOL_SIZE} (the bundled pool); got {text!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="where the demo's stack, datasets, runs and report live (default: <limi data dir>/demo)")
    parser.add_argument("--samples", type=_samples, default=(demo_pool.POOL_SIZE,),
                        help="training-set sizes, one fine-tune each, e.g. 8,16,32,78 for the data-efficiency curve (default 78)")
    parser.add_argument("--teacher-endpoint", default="", help="an OpenAI-compatible chat endpoint to collect trajectories from, "
                                                             "e.g. a vLLM server on a GPU machine (default: the scripted expert)")
    parser.add_argument("--teacher-model", default="", help="model name to request from --teacher-endpoint")
    parser.add_argument("--base-model", default="", help="Hugging Face model directory to fine-tune with LIMI's preset "
                                                        "(default: the tiny demo model, with a CPU preset)")
    parser.add_argument("--correct-every", type=int, default=8, help="send a reviewer's correction to every N-th query's episode (0: none)")
    parser.add_argument("--epochs", type=int, default=0, help=f"fine-tuning epochs (default {DEMO_HYPERPARAMETERS['epochs']})")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help=f"save a (resumable) checkpoint every N optimizer steps (default {DEMO_HYPERPARAMETERS['checkpoint_every_steps']})")
    parser.add_argument("--eval-limit", type=int, default=0, help="score only the first N held-out tasks (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="do not evaluate the base model")
    parser.add_argument("--port-offset", type=int, default=0, help="add this to every default port (to run beside another stack)")
    parser.add_argument("--nats-port", type=int, default=DEFAULT_NATS_PORT, help=f"port of the embedded nats-server (default {DEFAULT_NATS_PORT})")


def cmd_demo(args: argparse.Namespace, data_dir: Callable[[str | None], pathlib.Path]) -> int:
    for name in ("correct_every", "epochs", "checkpoint_every", "eval_limit"):
        if getattr(args, name) < 0:
            print(f"limi demo: --{name.replace('_', '-')} must not be negative, got {getattr(args, name)}", file=sys.stderr)
            return 2
    options = DemoOptions(
        data_dir=pathlib.Path(args.data_dir).expanduser() if args.data_dir else data_dir(None) / "demo",
        samples=args.samples, teacher_endpoint=args.teacher_endpoint, teacher_model=args.teacher_model, base_model=args.base_model,
        correct_every=args.correct_every, epochs=args.epochs, checkpoint_every=args.checkpoint_every, eval_limit=args.eval_limit,
        baseline=not args.no_baseline,
        port_offset=args.port_offset, nats_port=args.nats_port,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    progress = Progress()
    progress.say(f"limi demo: data in {options.data_dir}; run the same command again to resume")
    try:
        run_demo(options, progress)
    except (DemoError, StackError) as exc:
        print(f"limi demo: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"limi demo: a service refused a request: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("limi demo: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
