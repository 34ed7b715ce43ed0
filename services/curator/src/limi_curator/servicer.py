"""The curator's gRPC servicer: request checks, calls into `Curator` in worker threads, events out.

Each method first checks its request against the field tables below (ids, enum values, numeric
ranges; limi_core.request_checks) and keeps a tokenizer path to the tokenizer roots
(LIMI_CURATOR_TOKENIZER_ROOTS); then it runs the blocking domain call with `asyncio.to_thread`, publishes the resulting events (query tasks,
datasets) with deterministic ids, and counts metrics. Typed errors raised anywhere below become
gRPC status codes at the edge (limi_core.grpc_edge), with the field named. Events go out through
the scaffold's `BusLink` (UNAVAILABLE while NATS is not connected).
"""

from __future__ import annotations

import asyncio
import contextlib

from google.protobuf.message import Message

from limi.curator.v1 import curator_pb2, curator_pb2_grpc
from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2
from limi_core import bus, limi_format
from limi_core.errors import InvalidArgument, ResourceExhausted
from limi_core.events import event_id
from limi_core.request_checks import (
    COUNT,
    IDENTIFIER,
    REQUIRED_IDENTIFIER,
    Between,
    Each,
    Known,
    TimesInRange,
    Url,
    check_fields,
    confined_path,
)
from limi_core.service import BusLink
from limi_curator import metrics
from limi_curator.categories import source_name
from limi_curator.curator import Curator
from limi_curator.emitter import emit_query_set
from limi_curator.gemini_logs import convert_gemini_log_text
from limi_curator.synthesis import synthesis_report_markdown

EXPORT_CHUNK_BYTES = 1024 * 1024
MAX_QUERIES = 1_000_000
FILTERS = {
    "source": Known(query_pb2.QuerySource),
    "category": Known(query_pb2.QueryCategory),
    "status": Known(query_pb2.QueryStatus),
}
BY_ID = {"id": REQUIRED_IDENTIFIER}
BY_NAME = {"name": IDENTIFIER}


def _step(field: str, step: trajectory_pb2.Step) -> None:
    Known(trajectory_pb2.Role, unspecified=False)(f"{field}.role", step.role)


IMPORT_QUERIES = {
    "format": Known(curator_pb2.ImportFormat),
    "origin": IDENTIFIER,
    "default_source": Known(query_pb2.QuerySource),
}
LIST_QUERIES = {**FILTERS, "page_size": Between(0, 10_000), "page_token": IDENTIFIER, "query_set_id": IDENTIFIER}
PUBLISH_QUERY_SET = {"name": IDENTIFIER, "query_ids": Each(IDENTIFIER, max_items=MAX_QUERIES), **FILTERS}
EMIT_QUERY_SET = {"query_set_id": IDENTIFIER, "episodes_per_query": Between(0, 1_000), "policy_model": IDENTIFIER}
SYNTHESIZE_QUERIES = {
    "endpoint": Url(),
    "model": IDENTIFIER,
    "select": Between(0, 100_000),
    "filters.min_stars": COUNT,
    "filters.max_diff_tokens": Between(0, 10_000_000),
    "filters.min_changed_files": Between(0, 1_000_000),
    "filters.max_changed_files": Between(0, 1_000_000),
    "origin": IDENTIFIER,
}
CURATE_DATASET = {
    "name": IDENTIFIER,
    "size": Between(0, MAX_QUERIES),
    "max_tokens": Between(0, 100_000_000),
    "query_set_ids": Each(IDENTIFIER),
    "filters.max_failed_tool_rate": Between(0, 1),
    "filters.loop_repeats": Between(0, 1_000),
    "filters.max_empty_turns": Between(0, 1_000),
    "filters.max_per_query": Between(0, 100_000),
    "curation": Known(curator_pb2.Curation),
    "seed": Between(0, 2**62),
}
CONVERT_TO_LIMI = {
    "trajectory": TimesInRange(),
    "trajectory.id": IDENTIFIER,
    "trajectory.steps": Each(_step, max_items=100_000),
}
DEDUPE_QUERIES = {"jaccard_threshold": Between(0, 1), "containment_threshold": Between(0, 1)}
IMPORT_LIMI_DATASET = {"origin": IDENTIFIER, "publish_as": IDENTIFIER, "category": IDENTIFIER}
EXPORT_LIMI_DATASET = {"dataset_id": REQUIRED_IDENTIFIER}
CONVERT_GEMINI_LOG = {"origin": IDENTIFIER}


def _set_fields(message: Message, names: tuple[str, ...]) -> dict:
    return {name: getattr(message, name) for name in names if message.HasField(name)}


@contextlib.contextmanager
def _content_of(field: str, request: Message):
    """Domain errors about an uploaded document name its origin ("prs.jsonl line 3 field stars");
    the caller also learns the request field that held it ("pull_requests_jsonl: prs.jsonl line 3 ...").
    Errors that already name a field of `request` pass as they are."""
    try:
        yield
    except InvalidArgument as exc:
        if exc.field.split(".")[0].split("[")[0] in request.DESCRIPTOR.fields_by_name:
            raise
        raise InvalidArgument(field, str(exc)) from exc


