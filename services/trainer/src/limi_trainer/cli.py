"""`limi-train` (and later `limi train`): one fine-tuning run from the command line, or its Kubernetes Job.

Without `--kubernetes` it trains here: on CPU as one process (gloo), on GPUs under `torchrun`
(every rank runs this same command). The output directory is the run directory: run it again
with the same arguments and it resumes from the last checkpoint. Rank 0 shows a progress bar
and prints where the summary JSON, the loss curve and the checkpoints are.

With `--kubernetes` it prints a schema-validated Job (plus a headless Service for several nodes)
that runs the same training on GPU nodes; `--submit` creates it through the Kubernetes API.
Paths in the arguments are then paths inside the pod, on the volume mounted at --mount-path.

Exit codes: 0 done, 1 training failed, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from limi_trainer.hyperparameters import PRESETS, Hyperparameters

# Flags that override one hyperparameter each (the rest through --set KEY=VALUE).
_SHORTCUTS = {
    "learning_rate": float,
    "min_learning_rate": float,
    "epochs": int,
    "global_batch_size": int,
    "pack_tokens": int,
    "max_sample_tokens": int,
    "zero_stage": int,
    "seed": int,
    "checkpoint_every_steps": int,
}
_SWITCHES = ("offload_optimizer", "gradient_checkpointing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="limi-train",
        description="Fine-tune a causal LM on a LIMI JSONL dataset (SFT with DeepSpeed ZeRO), or print/submit a Kubernetes Job that does.",
        epilog="Presets: "
        + "; ".join(
            f"{name}: lr {hp.learning_rate:g}->{hp.min_learning_rate:g}, {hp.epochs} epochs, global batch {hp.global_batch_size}, "
            f"ZeRO-{hp.zero_stage}{' + CPU offload' if hp.offload_optimizer else ''}, packs of {hp.pack_tokens} tokens"
            for name, hp in PRESETS.items()
        )
        + ". Every hyperparameter: "
        + ", ".join(f.name for f in _fields())
        + ".",
    )
    data = parser.add_argument_group("what to train")
    data.add_argument(
        "--dataset", required=True, help="LIMI JSONL to train on: a path or a file:// URI (one sample per line)"
    )
    data.add_argument(
        "--dataset-id", default="", help="lineage id of the dataset (the curator's Dataset id); default: the URI"
    )
    data.add_argument(
        "--dataset-hash", default="", help="the dataset's content hash from the curator; default: sha256 of the file"
    )
    data.add_argument(
        "--base-model",
        default="limi-tiny",
        help="Hugging Face model directory or hub id to fine-tune; 'limi-tiny' builds a tiny local model (default)",
    )
    data.add_argument(
        "--output-dir",
        required=True,
        type=pathlib.Path,
        help="the run directory: checkpoints, progress.jsonl, summary.json, loss_curve.png; rerun to resume",
    )
    hp = parser.add_argument_group("hyperparameters")
    hp.add_argument(
        "--preset",
        default="tiny-cpu",
        choices=sorted(PRESETS),
        help="starting hyperparameters (default tiny-cpu; 'limi' is the paper's recipe)",
    )
    hp.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any hyperparameter, e.g. --set warmup_ratio=0.05 (repeatable)",
    )
    for name, kind in _SHORTCUTS.items():
        hp.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=f"override {name}")
    for name in _SWITCHES:
        hp.add_argument(
            f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None, help=f"override {name}"
        )
    hp.add_argument(
        "--no-progress", action="store_true", help="no progress bar (progress still goes to OUTPUT_DIR/progress.jsonl)"
    )
    kube = parser.add_argument_group("Kubernetes (GPU nodes)")
    kube.add_argument(
        "--kubernetes",
        action="store_true",
        help="print a Job manifest (YAML) that runs this training instead of training here",
    )
    kube.add_argument(
        "--submit",
        action="store_true",
        help="with --kubernetes: create the Job (and Service) through the Kubernetes API",
    )
    kube.add_argument(
        "--image", default="", help="container image with limi-trainer installed (required with --kubernetes)"
    )
    kube.add_argument("--namespace", default="default", help="namespace of the Job (default: default)")
    kube.add_argument("--job-name", default="", help="name of the Job (default: limi-train-<run id>)")
    kube.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="nodes (pods); more than 1 makes an Indexed Job with a torchrun rendezvous (default 1)",
    )
    kube.add_argument(
        "--gpus-per-node", type=int, default=8, help="GPUs per node, one training process each (default 8)"
    )
    kube.add_argument("--cpu", default="32", help="CPU request and limit per pod (default 32)")
    kube.add_argument(
        "--memory",
        default="512Gi",
        help="memory request and limit per pod (default 512Gi; optimizer offload lives in host memory)",
    )
    kube.add_argument("--shm-size", default="64Gi", help="size of the in-memory /dev/shm (default 64Gi)")
    kube.add_argument(
        "--volume-claim",
        default="limi-data",
        help="PersistentVolumeClaim with datasets, models and outputs (default limi-data)",
    )
    kube.add_argument("--mount-path", default="/data", help="where the claim is mounted in the pod (default /data)")
    kube.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node label the pods require (repeatable)",
    )
    kube.add_argument("--service-account", default="", help="service account of the pods (default: none mounted)")
    kube.add_argument(
        "--backoff-limit", type=int, default=3, help="pod retries; each resumes from the last checkpoint (default 3)"
    )
    kube.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file for --submit (default: in-cluster, then ~/.kube/config)"
    )
    kube.add_argument("--context", default=None, help="kubeconfig context for --submit")
    return parser


def main(argv: list[str] | None = None) -> int:
    from limi_core.errors import InvalidArgument, LimiError

    args = build_parser().parse_args(argv)
    try:
        hp = _hyperparameters(args)
        if args.kubernetes:
            return _kubernetes(args, hp, argv if argv is not None else sys.argv[1:])
        if args.submit:
            raise InvalidArgument("submit", "needs --kubernetes")
        return _train(args, hp)
    except LimiError as exc:
        print(f"limi-train: {exc}", file=sys.stderr)
        return 2


def _fields():
    import dataclasses

    return dataclasses.fields(Hyperparameters)


def _hyperparameters(args: argparse.Namespace) -> Hyperparameters:
    from limi_core.errors import InvalidArgument
    from limi_trainer import hyperparameters

    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument("set", f"expected KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    for name in (*_SHORTCUTS, *_SWITCHES):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = str(value)
    return hyperparameters.resolve(args.preset, overrides)


def _dataset(args: argparse.Namespace):
    """The dataset input; with --kubernetes the path is one inside the pod, so it is not resolved here."""
    from limi_core.errors import InvalidArgument
    from limi_trainer.dataset import DatasetInput, local_path

    path = local_path(args.dataset)
    if args.kubernetes and not path.is_absolute():
        raise InvalidArgument("dataset", "must be an absolute path inside the pod with --kubernetes")
    uri = path.as_uri() if args.kubernetes else path.resolve().as_uri()
    return DatasetInput(uri=uri, dataset_id=args.dataset_id or uri, content_hash=args.dataset_hash)


def _train(args: argparse.Namespace, hp: Hyperparameters) -> int:
    from limi_core.errors import InvalidArgument
    from limi_trainer import engine, run_job
    from limi_trainer.run_config import CONFIG_FILE, RunConfig, code_revision, run_id_for

    run_job.quiet_libraries()
    dataset = _dataset(args)
    output = args.output_dir.expanduser().resolve()
    config = RunConfig(
        run_id_for(dataset, args.base_model, args.preset, hp),
        dataset,
        args.base_model,
        args.preset,
        hp,
        code_revision(),
    )
    existing = output / CONFIG_FILE
    if existing.exists() and RunConfig.load(output).run_id != config.run_id:
        raise InvalidArgument(
            "output_dir", f"{output} holds another run ({RunConfig.load(output).run_id}); choose a new directory"
        )
    dist = engine.init_distributed()
    if dist.is_main:
        config.save(output)
    import torch

    torch.distributed.barrier()
    listeners = [] if (args.no_progress or not dist.is_main) else [_ProgressBar()]
    code = _run_with(output, listeners, is_main=dist.is_main)
    if dist.is_main and code == 0:
        summary = json.loads((output / "summary.json").read_text())
        print(
            f"limi-train: {summary['plan']['total_steps']} steps, loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f}, "
            f"{summary['tokens_per_second']:.0f} tokens/s, packing efficiency {summary['plan']['packing_efficiency']:.1%}"
        )
        print(
            f"limi-train: summary {output / 'summary.json'}; loss curve {summary.get('loss_curve', '')}; final checkpoint {summary['checkpoints'][-1]}"
        )
    return code


def _run_with(output: pathlib.Path, listeners: list, *, is_main: bool) -> int:
    """Train with progress listeners; 2 when the input cannot be trained on (a crash raises)."""
    from limi_core.errors import LimiError
    from limi_trainer import reporting, training

    try:
        training.train(output, listeners=listeners)
    except LimiError as exc:
        if is_main:
            reporting.ProgressLog(output).emit("failed", kind="invalid_input", error=f"{type(exc).__name__}: {exc}")
        print(f"limi-train: {exc}", file=sys.stderr)
        return 2
    finally:
        for listener in listeners:
            listener.close()
    return 0


class _ProgressBar:
    def __init__(self) -> None:
        self._bar = None

    def __call__(self, record: dict) -> None:
        from tqdm import tqdm

        if record["event"] == "started":
            self._bar = tqdm(
                total=record["total_steps"],
                initial=record["resumed_from_step"],
                unit="step",
                desc="training",
                file=sys.stderr,
            )
        elif record["event"] == "step" and self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                tok_s=f"{record['tokens_per_second']:.0f}",
                eta=f"{record['eta_seconds']:.0f}s",
            )
        elif record["event"] == "checkpoint" and self._bar is not None:
            self._bar.write(f"checkpoint at step {record['step']}: {record['path']}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _kubernetes(args: argparse.Namespace, hp: Hyperparameters, argv: list[str]) -> int:
    from limi_core.errors import InvalidArgument
    from limi_trainer import kubernetes_job
    from limi_trainer.run_config import code_revision, run_id_for

    if not args.image:
        raise InvalidArgument("image", "is required with --kubernetes")
    run_id = run_id_for(_dataset(args), args.base_model, args.preset, hp)
    selector = []
    for item in args.node_selector:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument("node_selector", f"expected KEY=VALUE, got {item!r}")
        selector.append((key, value))
    spec = kubernetes_job.JobSpec(
        name=args.job_name or f"limi-train-{run_id.removeprefix('run-')}",
        image=args.image,
        namespace=args.namespace,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        cpu=args.cpu,
        memory=args.memory,
        shm_size=args.shm_size,
        volume_claim=args.volume_claim,
        mount_path=args.mount_path,
        node_selector=tuple(selector),
        service_account=args.service_account,
        backoff_limit=args.backoff_limit,
        code_revision=os.environ.get("LIMI_CODE_REVISION") or code_revision(),
        run_id=run_id,
    )
    objects = kubernetes_job.job_manifests(spec, _training_args(argv))
    kubernetes_job.validate(objects)
    if args.submit:
        for name in kubernetes_job.submit(objects, kubeconfig=args.kubeconfig, context=args.context):
            print(f"limi-train: created {name} in namespace {args.namespace}")
        return 0
    sys.stdout.write(kubernetes_job.to_yaml(objects))
    return 0


_KUBERNETES_ONLY = {
    "--kubernetes": 0,
    "--submit": 0,
    "--image": 1,
    "--namespace": 1,
    "--job-name": 1,
    "--nodes": 1,
    "--gpus-per-node": 1,
    "--cpu": 1,
    "--memory": 1,
    "--shm-size": 1,
    "--volume-claim": 1,
    "--mount-path": 1,
    "--node-selector": 1,
    "--service-account": 1,
    "--backoff-limit": 1,
    "--kubeconfig": 1,
    "--context": 1,
}


def _training_args(argv: list[str]) -> list[str]:
    """The command line without the Kubernetes flags: what each pod runs."""
    kept, skip = [], 0
    for item in argv:
        if skip:
            skip -= 1
            continue
        flag = item.split("=", 1)[0]
        if flag in _KUBERNETES_ONLY:
            skip = _KUBERNETES_ONLY[flag] if "=" not in item else 0
            continue
        kept.append(item)
    return [*kept, "--no-progress"] if "--no-progress" not in kept else kept


def console_main() -> None:
    """The `limi-train` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
