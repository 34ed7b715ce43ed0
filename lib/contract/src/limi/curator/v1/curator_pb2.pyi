from limi.dataset.v1 import dataset_pb2 as _dataset_pb2
from limi.query.v1 import query_pb2 as _query_pb2
from limi.trajectory.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_FORMAT_UNSPECIFIED: _ClassVar[ImportFormat]
    IMPORT_FORMAT_JSONL: _ClassVar[ImportFormat]
    IMPORT_FORMAT_CSV: _ClassVar[ImportFormat]

class Curation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURATION_UNSPECIFIED: _ClassVar[Curation]
    CURATION_LIMI: _ClassVar[Curation]
    CURATION_RANDOM: _ClassVar[Curation]
IMPORT_FORMAT_UNSPECIFIED: ImportFormat
IMPORT_FORMAT_JSONL: ImportFormat
IMPORT_FORMAT_CSV: ImportFormat
CURATION_UNSPECIFIED: Curation
CURATION_LIMI: Curation
CURATION_RANDOM: Curation

class ImportQueriesRequest(_message.Message):
    __slots__ = ("format", "content", "origin", "default_source")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    format: ImportFormat
    content: bytes
    origin: str
    default_source: _query_pb2.QuerySource
    def __init__(self, format: _Optional[_Union[ImportFormat, str]] = ..., content: _Optional[bytes] = ..., origin: _Optional[str] = ..., default_source: _Optional[_Union[_query_pb2.QuerySource, str]] = ...) -> None: ...

