import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetStats(_message.Message):
    __slots__ = ("count", "tokens_min", "tokens_mean", "tokens_max", "categories")
    class CategoriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_MIN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_MEAN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_MAX_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    count: int
    tokens_min: int
    tokens_mean: float
    tokens_max: int
    categories: _containers.ScalarMap[str, int]
    def __init__(self, count: _Optional[int] = ..., tokens_min: _Optional[int] = ..., tokens_mean: _Optional[float] = ..., tokens_max: _Optional[int] = ..., categories: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("id", "name", "version", "content_hash", "trajectory_ids", "stats", "storage_uri", "tokenizer", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_IDS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_URI_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    version: int
    content_hash: str
    trajectory_ids: _containers.RepeatedScalarFieldContainer[str]
    stats: DatasetStats
    storage_uri: str
    tokenizer: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., content_hash: _Optional[str] = ..., trajectory_ids: _Optional[_Iterable[str]] = ..., stats: _Optional[_Union[DatasetStats, _Mapping]] = ..., storage_uri: _Optional[str] = ..., tokenizer: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
