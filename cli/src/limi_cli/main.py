"""`limi`: the command line of the embedded stack.

  limi demo          the whole LIMI loop on this machine: curate, collect, train, evaluate (limi demo --help)
  limi models ...    import a base model (GGUF or Hugging Face) into the cache, list the cache
  limi up            start nats-server and the five services; Ctrl-C stops everything
  limi status        print each service's health
  limi dead-letters  print the dead-letter records a person should look at
  limi curator ...   the curator's commands (queries, synthesis, dedupe, datasets): limi curator --help
  limi train ...     one training run (or a Kubernetes Job for one): limi train --help
  limi evaluate ...  score a checkpoint or an endpoint on a suite: limi evaluate --help

Exit codes (limi_core.exit_codes, the README's table): 0 success, 1 the stack or the work failed,
2 bad usage or configuration, 3 a port is taken, 4 a service or NATS did not answer (also `limi
status` when a service is not SERVING), 5 something needed is missing (nats-server).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import pathlib
import signal
import sys
import threading

from limi_cli import demo, models
from limi_cli.stack import DEFAULT_NATS_PORT, EmbeddedStack, StackError, read_state
from limi_core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE
from limi_core.health_check import check_health
from limi_core.settings import DEFAULT_PORTS, SERVICES, default_data_dir


def _data_dir(value: str | None) -> pathlib.Path:
    return pathlib.Path(value or os.environ.get("LIMI_DATA_DIR") or default_data_dir()).expanduser()


def cmd_up(args: argparse.Namespace) -> int:
    stack = EmbeddedStack(
        _data_dir(args.data_dir), port_offset=args.port_offset, nats_port=args.nats_port, grace_seconds=args.grace
    )
    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"limi: starting nats-server and {len(stack.services)} services (data in {stack.data_dir})", flush=True)
    try:
        stack.start(timeout=args.timeout)
    except StackError as exc:
        print(f"limi up: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"  {'nats':<10} {stack.nats.url:<24} log {stack.nats.log_file}")
    for endpoint in stack.endpoints.values():
        print(
            f"  {endpoint.name:<10} grpc {endpoint.grpc_address:<19} metrics http://{endpoint.metrics_address}/metrics  log {endpoint.log_file}"
        )
    print("limi: all services SERVING; press Ctrl-C to stop", flush=True)
    exit_code = EXIT_OK
    while not stopping.wait(0.5):
        dead = stack.dead_services()
        if dead:
            name, code = next(iter(dead.items()))
            print(
                f"limi up: the {name} service exited unexpectedly with code {code}: {stack.last_log_line(name)}; stopping",
                file=sys.stderr,
            )
            exit_code = EXIT_FAILED
            break
    print("limi: stopping", flush=True)
    codes = stack.stop()
    print("limi: stopped (" + ", ".join(f"{name} exit {code}" for name, code in codes.items()) + ")", flush=True)
    return exit_code


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state(_data_dir(args.data_dir))
    if state:
        addresses = {name: info["grpc"] for name, info in state["services"].items()}
    else:
        addresses = {name: f"127.0.0.1:{DEFAULT_PORTS[name].grpc + args.port_offset}" for name in SERVICES}
    healthy = True
    for name, address in addresses.items():
        status = check_health(address)
        healthy &= status == "SERVING"
        print(f"{name:<10} {address:<21} {status}")
    return EXIT_OK if healthy else EXIT_UNREACHABLE


def cmd_dead_letters(args: argparse.Namespace) -> int:
    import nats.errors

    from limi_core import bus
    from limi_core.consumer import read_dead_letters

    state = read_state(_data_dir(args.data_dir))
    url = args.nats_url or (state or {}).get("nats_url") or f"nats://127.0.0.1:{DEFAULT_NATS_PORT}"

    async def show() -> int:
        try:
            nc = await bus.connect(url, "limi-cli", connect_timeout=3)
        except nats.errors.NoServersError as exc:
            print(f"limi dead-letters: cannot reach NATS at {url} ({type(exc).__name__})", file=sys.stderr)
            return EXIT_UNREACHABLE
        try:
            records = await read_dead_letters(nc.jetstream(), args.limit)
        finally:
            await nc.close()
        for record in records:
            print(
                f"{record.dead_at.ToJsonString()} {record.stream}/{record.consumer} seq={record.stream_sequence} "
                f"id={record.msg_id} deliveries={record.deliveries} error={record.error}"
            )
        print(f"{len(records)} dead letter(s)")
        return 0

    return asyncio.run(show())


# Subcommands that belong to one service: the rest of the command line goes to its own CLI.
DELEGATED = {
    "curator": (
        "limi_curator.cli",
        "the curator's commands: import, list, publish-set, emit, synthesize, dedupe, curate, export/import LIMI, reports",
    ),
    "train": ("limi_trainer.cli", "run one SFT training run here, or write/submit a Kubernetes Job for one"),
    "evaluate": (
        "limi_evaluator.cli",
        "score a checkpoint or an endpoint on a suite or HumanEval and write the report",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="limi", description="limi: curate, collect, train and evaluate agent trajectories (LIMI)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            help="where NATS data, service state and logs live (default: $LIMI_DATA_DIR or ~/.local/share/limi)",
        )
        p.add_argument(
            "--port-offset", type=int, default=0, help="add this to every default port (to run a second stack)"
        )

    demo_parser = sub.add_parser(
        "demo",
        help="run the whole loop offline on CPU: curate, collect, fine-tune, evaluate before/after",
        description=demo.__doc__.split("\n\n")[0],
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=lambda args: demo.cmd_demo(args, _data_dir))

    models_parser = sub.add_parser(
        "models", help="import a base model (a GGUF file or a Hugging Face directory) into the cache; list it"
    )
    models.add_arguments(models_parser)

    up = sub.add_parser("up", help="start the embedded stack (nats-server and every service) until Ctrl-C")
    common(up)
    up.add_argument(
        "--nats-port",
        type=int,
        default=DEFAULT_NATS_PORT,
        help=f"port of the embedded nats-server (default {DEFAULT_NATS_PORT})",
    )
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for every service to report SERVING")
    up.add_argument(
        "--grace", type=float, default=10.0, help="seconds each service gets to finish in-flight work on stop"
    )
    up.set_defaults(run=cmd_up)

    status = sub.add_parser("status", help="print each service's health; exit 1 unless all are SERVING")
    common(status)
    status.set_defaults(run=cmd_status)

    dead = sub.add_parser("dead-letters", help="print messages that failed max_deliver times")
    common(dead)
    dead.add_argument("--nats-url", help="NATS server (default: the running stack's)")
    dead.add_argument("--limit", type=int, default=100, help="how many of the newest records to print")
    dead.set_defaults(run=cmd_dead_letters)
    for name, (_module, description) in DELEGATED.items():
        sub.add_parser(name, help=description, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        sys.exit(module.main(argv[1:]))
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))
