"""Wiring of the curator service: its servicer, the trajectory intake, metrics, on the shared scaffold.

On start (the scaffold has connected NATS and handed it to the servicer's `BusLink`) the supervised
durable trajectory consumer starts. On stop the consumer takes no new trajectories and finishes
the ones in hand within the grace period; the gRPC server then drains its calls (limi_core.service).
"""

from __future__ import annotations

import sqlite3
import sys

import grpc

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi_core.exit_codes import EXIT_USAGE
from limi_core.service import BusLink, ServiceContext, run_main
from limi_curator.curator import Curator
from limi_curator.intake import TRAJECTORY_CONSUMER, TrajectoryIntake
from limi_curator.metrics import register_pool_collector
from limi_curator.servicer import CuratorServicer
from limi_curator.settings import CuratorSettings


class CuratorApp:
    name = "curator"
    service_names = (curator_pb2.DESCRIPTOR.services_by_name["CuratorService"].full_name,)

    def __init__(self, settings: CuratorSettings) -> None:
        self.curator = Curator(settings)
        self.bus = BusLink(self.name)
        self.servicer = CuratorServicer(self.curator, self.bus)
        self.intake = TrajectoryIntake(self.curator.trajectories)
        register_pool_collector(self.curator.pool.counts_by_source_and_status)

    def register(self, server: grpc.aio.Server) -> None:
        curator_pb2_grpc.add_CuratorServiceServicer_to_server(self.servicer, server)

    async def start(self, context: ServiceContext) -> None:
        context.consume(TRAJECTORY_CONSUMER, self.intake.handle)

    async def stop(self, grace_seconds: float) -> None:
        return None


def build_app(settings: CuratorSettings) -> CuratorApp:
    try:
        return CuratorApp(settings)
    except (OSError, sqlite3.Error) as exc:
        print(f"limi-curator: cannot open the curator database {settings.database_path}: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def main() -> None:
    run_main(build_app, CuratorSettings)
