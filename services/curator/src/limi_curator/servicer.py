"""The curator's gRPC servicer: request checks, calls into `Curator` in worker threads, events out.

Each method validates what the proto types cannot (required fields, enum values, sizes), runs the
blocking domain call with `asyncio.to_thread`, publishes the resulting events (query tasks,
datasets) with deterministic ids, and counts metrics. Typed errors raised anywhere below become
gRPC status codes at the edge (limi_core.grpc_edge), with the field named. Methods that publish
answer UNAVAILABLE until the service is connected to NATS.
"""

from __future__ import annotations

import asyncio

from google.protobuf.message import Message

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi.query.v1 import query_pb2
from limi_core import bus, limi_format
from limi_core.errors import InvalidArgument, ResourceExhausted, Unavailable
from limi_core.events import EventPublisher, event_id
from limi_curator import metrics
from limi_curator.categories import source_name
from limi_curator.curator import Curator
from limi_curator.emitter import emit_query_set
from limi_curator.gemini_logs import convert_gemini_log_text
from limi_curator.synthesis import synthesis_report_markdown

EXPORT_CHUNK_BYTES = 1024 * 1024


def _enum(value: int, enum_type, field: str) -> int:
    if value not in enum_type.values():
        raise InvalidArgument(field, f"{value} is not a {enum_type.DESCRIPTOR.name} value")
    return value


def _set_fields(message: Message, names: tuple[str, ...]) -> dict:
    return {name: getattr(message, name) for name in names if message.HasField(name)}


