"""The PR filters of LIMI's synthetic track, each counted: stars, Markdown-only, changed files, diff size.

Defaults come from LIMI (repositories with more than 10k stars, diffs under 1,200 tokens,
Markdown-only PRs excluded) and its released code (exactly one changed file); every threshold
is configurable. Filters run in that order, so a PR is counted once, under the first filter
that drops it. It does not call a model (synthesis.py does).
"""

from __future__ import annotations

import dataclasses

from limi_core.errors import InvalidArgument
from limi_curator.funnel import Funnel
from limi_curator.pull_requests import PullRequest
from limi_curator.tokens import TokenCounter


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    min_stars: int = 10_001
    max_diff_tokens: int = 1_199
    exclude_markdown_only: bool = True
    min_changed_files: int = 1
    max_changed_files: int = 1

    def validate(self, prefix: str = "filters") -> None:
        if self.min_stars < 0:
            raise InvalidArgument(f"{prefix}.min_stars", "must not be negative")
        if self.max_diff_tokens < 1:
            raise InvalidArgument(f"{prefix}.max_diff_tokens", "must be at least 1")
        if self.min_changed_files < 1:
            raise InvalidArgument(f"{prefix}.min_changed_files", "must be at least 1")
        if self.max_changed_files < self.min_changed_files:
            raise InvalidArgument(
                f"{prefix}.max_changed_files", f"must be at least min_changed_files ({self.min_changed_files})"
            )


def apply_filters(
    records: list[PullRequest], config: FilterConfig, counter: TokenCounter, funnel: Funnel
) -> list[PullRequest]:
    """The records every filter keeps, in input order; the funnel gets a stage per filter."""
    funnel.keep("input", len(records))
    kept = []
    for record in records:
        if record.stars < config.min_stars:
            funnel.drop("stars", record.label, "below_min_stars", f"{record.stars} stars < {config.min_stars}")
            continue
        funnel.keep("stars")
        if config.exclude_markdown_only and record.markdown_only():
            funnel.drop("markdown_only", record.label, "markdown_only", ", ".join(record.changed_files))
            continue
        funnel.keep("markdown_only")
        files = len(record.changed_files)
        if files < config.min_changed_files:
            funnel.drop("changed_files", record.label, "too_few_changed_files", f"{files} < {config.min_changed_files}")
            continue
        if files > config.max_changed_files:
            funnel.drop(
                "changed_files", record.label, "too_many_changed_files", f"{files} > {config.max_changed_files}"
            )
            continue
        funnel.keep("changed_files")
        tokens = counter.count(record.diff)
        if tokens > config.max_diff_tokens:
            funnel.drop("diff_tokens", record.label, "diff_too_long", f"{tokens} tokens > {config.max_diff_tokens}")
            continue
        funnel.keep("diff_tokens")
        kept.append(record)
    return kept
