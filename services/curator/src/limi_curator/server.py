"""Wiring of the curator service: its servicer, the trajectory intake, metrics, on the shared scaffold.

On start (once NATS is connected) the servicer gets the event publisher and the durable
trajectory consumer starts. On stop the consumer takes no new trajectories and finishes the one
in hand within the grace period; the gRPC server then drains its calls (limi_core.service).
"""

from __future__ import annotations

import sqlite3
import sys

import grpc

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi_core.service import EXIT_CONFIG, BackgroundWork, BusConnection, run_main
from limi_curator.curator import Curator
from limi_curator.intake import TrajectoryIntake
from limi_curator.metrics import register_pool_collector
from limi_curator.servicer import CuratorServicer
from limi_curator.settings import CuratorSettings


class CuratorApp:
    name = "curator"
    service_names = (curator_pb2.DESCRIPTOR.services_by_name["CuratorService"].full_name,)

    def __init__(self, settings: CuratorSettings) -> None:
        self.curator = Curator(settings)
        self.servicer = CuratorServicer(self.curator)
        self.intake = TrajectoryIntake(self.curator.trajectories)
        register_pool_collector(self.curator.pool.counts_by_source_and_status)
        self.intake_work = BackgroundWork("curator trajectory intake")

    def register(self, server: grpc.aio.Server) -> None:
        curator_pb2_grpc.add_CuratorServiceServicer_to_server(self.servicer, server)

    async def start(self, connection: BusConnection) -> None:
        self.servicer.attach(connection.publisher)
        self.intake_work.start(self.intake.run_until_stopped(connection, self.intake_work.stop_requested))

    async def stop(self, grace_seconds: float) -> None:
        await self.intake_work.stop(grace_seconds)


def build_app(settings: CuratorSettings) -> CuratorApp:
    try:
        return CuratorApp(settings)
    except (OSError, sqlite3.Error) as exc:
        print(f"limi-curator: cannot open the curator database {settings.database_path}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def main() -> None:
    run_main(build_app, CuratorSettings)
