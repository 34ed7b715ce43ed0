from limi.query.v1 import query_pb2 as _query_pb2
from limi.trajectory.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EpisodeLimits(_message.Message):
    __slots__ = ("max_turns", "max_context_tokens", "max_wall_seconds", "max_tool_output_bytes")
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOOL_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_turns: int
    max_context_tokens: int
    max_wall_seconds: int
    max_tool_output_bytes: int
    def __init__(self, max_turns: _Optional[int] = ..., max_context_tokens: _Optional[int] = ..., max_wall_seconds: _Optional[int] = ..., max_tool_output_bytes: _Optional[int] = ...) -> None: ...

class RunEpisodeRequest(_message.Message):
    __slots__ = ("query", "system_prompt", "endpoint", "model", "sampling", "limits", "sandbox_session_id", "request_id", "continue_from", "feedback", "feedback_author", "publish", "episode_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_FROM_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_AUTHOR_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    query: _query_pb2.Query
    system_prompt: str
    endpoint: str
    model: str
    sampling: _trajectory_pb2.SamplingParams
    limits: EpisodeLimits
    sandbox_session_id: str
    request_id: str
    continue_from: _trajectory_pb2.Trajectory
    feedback: str
    feedback_author: str
    publish: bool
    episode_id: str
    def __init__(self, query: _Optional[_Union[_query_pb2.Query, _Mapping]] = ..., system_prompt: _Optional[str] = ..., endpoint: _Optional[str] = ..., model: _Optional[str] = ..., sampling: _Optional[_Union[_trajectory_pb2.SamplingParams, _Mapping]] = ..., limits: _Optional[_Union[EpisodeLimits, _Mapping]] = ..., sandbox_session_id: _Optional[str] = ..., request_id: _Optional[str] = ..., continue_from: _Optional[_Union[_trajectory_pb2.Trajectory, _Mapping]] = ..., feedback: _Optional[str] = ..., feedback_author: _Optional[str] = ..., publish: _Optional[bool] = ..., episode_id: _Optional[str] = ...) -> None: ...

class CorrectRequest(_message.Message):
    __slots__ = ("episode_id", "text", "author")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    text: str
    author: str
    def __init__(self, episode_id: _Optional[str] = ..., text: _Optional[str] = ..., author: _Optional[str] = ...) -> None: ...

class CorrectResponse(_message.Message):
    __slots__ = ("after_step",)
    AFTER_STEP_FIELD_NUMBER: _ClassVar[int]
    after_step: int
    def __init__(self, after_step: _Optional[int] = ...) -> None: ...

class WatchEpisodeRequest(_message.Message):
    __slots__ = ("episode_id",)
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    def __init__(self, episode_id: _Optional[str] = ...) -> None: ...

class EpisodeSummary(_message.Message):
    __slots__ = ("episode_id", "query_id", "steps", "status", "reason", "running")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    query_id: str
    steps: int
    status: _trajectory_pb2.OutcomeStatus
    reason: str
    running: bool
    def __init__(self, episode_id: _Optional[str] = ..., query_id: _Optional[str] = ..., steps: _Optional[int] = ..., status: _Optional[_Union[_trajectory_pb2.OutcomeStatus, str]] = ..., reason: _Optional[str] = ..., running: _Optional[bool] = ...) -> None: ...

class ListEpisodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEpisodesResponse(_message.Message):
    __slots__ = ("episodes",)
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    episodes: _containers.RepeatedCompositeFieldContainer[EpisodeSummary]
    def __init__(self, episodes: _Optional[_Iterable[_Union[EpisodeSummary, _Mapping]]] = ...) -> None: ...