class CuratorServicer(curator_pb2_grpc.CuratorServiceServicer):
    def __init__(self, curator: Curator, bus: BusLink) -> None:
        self._curator = curator
        self._bus = bus

    async def _publish(self, subject: str, message: Message, msg_id: str) -> None:
        await self._bus.publisher.publish(subject, message, msg_id)

    async def _publish_dataset(self, dataset, new: bool) -> None:
        await self._publish(bus.DATASETS_PUBLISHED, dataset, event_id("dataset", dataset.id))
        if new:
            metrics.DATASETS_PUBLISHED.inc()

    # ------------------------------------------------------------ query pool

    def _tokenizer(self, path: str) -> str:
        if not path:
            return ""
        roots = self._curator.settings.allowed_tokenizer_roots
        return str(confined_path("tokenizer", path, roots, "LIMI_CURATOR_TOKENIZER_ROOTS"))

    async def ImportQueries(self, request, context):
        check_fields(request, IMPORT_QUERIES)
        formats = {curator_pb2.IMPORT_FORMAT_JSONL: "jsonl", curator_pb2.IMPORT_FORMAT_CSV: "csv"}
        if request.format not in formats:
            raise InvalidArgument("format", "must be IMPORT_FORMAT_JSONL or IMPORT_FORMAT_CSV")
        with _content_of("content", request):
            ids, added = await asyncio.to_thread(
                self._curator.import_queries,
                formats[request.format],
                request.content,
                request.origin,
                request.default_source,
            )
        for query in added:
            metrics.QUERIES_IMPORTED.labels(source_name(query.source)).inc()
        return curator_pb2.ImportQueriesResponse(imported=len(added), duplicates=len(ids) - len(added), query_ids=ids)

    async def ListQueries(self, request, context):
        check_fields(request, LIST_QUERIES)
        page, next_token = await asyncio.to_thread(
            self._curator.pool.list,
            source=request.source,
            category=request.category,
            status=request.status,
            query_set_id=request.query_set_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        response = curator_pb2.ListQueriesResponse(
            queries=[query for query, _status, _reason in page], next_page_token=next_token
        )
        for query, status, reason in page:
            response.status_by_id[query.id] = status
            if reason:
                response.drop_reason_by_id[query.id] = reason
        return response

    async def GetQuery(self, request, context):
        check_fields(request, BY_ID)
        return await asyncio.to_thread(self._curator.pool.get, request.id)

    async def PublishQuerySet(self, request, context):
        check_fields(request, PUBLISH_QUERY_SET)
        query_set, _new = await asyncio.to_thread(
            self._curator.pool.publish_set,
            request.name,
            list(request.query_ids),
            source=request.source,
            category=request.category,
            status=request.status,
        )
        return query_set

    async def ListQuerySets(self, request, context):
        check_fields(request, BY_NAME)
        return curator_pb2.ListQuerySetsResponse(
            query_sets=await asyncio.to_thread(self._curator.pool.list_sets, request.name)
        )

    async def EmitQuerySet(self, request, context):
        check_fields(request, EMIT_QUERY_SET)
        result = await emit_query_set(
            self._curator.pool,
            self._bus.publisher.publish,
            request.query_set_id,
            request.episodes_per_query,
            request.policy_model,
        )
        metrics.QUERY_TASKS_EMITTED.inc(result.emitted)
        return curator_pb2.EmitQuerySetResponse(emitted=result.emitted, already_emitted=result.already_emitted)

    # ------------------------------------------------------------ synthesis and dedupe

    async def SynthesizeQueries(self, request, context):
        check_fields(request, SYNTHESIZE_QUERIES)
        tokenizer = self._tokenizer(request.tokenizer)
        filters = _set_fields(
            request.filters,
            ("min_stars", "max_diff_tokens", "exclude_markdown_only", "min_changed_files", "max_changed_files"),
        )
        with _content_of("pull_requests_jsonl", request):
            result, added, note = await asyncio.to_thread(
                self._curator.synthesize,
                content=request.pull_requests_jsonl,
                origin=request.origin,
                endpoint=request.endpoint,
                model=request.model,
                select=request.select,
                filters=filters,
                tokenizer=tokenizer,
                add_to_pool=request.add_to_pool,
            )
        counts = result.funnel.flat_counts()
        metrics.record_funnel(counts)
        metrics.SYNTHESIS_ENDPOINT_CALLS.inc(result.endpoint_calls)
        metrics.SYNTHESIS_CACHE_HITS.inc(result.cache_hits)
        response = curator_pb2.SynthesizeQueriesResponse(
            filter_counts=counts,
            accepted=len(result.accepted),
            selected=[c.query for c in result.selected],
            cache_hits=result.cache_hits,
            endpoint_calls=result.endpoint_calls,
            tokenizer=result.tokenizer,
            added_query_ids=added,
            report_markdown=synthesis_report_markdown(result) + (f"\n{note}\n" if note else ""),
        )
        for stage in result.funnel.stages:
            response.stages.add(name=stage.name, kept=stage.kept, dropped=dict(stage.dropped))
        for rejection in result.funnel.rejections:
            response.rejections.add(
                pull_request=rejection.item, stage=rejection.stage, reason=rejection.reason, detail=rejection.detail
            )
        return response

    async def DedupeQueries(self, request, context):
        check_fields(request, DEDUPE_QUERIES)
        result = await asyncio.to_thread(
            self._curator.dedupe,
            jaccard_threshold=request.jaccard_threshold,
            containment_threshold=request.containment_threshold,
            include_benchmarks=request.include_benchmarks,
            apply=request.apply,
        )
        for duplicate in result.dropped:
            metrics.DEDUPE_DROPPED.labels(duplicate.reason).inc()
        return curator_pb2.DedupeQueriesResponse(
            scanned=result.scanned,
            benchmark_texts=result.benchmark_texts,
            report_markdown=result.markdown,
            applied=request.apply,
            dropped=[
                curator_pb2.DroppedQuery(query_id=d.id, reason=d.reason, matched=d.matched, similarity=d.similarity)
                for d in result.dropped
            ],
        )

    # ------------------------------------------------------------ datasets

    async def CurateDataset(self, request, context):
        check_fields(request, CURATE_DATASET)
        tokenizer = self._tokenizer(request.tokenizer)
        overrides = _set_fields(
            request.filters, ("max_failed_tool_rate", "loop_repeats", "max_empty_turns", "max_per_query")
        )
        dataset, new = await asyncio.to_thread(
            self._curator.curate_dataset,
            name=request.name,
            size=request.size,
            tokenizer=tokenizer,
            max_tokens=request.max_tokens,
            query_set_ids=list(request.query_set_ids),
            include_failed=request.filters.include_failed,
            overrides=overrides,
            at_random=request.curation == curator_pb2.CURATION_RANDOM,
            seed=request.seed,
        )
        await self._publish_dataset(dataset, new)
        return dataset

    async def GetDataset(self, request, context):
        check_fields(request, BY_ID)
        return await asyncio.to_thread(self._curator.datasets.get, request.id)

    async def ListDatasets(self, request, context):
        check_fields(request, BY_NAME)
        return curator_pb2.ListDatasetsResponse(
            datasets=await asyncio.to_thread(self._curator.datasets.list, request.name)
        )

    async def GetDatasetReport(self, request, context):
        check_fields(request, BY_ID)
        rendered, counts, dataset = await asyncio.to_thread(self._curator.report, request.id)
        return curator_pb2.DatasetReport(
            dataset_id=dataset.id,
            markdown=rendered.markdown,
            histogram_png=rendered.png,
            filter_counts=counts,
            markdown_uri=rendered.markdown_path.resolve().as_uri(),
            histogram_uri=rendered.png_path.resolve().as_uri(),
        )

    async def ImportLimiDataset(self, request_iterator, context):
        first, parts, size = None, [], 0
        limit = self._curator.settings.max_import_bytes
        async for chunk in request_iterator:
            if first is None:
                check_fields(chunk, IMPORT_LIMI_DATASET)
            first = first or chunk
            size += len(chunk.data)
            if size > limit:
                raise ResourceExhausted(f"the dataset is larger than {limit} bytes (LIMI_CURATOR_MAX_IMPORT_BYTES)")
            parts.append(chunk.data)
        if first is None:
            raise InvalidArgument("data", "no chunk was sent")
        with _content_of("data", first):
            ids, duplicates, dataset, new = await asyncio.to_thread(
                self._curator.import_limi,
                content=b"".join(parts),
                origin=first.origin,
                category=first.category,
                publish_as=first.publish_as,
            )
        metrics.TRAJECTORIES_IMPORTED.inc(len(ids) - duplicates)
        response = curator_pb2.ImportLimiDatasetResponse(
            imported=len(ids) - duplicates, duplicates=duplicates, trajectory_ids=ids
        )
        if dataset is not None:
            await self._publish_dataset(dataset, new)
            response.dataset.CopyFrom(dataset)
        return response

    async def ExportLimiDataset(self, request, context):
        check_fields(request, EXPORT_LIMI_DATASET)
        chunks = await asyncio.to_thread(
            self._curator.export_limi, request.dataset_id, strict=request.strict, json_array=request.json_array
        )
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
        check_fields(request, CONVERT_TO_LIMI)
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
        check_fields(request, CONVERT_GEMINI_LOG)
        with _content_of("log_json", request):
            sample = convert_gemini_log_text(
                request.log_json, request.origin or "log_json", plain_system_prompt=request.plain_system_prompt
            )
        return curator_pb2.ConvertToLimiResponse(sample_json=limi_format.dumps_sample(sample))
