"""The curator's operations on its stores, one synchronous method per use case, shared by gRPC and tests.

`Curator` owns the database, the idempotent sink, the query pool, the trajectory and dataset
stores and the synthesis cache, and turns requests (already plain values) into results:
importing queries, synthesizing from PRs, dedupe, curating a dataset, LIMI import and export,
reports. Validation errors name the request field. Methods block (SQLite, HTTP to the synthesis
endpoint, tokenizing): the servicer runs them in worker threads. Publishing events is not done
here; the servicer publishes what these methods return.
"""

from __future__ import annotations

import dataclasses

from limi.dataset.v1 import dataset_pb2
from limi.query.v1 import query_pb2
from limi.trajectory.v1 import trajectory_pb2
from limi_core import limi_format
from limi_core.errors import FailedPrecondition, InvalidArgument, NotFound
from limi_core.idempotency import IdempotentSink
from limi_core.policy_client import PolicyClient
from limi_core.retry import RetryPolicy
from limi_curator import query_import
from limi_curator.benchmarks import load_benchmark_texts
from limi_curator.categories import UnknownName, category_from_name, category_name
from limi_curator.curation import curate, draw_at_random
from limi_curator.dataset_store import DatasetStore
from limi_curator.db import CuratorDatabase
from limi_curator.dedupe import BenchmarkIndex, Deduplicator, Duplicate, dedupe_report_markdown
from limi_curator.limi_dataset import export_samples, parse_limi_dataset, sample_to_trajectory
from limi_curator.minhash import MinHasher
from limi_curator.pr_filters import FilterConfig
from limi_curator.pull_requests import parse_pull_requests
from limi_curator.query_pool import QueryPool, check_set_name
from limi_curator.report import RenderedReport, render_dataset_report
from limi_curator.settings import CuratorSettings
from limi_curator.synthesis import SynthesisCache, SynthesisOptions, SynthesisResult, synthesize
from limi_curator.tokens import TokenCounter, load_token_counter, render_for_counting
from limi_curator.trajectory_quality import QualityConfig
from limi_curator.trajectory_store import TrajectoryStore

MAX_SELECT = 10_000


@dataclasses.dataclass(frozen=True)
class DedupeResult:
    scanned: int
    dropped: list[Duplicate]
    benchmark_texts: int
    markdown: str