class ImportQueriesResponse(_message.Message):
    __slots__ = ("imported", "duplicates", "query_ids")
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    QUERY_IDS_FIELD_NUMBER: _ClassVar[int]
    imported: int
    duplicates: int
    query_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, imported: _Optional[int] = ..., duplicates: _Optional[int] = ..., query_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListQueriesRequest(_message.Message):
    __slots__ = ("source", "category", "status", "page_size", "page_token", "query_set_id")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    QUERY_SET_ID_FIELD_NUMBER: _ClassVar[int]
    source: _query_pb2.QuerySource
    category: _query_pb2.QueryCategory
    status: _query_pb2.QueryStatus
    page_size: int
    page_token: str
    query_set_id: str
    def __init__(self, source: _Optional[_Union[_query_pb2.QuerySource, str]] = ..., category: _Optional[_Union[_query_pb2.QueryCategory, str]] = ..., status: _Optional[_Union[_query_pb2.QueryStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., query_set_id: _Optional[str] = ...) -> None: ...

class ListQueriesResponse(_message.Message):
    __slots__ = ("queries", "next_page_token", "status_by_id", "drop_reason_by_id")
    class StatusByIdEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _query_pb2.QueryStatus
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_query_pb2.QueryStatus, str]] = ...) -> None: ...
    class DropReasonByIdEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_BY_ID_FIELD_NUMBER: _ClassVar[int]
    DROP_REASON_BY_ID_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[_query_pb2.Query]
    next_page_token: str
    status_by_id: _containers.ScalarMap[str, _query_pb2.QueryStatus]
    drop_reason_by_id: _containers.ScalarMap[str, str]
    def __init__(self, queries: _Optional[_Iterable[_Union[_query_pb2.Query, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., status_by_id: _Optional[_Mapping[str, _query_pb2.QueryStatus]] = ..., drop_reason_by_id: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetQueryRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PublishQuerySetRequest(_message.Message):
    __slots__ = ("name", "query_ids", "source", "category", "status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUERY_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    query_ids: _containers.RepeatedScalarFieldContainer[str]
    source: _query_pb2.QuerySource
    category: _query_pb2.QueryCategory
    status: _query_pb2.QueryStatus
    def __init__(self, name: _Optional[str] = ..., query_ids: _Optional[_Iterable[str]] = ..., source: _Optional[_Union[_query_pb2.QuerySource, str]] = ..., category: _Optional[_Union[_query_pb2.QueryCategory, str]] = ..., status: _Optional[_Union[_query_pb2.QueryStatus, str]] = ...) -> None: ...

class ListQuerySetsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListQuerySetsResponse(_message.Message):
    __slots__ = ("query_sets",)
    QUERY_SETS_FIELD_NUMBER: _ClassVar[int]
    query_sets: _containers.RepeatedCompositeFieldContainer[_query_pb2.QuerySet]
    def __init__(self, query_sets: _Optional[_Iterable[_Union[_query_pb2.QuerySet, _Mapping]]] = ...) -> None: ...

class EmitQuerySetRequest(_message.Message):
    __slots__ = ("query_set_id", "episodes_per_query", "policy_model")
    QUERY_SET_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODES_PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    POLICY_MODEL_FIELD_NUMBER: _ClassVar[int]
    query_set_id: str
    episodes_per_query: int
    policy_model: str
    def __init__(self, query_set_id: _Optional[str] = ..., episodes_per_query: _Optional[int] = ..., policy_model: _Optional[str] = ...) -> None: ...

class EmitQuerySetResponse(_message.Message):
    __slots__ = ("emitted", "already_emitted")
    EMITTED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_EMITTED_FIELD_NUMBER: _ClassVar[int]
    emitted: int
    already_emitted: int
    def __init__(self, emitted: _Optional[int] = ..., already_emitted: _Optional[int] = ...) -> None: ...

class SynthesizeQueriesRequest(_message.Message):
    __slots__ = ("pull_requests_jsonl", "endpoint", "model", "select", "filters", "tokenizer", "add_to_pool", "origin")
    PULL_REQUESTS_JSONL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_POOL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    pull_requests_jsonl: bytes
    endpoint: str
    model: str
    select: int
    filters: SynthesisFilters
    tokenizer: str
    add_to_pool: bool
    origin: str
    def __init__(self, pull_requests_jsonl: _Optional[bytes] = ..., endpoint: _Optional[str] = ..., model: _Optional[str] = ..., select: _Optional[int] = ..., filters: _Optional[_Union[SynthesisFilters, _Mapping]] = ..., tokenizer: _Optional[str] = ..., add_to_pool: _Optional[bool] = ..., origin: _Optional[str] = ...) -> None: ...

class SynthesisFilters(_message.Message):
    __slots__ = ("min_stars", "max_diff_tokens", "exclude_markdown_only", "min_changed_files", "max_changed_files")
    MIN_STARS_FIELD_NUMBER: _ClassVar[int]
    MAX_DIFF_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_MARKDOWN_ONLY_FIELD_NUMBER: _ClassVar[int]
    MIN_CHANGED_FILES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHANGED_FILES_FIELD_NUMBER: _ClassVar[int]
    min_stars: int
    max_diff_tokens: int
    exclude_markdown_only: bool
    min_changed_files: int
    max_changed_files: int
    def __init__(self, min_stars: _Optional[int] = ..., max_diff_tokens: _Optional[int] = ..., exclude_markdown_only: _Optional[bool] = ..., min_changed_files: _Optional[int] = ..., max_changed_files: _Optional[int] = ...) -> None: ...

class SynthesisStage(_message.Message):
    __slots__ = ("name", "kept", "dropped")
    class DroppedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kept: int
    dropped: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., kept: _Optional[int] = ..., dropped: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SynthesisRejection(_message.Message):
    __slots__ = ("pull_request", "stage", "reason", "detail")
    PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    pull_request: str
    stage: str
    reason: str
    detail: str
    def __init__(self, pull_request: _Optional[str] = ..., stage: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class SynthesizeQueriesResponse(_message.Message):
    __slots__ = ("filter_counts", "accepted", "selected", "stages", "rejections", "cache_hits", "endpoint_calls", "tokenizer", "added_query_ids", "report_markdown")
    class FilterCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FILTER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    ADDED_QUERY_IDS_FIELD_NUMBER: _ClassVar[int]
    REPORT_MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    filter_counts: _containers.ScalarMap[str, int]
    accepted: int
    selected: _containers.RepeatedCompositeFieldContainer[_query_pb2.Query]
    stages: _containers.RepeatedCompositeFieldContainer[SynthesisStage]
    rejections: _containers.RepeatedCompositeFieldContainer[SynthesisRejection]
    cache_hits: int
    endpoint_calls: int
    tokenizer: str
    added_query_ids: _containers.RepeatedScalarFieldContainer[str]
    report_markdown: str
    def __init__(self, filter_counts: _Optional[_Mapping[str, int]] = ..., accepted: _Optional[int] = ..., selected: _Optional[_Iterable[_Union[_query_pb2.Query, _Mapping]]] = ..., stages: _Optional[_Iterable[_Union[SynthesisStage, _Mapping]]] = ..., rejections: _Optional[_Iterable[_Union[SynthesisRejection, _Mapping]]] = ..., cache_hits: _Optional[int] = ..., endpoint_calls: _Optional[int] = ..., tokenizer: _Optional[str] = ..., added_query_ids: _Optional[_Iterable[str]] = ..., report_markdown: _Optional[str] = ...) -> None: ...

class DedupeQueriesRequest(_message.Message):
    __slots__ = ("jaccard_threshold", "containment_threshold", "include_benchmarks", "apply")
    JACCARD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CONTAINMENT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_BENCHMARKS_FIELD_NUMBER: _ClassVar[int]
    APPLY_FIELD_NUMBER: _ClassVar[int]
    jaccard_threshold: float
    containment_threshold: float
    include_benchmarks: bool
    apply: bool
    def __init__(self, jaccard_threshold: _Optional[float] = ..., containment_threshold: _Optional[float] = ..., include_benchmarks: _Optional[bool] = ..., apply: _Optional[bool] = ...) -> None: ...

class DroppedQuery(_message.Message):
    __slots__ = ("query_id", "reason", "matched", "similarity")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    reason: str
    matched: str
    similarity: float
    def __init__(self, query_id: _Optional[str] = ..., reason: _Optional[str] = ..., matched: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...

class DedupeQueriesResponse(_message.Message):
    __slots__ = ("scanned", "dropped", "benchmark_texts", "report_markdown", "applied")
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_TEXTS_FIELD_NUMBER: _ClassVar[int]
    REPORT_MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    scanned: int
    dropped: _containers.RepeatedCompositeFieldContainer[DroppedQuery]
    benchmark_texts: int
    report_markdown: str
    applied: bool
    def __init__(self, scanned: _Optional[int] = ..., dropped: _Optional[_Iterable[_Union[DroppedQuery, _Mapping]]] = ..., benchmark_texts: _Optional[int] = ..., report_markdown: _Optional[str] = ..., applied: _Optional[bool] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[_dataset_pb2.Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[_dataset_pb2.Dataset, _Mapping]]] = ...) -> None: ...

class DatasetReport(_message.Message):
    __slots__ = ("dataset_id", "markdown", "histogram_png", "filter_counts", "markdown_uri", "histogram_uri")
    class FilterCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_PNG_FIELD_NUMBER: _ClassVar[int]
    FILTER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MARKDOWN_URI_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_URI_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    markdown: str
    histogram_png: bytes
    filter_counts: _containers.ScalarMap[str, int]
    markdown_uri: str
    histogram_uri: str
    def __init__(self, dataset_id: _Optional[str] = ..., markdown: _Optional[str] = ..., histogram_png: _Optional[bytes] = ..., filter_counts: _Optional[_Mapping[str, int]] = ..., markdown_uri: _Optional[str] = ..., histogram_uri: _Optional[str] = ...) -> None: ...

class ImportLimiDatasetChunk(_message.Message):
    __slots__ = ("origin", "publish_as", "data", "category")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_AS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    origin: str
    publish_as: str
    data: bytes
    category: str
    def __init__(self, origin: _Optional[str] = ..., publish_as: _Optional[str] = ..., data: _Optional[bytes] = ..., category: _Optional[str] = ...) -> None: ...

class ImportLimiDatasetResponse(_message.Message):
    __slots__ = ("imported", "duplicates", "trajectory_ids", "dataset")
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_IDS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    imported: int
    duplicates: int
    trajectory_ids: _containers.RepeatedScalarFieldContainer[str]
    dataset: _dataset_pb2.Dataset
    def __init__(self, imported: _Optional[int] = ..., duplicates: _Optional[int] = ..., trajectory_ids: _Optional[_Iterable[str]] = ..., dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ...) -> None: ...

class ExportLimiDatasetRequest(_message.Message):
    __slots__ = ("dataset_id", "strict", "json_array")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    JSON_ARRAY_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    strict: bool
    json_array: bool
    def __init__(self, dataset_id: _Optional[str] = ..., strict: _Optional[bool] = ..., json_array: _Optional[bool] = ...) -> None: ...

class LimiDatasetChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ConvertGeminiLogRequest(_message.Message):
    __slots__ = ("log_json", "origin", "plain_system_prompt")
    LOG_JSON_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PLAIN_SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    log_json: str
    origin: str
    plain_system_prompt: bool
    def __init__(self, log_json: _Optional[str] = ..., origin: _Optional[str] = ..., plain_system_prompt: _Optional[bool] = ...) -> None: ...

class CurateDatasetRequest(_message.Message):
    __slots__ = ("name", "size", "tokenizer", "max_tokens", "query_set_ids", "filters", "curation", "seed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    QUERY_SET_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    CURATION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    tokenizer: str
    max_tokens: int
    query_set_ids: _containers.RepeatedScalarFieldContainer[str]
    filters: CurationFilters
    curation: Curation
    seed: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., tokenizer: _Optional[str] = ..., max_tokens: _Optional[int] = ..., query_set_ids: _Optional[_Iterable[str]] = ..., filters: _Optional[_Union[CurationFilters, _Mapping]] = ..., curation: _Optional[_Union[Curation, str]] = ..., seed: _Optional[int] = ...) -> None: ...

class CurationFilters(_message.Message):
    __slots__ = ("include_failed", "max_failed_tool_rate", "loop_repeats", "max_empty_turns", "max_per_query")
    INCLUDE_FAILED_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILED_TOOL_RATE_FIELD_NUMBER: _ClassVar[int]
    LOOP_REPEATS_FIELD_NUMBER: _ClassVar[int]
    MAX_EMPTY_TURNS_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    include_failed: bool
    max_failed_tool_rate: float
    loop_repeats: int
    max_empty_turns: int
    max_per_query: int
    def __init__(self, include_failed: _Optional[bool] = ..., max_failed_tool_rate: _Optional[float] = ..., loop_repeats: _Optional[int] = ..., max_empty_turns: _Optional[int] = ..., max_per_query: _Optional[int] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ConvertToLimiRequest(_message.Message):
    __slots__ = ("trajectory", "strict")
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    trajectory: _trajectory_pb2.Trajectory
    strict: bool
    def __init__(self, trajectory: _Optional[_Union[_trajectory_pb2.Trajectory, _Mapping]] = ..., strict: _Optional[bool] = ...) -> None: ...

class ConvertToLimiResponse(_message.Message):
    __slots__ = ("sample_json",)
    SAMPLE_JSON_FIELD_NUMBER: _ClassVar[int]
    sample_json: str
    def __init__(self, sample_json: _Optional[str] = ...) -> None: ...

class ConvertFromLimiRequest(_message.Message):
    __slots__ = ("sample_json",)
    SAMPLE_JSON_FIELD_NUMBER: _ClassVar[int]
    sample_json: str
    def __init__(self, sample_json: _Optional[str] = ...) -> None: ...

class ConvertFromLimiResponse(_message.Message):
    __slots__ = ("trajectory",)
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    trajectory: _trajectory_pb2.Trajectory
    def __init__(self, trajectory: _Optional[_Union[_trajectory_pb2.Trajectory, _Mapping]] = ...) -> None: ...
