"""Settings of the rollout service, from LIMI_ROLLOUT_* (and the shared LIMI_*) environment variables."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from limi_core.config import check
from limi_core.settings import DEFAULT_PORTS, ServiceSettings

DEFAULT_SYSTEM_PROMPT = (
    "You are a capable software agent working in a sandboxed Linux workspace. Use the tools to inspect "
    "files, run commands and make changes. Work step by step, check your results, and when the task is "
    "done answer with a short summary and no tool call."
)


@dataclasses.dataclass(frozen=True)
class RolloutSettings(ServiceSettings):
    PREFIX: ClassVar[str] = "LIMI_ROLLOUT_"

    grpc_address: str = f"127.0.0.1:{DEFAULT_PORTS['rollout'].grpc}"
    metrics_address: str = f"127.0.0.1:{DEFAULT_PORTS['rollout'].metrics}"
    # The policy: any OpenAI-compatible chat-completions endpoint (vLLM's server).
    policy_endpoint: str = "http://127.0.0.1:8000/v1"
    policy_model: str = "limi-policy"
    policy_api_key: str = ""
    policy_timeout_seconds: float = 300.0
    policy_attempts: int = 6
    policy_first_backoff_seconds: float = 0.5
    return_token_ids: bool = False
    return_logprobs: bool = False
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 4096
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # The sandbox service that runs the tools.
    sandbox_address: str = f"127.0.0.1:{DEFAULT_PORTS['sandbox'].grpc}"
    sandbox_backend: str = "bwrap"
    # Episode limits.
    max_turns: int = 50
    max_context_tokens: int = 131_072
    max_wall_seconds: float = 3600.0
    max_tool_output_bytes: int = 16_384
    # Query intake.
    consume_queries: bool = True
    concurrency: int = 4
    max_attempts: int = 3
    ack_wait_seconds: float = 60.0
    redelivery_backoff_seconds: tuple[float, ...] = (2.0, 15.0, 60.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        cls, prefix = type(self), self.PREFIX
        check(
            self.policy_endpoint.startswith(("http://", "https://")),
            cls,
            "policy_endpoint",
            prefix,
            f"must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.policy_endpoint!r}",
        )
        check(0.0 <= self.temperature <= 2.0, cls, "temperature", prefix, "must be between 0 and 2")
        check(0.0 < self.top_p <= 1.0, cls, "top_p", prefix, "must be in (0, 1]")
        for name in (
            "max_tokens",
            "max_turns",
            "max_context_tokens",
            "max_tool_output_bytes",
            "concurrency",
            "max_attempts",
            "policy_attempts",
        ):
            check(getattr(self, name) >= 1, cls, name, prefix, "must be at least 1")
        check(
            self.max_wall_seconds > 0 and self.ack_wait_seconds > 0, cls, "max_wall_seconds", prefix, "must be positive"
        )