class CuratorServicer(curator_pb2_grpc.CuratorServiceServicer):
    def __init__(self, curator: Curator) -> None:
        self._curator = curator
        self._publisher: EventPublisher | None = None

    def attach(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def _publish(self, subject: str, message: Message, msg_id: str) -> None:
        if self._publisher is None:
            raise Unavailable("the curator is not connected to NATS yet")
        await self._publisher.publish(subject, message, msg_id)

    async def _publish_dataset(self, dataset, new: bool) -> None:
        await self._publish(bus.DATASETS_PUBLISHED, dataset, event_id("dataset", dataset.id))
        if new:
            metrics.DATASETS_PUBLISHED.inc()

    # ------------------------------------------------------------ query pool

    async def ImportQueries(self, request, context):
        formats = {curator_pb2.IMPORT_FORMAT_JSONL: "jsonl", curator_pb2.IMPORT_FORMAT_CSV: "csv"}
        if request.format not in formats:
            raise InvalidArgument("format", "must be IMPORT_FORMAT_JSONL or IMPORT_FORMAT_CSV")
        default_source = _enum(request.default_source, query_pb2.QuerySource, "default_source")
        ids, added = await asyncio.to_thread(self._curator.import_queries, formats[request.format], request.content, request.origin, default_source)
        for query in added:
            metrics.QUERIES_IMPORTED.labels(source_name(query.source)).inc()
        return curator_pb2.ImportQueriesResponse(imported=len(added), duplicates=len(ids) - len(added), query_ids=ids)

    async def ListQueries(self, request, context):
        page, next_token = await asyncio.to_thread(
            self._curator.pool.list,
            source=_enum(request.source, query_pb2.QuerySource, "source"),
            category=_enum(request.category, query_pb2.QueryCategory, "category"),
            status=_enum(request.status, query_pb2.QueryStatus, "status"),
            query_set_id=request.query_set_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        response = curator_pb2.ListQueriesResponse(queries=[query for query, _status, _reason in page], next_page_token=next_token)
        for query, status, reason in page:
            response.status_by_id[query.id] = status
            if reason:
                response.drop_reason_by_id[query.id] = reason
        return response

    async def GetQuery(self, request, context):
        if not request.id:
            raise InvalidArgument("id", "is required")
        return await asyncio.to_thread(self._curator.pool.get, request.id)

    async def PublishQuerySet(self, request, context):
        query_set, _new = await asyncio.to_thread(
            self._curator.pool.publish_set, request.name, list(request.query_ids),
            source=_enum(request.source, query_pb2.QuerySource, "source"),
            category=_enum(request.category, query_pb2.QueryCategory, "category"),
            status=_enum(request.status, query_pb2.QueryStatus, "status"),
        )
        return query_set

    async def ListQuerySets(self, request, context):
        return curator_pb2.ListQuerySetsResponse(query_sets=await asyncio.to_thread(self._curator.pool.list_sets, request.name))

    async def EmitQuerySet(self, request, context):
        if self._publisher is None:
            raise Unavailable("the curator is not connected to NATS yet")
        result = await emit_query_set(self._curator.pool, self._publisher.publish, request.query_set_id, request.episodes_per_query)
        metrics.QUERY_TASKS_EMITTED.inc(result.emitted)
        return curator_pb2.EmitQuerySetResponse(emitted=result.emitted, already_emitted=result.already_emitted)

    # ------------------------------------------------------------ synthesis and dedupe

    async def SynthesizeQueries(self, request, context):
        filters = _set_fields(request.filters, ("min_stars", "max_diff_tokens", "exclude_markdown_only", "min_changed_files", "max_changed_files"))
        result, added, note = await asyncio.to_thread(
            self._curator.synthesize, content=request.pull_requests_jsonl, origin=request.origin, endpoint=request.endpoint,
            model=request.model, select=request.select, filters=filters, tokenizer=request.tokenizer, add_to_pool=request.add_to_pool,
        )
        counts = result.funnel.flat_counts()
        metrics.record_funnel(counts)
        metrics.SYNTHESIS_ENDPOINT_CALLS.inc(result.endpoint_calls)
        metrics.SYNTHESIS_CACHE_HITS.inc(result.cache_hits)
        response = curator_pb2.SynthesizeQueriesResponse(
            filter_counts=counts, accepted=len(result.accepted), selected=[c.query for c in result.selected], cache_hits=result.cache_hits,
            endpoint_calls=result.endpoint_calls, tokenizer=result.tokenizer, added_query_ids=added,
            report_markdown=synthesis_report_markdown(result) + (f"\n{note}\n" if note else ""),
        )
        for stage in result.funnel.stages:
            response.stages.add(name=stage.name, kept=stage.kept, dropped=dict(stage.dropped))
        for rejection in result.funnel.rejections:
            response.rejections.add(pull_request=rejection.item, stage=rejection.stage, reason=rejection.reason, detail=rejection.detail)
        return response

    async def DedupeQueries(self, request, context):
        result = await asyncio.to_thread(
            self._curator.dedupe, jaccard_threshold=request.jaccard_threshold, containment_threshold=request.containment_threshold,
            include_benchmarks=request.include_benchmarks, apply=request.apply,
        )
        for duplicate in result.dropped:
            metrics.DEDUPE_DROPPED.labels(duplicate.reason).inc()
        return curator_pb2.DedupeQueriesResponse(
            scanned=result.scanned, benchmark_texts=result.benchmark_texts, report_markdown=result.markdown, applied=request.apply,
            dropped=[curator_pb2.DroppedQuery(query_id=d.id, reason=d.reason, matched=d.matched, similarity=d.similarity) for d in result.dropped],
        )

    # ------------------------------------------------------------ datasets

    async def CurateDataset(self, request, context):
        overrides = _set_fields(request.filters, ("max_failed_tool_rate", "loop_repeats", "max_empty_turns", "max_per_query"))
        dataset, new = await asyncio.to_thread(
            self._curator.curate_dataset, name=request.name, size=request.size, tokenizer=request.tokenizer, max_tokens=request.max_tokens,
            query_set_ids=list(request.query_set_ids), include_failed=request.filters.include_failed, overrides=overrides,
        )
        await self._publish_dataset(dataset, new)
        return dataset

    async def GetDataset(self, request, context):
        if not request.id:
            raise InvalidArgument("id", "is required")
        return await asyncio.to_thread(self._curator.datasets.get, request.id)

    async def ListDatasets(self, request, context):
        return curator_pb2.ListDatasetsResponse(datasets=await asyncio.to_thread(self._curator.datasets.list, request.name))

    async def GetDatasetReport(self, request, context):
        rendered, counts, dataset = await asyncio.to_thread(self._curator.report, request.id)
        return curator_pb2.DatasetReport(dataset_id=dataset.id, markdown=rendered.markdown, histogram_png=rendered.png, filter_counts=counts,
                                         markdown_uri=rendered.markdown_path.resolve().as_uri(), histogram_uri=rendered.png_path.resolve().as_uri())

    async def ImportLimiDataset(self, request_iterator, context):
        first, parts, size = None, [], 0
        limit = self._curator.settings.max_import_bytes
        async for chunk in request_iterator:
            first = first or chunk
            size += len(chunk.data)
            if size > limit:
                raise ResourceExhausted(f"the dataset is larger than {limit} bytes (LIMI_CURATOR_MAX_IMPORT_BYTES)")
            parts.append(chunk.data)
        if first is None:
            raise InvalidArgument("data", "no chunk was sent")
        ids, duplicates, dataset, new = await asyncio.to_thread(
            self._curator.import_limi, content=b"".join(parts), origin=first.origin, category=first.category, publish_as=first.publish_as,
        )
        metrics.TRAJECTORIES_IMPORTED.inc(len(ids) - duplicates)
        response = curator_pb2.ImportLimiDatasetResponse(imported=len(ids) - duplicates, duplicates=duplicates, trajectory_ids=ids)
        if dataset is not None:
            await self._publish_dataset(dataset, new)
            response.dataset.CopyFrom(dataset)
        return response

    async def ExportLimiDataset(self, request, context):
        chunks = await asyncio.to_thread(self._curator.export_limi, request.dataset_id, strict=request.strict, json_array=request.json_array)
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
            if len(buffer) >= EXPORT_CHUNK_BYTES:
                yield curator_pb2.LimiDatasetChunk(data=bytes(buffer))
                buffer.clear()
        if buffer:
            yield curator_pb2.LimiDatasetChunk(data=bytes(buffer))

    # ------------------------------------------------------------ conversions

    async def ConvertToLimi(self, request, context):
        if not request.HasField("trajectory"):
            raise InvalidArgument("trajectory", "is required")
        if not request.trajectory.steps:
            raise InvalidArgument("trajectory.steps", "must hold at least one step")
        sample = limi_format.trajectory_to_limi(request.trajectory, strict=request.strict)
        return curator_pb2.ConvertToLimiResponse(sample_json=limi_format.dumps_sample(sample))

    async def ConvertFromLimi(self, request, context):
        if not request.sample_json.strip():
            raise InvalidArgument("sample_json", "must not be empty")
        sample = limi_format.loads_sample(request.sample_json, origin="sample_json")
        try:
            trajectory = limi_format.limi_to_trajectory(sample)
        except limi_format.InvalidLimiSample as exc:
            raise InvalidArgument(f"sample_json.{exc.field}", exc.reason) from exc
        return curator_pb2.ConvertFromLimiResponse(trajectory=trajectory)

    async def ConvertGeminiLog(self, request, context):
        if not request.log_json.strip():
            raise InvalidArgument("log_json", "must not be empty")
        sample = convert_gemini_log_text(request.log_json, request.origin or "log_json", plain_system_prompt=request.plain_system_prompt)
        return curator_pb2.ConvertToLimiResponse(sample_json=limi_format.dumps_sample(sample))
