"""The curator's Prometheus metrics (served by the scaffold's metrics endpoint).

Counters for what happened in this process (imports, emissions, consumed trajectories, published
datasets, synthesis funnel counts, dedupe drops) and one collector, `PoolCollector`, that reads
the pool's current size by source and status from the database at scrape time, so the gauge is
right after a restart too. gRPC call counts and latencies come from limi_core.grpc_edge.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily

from limi_curator.categories import source_name, status_name

QUERIES_IMPORTED = Counter("limi_curator_queries_imported_total", "Queries added to the pool", ["source"])
QUERY_TASKS_EMITTED = Counter(
    "limi_curator_query_tasks_emitted_total", "QueryTask events published to the rollout subject"
)
TRAJECTORIES_CONSUMED = Counter(
    "limi_curator_trajectories_consumed_total",
    "Trajectory events stored (first delivery of each message id)",
    ["outcome"],
)
TRAJECTORIES_REDELIVERED = Counter(
    "limi_curator_trajectories_redelivered_total", "Trajectory events seen again and ignored (already stored)"
)
TRAJECTORIES_IMPORTED = Counter("limi_curator_trajectories_imported_total", "Trajectories imported from LIMI datasets")
DATASETS_PUBLISHED = Counter("limi_curator_datasets_published_total", "Dataset events published (new datasets)")
SYNTHESIS_FILTER = Counter(
    "limi_curator_synthesis_filter_total", "PR records kept or dropped by each synthesis stage", ["stage", "result"]
)
SYNTHESIS_ENDPOINT_CALLS = Counter(
    "limi_curator_synthesis_endpoint_calls_total", "Chat completions requested for synthesis"
)
SYNTHESIS_CACHE_HITS = Counter("limi_curator_synthesis_cache_hits_total", "Synthesis answers taken from the cache")
DEDUPE_DROPPED = Counter(
    "limi_curator_dedupe_dropped_total", "Queries found to duplicate others or evaluation data", ["reason"]
)


class PoolCollector:
    """limi_curator_queries{source,status}: the pool's size now."""

    def __init__(self, counts) -> None:
        self._counts = counts

    def collect(self):
        family = GaugeMetricFamily(
            "limi_curator_queries", "Queries in the pool by source and status", labels=["source", "status"]
        )
        for source, status, count in self._counts():
            family.add_metric([source_name(source), status_name(status)], count)
        yield family

    def describe(self):
        return []


def register_pool_collector(counts) -> PoolCollector:
    collector = PoolCollector(counts)
    REGISTRY.register(collector)
    return collector


def record_funnel(flat_counts: dict[str, int]) -> None:
    for key, count in flat_counts.items():
        stage, _, result = key.partition(".")
        SYNTHESIS_FILTER.labels(stage, result).inc(count)