class Curator:
    def __init__(self, settings: CuratorSettings) -> None:
        self.settings = settings
        self.db = CuratorDatabase(settings.database_path)
        self.sink = IdempotentSink(settings.database_path)
        self.pool = QueryPool(self.db)
        self.trajectories = TrajectoryStore(self.db, self.sink)
        self.datasets = DatasetStore(self.db, settings.datasets_dir)
        self.synthesis_cache = SynthesisCache(self.db)
        self._hasher = MinHasher(settings.minhash_permutations, settings.shingle_words)
        self._benchmark_index: BenchmarkIndex | None = None

    def close(self) -> None:
        self.sink.close()
        self.db.close()

    # ------------------------------------------------------------ helpers

    def token_counter(self, requested: str, field: str = "tokenizer") -> TokenCounter:
        if requested:
            return load_token_counter(requested, field)
        return load_token_counter(self.settings.tokenizer, "LIMI_CURATOR_TOKENIZER")

    def benchmark_index(self) -> BenchmarkIndex:
        if self._benchmark_index is None:
            texts = load_benchmark_texts(self.settings.resolved_benchmarks_dir().resolve())
            self._benchmark_index = BenchmarkIndex(self._hasher, texts)
        return self._benchmark_index

    def facets(self, trajectory: trajectory_pb2.Trajectory) -> tuple[str, str]:
        """(category, repository) of a trajectory, from its query in the pool, else its labels."""
        query = None
        if trajectory.lineage.query_id:
            try:
                query = self.pool.get(trajectory.lineage.query_id)
            except NotFound:
                query = None
        category = (
            category_name(query.category)
            if query and query.category
            else trajectory.labels.get("category", "unspecified")
        )
        repository = (
            (query.provenance.repository if query else "")
            or trajectory.labels.get("repository")
            or trajectory.lineage.query_id
            or "unknown"
        )
        return category, repository

    # ------------------------------------------------------------ query pool

    def import_queries(
        self, import_format: str, content: bytes, origin: str, default_source: int
    ) -> tuple[list[str], list[query_pb2.Query]]:
        if not content.strip():
            raise InvalidArgument("content", "is empty")
        parse = {"jsonl": query_import.parse_jsonl, "csv": query_import.parse_csv}.get(import_format)
        if parse is None:
            raise InvalidArgument("format", "must be JSONL or CSV")
        return self.pool.add(parse(content, origin or f"queries.{import_format}", default_source))

    # ------------------------------------------------------------ synthesis

    def synthesize(
        self,
        *,
        content: bytes,
        origin: str,
        endpoint: str,
        model: str,
        select: int,
        filters: dict,
        tokenizer: str,
        add_to_pool: bool,
    ) -> tuple[SynthesisResult, list[str], str]:
        endpoint = endpoint or self.settings.synthesis_endpoint
        model = model or self.settings.synthesis_model
        if not content.strip():
            raise InvalidArgument("pull_requests_jsonl", "is empty")
        if not endpoint.startswith(("http://", "https://")):
            raise InvalidArgument(
                "endpoint",
                "must be an http(s) URL of an OpenAI-compatible API (or set LIMI_CURATOR_SYNTHESIS_ENDPOINT)",
            )
        if not model:
            raise InvalidArgument("model", "is required (or set LIMI_CURATOR_SYNTHESIS_MODEL)")
        if select < 0 or select > MAX_SELECT:
            raise InvalidArgument(
                "select", f"must be between 1 and {MAX_SELECT} (0: the service's default), got {select}"
            )
        settings = self.settings
        config = FilterConfig(
            settings.min_stars,
            settings.max_diff_tokens,
            settings.exclude_markdown_only,
            settings.min_changed_files,
            settings.max_changed_files,
        )
        config = dataclasses.replace(config, **filters)
        config.validate()
        counter = self.token_counter(tokenizer)
        records = parse_pull_requests(content, origin or "pull_requests.jsonl")
        client = PolicyClient(
            endpoint,
            model,
            api_key=settings.synthesis_api_key,
            timeout_seconds=settings.synthesis_timeout_seconds,
            retry=RetryPolicy(
                attempts=settings.synthesis_retries + 1, first_backoff_seconds=0.5, max_backoff_seconds=8.0
            ),
            dependency="synthesis",
        )
        options = SynthesisOptions(
            config,
            select or settings.synthesis_select,
            model,
            settings.synthesis_temperature,
            settings.synthesis_concurrency,
            origin or "pull_requests.jsonl",
        )
        benchmarks_note = ""
        try:
            index = self.benchmark_index()
        except FailedPrecondition as exc:
            index, benchmarks_note = None, f"Benchmarks not checked: {exc}"
        deduplicator = Deduplicator(self._hasher, settings.dedupe_jaccard, settings.dedupe_containment, index)
        # Queries synthesized earlier from these same PRs are this run's own results, not duplicates to avoid.
        these_prs = {(record.repository, record.number) for record in records}
        pool_texts = [
            (query.id, query.text)
            for query in self.pool.all_active()
            if (query.provenance.repository, query.provenance.pull_request) not in these_prs
        ]
        result = synthesize(
            records,
            options=options,
            client=client,
            cache=self.synthesis_cache,
            counter=counter,
            deduplicator=deduplicator,
            pool_texts=pool_texts,
        )
        added: list[str] = []
        if add_to_pool and result.selected:
            added = [query.id for query in self.pool.add([candidate.query for candidate in result.selected])[1]]
        return result, added, benchmarks_note

    # ------------------------------------------------------------ dedupe

    def dedupe(
        self, *, jaccard_threshold: float, containment_threshold: float, include_benchmarks: bool, apply: bool
    ) -> DedupeResult:
        for field, value in (
            ("jaccard_threshold", jaccard_threshold),
            ("containment_threshold", containment_threshold),
        ):
            if not 0 <= value <= 1:
                raise InvalidArgument(field, f"must be between 0 and 1 (0: the service's setting), got {value:g}")
        jaccard = jaccard_threshold or self.settings.dedupe_jaccard
        containment = containment_threshold or self.settings.dedupe_containment
        index = self.benchmark_index() if include_benchmarks else None
        queries = sorted(self.pool.all_active(), key=lambda q: (q.source != query_pb2.QUERY_SOURCE_REAL,))
        texts = [(query.id, query.text) for query in queries]
        dropped = Deduplicator(self._hasher, jaccard, containment, index).find(texts)
        if apply and dropped:
            self.pool.mark_dropped({d.id: f"{d.reason}: {d.matched} ({d.similarity:.2f})" for d in dropped})
        markdown = dedupe_report_markdown(
            len(texts), len(index) if index else 0, dropped, jaccard, containment, dict(texts)
        )
        return DedupeResult(len(texts), dropped, len(index) if index else 0, markdown)

    # ------------------------------------------------------------ datasets

    def curate_dataset(
        self,
        *,
        name: str,
        size: int,
        tokenizer: str,
        max_tokens: int,
        query_set_ids: list[str],
        include_failed: bool,
        overrides: dict,
        at_random: bool = False,
        seed: int = 0,
    ) -> tuple[dataset_pb2.Dataset, bool]:
        check_set_name(name)
        if size < 1 or size > MAX_SELECT:
            raise InvalidArgument("size", f"must be between 1 and {MAX_SELECT}, got {size}")
        if max_tokens < 0:
            raise InvalidArgument("max_tokens", "must not be negative")
        for position, set_id in enumerate(query_set_ids):
            try:
                self.pool.get_set(set_id)
            except NotFound:
                raise InvalidArgument(f"query_set_ids[{position}]", f"no published query set {set_id!r}") from None
        settings = self.settings
        if at_random and (overrides or include_failed):
            field = next(iter(overrides), "include_failed")
            raise InvalidArgument(f"filters.{field}", "CURATION_RANDOM applies no filters; leave filters empty")
        max_per_query = overrides.pop("max_per_query", 1)
        if max_per_query < 1:
            raise InvalidArgument("filters.max_per_query", "must be at least 1")
        config = QualityConfig(
            max_tokens or settings.max_trajectory_tokens,
            include_failed,
            settings.max_failed_tool_rate,
            settings.loop_repeats,
            settings.max_empty_turns,
        )
        config = dataclasses.replace(config, **overrides)
        if not 0 <= config.max_failed_tool_rate <= 1:
            raise InvalidArgument("filters.max_failed_tool_rate", "must be between 0 and 1")
        if config.loop_repeats < 2:
            raise InvalidArgument("filters.loop_repeats", "must be at least 2")
        if config.max_empty_turns < 0:
            raise InvalidArgument("filters.max_empty_turns", "must not be negative")
        counter = self.token_counter(tokenizer)
        trajectories = self.trajectories.load(query_set_ids=query_set_ids or None)
        if not trajectories:
            raise FailedPrecondition(
                "no trajectories are stored" + (" for these query sets" if query_set_ids else "") + " yet"
            )
        if at_random:
            result = draw_at_random(
                trajectories, size=size, seed=seed, counter=counter, max_tokens=config.max_tokens, facets=self.facets
            )
        else:
            result = curate(
                trajectories, size=size, counter=counter, config=config, max_per_query=max_per_query, facets=self.facets
            )
        counts = result.funnel.flat_counts()
        if not result.selected:
            raise FailedPrecondition(f"no trajectory passed the filters: {counts}")
        dataset, new = self.datasets.save(
            name,
            [a.trajectory for a in result.selected],
            [a.tokens for a in result.selected],
            result.categories,
            counter.name,
            counts,
        )
        self.report(dataset.id)
        return dataset, new

    def import_limi(
        self, *, content: bytes, origin: str, category: str, publish_as: str
    ) -> tuple[list[str], int, dataset_pb2.Dataset | None, bool]:
        origin = origin or "limi.jsonl"
        if category:
            try:
                category = category_name(category_from_name(category))
            except UnknownName as exc:
                raise InvalidArgument("category", str(exc)) from None
        if publish_as:
            check_set_name(publish_as, "publish_as")
        samples = parse_limi_dataset(content, origin)
        trajectories, seen = [], set()
        for _where, sample in samples:
            trajectory = sample_to_trajectory(sample, category=category, origin=origin)
            if trajectory.id not in seen:
                seen.add(trajectory.id)
                trajectories.append(trajectory)
        ids, duplicates = self.trajectories.import_trajectories(trajectories)
        duplicates += len(samples) - len(trajectories)
        if not publish_as:
            return ids, duplicates, None, False
        counter = self.token_counter("")
        lengths = [
            counter.count(render_for_counting(limi_format.trajectory_to_limi(t, strict=True))) for t in trajectories
        ]
        categories = [self.facets(t)[0] for t in trajectories]
        dataset, new = self.datasets.save(
            publish_as, trajectories, lengths, categories, counter.name, {"import.kept": len(trajectories)}
        )
        self.report(dataset.id)
        return ids, duplicates, dataset, new

    def export_limi(self, dataset_id: str, *, strict: bool, json_array: bool) -> list[bytes]:
        if not dataset_id:
            raise InvalidArgument("dataset_id", "is required")
        dataset = self.datasets.get(dataset_id)
        return export_samples(self.datasets.read_samples(dataset), strict=strict, json_array=json_array)

    def report(self, dataset_id: str) -> tuple[RenderedReport, dict[str, int], dataset_pb2.Dataset]:
        if not dataset_id:
            raise InvalidArgument("id", "is required")
        dataset, counts, lengths = self.datasets.details(dataset_id)
        return render_dataset_report(dataset, lengths, counts, self.settings.datasets_dir), counts, dataset
