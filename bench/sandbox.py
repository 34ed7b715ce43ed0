"""Benchmark: sandbox sessions and commands versus a bare `subprocess.run` on the host (the floor).

One run starts a fresh nats-server and a real sandbox service process (bubblewrap backend, warm
pool), and measures from a gRPC client in this process:
- CreateSession from the warm pool (each followed by CloseSession; the pool refills in between),
  and cold (a workspace size the pool does not hold, so a sandbox starts inside the call);
- the round trip of a warm Exec of `true` in one session, from a blocking client whose calling
  thread polls for the answer itself (gRPC's SingleThreadedUnaryStream), and from a grpc.aio
  client, whose hand-offs between its own threads cost more than the rest of the path when the
  machine is busy (both rows are printed, each beside the floor measured with it);
- commands per second with 1, 8 and 64 sessions running `true` concurrently.
Each figure stands beside the same work done by `subprocess.run(["bash", "-c", "true"])` on the
host in the same run (interleaved call by call for latency; right after, from as many threads as
sessions, for throughput): the floor, with no isolation, no RPC and no limits. Prints a markdown table with ratios; `--json` writes the figures.

Usage: python bench/sandbox.py [--creates 60] [--execs 400] [--seconds 3] [--json bench/results/sandbox.json]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc

from limi.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from limi_core.health_check import wait_for_health
from limi_core.processes import NatsServer, free_port, supervised

FLOOR = ["bash", "-c", "true"]
CONCURRENCY = (1, 8, 64)


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3  # noqa: E731
    return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "n": len(ordered)}


def floor_throughput(workers: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds

    def loop() -> int:
        done = 0
        while time.perf_counter() < deadline:
            subprocess.run(FLOOR, check=True)
            done += 1
        return done

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(lambda _: loop(), range(workers)))
    return total / (time.perf_counter() - started)


async def exec_true(stub, session_id: str) -> sandbox_pb2.ExecResult:
    result = None
    async for event in stub.Exec(sandbox_pb2.ExecRequest(session_id=session_id, command="true"), timeout=60):
        if event.WhichOneof("event") == "result":
            result = event.result
    if result is None or result.exit_code != 0:
        raise RuntimeError(f"exec failed: {result}")
    return result


async def measure_creates(stub, count: int, pool_size: int) -> dict:
    warm, cold, cold_starts = [], [], 0
    for n in range(count):
        if n % pool_size == 0:
            await asyncio.sleep(1.0)  # let the pool refill, so that creates measure the warm path
        started = time.perf_counter()
        session = await stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=60)
        (warm if session.warm else cold).append(time.perf_counter() - started)
        await stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session.id), timeout=60)
    for _ in range(max(5, count // 4)):
        started = time.perf_counter()
        session = await stub.CreateSession(
            sandbox_pb2.CreateSessionRequest(limits=sandbox_pb2.Limits(workspace_bytes=96 << 20)), timeout=60
        )
        cold_starts += not session.warm
        cold.append(time.perf_counter() - started)
        await stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session.id), timeout=60)
    return {"warm": percentiles(warm), "cold": percentiles(cold), "warm_fraction": len(warm) / count}


async def measure_exec_latency(stub, count: int) -> tuple[dict, dict]:
    """Sandbox Exec (grpc.aio client) and floor runs interleaved one by one, so that both see the same machine load."""
    session = await stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=60)
    for _ in range(20):
        await exec_true(stub, session.id)
    sandbox, floor = [], []
    for _ in range(count):
        started = time.perf_counter()
        await exec_true(stub, session.id)
        sandbox.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run(FLOOR, check=True)
        floor.append(time.perf_counter() - started)
    await stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session.id), timeout=60)
    return percentiles(sandbox), percentiles(floor)


def measure_exec_latency_blocking(address: str, count: int) -> tuple[dict, dict]:
    """The same with a blocking client whose calling thread polls for the answer: no hand-off between client threads."""
    options = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = sandbox_pb2_grpc.SandboxServiceStub(channel)

        def exec_true_blocking(session_id: str) -> None:
            events = list(stub.Exec(sandbox_pb2.ExecRequest(session_id=session_id, command="true"), timeout=60))
            if not events or events[-1].result.exit_code != 0:
                raise RuntimeError(f"exec failed: {events[-1:]}")

        session = stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=60)
        for _ in range(20):
            exec_true_blocking(session.id)
        sandbox, floor = [], []
        for _ in range(count):
            started = time.perf_counter()
            exec_true_blocking(session.id)
            sandbox.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run(FLOOR, check=True)
            floor.append(time.perf_counter() - started)
        stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=session.id), timeout=60)
    return percentiles(sandbox), percentiles(floor)


async def measure_throughput(stub, sessions: int, seconds: float) -> dict:
    created = await asyncio.gather(
        *(stub.CreateSession(sandbox_pb2.CreateSessionRequest(), timeout=120) for _ in range(sessions))
    )
    errors = 0

    async def loop(session_id: str, deadline: float) -> int:
        nonlocal errors
        done = 0
        while time.perf_counter() < deadline:
            try:
                await exec_true(stub, session_id)
                done += 1
            except (grpc.aio.AioRpcError, RuntimeError):
                errors += 1
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(loop(s.id, started + seconds) for s in created))
    elapsed = time.perf_counter() - started
    await asyncio.gather(
        *(stub.CloseSession(sandbox_pb2.CloseSessionRequest(session_id=s.id), timeout=60) for s in created)
    )
    return {"execs_per_s": sum(counts) / elapsed, "errors": errors}


def wait_for_full_pool(metrics_address: str, size: int, timeout: float = 120.0) -> None:
    wanted = f'limi_sandbox_pool_size{{backend="bwrap"}} {float(size)}'
    deadline = time.monotonic() + timeout
    while wanted not in urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read().decode():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm pool did not refill to {size} within {timeout:g} s")
        time.sleep(0.1)


async def run_benchmark(address: str, metrics_address: str, args: argparse.Namespace) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = sandbox_pb2_grpc.SandboxServiceStub(channel)
        creates = await measure_creates(stub, args.creates, args.pool_size)
        await asyncio.to_thread(
            wait_for_full_pool, metrics_address, args.pool_size
        )  # refills would compete for the CPU
        execs, floor = measure_exec_latency_blocking(address, args.execs)
        execs_aio, floor_aio = await measure_exec_latency(stub, args.execs)
        throughput, floor_rates = {}, {}
        for n in CONCURRENCY:  # each beside its floor, measured right after it
            throughput[n] = await measure_throughput(stub, n, args.seconds)
            floor_rates[n] = await asyncio.to_thread(floor_throughput, n, args.seconds)
    return {
        "create": creates,
        "exec_true": execs,
        "floor_subprocess_run": floor,
        "exec_true_aio": execs_aio,
        "floor_subprocess_run_aio": floor_aio,
        "throughput": {
            str(n): {
                **throughput[n],
                "floor_runs_per_s": floor_rates[n],
                "ratio": throughput[n]["execs_per_s"] / floor_rates[n],
            }
            for n in CONCURRENCY
        },
        "exec_p50_over_floor_ms": execs["p50_ms"] - floor["p50_ms"],
        "cpus": os.cpu_count(),
    }


def main(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as root:
        nats = NatsServer(pathlib.Path(root) / "nats").start()
        address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "LIMI_NATS_URL": nats.url,
            "LIMI_DATA_DIR": root,
            "LIMI_LOG_LEVEL": "WARNING",
            "LIMI_SANDBOX_GRPC_ADDRESS": address,
            "LIMI_SANDBOX_METRICS_ADDRESS": metrics,
            "LIMI_SANDBOX_POOL_SIZE": str(args.pool_size),
            "LIMI_SANDBOX_MAX_SESSIONS": "200",
        }
        service = subprocess.Popen(supervised([sys.executable, "-m", "limi_sandbox"]), env=env, start_new_session=True)
        try:
            wait_for_health(address, "SERVING", timeout=60, process=service)
            time.sleep(1.0)  # the pool fills after SERVING
            return asyncio.run(run_benchmark(address, metrics, args))
        finally:
            service.terminate()
            service.wait(30)
            nats.stop()


def report(r: dict) -> str:
    floor, execs, create = r["floor_subprocess_run"], r["exec_true"], r["create"]
    aio, aio_floor = r["exec_true_aio"], r["floor_subprocess_run_aio"]
    rows = [
        f"sandbox (bwrap) on {r['cpus']} cores; floor = subprocess.run(['bash', '-c', 'true']) on the host, same run",
        "| measure | sandbox p50 ms | sandbox p99 ms | floor p50 ms | floor p99 ms | p50 ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| CreateSession, warm pool ({create['warm_fraction']:.0%} warm) | {create['warm']['p50_ms']:.2f} | {create['warm']['p99_ms']:.2f} "
        f"| {floor['p50_ms']:.2f} | {floor['p99_ms']:.2f} | {create['warm']['p50_ms'] / floor['p50_ms']:.1f}x |",
        f"| CreateSession, cold start | {create['cold']['p50_ms']:.2f} | {create['cold']['p99_ms']:.2f} "
        f"| {floor['p50_ms']:.2f} | {floor['p99_ms']:.2f} | {create['cold']['p50_ms'] / floor['p50_ms']:.1f}x |",
        f"| warm Exec `true` round trip, blocking client | {execs['p50_ms']:.2f} | {execs['p99_ms']:.2f} | {floor['p50_ms']:.2f} "
        f"| {floor['p99_ms']:.2f} | {execs['p50_ms'] / floor['p50_ms']:.2f}x (+{r['exec_p50_over_floor_ms']:.2f} ms) |",
        f"| warm Exec `true` round trip, grpc.aio client | {aio['p50_ms']:.2f} | {aio['p99_ms']:.2f} | {aio_floor['p50_ms']:.2f} "
        f"| {aio_floor['p99_ms']:.2f} | {aio['p50_ms'] / aio_floor['p50_ms']:.2f}x (+{aio['p50_ms'] - aio_floor['p50_ms']:.2f} ms) |",
        "",
        "| concurrent sessions | sandbox execs/s | floor runs/s | ratio | errors |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, t in r["throughput"].items():
        rows.append(
            f"| {n} | {t['execs_per_s']:.0f} | {t['floor_runs_per_s']:.0f} | {t['ratio']:.2f}x | {t['errors']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="sandbox session create and warm Exec latency and throughput vs bare subprocess.run"
    )
    parser.add_argument("--creates", type=int, default=60, help="CreateSession calls from the warm pool (default 60)")
    parser.add_argument(
        "--execs", type=int, default=400, help="sequential Exec `true` calls for the latency figures (default 400)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput measurement (default 3)")
    parser.add_argument("--pool-size", type=int, default=8, help="warm pool size of the service (default 8)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    outcome = main(arguments)
    print(report(outcome))
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(outcome, indent=2))
