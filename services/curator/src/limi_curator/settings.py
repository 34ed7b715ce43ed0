"""Settings of the curator service, from LIMI_CURATOR_* (and the shared LIMI_*) environment variables.

Defaults follow LIMI (see ../shared/guides/LIMI_FACTS.md): PRs from repositories with more than
10k stars, diffs under 1,200 tokens, Markdown-only PRs excluded, one changed file (LIMI's released
code), samples of at most 125,000 tokens. Paths that are empty mean "not configured": with no
tokenizer the documented fallback count is used (tokens.py); with no benchmarks directory the
default `../shared/benchmarks` next to the repository is used when it exists.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import ClassVar

from limi_core.config import check
from limi_core.settings import DEFAULT_PORTS, ServiceSettings, model_cache_dir

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[4]
DEFAULT_BENCHMARKS_DIR = REPOSITORY_ROOT.parent / "shared" / "benchmarks"
DATABASE_NAME = "curator.sqlite"


@dataclasses.dataclass(frozen=True)
class CuratorSettings(ServiceSettings):
    PREFIX: ClassVar[str] = "LIMI_CURATOR_"

    grpc_address: str = f"127.0.0.1:{DEFAULT_PORTS['curator'].grpc}"
    metrics_address: str = f"127.0.0.1:{DEFAULT_PORTS['curator'].metrics}"
    # tokenizer.json used for token counts when a request names none.
    tokenizer: pathlib.Path | None = None
    # Folders a request's tokenizer may lie under; empty: the trainer's data dir (its models and
    # checkpoints carry tokenizers), limi's model cache and the folder of LIMI_CURATOR_TOKENIZER.
    tokenizer_roots: tuple[pathlib.Path, ...] = ()
    # HumanEval and AgencyBench data for decontamination; default ../shared/benchmarks.
    benchmarks_dir: pathlib.Path | None = None
    # Synthesis: an OpenAI-compatible endpoint (".../v1") used when a request names none.
    synthesis_endpoint: str = ""
    synthesis_model: str = ""
    synthesis_api_key: str = ""
    synthesis_timeout_seconds: float = 120.0
    synthesis_retries: int = 3
    synthesis_concurrency: int = 4
    synthesis_temperature: float = 0.2
    synthesis_select: int = 18
    # Synthesis filters (LIMI defaults).
    min_stars: int = 10_001
    max_diff_tokens: int = 1_199
    exclude_markdown_only: bool = True
    min_changed_files: int = 1
    max_changed_files: int = 1
    # Dedupe and decontamination.
    dedupe_jaccard: float = 0.7
    dedupe_containment: float = 0.6
    minhash_permutations: int = 128
    shingle_words: int = 3
    # Trajectory curation.
    max_trajectory_tokens: int = 125_000
    max_failed_tool_rate: float = 0.5
    loop_repeats: int = 3
    max_empty_turns: int = 0
    max_import_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        cls, prefix = type(self), self.PREFIX
        if self.tokenizer is not None:
            found = self.tokenizer.is_file() or (self.tokenizer / "tokenizer.json").is_file()
            check(
                found,
                cls,
                "tokenizer",
                prefix,
                f"must name a tokenizer.json or a directory holding one, got {str(self.tokenizer)!r}",
            )
        if self.benchmarks_dir is not None:
            check(
                self.benchmarks_dir.is_dir(),
                cls,
                "benchmarks_dir",
                prefix,
                f"must name an existing directory, got {str(self.benchmarks_dir)!r}",
            )
        check(
            self.synthesis_endpoint == "" or self.synthesis_endpoint.startswith(("http://", "https://")),
            cls,
            "synthesis_endpoint",
            prefix,
            f"must start with http:// or https://, got {self.synthesis_endpoint!r}",
        )
        check(self.synthesis_timeout_seconds > 0, cls, "synthesis_timeout_seconds", prefix, "must be positive")
        check(0 <= self.synthesis_retries <= 20, cls, "synthesis_retries", prefix, "must be between 0 and 20")
        check(1 <= self.synthesis_concurrency <= 64, cls, "synthesis_concurrency", prefix, "must be between 1 and 64")
        check(0 <= self.synthesis_temperature <= 2, cls, "synthesis_temperature", prefix, "must be between 0 and 2")
        check(self.synthesis_select >= 1, cls, "synthesis_select", prefix, "must be at least 1")
        check(self.min_stars >= 0, cls, "min_stars", prefix, "must not be negative")
        check(self.max_diff_tokens >= 1, cls, "max_diff_tokens", prefix, "must be at least 1")
        check(
            1 <= self.min_changed_files <= self.max_changed_files,
            cls,
            "max_changed_files",
            prefix,
            f"must be at least LIMI_CURATOR_MIN_CHANGED_FILES ({self.min_changed_files}) and the minimum at least 1",
        )
        check(0 < self.dedupe_jaccard <= 1, cls, "dedupe_jaccard", prefix, "must be in (0, 1]")
        check(0 < self.dedupe_containment <= 1, cls, "dedupe_containment", prefix, "must be in (0, 1]")
        check(
            16 <= self.minhash_permutations <= 1024 and self.minhash_permutations % 8 == 0,
            cls,
            "minhash_permutations",
            prefix,
            "must be a multiple of 8 between 16 and 1024",
        )
        check(1 <= self.shingle_words <= 10, cls, "shingle_words", prefix, "must be between 1 and 10")
        check(self.max_trajectory_tokens >= 1, cls, "max_trajectory_tokens", prefix, "must be at least 1")
        check(0 <= self.max_failed_tool_rate <= 1, cls, "max_failed_tool_rate", prefix, "must be between 0 and 1")
        check(self.loop_repeats >= 2, cls, "loop_repeats", prefix, "must be at least 2")
        check(self.max_empty_turns >= 0, cls, "max_empty_turns", prefix, "must not be negative")
        check(self.max_import_bytes >= 1024, cls, "max_import_bytes", prefix, "must be at least 1024")

    @property
    def allowed_tokenizer_roots(self) -> tuple[pathlib.Path, ...]:
        if self.tokenizer_roots:
            return self.tokenizer_roots
        configured = (
            () if self.tokenizer is None else (self.tokenizer if self.tokenizer.is_dir() else self.tokenizer.parent,)
        )
        return (self.data_dir_of("trainer"), model_cache_dir(), *configured)

    @property
    def database_path(self) -> pathlib.Path:
        return self.data_dir / DATABASE_NAME

    @property
    def datasets_dir(self) -> pathlib.Path:
        return self.data_dir / "datasets"

    def resolved_benchmarks_dir(self) -> pathlib.Path:
        """The benchmarks directory: the configured one, else ../shared/benchmarks beside the repository."""
        return self.benchmarks_dir if self.benchmarks_dir is not None else DEFAULT_BENCHMARKS_DIR
