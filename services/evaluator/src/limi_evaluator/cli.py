"""`limi-evaluate`: evaluate a checkpoint directory or a running endpoint from the command line.

Runs one evaluation per `--benchmark` in this process (no NATS needed): brings up the policy (a
vLLM server on `--checkpoint`, or the given `--endpoint`; none for `--reference`), runs the
suite's multi-round tasks through the rollout and sandbox services, or HumanEval in the sandbox,
prints the aggregate metrics and a line per task, and writes the HTML report. Results go to the
same SQLite store as the service's (`--data-dir`), so the leaderboard and the plots span the
checkpoints evaluated so far, and an interrupted run resumes. Exit codes (limi_core.exit_codes,
the README's table): 0 done, 1 failed, 2 bad input (unknown benchmark, broken suite file, bad
option), 4 a service or the policy is unreachable, 5 a precondition failed (missing checkpoint,
missing benchmark data), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import pathlib
import sys

from google.protobuf import json_format

from limi.evaluation.v1 import evaluation_pb2 as ev
from limi_core.config import ConfigError, load_config
from limi_core.errors import FailedPrecondition, InvalidArgument, LimiError, Unavailable
from limi_core.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PRECONDITION, EXIT_UNREACHABLE, EXIT_USAGE
from limi_evaluator.catalog import Catalog
from limi_evaluator.evaluation import EvaluationSpec, Evaluator
from limi_evaluator.policy import PolicyProvider, probe_endpoint
from limi_evaluator.sandbox_client import SandboxWorkspaces
from limi_evaluator.scores import primary_metric
from limi_evaluator.settings import EvaluatorSettings
from limi_evaluator.store import EvaluationStore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="limi-evaluate",
        description="Evaluate a checkpoint (served with vLLM) or a running OpenAI-compatible endpoint on multi-round "
        "task suites (AgencyBench-style: rounds with rubric feedback; FTFC, SR@R, RC@R, Avg, S_avg, Pass@k) "
        "or on HumanEval (pass@k), print the scores and write an HTML report. Episodes run through the rollout "
        "service and every check or program runs in the sandbox service (start them with `limi up`).",
        epilog="Examples: limi-evaluate --checkpoint runs/step-9 --benchmark limi-basics | "
        "limi-evaluate --endpoint http://127.0.0.1:8000/v1 --model policy --benchmark humaneval --samples 5 --k 1 --k 5 | "
        "limi-evaluate --reference canonical --benchmark humaneval (sanity: 164/164) | limi-evaluate --list-benchmarks",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="Hugging Face model directory to serve with a vLLM child process for the evaluation",
    )
    target.add_argument(
        "--endpoint",
        metavar="URL",
        help="an OpenAI-compatible policy that is already running, e.g. http://127.0.0.1:8000/v1",
    )
    target.add_argument(
        "--reference",
        choices=("canonical", "prompt"),
        help="HumanEval sanity run without a policy: the canonical solutions (all pass) or the bare prompts (none pass)",
    )
    parser.add_argument(
        "--model",
        default="",
        help="model name to request from --endpoint (default: the first one it serves); the served name for --checkpoint",
    )
    parser.add_argument(
        "--benchmark",
        action="append",
        metavar="NAME",
        help="benchmark name or suite file (.toml/.json); repeat for several (default: limi-basics); see --list-benchmarks",
    )
    parser.add_argument("--list-benchmarks", action="store_true", help="print the known benchmarks and exit")
    parser.add_argument(
        "--checkpoint-id",
        default="",
        help="name of the evaluated checkpoint in results and the leaderboard "
        "(default: the checkpoint directory's name, the model name, or 'reference')",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        metavar="R",
        help="rounds per subtask, feedback between them (default: the suite's, usually 3; 1 for humaneval-tools)",
    )
    parser.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="ID",
        help="evaluate only this task (suite task id or HumanEval/N); repeatable",
    )
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate only the first N tasks or problems")
    parser.add_argument(
        "--samples", type=int, default=0, metavar="N", help="HumanEval completions per problem (default 1)"
    )
    parser.add_argument(
        "--k",
        type=int,
        action="append",
        default=[],
        metavar="K",
        help="report pass@K (K <= samples); repeatable (default 1)",
    )
    parser.add_argument(
        "--dataset-size",
        type=int,
        default=None,
        metavar="N",
        help="training samples behind the checkpoint, for the score-versus-samples plot",
    )
    parser.add_argument(
        "--step", type=int, default=None, help="training step of the checkpoint, shown in the leaderboard"
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="forget a finished evaluation of the same checkpoint and benchmark and run it again",
    )
    parser.add_argument(
        "--sandbox",
        metavar="HOST:PORT",
        help="sandbox service address (default $LIMI_EVALUATOR_SANDBOX_ADDRESS or 127.0.0.1:50052)",
    )
    parser.add_argument(
        "--rollout",
        metavar="HOST:PORT",
        help="rollout service address (default $LIMI_EVALUATOR_ROLLOUT_ADDRESS or 127.0.0.1:50053)",
    )
    parser.add_argument(
        "--benchmarks-dir",
        type=pathlib.Path,
        help="folder with humaneval/ and agencybench-v2/ (default ../shared/benchmarks beside the repository)",
    )
    parser.add_argument("--suites-dir", type=pathlib.Path, help="folder of extra suite files offered by name")
    parser.add_argument(
        "--data-dir",
        type=pathlib.Path,
        help="where the results store lives (default $LIMI_DATA_DIR/evaluator or ~/.local/share/limi/evaluator)",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="folder for the reports (default <data-dir>/reports); each evaluation gets a sub-folder",
    )
    parser.add_argument(
        "--concurrency", type=int, default=0, metavar="N", help="tasks run at the same time (default 2)"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=0,
        metavar="N",
        help="HumanEval programs run at the same time in the sandbox (default 8)",
    )
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 0.6, LIMI's)")
    parser.add_argument("--max-tokens", type=int, default=0, metavar="N", help="tokens per model turn (default 1024)")
    parser.add_argument("--max-turns", type=int, default=0, metavar="N", help="model turns per round (default 30)")
    parser.add_argument("--json", action="store_true", help="print each EvalResult as JSON instead of the table")
    return parser


def _settings(args: argparse.Namespace) -> EvaluatorSettings:
    settings = load_config(EvaluatorSettings, EvaluatorSettings.PREFIX)
    data_dir = args.data_dir or (
        pathlib.Path(os.environ["LIMI_DATA_DIR"]) / "evaluator"
        if os.environ.get("LIMI_DATA_DIR")
        else settings.data_dir / "evaluator"
    )
    overrides = {"data_dir": data_dir.expanduser(), "policy_mode": "vllm", "consume_checkpoints": False}
    for option, field in (
        ("sandbox", "sandbox_address"),
        ("rollout", "rollout_address"),
        ("benchmarks_dir", "benchmarks_dir"),
        ("suites_dir", "suites_dir"),
        ("temperature", "temperature"),
    ):
        if getattr(args, option) is not None:
            overrides[field] = getattr(args, option)
    for option, field in (
        ("concurrency", "task_concurrency"),
        ("parallel", "humaneval_parallel"),
        ("max_tokens", "max_tokens"),
        ("max_turns", "max_turns"),
    ):
        if getattr(args, option):
            overrides[field] = getattr(args, option)
    if args.checkpoint and args.model:
        overrides["served_model_name"] = args.model
    if args.samples:
        overrides["humaneval_samples"] = args.samples
    return dataclasses.replace(settings, **overrides)


async def _checkpoint_id(args: argparse.Namespace) -> str:
    if args.checkpoint_id:
        return args.checkpoint_id
    if args.checkpoint:
        return pathlib.Path(args.checkpoint).resolve().name
    if args.endpoint:
        return args.model or next(iter(await probe_endpoint(args.endpoint)), "endpoint")
    return "reference"


def print_result(result: ev.EvalResult, out) -> None:
    headline = primary_metric(result.aggregate)
    print(
        f"\n{result.benchmark} on {result.checkpoint_id}   ({headline} = {result.aggregate.get(headline, 0.0):.2f})",
        file=out,
    )
    width = max((len(k) for k in result.aggregate), default=6)
    for key, value in sorted(result.aggregate.items()):
        print(f"  {key:<{width}}  {value:10.2f}", file=out)
    print(f"  {'task':<40} {'subtask':<10} {'grade':>6}  rounds", file=out)
    for task in result.tasks:
        rounds = " ".join(
            ("P" if r.passed else ".") if "n" in task.metrics else f"{r.score:g}{'*' if r.passed else ''}"
            for r in task.rounds
        )
        print(f"  {task.task_id[:40]:<40} {task.subtask_id[:10]:<10} {task.score:6.2f}  {rounds}", file=out)
    print(f"  report: {result.report_uri}", file=out)


async def _evaluate(args: argparse.Namespace, settings: EvaluatorSettings, out) -> list[ev.EvalResult]:
    catalog = Catalog(settings.benchmarks_dir, settings.suites_dir)
    store = EvaluationStore(settings.data_dir / "evaluations.sqlite")
    workspaces = SandboxWorkspaces(settings.sandbox_address, settings.sandbox_backend)
    evaluator = Evaluator(settings, store, catalog, workspaces, reports_dir=args.out)
    policies = PolicyProvider(settings)
    try:

        def specs(checkpoint_id: str) -> list[EvaluationSpec]:
            return [
                EvaluationSpec(
                    checkpoint_id=checkpoint_id,
                    benchmark=name,
                    max_rounds=args.rounds,
                    task_ids=tuple(args.task),
                    limit=args.limit,
                    samples=args.samples,
                    ks=tuple(args.k),
                    dataset_size=args.dataset_size,
                    step=args.step,
                    reference=args.reference or "",
                )
                for name in args.benchmark or ["limi-basics"]
            ]

        for spec in specs("checking"):  # bad input fails here, before any policy is probed or started
            evaluator.prepare(spec)
        prepared = [evaluator.prepare(spec) for spec in specs(await _checkpoint_id(args))]
        if args.rerun:
            for p in prepared:
                store.forget(p.evaluation_id)
        needs_policy = any(p.needs_policy and store.get(p.evaluation_id) is None for p in prepared)
        if needs_policy and not (args.checkpoint or args.endpoint):
            raise InvalidArgument(
                "--checkpoint",
                "name a checkpoint directory or an --endpoint to evaluate (or --reference for a HumanEval sanity run)",
            )
        if not needs_policy:
            serving = contextlib.nullcontext()
        elif args.endpoint:
            serving = policies.endpoint(args.endpoint, args.model)
        else:
            serving = policies.serve(str(pathlib.Path(args.checkpoint).expanduser().resolve()))
        results = []
        async with serving as policy:
            for p in prepared:
                result = await evaluator.run(p, policy)
                results.append(result)
                if args.json:
                    print(json_format.MessageToJson(result, preserving_proto_field_name=True), file=out)
                else:
                    print_result(result, out)
        return results
    finally:
        await workspaces.close()
        store.close()


def main(argv: list[str] | None = None, out=None) -> int:
    """Run `limi-evaluate` with `argv` (default: sys.argv[1:]); returns the exit code."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"limi-evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.list_benchmarks:
        for benchmark in Catalog(settings.benchmarks_dir, settings.suites_dir).list():
            print(f"{benchmark.name:<20} {benchmark.kind:<16} {benchmark.description}", file=out)
        return EXIT_OK
    try:
        asyncio.run(_evaluate(args, settings, out))
    except KeyboardInterrupt:
        print("limi-evaluate: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InvalidArgument as exc:
        print(f"limi-evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FailedPrecondition as exc:
        print(f"limi-evaluate: {exc}", file=sys.stderr)
        return EXIT_PRECONDITION
    except Unavailable as exc:
        print(f"limi-evaluate: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except LimiError as exc:
        print(f"limi-evaluate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
