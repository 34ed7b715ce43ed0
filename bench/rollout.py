"""Benchmark: the rollout's own overhead per turn, and episodes per second with 64 at once.

A fast scripted policy (HTTP, same API as vLLM) asks for `true` in the shell twice, then
answers; the tools run in a real sandbox service started for the run. Per turn, the overhead is
the turn's wall time minus the time waiting for the policy's HTTP answer and minus the time in
the sandbox RPC: the agent loop's own bookkeeping (tool-call checks, trajectory recording,
message building). The floor printed beside it is the same turn's policy round trip alone.

Usage: python bench/rollout.py [--episodes 64] [--json bench/results/rollout.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2 as tp
from limi_core.health_check import wait_for_health
from limi_core.logs import configure_logging
from limi_core.policy_client import PolicyClient, Sampling
from limi_core.processes import SUPERVISED_CHILD, NatsServer, free_port, supervised
from limi_rollout.episode import EpisodeLimits
from limi_rollout.runner import EpisodeRequest, EpisodeRunner
from limi_rollout.sandbox_tools import SandboxToolBoxFactory
from limi_testing.scripted_policy import Reply, ScriptedPolicyServer


def fast_policy(body: dict) -> Reply:
    if sum(1 for m in body["messages"] if m["role"] == "tool") < 2:
        return Reply(tool_calls=(("shell", '{"command": "true"}'),))
    return Reply(content="done")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(episodes: int, sandbox_address: str, endpoint: str) -> dict:
    policy = PolicyClient(endpoint, "scripted")
    toolboxes = SandboxToolBoxFactory(sandbox_address)
    runner = EpisodeRunner(policy, toolboxes)

    def request(n: int) -> EpisodeRequest:
        return EpisodeRequest(
            query=query_pb2.Query(id=f"q{n}", text=f"task {n}"),
            system_prompt="bench",
            sampling=Sampling(),
            limits=EpisodeLimits(),
        )

    # Sequential episodes: per-turn overhead without contention.
    overheads, model = [], []
    for n in range(20):
        episode = await runner.run(request(n))
        overheads += episode.turn_overheads
        model += [s.duration.ToNanoseconds() / 1e9 for s in episode.trajectory.steps if s.role == tp.ROLE_ASSISTANT]
    # Concurrent episodes.
    started = time.perf_counter()
    results = await asyncio.gather(*(runner.run(request(1000 + n)) for n in range(episodes)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    completed = [
        r
        for r in results
        if not isinstance(r, BaseException) and r.trajectory.outcome.status == tp.OUTCOME_STATUS_COMPLETED
    ]
    await policy.close()
    await toolboxes.close()
    return {
        "turn_overhead_p50_ms": percentile(overheads, 0.5) * 1e3,
        "turn_overhead_p99_ms": percentile(overheads, 0.99) * 1e3,
        "policy_round_trip_p50_ms": percentile(model, 0.5) * 1e3,
        "concurrent_episodes": episodes,
        "episodes_per_s": len(completed) / elapsed,
        "errors": len(errors) + (episodes - len(errors) - len(completed)),
        "first_error": repr(errors[0]) if errors else "",
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64, help="concurrent episodes (default 64)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    configure_logging("bench", "ERROR", "text")
    with tempfile.TemporaryDirectory() as tmp, ScriptedPolicyServer(fast_policy) as policy:
        nats = NatsServer(pathlib.Path(tmp) / "nats").start()
        address = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "LIMI_NATS_URL": nats.url,
            "LIMI_DATA_DIR": tmp,
            "LIMI_SANDBOX_GRPC_ADDRESS": address,
            "LIMI_SANDBOX_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
            "LIMI_LOG_LEVEL": "WARNING",
        }
        sandbox = subprocess.Popen(
            supervised([sys.executable, "-m", "limi_sandbox"]), env=env, stderr=subprocess.DEVNULL, **SUPERVISED_CHILD
        )
        try:
            wait_for_health(address, timeout=60, process=sandbox)
            result = asyncio.run(run(args.episodes, address, policy.endpoint))
        finally:
            sandbox.terminate()
            sandbox.wait(30)
            nats.stop()
    print(f"rollout: scripted policy over HTTP, tools in a real sandbox service ({os.cpu_count()} cores)")
    print("| figure | value |\n| --- | ---: |")
    print(f"| per-turn overhead p50 (ms) | {result['turn_overhead_p50_ms']:.2f} |")
    print(f"| per-turn overhead p99 (ms) | {result['turn_overhead_p99_ms']:.2f} |")
    print(f"| policy round trip p50 (ms), for scale | {result['policy_round_trip_p50_ms']:.2f} |")
    print(
        f"| overhead as a share of the policy round trip | {100 * result['turn_overhead_p50_ms'] / result['policy_round_trip_p50_ms']:.2f}% |"
    )
    print(f"| episodes/s with {result['concurrent_episodes']} concurrent | {result['episodes_per_s']:.1f} |")
    print(f"| errors among the concurrent episodes | {result['errors']} {result['first_error']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
