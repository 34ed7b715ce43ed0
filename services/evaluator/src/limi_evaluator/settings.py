"""Settings of the evaluator service, from LIMI_EVALUATOR_* (and the shared LIMI_*) environment variables.

Defaults suit the embedded one-machine run: every saved checkpoint is evaluated on the built-in
`limi-basics` suite with a vLLM server started on the checkpoint directory, episodes run through
the local rollout service, rubric checks and programs run in the local sandbox service, and
results, the leaderboard and reports live under `$LIMI_DATA_DIR/evaluator`-style folders.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import ClassVar

from limi_core.config import check
from limi_core.settings import DEFAULT_PORTS, ServiceSettings, model_cache_dir

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[4]
DEFAULT_BENCHMARKS_DIR = REPOSITORY_ROOT.parent / "shared" / "benchmarks"
POLICY_MODES = ("vllm", "endpoint", "kubernetes")


@dataclasses.dataclass(frozen=True)
class EvaluatorSettings(ServiceSettings):
    PREFIX: ClassVar[str] = "LIMI_EVALUATOR_"

    grpc_address: str = f"127.0.0.1:{DEFAULT_PORTS['evaluator'].grpc}"
    metrics_address: str = f"127.0.0.1:{DEFAULT_PORTS['evaluator'].metrics}"

    # Benchmark data read in place (HumanEval, AgencyBench); default ../shared/benchmarks beside the repository.
    benchmarks_dir: pathlib.Path = DEFAULT_BENCHMARKS_DIR
    # More suite files (*.toml, *.json) offered by name next to the built-in ones.
    suites_dir: pathlib.Path | None = None
    # What every saved checkpoint is evaluated on, in order (suite names, suite files, humaneval, humaneval-tools).
    benchmarks: tuple[str, ...] = ("limi-basics",)
    consume_checkpoints: bool = True
    # Evaluate only checkpoints marked final (the last of their run).
    final_checkpoints_only: bool = False
    # Score consumed checkpoints on only the first N tasks of each benchmark (0: every task).
    checkpoint_task_limit: int = 0

    # How a checkpoint gets a policy: a vLLM child process on its directory, a given endpoint, or a Kubernetes Job.
    policy_mode: str = "vllm"
    policy_endpoint: str = ""
    policy_model: str = ""
    served_model_name: str = "policy"
    vllm_start_timeout_seconds: float = 600.0
    vllm_max_model_len: int = 4096
    vllm_extra_args: tuple[str, ...] = ()
    kubernetes_namespace: str = "limi"
    kubernetes_image: str = "vllm/vllm-openai:latest"
    kubernetes_checkpoints_claim: str = "limi-checkpoints"
    kubernetes_gpus: int = 1
    # Folders Evaluate.checkpoint_uri may name a model directory under; empty: the trainer's data dir
    # (its checkpoints and built models) and limi's model cache, or /checkpoints in kubernetes mode.
    checkpoint_roots: tuple[pathlib.Path, ...] = ()

    # The services an evaluation uses.
    sandbox_address: str = f"127.0.0.1:{DEFAULT_PORTS['sandbox'].grpc}"
    sandbox_backend: str = ""
    rollout_address: str = f"127.0.0.1:{DEFAULT_PORTS['rollout'].grpc}"

    # Multi-round tasks.
    max_rounds: int = 3
    task_concurrency: int = 2
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 1024
    max_turns: int = 30
    round_wall_seconds: float = 900.0
    check_timeout_seconds: float = 120.0

    # HumanEval.
    humaneval_samples: int = 1
    humaneval_k: tuple[int, ...] = (1,)
    humaneval_parallel: int = 8
    humaneval_timeout_seconds: float = 20.0
    humaneval_limit: int = 0

    # Checkpoint events.
    ack_wait_seconds: float = 120.0
    max_deliver: int = 3
    redelivery_backoff_seconds: tuple[float, ...] = (5.0, 30.0, 120.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        cls, prefix = type(self), self.PREFIX
        check(
            self.policy_mode in POLICY_MODES,
            cls,
            "policy_mode",
            prefix,
            f"must be one of {', '.join(POLICY_MODES)}, got {self.policy_mode!r}",
        )
        if self.policy_mode == "endpoint":
            check(
                self.policy_endpoint.startswith(("http://", "https://")),
                cls,
                "policy_endpoint",
                prefix,
                f"must be an http(s) URL when LIMI_EVALUATOR_POLICY_MODE=endpoint, got {self.policy_endpoint!r}",
            )
        check(bool(self.benchmarks), cls, "benchmarks", prefix, "must name at least one benchmark")
        for name in (
            "max_rounds",
            "task_concurrency",
            "max_tokens",
            "max_turns",
            "humaneval_samples",
            "humaneval_parallel",
            "max_deliver",
        ):
            check(getattr(self, name) >= 1, cls, name, prefix, "must be at least 1")
        check(self.max_rounds <= 10, cls, "max_rounds", prefix, "must be at most 10")
        check(
            all(1 <= k <= self.humaneval_samples for k in self.humaneval_k),
            cls,
            "humaneval_k",
            prefix,
            f"each k must be between 1 and LIMI_EVALUATOR_HUMANEVAL_SAMPLES ({self.humaneval_samples})",
        )
        check(0.0 <= self.temperature <= 2.0, cls, "temperature", prefix, "must be between 0 and 2")
        check(0.0 < self.top_p <= 1.0, cls, "top_p", prefix, "must be in (0, 1]")
        check(self.humaneval_limit >= 0, cls, "humaneval_limit", prefix, "must not be negative")
        check(
            self.checkpoint_task_limit >= 0,
            cls,
            "checkpoint_task_limit",
            prefix,
            "must not be negative (0: every task)",
        )
        for name in (
            "round_wall_seconds",
            "check_timeout_seconds",
            "humaneval_timeout_seconds",
            "ack_wait_seconds",
            "vllm_start_timeout_seconds",
        ):
            check(getattr(self, name) > 0, cls, name, prefix, "must be positive")

    @property
    def allowed_checkpoint_roots(self) -> tuple[pathlib.Path, ...]:
        if self.checkpoint_roots:
            return self.checkpoint_roots
        if self.policy_mode == "kubernetes":
            return (
                pathlib.Path("/checkpoints"),
            )  # where the vLLM Job mounts the checkpoints claim (kubernetes_policy.MOUNT)
        return (self.data_dir_of("trainer"), model_cache_dir())

    @property
    def reports_dir(self) -> pathlib.Path:
        return self.data_dir / "reports"
