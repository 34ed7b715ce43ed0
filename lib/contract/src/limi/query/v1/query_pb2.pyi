import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QuerySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUERY_SOURCE_UNSPECIFIED: _ClassVar[QuerySource]
    QUERY_SOURCE_REAL: _ClassVar[QuerySource]
    QUERY_SOURCE_SYNTHETIC: _ClassVar[QuerySource]

class QueryCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUERY_CATEGORY_UNSPECIFIED: _ClassVar[QueryCategory]
    QUERY_CATEGORY_ALGORITHM: _ClassVar[QueryCategory]
    QUERY_CATEGORY_FRONTEND: _ClassVar[QueryCategory]
    QUERY_CATEGORY_BACKEND: _ClassVar[QueryCategory]
    QUERY_CATEGORY_DEPLOYMENT: _ClassVar[QueryCategory]
    QUERY_CATEGORY_DEBUGGING: _ClassVar[QueryCategory]
    QUERY_CATEGORY_OPTIMIZATION: _ClassVar[QueryCategory]
    QUERY_CATEGORY_DATA_PROCESSING: _ClassVar[QueryCategory]
    QUERY_CATEGORY_TESTING: _ClassVar[QueryCategory]
    QUERY_CATEGORY_REFACTORING: _ClassVar[QueryCategory]
    QUERY_CATEGORY_RESEARCH: _ClassVar[QueryCategory]
    QUERY_CATEGORY_OTHER: _ClassVar[QueryCategory]

class QueryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUERY_STATUS_UNSPECIFIED: _ClassVar[QueryStatus]
    QUERY_STATUS_PENDING: _ClassVar[QueryStatus]
    QUERY_STATUS_EMITTED: _ClassVar[QueryStatus]
    QUERY_STATUS_COMPLETED: _ClassVar[QueryStatus]
    QUERY_STATUS_FAILED: _ClassVar[QueryStatus]
    QUERY_STATUS_DROPPED: _ClassVar[QueryStatus]
QUERY_SOURCE_UNSPECIFIED: QuerySource
QUERY_SOURCE_REAL: QuerySource
QUERY_SOURCE_SYNTHETIC: QuerySource
QUERY_CATEGORY_UNSPECIFIED: QueryCategory
QUERY_CATEGORY_ALGORITHM: QueryCategory
QUERY_CATEGORY_FRONTEND: QueryCategory
QUERY_CATEGORY_BACKEND: QueryCategory
QUERY_CATEGORY_DEPLOYMENT: QueryCategory
QUERY_CATEGORY_DEBUGGING: QueryCategory
QUERY_CATEGORY_OPTIMIZATION: QueryCategory
QUERY_CATEGORY_DATA_PROCESSING: QueryCategory
QUERY_CATEGORY_TESTING: QueryCategory
QUERY_CATEGORY_REFACTORING: QueryCategory
QUERY_CATEGORY_RESEARCH: QueryCategory
QUERY_CATEGORY_OTHER: QueryCategory
QUERY_STATUS_UNSPECIFIED: QueryStatus
QUERY_STATUS_PENDING: QueryStatus
QUERY_STATUS_EMITTED: QueryStatus
QUERY_STATUS_COMPLETED: QueryStatus
QUERY_STATUS_FAILED: QueryStatus
QUERY_STATUS_DROPPED: QueryStatus

class Provenance(_message.Message):
    __slots__ = ("repository", "pull_request", "author", "url", "base_sha", "head_sha", "origin_file", "origin_line")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    BASE_SHA_FIELD_NUMBER: _ClassVar[int]
    HEAD_SHA_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FILE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_LINE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    pull_request: int
    author: str
    url: str
    base_sha: str
    head_sha: str
    origin_file: str
    origin_line: int
    def __init__(self, repository: _Optional[str] = ..., pull_request: _Optional[int] = ..., author: _Optional[str] = ..., url: _Optional[str] = ..., base_sha: _Optional[str] = ..., head_sha: _Optional[str] = ..., origin_file: _Optional[str] = ..., origin_line: _Optional[int] = ...) -> None: ...

class WorkspaceFile(_message.Message):
    __slots__ = ("path", "content", "mode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    content: bytes
    mode: int
    def __init__(self, path: _Optional[str] = ..., content: _Optional[bytes] = ..., mode: _Optional[int] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("id", "text", "source", "category", "provenance", "created_at", "content_hash", "labels", "workspace_files")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FILES_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    source: QuerySource
    category: QueryCategory
    provenance: Provenance
    created_at: _timestamp_pb2.Timestamp
    content_hash: str
    labels: _containers.ScalarMap[str, str]
    workspace_files: _containers.RepeatedCompositeFieldContainer[WorkspaceFile]
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., source: _Optional[_Union[QuerySource, str]] = ..., category: _Optional[_Union[QueryCategory, str]] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., content_hash: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., workspace_files: _Optional[_Iterable[_Union[WorkspaceFile, _Mapping]]] = ...) -> None: ...

class QuerySet(_message.Message):
    __slots__ = ("id", "name", "version", "query_ids", "content_hash", "published_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    QUERY_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    version: int
    query_ids: _containers.RepeatedScalarFieldContainer[str]
    content_hash: str
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., query_ids: _Optional[_Iterable[str]] = ..., content_hash: _Optional[str] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueryTask(_message.Message):
    __slots__ = ("query", "query_set_id", "episodes", "policy_model")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    QUERY_SET_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    POLICY_MODEL_FIELD_NUMBER: _ClassVar[int]
    query: Query
    query_set_id: str
    episodes: int
    policy_model: str
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., query_set_id: _Optional[str] = ..., episodes: _Optional[int] = ..., policy_model: _Optional[str] = ...) -> None: ...
