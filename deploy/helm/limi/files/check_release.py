"""`helm test <release>`: every limi service of the release answers gRPC health, and NATS JetStream is reachable.

The chart's test pod (templates/tests/) runs this file with a limi image's Python, so it uses
limi_core's own health client and the nats-py the services use. For each `--service
name=host:port` it asks grpc.health.v1 for the overall ("") status until that is SERVING; then it
connects to `--nats-url`, asks JetStream for the account information (which fails when JetStream
is off) and looks up every stream limi declares in `limi_core.bus.STREAMS` (the services create
them when they start). Each check is retried until `--timeout` seconds after the start, so a test
run right after `helm install` waits for pods that are still starting. It prints one line per
check and exits 1 when any check failed. It does not call the services' own RPCs, ask the policy
server (vLLM) for anything, or start a training or evaluation run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import nats
import nats.errors

from limi_core import bus
from limi_core.health_check import check_health

SERVING = "SERVING"


def service_argument(text: str) -> tuple[str, str]:
    name, _, address = text.partition("=")
    if not name or ":" not in address:
        raise argparse.ArgumentTypeError(f"expected name=host:port, got {text!r}")
    return name, address


def wait_for_serving(address: str, deadline: float) -> str:
    """The service's last health status: SERVING, or what it still said at `deadline`."""
    status = check_health(address, timeout=2.0)
    while status != SERVING and time.monotonic() < deadline:
        time.sleep(1.0)
        status = check_health(address, timeout=2.0)
    return status


async def jetstream_problems(js) -> list[str]:
    try:
        await js.account_info()
    except (TimeoutError, nats.errors.Error) as exc:
        return [f"JetStream does not answer: {exc or type(exc).__name__}"]
    problems = []
    for spec in bus.STREAMS:
        try:
            await js.stream_info(spec.name)
        except (TimeoutError, nats.errors.Error) as exc:
            problems.append(f"stream {spec.name}: {exc or type(exc).__name__}")
    return problems


async def wait_for_jetstream(url: str, deadline: float) -> list[str]:
    """What is still wrong with JetStream at `url` at `deadline`; empty when all is well."""
    while True:
        try:
            nc = await nats.connect(url, name="limi-helm-test", connect_timeout=2, allow_reconnect=False)
            break
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            if time.monotonic() >= deadline:
                return [f"no NATS server answered at {url}: {exc or type(exc).__name__}"]
            await asyncio.sleep(1.0)
    try:
        js = nc.jetstream(timeout=2.0)
        problems = await jetstream_problems(js)
        while problems and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            problems = await jetstream_problems(js)
        return problems
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--service",
        type=service_argument,
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="a gRPC service that must report SERVING (repeat for each service)",
    )
    parser.add_argument("--nats-url", required=True, help="the NATS server the services use")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds from the start until a check that still fails counts as failed",
    )
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    failed = False
    for name, address in args.service:
        status = wait_for_serving(address, deadline)
        failed |= status != SERVING
        print(f"{'ok' if status == SERVING else 'FAILED':<7} {name:<10} {address:<32} {status}", flush=True)
    problems = asyncio.run(wait_for_jetstream(args.nats_url, deadline))
    failed |= bool(problems)
    summary = "; ".join(problems) or f"JetStream answers, the {len(bus.STREAMS)} limi streams exist"
    print(f"{'FAILED' if problems else 'ok':<7} {'nats':<10} {args.nats_url:<32} {summary}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
