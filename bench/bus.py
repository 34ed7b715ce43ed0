"""Benchmark: trajectory events over JetStream with limi's exactly-once settings versus raw JetStream.

Both sides run in the same process against the same fresh nats-server, with the same payload:
- raw: `js.publish` (no message id) awaiting each ack; a pull consumer fetching batches and
  acking with a plain `ack()`;
- limi: `EventPublisher.publish` (deterministic Nats-Msg-Id, retry wrapper, protobuf) and
  `EventConsumer` (durable, explicit `ack_sync`, an `in_progress` heartbeat task per message,
  dead-letter path armed).
Publishing and consuming overlap; latency is from the start of a publish to the handler seeing
the message. Prints events/s, p50/p99 latency, and limi/raw ratios; `--json` writes the figures.

Usage: python bench/bus.py [--events 2000] [--payload-kib 16] [--json bench/results/bus.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
import tempfile
import time

from nats.js import api

from limi.trajectory.v1 import trajectory_pb2
from limi_core import bus
from limi_core.consumer import ConsumerSpec, Delivery, EventConsumer
from limi_core.events import EventPublisher
from limi_core.logs import configure_logging
from limi_core.processes import NatsServer


def make_event(n: int, payload_bytes: int) -> trajectory_pb2.Trajectory:
    trajectory = trajectory_pb2.Trajectory(id=f"t{n}")
    trajectory.lineage.query_id = f"q{n}"
    trajectory.steps.add(index=0, role=trajectory_pb2.ROLE_TOOL).tool_result.output = "x" * payload_bytes
    return trajectory


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_raw(js, events: list[trajectory_pb2.Trajectory]) -> dict:
    subject = bus.TRAJECTORIES_RECORDED
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    subscription = await js.pull_subscribe(
        subject,
        durable="bench-raw",
        stream="LIMI_TRAJECTORIES",
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=10_000),
    )

    async def consume() -> None:
        while len(latencies) < len(events):
            try:
                messages = await subscription.fetch(64, timeout=1.0)
            except TimeoutError:
                continue
            for msg in messages:
                event = trajectory_pb2.Trajectory.FromString(msg.data)
                latencies.append(time.perf_counter() - sent[event.id])
                await msg.ack()
        done.set()

    consumer = asyncio.create_task(consume())
    started = time.perf_counter()
    for event in events:
        sent[event.id] = time.perf_counter()
        await js.publish(subject, event.SerializeToString())
    await done.wait()
    elapsed = time.perf_counter() - started
    await consumer
    await js.delete_consumer("LIMI_TRAJECTORIES", "bench-raw")
    return {
        "events_per_s": len(events) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


async def run_limi(nc, js, events: list[trajectory_pb2.Trajectory]) -> dict:
    publisher = EventPublisher.for_connection(nc, js)
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def handle(delivery: Delivery) -> None:
        event = delivery.decode(trajectory_pb2.Trajectory)
        latencies.append(time.perf_counter() - sent[event.id])

    spec = ConsumerSpec("LIMI_TRAJECTORIES", "bench-limi", bus.TRAJECTORIES_RECORDED, concurrency=64, fetch_batch=64)
    stop = asyncio.Event()
    consumer = asyncio.create_task(EventConsumer(js, spec, handle, publisher=publisher).run(stop))
    started = time.perf_counter()
    for event in events:
        sent[event.id] = time.perf_counter()
        await publisher.publish(bus.TRAJECTORIES_RECORDED, event, f"bench:{event.id}")
    while len(latencies) < len(events):
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    stop.set()
    await consumer
    return {
        "events_per_s": len(events) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


async def main(args: argparse.Namespace) -> dict:
    configure_logging("bench", "ERROR", "text")
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(pathlib.Path(store)).start()
        try:
            nc = await bus.connect(server.url, "bench")
            js = nc.jetstream()
            await bus.ensure_streams(js)
            raw_events = [make_event(n, args.payload_kib * 1024) for n in range(args.events)]
            limi_events = [make_event(n + args.events, args.payload_kib * 1024) for n in range(args.events)]
            await run_raw(js, raw_events[: min(200, args.events)])  # warm-up, not reported
            await js.purge_stream("LIMI_TRAJECTORIES")
            raw = await run_raw(js, raw_events)
            await js.purge_stream("LIMI_TRAJECTORIES")
            limi = await run_limi(nc, js, limi_events)
            await nc.close()
        finally:
            server.stop()
    return {
        "events": args.events,
        "payload_kib": args.payload_kib,
        "raw": raw,
        "limi": limi,
        "ratio_throughput": limi["events_per_s"] / raw["events_per_s"],
        "ratio_p50": limi["p50_ms"] / raw["p50_ms"],
        "ratio_p99": limi["p99_ms"] / raw["p99_ms"],
    }


def report(result: dict) -> str:
    raw, limi = result["raw"], result["limi"]
    return "\n".join(
        [
            f"bus: {result['events']} trajectory events of {result['payload_kib']} KiB, publish and consume overlapping",
            "| path | events/s | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: |",
            f"| raw JetStream (no msg id, plain ack) | {raw['events_per_s']:.0f} | {raw['p50_ms']:.2f} | {raw['p99_ms']:.2f} |",
            f"| limi exactly-once (msg id, ack_sync, heartbeat) | {limi['events_per_s']:.0f} | {limi['p50_ms']:.2f} | {limi['p99_ms']:.2f} |",
            f"| ratio limi/raw | {result['ratio_throughput']:.2f}x | {result['ratio_p50']:.2f}x | {result['ratio_p99']:.2f}x |",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="trajectory-event throughput and latency: limi exactly-once vs raw JetStream"
    )
    parser.add_argument("--events", type=int, default=2000, help="events per side (default 2000)")
    parser.add_argument("--payload-kib", type=int, default=16, help="size of each trajectory event in KiB (default 16)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    print(report(outcome))
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(outcome, indent=2))
    sys.exit(0)
